"""Fast, vectorised sample account for the benchmarks (1M … 50M visits).

:func:`cfanalytics.sample.generate` simulates every record in Python: about
19 s and 230 MB per 100k visits, so roughly 30 min and 20+ GB at 10M. This
module writes the same kind of account with numpy/polars, streaming visits and
clicks to disk in chunks of hours, so memory stays flat whatever the size:

- ``visits.csv``       UI spelling (``Click ID, Visit Time, Campaign ID, …``), local times, in time order;
- ``clicks.csv``       ``Click ID, Click Time, Campaign ID, …, CTA`` (≈ 42 % of visits);
- ``conversions.csv``  ``Click ID, Conversion Time, Visit Time, …, Payout, Transaction ID, Custom Conversion (ct)``
  (≈ 9 % of visits; a few double fires and unknown click ids);
- ``postbacks.csv``    UI spelling (``Postback ID, Click ID, Postback Time, Is Error, Error Message, Status Code,
  Postback URL, Custom Conversion (ct), Integration ID, Traffic Source ID, Campaign ID``), one per conversion of
  a source with postbacks, background errors, missing gclids, four time-boxed faults and a few ct slips;
- ``activity.csv``     the edits around the faults (and decoys);
- ``manifest.json``    parameters, row counts and click ids to look up.

Proportions follow :mod:`cfanalytics.sample` (P(convert) = 7.6 %, 30 % second steps,
38 % lander clicks, 1.5 % background postback errors, 80 % of UI postback rows
showing their traffic source). Same arguments → same files.

Command line: ``python benchmarks/gen.py OUT --visits 1000000 [--days 7] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from cfanalytics.sample import _CAMPAIGNS, _CITIES, _LANDERS, _NETWORKS, _OFFERS, _SOURCES

__all__ = ["FILES", "Manifest", "ensure", "generate_fast"]

FILES: Final = {
    "visits": "visits.csv",
    "clicks": "clicks.csv",
    "conversions": "conversions.csv",
    "postbacks": "postbacks.csv",
    "activity": "activity.csv",
}
MANIFEST: Final = "manifest.json"
GENERATOR_VERSION: Final = 1

TIMEZONE: Final = "America/New_York"
START: Final = "2026-11-16"
CHUNK_VISITS: Final = 400_000

P_CONVERT: Final = 0.076
P_SECOND_STEP: Final = 0.30
P_CLICK: Final = 0.38
P_SECOND_CLICK: Final = 0.05
P_MISSING_GCLID: Final = 0.08
P_BACKGROUND_ERROR: Final = 0.015
P_SOURCE_COLUMN: Final = 0.8
P_CT_SLIP: Final = 0.003
P_DOUBLE_FIRE: Final = 0.0002  # per visit, like sample.py's n // 5000
P_UNKNOWN_CLICK: Final = 0.001  # per conversion

_CURVE_AM: Final = (45, 30, 22, 18, 18, 25, 45, 70, 95, 115, 130, 140)  # relative traffic, local 00–11 h
_CURVE_PM: Final = (145, 145, 140, 140, 145, 150, 160, 170, 170, 150, 110, 75)  # local 12–23 h
_CURVE: Final = (*_CURVE_AM, *_CURVE_PM)

# The account's entities are those of the built-in sample (cfanalytics.sample), so both generators
# describe the same traffic sources, offers, campaigns and places.
SOURCES: Final = _SOURCES  # (name, mode, share, external id kind, referrer, integration name)
NETWORKS: Final = _NETWORKS  # (name, txid prefix)
OFFERS: Final = _OFFERS  # (name, network, steps as (ct, payout))
LANDERS: Final = _LANDERS
CAMPAIGNS: Final = _CAMPAIGNS  # (name, source, offers, landers, weight within the source, countries)
CITIES: Final = _CITIES
_WEBKIT: Final = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_BLINK: Final = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
# (device type, OS, browser, user agent, weight)
DEVICES: Final = (
    (
        "mobile",
        "iOS",
        "Safari",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_WEBKIT} Mobile/15E148",
        0.30,
    ),
    ("mobile", "Android", "Chrome", f"Mozilla/5.0 (Linux; Android 14; SM-S918B) {_BLINK} Mobile Safari/537.36", 0.30),
    ("desktop", "Windows", "Chrome", f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Safari/537.36", 0.18),
    ("desktop", "Windows", "Edge", f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Edg/130.0.0.0", 0.07),
    ("desktop", "macOS", "Safari", f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Safari/605.1.15", 0.08),
    ("tablet", "iPadOS", "Safari", f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_WEBKIT} Mobile/15E148", 0.07),
)
FIRST_OCTETS: Final = (24, 31, 45, 66, 73, 81, 89, 98, 104, 142, 176, 185, 187, 201)
CAPI_EVENTS: Final = {
    "sale": "Purchase",
    "deposit": "Purchase",
    "lead": "Lead",
    "signup": "Registration",
    "install": "Download",
    "": "Lead",
}
CT_SLIPS: Final = {
    "sale": "purchase",
    "lead": "Lead",
    "signup": "registration",
    "install": "app_install",
    "deposit": "ftd",
    "": "conversion",
}
GCLID_ERROR: Final = (
    '{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT",'
    '"details":[{"errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},"message":"Too short."}]}]}}'
)
BACKGROUND_ERRORS: Final[dict[str, tuple[tuple[int | None, str], ...]]] = {
    "Meta Ads": (
        (500, '{"error":{"message":"An unexpected error has occurred.","type":"FacebookApiException","code":2}}'),
        (503, "Service temporarily unavailable"),
    ),
    "Google Ads": ((500, "Internal error encountered."), (503, "The service is currently unavailable.")),
    "TikTok Ads": ((500, '{"code":50000,"message":"System error"}'), (503, "Service Unavailable")),
    "s2s": (
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Temporarily Unavailable"),
        (None, "Operation timed out after 10001 milliseconds with 0 bytes received"),
    ),
}
# (fault, source, day, local hour, hours, share failing, status, message)
FAULTS: Final = (
    ("postback_url_edit", 3, 1, 10, 3, 1.0, 400, "Invalid click id"),
    ("receiver_timeout", 4, 2, 10, 2, 0.85, None, "Connection timed out after 10000 ms"),
    ("rate_limit", 2, 2, 17, 2, 0.75, 429, '{"code":40100,"message":"Too many requests. Please retry in some time."}'),
    (
        "token_expired",
        0,
        3,
        12,
        3,
        1.0,
        401,
        '{"error":{"message":"Error validating access token: Session has expired.",'
        '"type":"OAuthException","code":190}}',
    ),
)

VISIT_HEADER: Final = (
    "Click ID",
    "Visit Time",
    "Campaign ID",
    "Campaign",
    "Traffic Source ID",
    "Traffic Source",
    "Offer ID",
    "Offer",
    "Lander ID",
    "Lander",
    "Affiliate Network ID",
    "Affiliate Network",
    "External ID",
    "IP",
    "Country",
    "City",
    "Device Type",
    "OS",
    "Browser",
    "User Agent",
    "Referrer",
    "Tracking Field 1",
    "Tracking Field 2",
)
CLICK_HEADER: Final = (
    "Click ID",
    "Click Time",
    "Campaign ID",
    "Traffic Source ID",
    "Lander ID",
    "Offer ID",
    "CTA",
    "Country",
    "Browser",
    "IP",
)
CONVERSION_HEADER: Final = (
    "Click ID",
    "Conversion Time",
    "Visit Time",
    "Campaign ID",
    "Traffic Source ID",
    "Offer ID",
    "Affiliate Network ID",
    "Payout",
    "Transaction ID",
    "Custom Conversion (ct)",
    "Status",
)
POSTBACK_HEADER: Final = (
    "Postback ID",
    "Click ID",
    "Postback Time",
    "Is Error",
    "Error Message",
    "Status Code",
    "Postback URL",
    "Custom Conversion (ct)",
    "Integration ID",
    "Traffic Source ID",
    "Campaign ID",
)
ACTIVITY_HEADER: Final = ("Date", "User", "Entity Type", "Entity ID", "Entity Name", "Action", "Old Value", "New Value")

_HEX: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ALNUM: Final = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
_LOWER: Final = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)


@dataclass(frozen=True)
class Manifest:
    """What :func:`generate_fast` wrote."""

    folder: Path
    params: dict[str, Any]
    counts: dict[str, int]
    lookup_click_ids: list[str]
    seconds: float

    def path(self, role: str) -> Path:
        """Path of one file (``visits``, ``clicks``, ``conversions``, ``postbacks``, ``activity``)."""
        return self.folder / FILES[role]

    def to_json(self) -> dict[str, Any]:
        """JSON form written to ``manifest.json``."""
        return {
            "params": self.params,
            "counts": self.counts,
            "lookup_click_ids": self.lookup_click_ids,
            "seconds": self.seconds,
            "files": dict(FILES),
            "bytes": {role: self.path(role).stat().st_size for role in FILES},
        }


# ------------------------------------------------------------------ random text
def _text(rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray = _ALNUM) -> pl.Series:
    codes = rng.integers(0, len(alphabet), size=(n, length), dtype=np.uint8)
    return _bytes_to_str(alphabet[codes])


def _bytes_to_str(chars: np.ndarray) -> pl.Series:
    n, width = chars.shape
    if n == 0:
        return pl.Series([], dtype=pl.String)
    return pl.Series(np.ascontiguousarray(chars).view(f"S{width}").ravel()).cast(pl.String)


def _hex_chars(rng: np.random.Generator, n: int, n_bytes: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, n_bytes), dtype=np.uint8)
    out = np.empty((n, 2 * n_bytes), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def hex_ids(rng: np.random.Generator, n: int, n_bytes: int = 12) -> pl.Series:
    """``n`` random hex ids of ``2 * n_bytes`` characters (ClickFlare entity / postback ids)."""
    return _bytes_to_str(_hex_chars(rng, n, n_bytes))


def uuids(rng: np.random.Generator, n: int) -> pl.Series:
    """``n`` random version-4 UUID strings."""
    h = _hex_chars(rng, n, 16)
    h[:, 12] = ord("4")
    h[:, 16] = _HEX[8 + (h[:, 16] % 4)]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = h[:, src : src + width]
    return _bytes_to_str(out)


# ---------------------------------------------------------------------- account
@dataclass(frozen=True)
class _Account:
    source_ids: list[str]
    integration_ids: list[str | None]
    campaign_ids: list[str]
    offer_ids: list[str]
    lander_ids: list[str]
    network_ids: list[str]
    pixels: dict[str, str]


def _account(rng: np.random.Generator) -> _Account:
    def ids(n: int) -> list[str]:
        return hex_ids(rng, n).to_list()

    integrations = ids(len(SOURCES))
    return _Account(
        source_ids=ids(len(SOURCES)),
        integration_ids=[iid if s[5] else None for iid, s in zip(integrations, SOURCES, strict=True)],
        campaign_ids=ids(len(CAMPAIGNS)),
        offer_ids=ids(len(OFFERS)),
        lander_ids=ids(len(LANDERS)),
        network_ids=ids(len(NETWORKS)),
        pixels={
            "meta": str(int(rng.integers(10**15, 10**16))),
            "meta_token": "EAAG" + _text(rng, 1, 120).item(),
            "google_customer": str(int(rng.integers(10**9, 10**10))),
            "google_action": str(int(rng.integers(10**8, 10**9))),
            "tiktok": _text(rng, 1, 20).item().upper(),
            "propeller_aid": str(int(rng.integers(1000, 9999))),
            "propeller_tid": str(int(rng.integers(10000, 99999))),
        },
    )


def _lookup(values: Sequence[Any], idx: np.ndarray, dtype: pl.DataType | type[pl.DataType] = pl.String) -> pl.Series:
    return pl.Series(list(values), dtype=dtype).gather(pl.Series(idx, dtype=pl.UInt32))


def _ragged_choice(rng: np.random.Generator, groups: Sequence[Sequence[int]], group_idx: np.ndarray) -> np.ndarray:
    """For each row, a uniform pick among ``groups[group_idx[row]]`` (returns the picked values)."""
    sizes = np.array([len(g) for g in groups])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.array([v for g in groups for v in g])
    local = (rng.random(len(group_idx)) * sizes[group_idx]).astype(np.int64)
    picked: np.ndarray = flat[offsets[group_idx] + local]
    return picked


# ------------------------------------------------------------------------ times
def _local_text(epoch_s: np.ndarray | pl.Series, tz: str) -> pl.Series:
    """``YYYY-MM-DD HH:MM:SS`` in ``tz`` for UTC epoch seconds."""
    s = pl.Series(epoch_s, dtype=pl.Int64) if not isinstance(epoch_s, pl.Series) else epoch_s
    return (
        pl.from_epoch(s, time_unit="s")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(tz)
        .dt.strftime("%Y-%m-%d %H:%M:%S")
    )


def _conversion_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    r = rng.random(n)
    short = np.minimum(3600, rng.exponential(360, n).astype(np.int64) + 15)
    medium = rng.integers(1200, 6 * 3600, n)
    long = rng.integers(6 * 3600, 30 * 3600, n)
    return np.where(r < 0.7, short, np.where(r < 0.95, medium, long))


# ------------------------------------------------------------------------- main
class _Writer:
    """Appends frames to one CSV file (header once)."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        self.path = path
        self.header = list(header)
        self.rows = 0
        self._fh = path.open("wb")

    def write(self, frame: pl.DataFrame) -> None:
        frame.columns = self.header
        # an empty field is written bare, as the UI does (polars would quote an empty string)
        frame = frame.with_columns(pl.col(pl.String).replace("", None))
        frame.write_csv(self._fh, include_header=self.rows == 0)
        self.rows += frame.height

    def close(self) -> None:
        if self.rows == 0:
            self._fh.write((",".join(self.header) + "\n").encode())
        self._fh.close()


def generate_fast(
    folder: str | Path,
    *,
    visits: int,
    days: int = 7,
    seed: int = 7,
    start: str = START,
    timezone: str = TIMEZONE,
) -> Manifest:
    """Write the account's CSV exports into ``folder`` (see the module docstring)."""
    t0 = time.perf_counter()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    acc = _account(rng)
    tz = ZoneInfo(timezone)
    d0 = date.fromisoformat(start)
    window_start = int(datetime(d0.year, d0.month, d0.day, tzinfo=tz).timestamp())
    end_day = d0 + timedelta(days=days)
    window_end = int(datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz).timestamp())
    hours = np.arange(window_start, window_end, 3600)
    local_hours = np.array([datetime.fromtimestamp(int(h) + 1800, tz).hour for h in hours])
    weights = np.array([_CURVE[h] for h in local_hours], dtype=np.float64)
    per_hour = rng.multinomial(visits, weights / weights.sum())
    faults = _faults(d0, tz)

    share = np.array([SOURCES[c[1]][2] * c[4] for c in CAMPAIGNS])
    campaign_p = share / share.sum()
    device_p = np.array([d[4] for d in DEVICES])
    device_p /= device_p.sum()
    countries = sorted(CITIES)

    writers = {
        role: _Writer(out / FILES[role], header)
        for role, header in (("visits", VISIT_HEADER), ("clicks", CLICK_HEADER))
    }
    conversions: list[pl.DataFrame] = []
    try:
        first = 0
        while first < len(hours):
            last = first
            n = 0
            while last < len(hours) and (n == 0 or n + per_hour[last] <= CHUNK_VISITS):
                n += int(per_hour[last])
                last += 1
            t = np.repeat(hours[first:last], per_hour[first:last]) + rng.integers(0, 3600, n)
            t.sort()
            v, clicks, conv = _chunk(
                rng,
                acc=acc,
                t=t,
                campaign_p=campaign_p,
                device_p=device_p,
                countries=countries,
                timezone=timezone,
                window_end=window_end,
            )
            writers["visits"].write(v)
            writers["clicks"].write(clicks)
            conversions.append(conv)
            first = last
    finally:
        for w in writers.values():
            w.close()

    conv_all = pl.concat(conversions)
    conv_all = _double_fires_and_strays(rng, conv_all, visits, window_start, window_end)
    postbacks = _postbacks(rng, acc, conv_all, faults, window_end)
    lookup = (
        postbacks.filter(pl.col("_known"))
        .select("click_id")
        .unique(maintain_order=True)
        .sample(n=min(50, postbacks.height), seed=seed)
        .to_series()
        .to_list()
    )
    conv_all = conv_all.sort("conversion_time", "click_id", "ct")
    conv_csv = conv_all.select(
        "click_id",
        _local_text(conv_all.get_column("conversion_time"), timezone).alias("t"),
        pl.when(pl.col("visit_time").is_not_null())
        .then(_local_text(conv_all.get_column("visit_time").fill_null(0), timezone))
        .alias("vt"),
        "campaign_id",
        "traffic_source_id",
        "offer_id",
        "affiliate_network_id",
        pl.col("payout").round(2),
        "txid",
        "ct",
        pl.lit("approved"),
    )
    w = _Writer(out / FILES["conversions"], CONVERSION_HEADER)
    w.write(conv_csv)
    w.close()
    postbacks = postbacks.sort("postback_time", "postback_id")
    pb_csv = postbacks.select(
        "postback_id",
        "click_id",
        _local_text(postbacks.get_column("postback_time"), timezone).alias("t"),
        pl.col("is_error").cast(pl.Int8),
        "error_message",
        pl.col("status_code").cast(pl.String).fill_null(""),
        "postback_url",
        "ct",
        "integration_id",
        pl.when(pl.col("_shown")).then(pl.col("traffic_source_id")).alias("ts"),
        pl.when(pl.col("_shown")).then(pl.col("campaign_id")).alias("cmp"),
    )
    w = _Writer(out / FILES["postbacks"], POSTBACK_HEADER)
    w.write(pb_csv)
    w.close()
    activity = _activity(rng, acc, faults, window_start=window_start, window_end=window_end, timezone=timezone)
    w = _Writer(out / FILES["activity"], ACTIVITY_HEADER)
    w.write(activity)
    w.close()

    manifest = Manifest(
        folder=out,
        params={
            "visits": visits,
            "days": days,
            "seed": seed,
            "start": start,
            "timezone": timezone,
            "version": GENERATOR_VERSION,
        },
        counts={
            "visits": writers["visits"].rows,
            "clicks": writers["clicks"].rows,
            "conversions": conv_csv.height,
            "postbacks": pb_csv.height,
            "postback_errors": int(postbacks.get_column("is_error").sum()),
            "activity": activity.height,
        },
        lookup_click_ids=lookup,
        seconds=round(time.perf_counter() - t0, 1),
    )
    (out / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def ensure(folder: str | Path, *, visits: int, days: int = 7, seed: int = 7) -> Manifest:
    """The account in ``folder``, generated unless a manifest with the same parameters is there."""
    out = Path(folder)
    try:
        doc = json.loads((out / MANIFEST).read_text())
        p = doc["params"]
        same = (p["visits"], p["days"], p["seed"], p.get("version")) == (visits, days, seed, GENERATOR_VERSION)
        if same and all((out / name).exists() for name in FILES.values()):
            return Manifest(out, p, doc["counts"], doc["lookup_click_ids"], doc["seconds"])
    except (OSError, ValueError, KeyError):
        pass
    return generate_fast(out, visits=visits, days=days, seed=seed)


@dataclass(frozen=True)
class _Fault:
    name: str
    source: int
    begin: int
    end: int
    share: float
    status: int | None
    message: str


def _faults(d0: date, tz: ZoneInfo) -> list[_Fault]:
    out = []
    for name, source, day, hour, n_hours, share, status, message in FAULTS:
        d = d0 + timedelta(days=day)
        bucket = int(datetime(d.year, d.month, d.day, hour, tzinfo=tz).timestamp())
        out.append(_Fault(name, source, bucket + 150, bucket + n_hours * 3600 - 400, share, status, message))
    return out


def _chunk(
    rng: np.random.Generator,
    *,
    acc: _Account,
    t: np.ndarray,
    campaign_p: np.ndarray,
    device_p: np.ndarray,
    countries: list[str],
    timezone: str,
    window_end: int,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Visits (CSV frame), clicks (CSV frame) and conversions (typed) of visits at times ``t``."""
    n = len(t)
    camp = rng.choice(len(CAMPAIGNS), size=n, p=campaign_p)
    src = np.array([c[1] for c in CAMPAIGNS])[camp]
    offer = _ragged_choice(rng, [c[2] for c in CAMPAIGNS], camp)
    lander = _ragged_choice(rng, [c[3] for c in CAMPAIGNS], camp)
    network = np.array([o[1] for o in OFFERS])[offer]
    country_names = _ragged_choice(rng, [[countries.index(x) for x in c[5]] for c in CAMPAIGNS], camp)
    city = _ragged_choice(rng, [list(range(len(CITIES[c]))) for c in countries], country_names)
    city_flat = [f"{c}|{x}" for c in countries for x in CITIES[c]]
    city_off = np.concatenate([[0], np.cumsum([len(CITIES[c]) for c in countries])[:-1]])
    device = rng.choice(len(DEVICES), size=n, p=device_p)
    click_id = uuids(rng, n)
    ext = _external_ids(rng, src)
    octet = np.array(FIRST_OCTETS)[rng.integers(0, len(FIRST_OCTETS), n)]
    ip = (
        pl.DataFrame(
            {"a": octet, "b": rng.integers(0, 256, n), "c": rng.integers(0, 256, n), "d": rng.integers(1, 255, n)}
        )
        .select(pl.concat_str(pl.all().cast(pl.String), separator="."))
        .to_series()
    )
    s2s = np.array([SOURCES[s][1] == "s2s" for s in range(len(SOURCES))])[src]
    zone = pl.Series(rng.integers(100000, 999999, n)).cast(pl.String)
    visit_columns = [
        click_id,
        _local_text(t, timezone),
        _lookup(acc.campaign_ids, camp),
        _lookup([c[0] for c in CAMPAIGNS], camp),
        _lookup(acc.source_ids, src),
        _lookup([s[0] for s in SOURCES], src),
        _lookup(acc.offer_ids, offer),
        _lookup([o[0] for o in OFFERS], offer),
        _lookup(acc.lander_ids, lander),
        _lookup(LANDERS, lander),
        _lookup(acc.network_ids, network),
        _lookup([x[0] for x in NETWORKS], network),
        ext,
        ip,
        _lookup(countries, country_names),
        _lookup([c.split("|")[1] for c in city_flat], city_off[country_names] + city),
        _lookup([d[0] for d in DEVICES], device),
        _lookup([d[1] for d in DEVICES], device),
        _lookup([d[2] for d in DEVICES], device),
        _lookup([d[3] for d in DEVICES], device),
        _lookup([s[4] for s in SOURCES], src),
        pl.Series(np.where(s2s, "zone_", "")).cast(pl.String) + pl.Series(np.where(s2s, zone, "")),
        "cr" + pl.Series(rng.integers(1, 9, n)).cast(pl.String),
    ]
    visits = pl.DataFrame(dict(zip(VISIT_HEADER, visit_columns, strict=True)))
    # clicks and conversions
    converts = rng.random(n) < P_CONVERT
    clicks = converts | (rng.random(n) < P_CLICK)
    click_t = t + rng.integers(4, 91, n)
    clicks &= click_t < window_end
    converts &= clicks
    cta = np.array([CAMPAIGNS[c][2].index(o) + 1 for c, o in zip(camp, offer, strict=True)]) if n else np.array([])
    second = clicks & (rng.random(n) < P_SECOND_CLICK)
    second_t = click_t + rng.integers(20, 601, n)
    second &= second_t < window_end
    idx = np.concatenate([np.flatnonzero(clicks), np.flatnonzero(second)])
    ct_times = np.concatenate([click_t[clicks], second_t[second]])
    order = np.argsort(ct_times, kind="stable")
    idx, ct_times = idx[order], ct_times[order]
    sel = pl.Series(idx, dtype=pl.UInt32)
    click_columns = [
        click_id.gather(sel),
        _local_text(ct_times, timezone),
        visits.to_series(2).gather(sel),
        visits.to_series(4).gather(sel),
        visits.to_series(8).gather(sel),
        visits.to_series(6).gather(sel),
        pl.Series(cta[idx] if n else [], dtype=pl.Int64),
        visits.to_series(14).gather(sel),
        visits.to_series(18).gather(sel),
        ip.gather(sel),
    ]
    clicks_csv = pl.DataFrame(dict(zip(CLICK_HEADER, click_columns, strict=True)))
    # step 1 for every converting visit; step 2 for some of those whose offer has two
    conv_idx = np.flatnonzero(converts)
    t1 = click_t[conv_idx] + _conversion_delay(rng, len(conv_idx))
    two = np.array([len(OFFERS[o][2]) == 2 for o in range(len(OFFERS))])[offer[conv_idx]]
    step2 = two & (rng.random(len(conv_idx)) < P_SECOND_STEP)
    t2 = t1 + rng.integers(600, 8 * 3600, len(conv_idx))
    rows = np.concatenate([conv_idx, conv_idx[step2]])
    times = np.concatenate([t1, t2[step2]])
    steps = np.concatenate([np.zeros(len(conv_idx), dtype=np.int64), np.ones(int(step2.sum()), dtype=np.int64)])
    keep = times < window_end
    rows, times, steps = rows[keep], times[keep], steps[keep]
    o = offer[rows]
    ct = [OFFERS[oi][2][si][0] for oi, si in zip(o, steps, strict=True)]
    payout = np.array([OFFERS[oi][2][si][1] for oi, si in zip(o, steps, strict=True)], dtype=np.float64)
    net = network[rows]
    prefix = np.array([NETWORKS[x][1] for x in range(len(NETWORKS))])[net]
    txnum = pl.Series(rng.integers(10**9, 10**10, len(rows))).cast(pl.String)
    sel = pl.Series(rows, dtype=pl.UInt32)
    conv = pl.DataFrame(
        {
            "click_id": click_id.gather(sel),
            "conversion_time": pl.Series(times, dtype=pl.Int64),
            "visit_time": pl.Series(t[rows], dtype=pl.Int64),
            "campaign_id": visits.to_series(2).gather(sel),
            "traffic_source_id": visits.to_series(4).gather(sel),
            "offer_id": visits.to_series(6).gather(sel),
            "affiliate_network_id": visits.to_series(10).gather(sel),
            "payout": payout,
            "txid": pl.select(
                pl.when(pl.lit(prefix) != "").then(pl.lit(prefix) + "-" + pl.lit(txnum)).otherwise(pl.lit(""))
            ).to_series(),
            "ct": pl.Series(ct, dtype=pl.String),
            "_source": pl.Series(src[rows], dtype=pl.Int64),
            "_external_id": ext.gather(sel),
        }
    )
    return visits, clicks_csv, conv


def _external_ids(rng: np.random.Generator, src: np.ndarray) -> pl.Series:
    """The click id each traffic source passes (gclid, fbclid…); some gclids are missing."""
    n = len(src)
    out = pl.Series([""] * n, dtype=pl.String)
    for s, (_, _, _, kind, _, _) in enumerate(SOURCES):
        where = np.flatnonzero(src == s)
        k = len(where)
        if k == 0:
            continue
        match kind:
            case "fbclid":
                values = "IwAR" + _text(rng, k, 58)
            case "gclid":
                values = "Cj0KCQiA" + _text(rng, k, 80)
                values = values.zip_with(pl.Series(rng.random(k) >= P_MISSING_GCLID), pl.Series([""] * k))
            case "ttclid":
                values = "E.C.P." + _text(rng, k, 72)
            case "visitor_id":
                values = _text(rng, k, 26, _LOWER)
            case "cid":
                values = uuids(rng, k)
            case _:
                values = hex_ids(rng, k, 8)
        out = out.scatter(where, values)
    return out


def _double_fires_and_strays(
    rng: np.random.Generator, conv: pl.DataFrame, visits: int, window_start: int, window_end: int
) -> pl.DataFrame:
    """Conversions posted twice (same click, ct, txid seconds apart) and conversions of unknown clicks."""
    n_twins = max(2, int(visits * P_DOUBLE_FIRE))
    posted = conv.filter(pl.col("_source") != 5)
    twins = posted.sample(n=min(n_twins, posted.height), seed=int(rng.integers(1 << 31))).with_columns(
        pl.col("conversion_time") + pl.Series(rng.integers(2, 61, min(n_twins, posted.height)))
    )
    n_stray = max(3, int(conv.height * P_UNKNOWN_CLICK))
    stray_ids = uuids(rng, n_stray)
    stray_ids = stray_ids.scatter([0], ["%7Bclick_id%7D"]).scatter([1], [stray_ids[1][:18]])
    strays = pl.DataFrame(
        {
            "click_id": stray_ids,
            "conversion_time": pl.Series(rng.integers(window_start, window_end, n_stray)),
            "visit_time": pl.Series([None] * n_stray, dtype=pl.Int64),
            "payout": pl.Series(rng.choice([1.8, 11.0, 38.0], n_stray)),
            "txid": pl.Series([""] * n_stray),
            "ct": pl.Series([""] * n_stray),
            "_source": pl.Series([-1] * n_stray),
            "_external_id": pl.Series([""] * n_stray),
        }
    )
    out = pl.concat([conv, twins, strays], how="diagonal_relaxed")
    return out.filter(pl.col("conversion_time") < window_end)


def _postbacks(
    rng: np.random.Generator, acc: _Account, conv: pl.DataFrame, faults: list[_Fault], window_end: int
) -> pl.DataFrame:
    """One postback per conversion of a source that has postbacks; errors, faults and ct slips."""
    modes = pl.Series([s[1] for s in SOURCES])
    pb = conv.filter(pl.col("_source") >= 0).filter(
        pl.col("_source").replace_strict(list(range(len(SOURCES))), modes.to_list()) != "none"
    )
    n = pb.height
    when = pb.get_column("conversion_time").to_numpy() + rng.integers(1, 26, n)
    src = pb.get_column("_source").to_numpy()
    ext = pb.get_column("_external_id")
    status = np.full(n, 200, dtype=np.float64)
    message = np.full(n, "", dtype=object)
    broken_url = np.zeros(n, dtype=bool)
    quiet = np.zeros(n, dtype=bool)
    for f in faults:
        active = (src == f.source) & (when >= f.begin) & (when < f.end)
        quiet |= (src == f.source) & (when >= f.begin - 3600) & (when < f.end + 3600)
        fail = active & (rng.random(n) < f.share)
        status[fail] = np.nan if f.status is None else f.status
        message[fail] = f.message
        if f.name == "postback_url_edit":
            broken_url |= active
    untouched = message == ""
    gclid_missing = untouched & (src == 1) & (ext.to_numpy() == "")
    status[gclid_missing] = 400
    message[gclid_missing] = GCLID_ERROR
    untouched &= ~gclid_missing
    background = untouched & ~quiet & (rng.random(n) < P_BACKGROUND_ERROR)
    for s, (name, mode, *_rest) in enumerate(SOURCES):
        choices = BACKGROUND_ERRORS.get(name, BACKGROUND_ERRORS["s2s"] if mode == "s2s" else ())
        where = np.flatnonzero(background & (src == s))
        if not choices or len(where) == 0:
            continue
        pick = rng.integers(0, len(choices), len(where))
        status[where] = [np.nan if choices[i][0] is None else choices[i][0] for i in pick]
        message[where] = [choices[i][1] for i in pick]
    status_s = pl.Series(status).fill_nan(None).cast(pl.Int64)
    is_error = status_s.is_null() | (status_s >= 400)
    payout = pb.get_column("payout").round(2).cast(pl.String)
    px = acc.pixels
    ct = pb.get_column("ct")
    url = pl.select(
        pl.when(pl.lit(src) == 0)
        .then(pl.lit(f"https://graph.facebook.com/v21.0/{px['meta']}/events?access_token={px['meta_token']}"))
        .when(pl.lit(src) == 1)
        .then(
            pl.lit(
                f"https://googleads.googleapis.com/v17/customers/{px['google_customer']}:uploadClickConversions"
                f"?conversion_action={px['google_action']}&gclid="
            )
            + pl.lit(ext)
        )
        .when(pl.lit(src) == 2)
        .then(
            pl.lit(f"https://business-api.tiktok.com/open_api/v1.3/event/track/?pixel_code={px['tiktok']}&event=")
            + pl.lit(ct).replace_strict(CAPI_EVENTS, default="Lead")
            + pl.lit("&ttclid=")
            + pl.lit(ext)
        )
        .when(pl.lit(src) == 3)
        .then(
            pl.lit(f"http://ad.propellerads.com/conversion.php?aid={px['propeller_aid']}&tid={px['propeller_tid']}")
            + pl.when(pl.lit(broken_url)).then(pl.lit("&visitor_id={clickid}")).otherwise("&visitor_id=" + pl.lit(ext))
            + pl.lit("&payout=")
            + pl.lit(payout)
        )
        .otherwise(pl.lit("https://postback.zeroparkcdn.com/postback?cid=") + pl.lit(ext) + "&payout=" + pl.lit(payout))
    ).to_series()
    integration = pl.Series([acc.integration_ids[s] for s in range(len(SOURCES))], dtype=pl.String)
    out = pl.DataFrame(
        {
            "postback_id": hex_ids(rng, n),
            "click_id": pb.get_column("click_id"),
            "postback_time": pl.Series(when, dtype=pl.Int64),
            "is_error": is_error,
            "error_message": pl.Series(message.astype(str), dtype=pl.String),
            "status_code": status_s,
            "postback_url": url,
            "ct": ct,
            "integration_id": integration.gather(pl.Series(src, dtype=pl.UInt32)).fill_null(""),
            "traffic_source_id": pb.get_column("traffic_source_id"),
            "campaign_id": pb.get_column("campaign_id"),
            "_shown": pl.Series(rng.random(n) < P_SOURCE_COLUMN),
            "_known": pl.Series([True] * n),
        }
    )
    slips = out.filter(pl.Series(rng.random(n) < P_CT_SLIP)).with_columns(
        pl.col("ct").replace_strict(CT_SLIPS, default="conversion"),
        pl.col("postback_time") + 30,
        pl.lit(False).alias("_known"),
    )
    slips = slips.with_columns(hex_ids(rng, slips.height).alias("postback_id"))
    return pl.concat([out, slips]).filter(pl.col("postback_time") < window_end)


def _activity(
    rng: np.random.Generator, acc: _Account, faults: list[_Fault], *, window_start: int, window_end: int, timezone: str
) -> pl.DataFrame:
    """Edits around the faults (the cause of the URL edit, decoy budget raises) and routine edits."""
    rows: list[tuple[int, str, str, str, str, str, str, str]] = []
    for f in faults:
        campaign = next(i for i, c in enumerate(CAMPAIGNS) if c[1] == f.source)
        rows.append(
            (
                f.begin - 1800 - int(rng.integers(0, 600)),
                "ben@acme.test",
                "Campaign",
                acc.campaign_ids[campaign],
                CAMPAIGNS[campaign][0],
                "Updated",
                '{"daily_budget": 200}',
                '{"daily_budget": 800}',
            )
        )
        if f.name == "postback_url_edit":
            rows.append(
                (
                    f.begin - 120,
                    "mia@acme.test",
                    "Traffic Source",
                    acc.source_ids[f.source],
                    SOURCES[f.source][0],
                    "Updated",
                    '{"postback_url": "...visitor_id={external_id}"}',
                    '{"postback_url": "...visitor_id={clickid}"}',
                )
            )
            rows.append(
                (
                    f.end,
                    "mia@acme.test",
                    "Traffic Source",
                    acc.source_ids[f.source],
                    SOURCES[f.source][0],
                    "Updated",
                    '{"postback_url": "...visitor_id={clickid}"}',
                    '{"postback_url": "...visitor_id={external_id}"}',
                )
            )
    for s, source in enumerate(SOURCES):  # integrations connected before the window: their names
        integration = acc.integration_ids[s]
        if integration is not None:
            rows.append(
                (
                    window_start - 86400 * 30,
                    "mia@acme.test",
                    "Integration",
                    integration,
                    str(source[5]),
                    "Created",
                    "",
                    '{"status": "connected"}',
                )
            )
    for _ in range(40):
        c = int(rng.integers(0, len(CAMPAIGNS)))
        rows.append(
            (
                int(rng.integers(window_start, window_end)),
                "ops-bot@acme.test",
                "Campaign",
                acc.campaign_ids[c],
                CAMPAIGNS[c][0],
                "Updated",
                '{"bid": 0.42}',
                '{"bid": 0.45}',
            )
        )
    rows.sort()
    frame = pl.DataFrame(rows, schema=[f"c{i}" for i in range(8)], orient="row")
    return frame.with_columns(_local_text(frame.get_column("c0"), timezone).alias("c0"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/gen.py OUT --visits N``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--visits", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    m = generate_fast(args.out, visits=args.visits, days=args.days, seed=args.seed)
    print(json.dumps(m.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
