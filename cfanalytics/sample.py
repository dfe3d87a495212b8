"""Seeded sample ClickFlare account: exports with known faults, and their truth (docs/contract.md §7).

:func:`generate` writes a few days of one fictional account's exports — visits,
landing-page clicks, conversions, postback status (UI CSV and API JSON),
system activity and one affiliate network's conversion export — in the
spellings the loaders must accept, with bad input and faults injected on
purpose. Next to them it writes ``truth.json``: what was injected, when, and
what a correct ingest and diagnosis must find, computed here from the
generated records with code of its own (no other ``cfanalytics`` module is
used), so tests can hold the loaders and diagnostics to it.

The output depends only on the parameters: one seeded :class:`random.Random`,
no wall clock, no set or hash ordering, gzip written without a time stamp.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     account = generate(tmp, visits=1000, days=2)
>>> sorted(account.files)
['activity', 'clicks', 'conversions', 'network_export', 'postbacks', 'postbacks_api', 'visits']
>>> [f["fault"] for f in account.truth["faults"]][:4]
['postback_url_edit', 'receiver_timeout', 'rate_limit', 'token_expired']

Command line: ``python -m cfanalytics.sample OUT [--seed 7] [--visits 20000]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

__all__ = ["FILES", "TRUTH_FILE", "SampleAccount", "generate", "main"]

#: Output file of each role.
FILES: Final[dict[str, str]] = {
    "visits": "visits.csv",
    "clicks": "clicks.ndjson.gz",
    "conversions": "conversions.json",
    "postbacks": "postbacks.csv",
    "postbacks_api": "postbacks_api.json",
    "activity": "activity.csv",
    "network_export": "network_export.csv",
}
TRUTH_FILE: Final = "truth.json"

#: Column headers of the CSV files, as the ClickFlare UI (or the network) spells them.
# fmt: off
VISIT_HEADER: Final = (
    "Click ID", "Visit Time", "Campaign ID", "Campaign", "Traffic Source ID", "Traffic Source", "Offer ID", "Offer",
    "Lander ID", "Lander", "Affiliate Network ID", "Affiliate Network", "External ID", "IP", "Country", "City",
    "Device Type", "OS", "Browser", "User Agent", "Referrer", "Tracking Field 1", "Tracking Field 2",
)
POSTBACK_HEADER: Final = (
    "Postback ID", "Click ID", "Postback Time", "Is Error", "Error Message", "Status Code", "Postback URL",
    "Custom Conversion (ct)", "Integration ID", "Integration", "Traffic Source ID", "Campaign ID",
)
# fmt: on
ACTIVITY_HEADER: Final = ("Date", "User", "Entity Type", "Entity ID", "Entity Name", "Action", "Old Value", "New Value")
NETWORK_HEADER: Final = ("Sub ID", "Transaction ID", "Payout", "Conversion Time")

MACRO_RE: Final = re.compile(r"\{[^}]*\}|\[[A-Za-z_]+\]|%7[Bb].*%7[Dd]")
UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

STORED: Final = "stored"
ALREADY_STORED: Final = "already_stored"

# --- simulation constants --------------------------------------------------------------

#: Relative traffic by local hour of day (0…23).
_CURVE_AM: Final = (45, 30, 22, 18, 18, 25, 45, 70, 95, 115, 130, 140)  # local 00–11 h, % of the mean
_CURVE_PM: Final = (145, 145, 140, 140, 145, 150, 160, 170, 170, 150, 110, 75)  # local 12–23 h
DAILY_CURVE: Final[tuple[float, ...]] = tuple(w / 100 for w in (*_CURVE_AM, *_CURVE_PM))
P_CONVERT: Final = 0.076  # a visit converts (first step of its offer)
P_SECOND_STEP: Final = 0.30  # a converted visit also reaches the offer's second step
P_CLICK: Final = 0.38  # a visit that does not convert still clicks through the lander
P_SECOND_CLICK: Final = 0.05
P_MISSING_GCLID: Final = 0.08  # Google Ads visits arriving without a gclid
P_BACKGROUND_ERROR: Final = 0.015
P_SOURCE_COLUMN: Final = 0.8  # UI postback rows that carry their own traffic source id
#: Extra visits per hour on the failing traffic source around each incident, as a share of
#: ``visits``: gives every incident hour enough postbacks for the default rule (n ≥ 10).
PUSH_PER_HOUR: Final = 0.024
PUSH_LEAD: Final = timedelta(minutes=45)

# --- account ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficSource:
    """A traffic source and how conversions are sent back to it."""

    id: str
    name: str
    mode: str  # "s2s" | "capi" | "none"
    share: float
    external_id_name: str
    referrer: str
    integration_id: str | None = None
    integration_name: str | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign; it buys traffic from exactly one traffic source."""

    id: str
    name: str
    traffic_source_id: str
    offer_ids: tuple[str, ...]
    lander_ids: tuple[str, ...]
    weight: float
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer of an affiliate network: its conversion steps as (ct, payout)."""

    id: str
    name: str
    affiliate_network_id: str
    steps: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Entity:
    """A lander or an affiliate network."""

    id: str
    name: str
    txid_prefix: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    """Every entity of the sample account."""

    traffic_sources: tuple[TrafficSource, ...]
    campaigns: tuple[Campaign, ...]
    offers: tuple[Offer, ...]
    landers: tuple[Entity, ...]
    networks: tuple[Entity, ...]
    pixels: dict[str, str]

    def source(self, name: str) -> TrafficSource:
        """The traffic source called ``name``."""
        return next(ts for ts in self.traffic_sources if ts.name == name)

    def source_by_id(self, ts_id: str) -> TrafficSource:
        """The traffic source with id ``ts_id``."""
        return next(ts for ts in self.traffic_sources if ts.id == ts_id)

    def campaigns_of(self, ts: TrafficSource) -> list[Campaign]:
        """Campaigns buying from ``ts``."""
        return [c for c in self.campaigns if c.traffic_source_id == ts.id]


# (name, mode, share, external id parameter, referrer, integration name)
_SOURCES: Final = (
    ("Meta Ads", "capi", 0.27, "fbclid", "https://m.facebook.com/", "Meta CAPI - Main Pixel"),
    ("Google Ads", "capi", 0.17, "gclid", "https://www.google.com/", "Google Ads API - MCC 431"),
    ("TikTok Ads", "capi", 0.14, "ttclid", "https://www.tiktok.com/", "TikTok Events API"),
    ("PropellerAds", "s2s", 0.17, "visitor_id", "", None),
    ("ZeroPark", "s2s", 0.15, "cid", "", None),
    ("NativeX", "none", 0.10, "subid", "https://news.dailytrend-hub.com/", None),
)
# (name, txid prefix); the last network sends no transaction ids
_NETWORKS: Final = (("MaxBounty", "MB"), ("ClickDealer", "CD"), ("Solaris Direct", ""))
# (name, network index, steps)
_OFFERS: Final = (
    ("Keto Gummies US", 0, (("sale", 38.0),)),
    ("VPN Pro Trial", 1, (("signup", 2.5), ("sale", 24.0))),
    ("iPhone 17 Sweepstakes", 1, (("lead", 1.8),)),
    ("Solar Quotes", 0, (("lead", 11.0),)),
    ("Casual Dating DOI", 2, (("", 3.2),)),
    ("Crypto Wallet Install", 2, (("install", 1.1), ("deposit", 45.0))),
)
_LANDERS: Final = ("Advertorial v1", "Quiz Funnel", "Listicle Top 5", "Sweeps Wheel Prelander", "Native Article v3")
# (name, traffic source index, offer indexes, lander indexes, weight within the source, countries)
_CAMPAIGNS: Final = (
    ("US | Meta | Keto | Broad", 0, (0,), (0, 2), 0.6, ("US",)),
    ("US-CA | Meta | VPN | Lookalike", 0, (1,), (1,), 0.4, ("US", "CA")),
    ("US | Google | Solar | Search", 1, (3,), (2,), 0.55, ("US",)),
    ("CA | Google | VPN | Search", 1, (1,), (1,), 0.45, ("CA",)),
    ("T1 | TikTok | Sweeps | Spark", 2, (2, 5), (3,), 1.0, ("US", "GB", "AU", "CA")),
    ("T1 | Propeller | Sweeps | Onclick", 3, (2,), (3,), 0.6, ("US", "GB", "DE", "FR")),
    ("T2 | Propeller | Crypto | Push", 3, (5,), (4,), 0.4, ("BR", "MX", "PH", "IN")),
    ("WW | ZeroPark | Dating | Domain", 4, (4,), (4,), 1.0, ("US", "GB", "DE", "AU", "BR")),
    ("US | NativeX | Keto | Native", 5, (0,), (0, 4), 1.0, ("US",)),
)
_CITIES: Final[dict[str, tuple[str, ...]]] = {
    "US": ("New York", "Los Angeles", "Chicago", "Houston", "Phoenix"),
    "CA": ("Toronto", "Vancouver", "Montréal"),
    "GB": ("London", "Manchester"),
    "DE": ("Berlin", "München"),
    "FR": ("Paris", "Lyon"),
    "AU": ("Sydney", "Melbourne"),
    "BR": ("São Paulo", "Rio de Janeiro"),
    "MX": ("Mexico City", "Guadalajara"),
    "PH": ("Manila", "Cebu City"),
    "IN": ("Mumbai", "Delhi"),
}
_WEBKIT: Final = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_MOBILE_SAFARI: Final = "Version/18.1 Mobile/15E148 Safari/604.1"
_BLINK: Final = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
_AGENTS: Final = {
    "iphone": f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_WEBKIT} {_MOBILE_SAFARI}",
    "android": f"Mozilla/5.0 (Linux; Android 14; SM-S918B) {_BLINK} Mobile Safari/537.36",
    "chrome": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Safari/537.36",
    "edge": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Safari/537.36 Edg/130.0.0.0",
    "mac": f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Version/18.1 Safari/605.1.15",
    "ipad": f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_WEBKIT} {_MOBILE_SAFARI}",
}
# (device type, OS, browser, user agent, weight)
_DEVICES: Final = (
    ("mobile", "iOS", "Safari", _AGENTS["iphone"], 0.30),
    ("mobile", "Android", "Chrome", _AGENTS["android"], 0.30),
    ("desktop", "Windows", "Chrome", _AGENTS["chrome"], 0.18),
    ("desktop", "Windows", "Edge", _AGENTS["edge"], 0.07),
    ("desktop", "macOS", "Safari", _AGENTS["mac"], 0.08),
    ("tablet", "iPadOS", "Safari", _AGENTS["ipad"], 0.07),
)
_FIRST_OCTETS: Final = (24, 31, 45, 66, 73, 81, 89, 98, 104, 142, 176, 185, 187, 201)
_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_CAPI_EVENTS: Final = {
    "sale": "Purchase",
    "deposit": "Purchase",
    "lead": "Lead",
    "signup": "CompleteRegistration",
    "install": "Download",
    "": "Lead",
}
#: A postback fired with another ct than its conversion's (an event mapping slip).
_CT_SLIPS: Final = {
    "sale": "purchase",
    "lead": "Lead",
    "signup": "registration",
    "install": "app_install",
    "deposit": "ftd",
}
_GCLID_ERROR: Final = (
    '{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT",'
    '"details":[{"errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},"message":"Too short."}]}]}}'
)
_META_500: Final = (
    '{"error":{"message":"An unexpected error has occurred. Please retry your request later.",'
    '"type":"FacebookApiException","code":2,"is_transient":true}}'
)
#: Occasional errors unrelated to any fault, by traffic source (S2S receivers share one list).
_BACKGROUND_ERRORS: Final[dict[str, tuple[tuple[int | None, str], ...]]] = {
    "Meta Ads": ((500, _META_500), (503, "Service temporarily unavailable")),
    "Google Ads": ((500, "Internal error encountered."), (503, "The service is currently unavailable.")),
    "TikTok Ads": ((500, '{"code":50000,"message":"System error"}'), (503, "Service Unavailable")),
    "s2s": (
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Temporarily Unavailable"),
        (None, "Operation timed out after 10001 milliseconds with 0 bytes received"),
    ),
}
_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# --- records --------------------------------------------------------------------------


@dataclass(slots=True)
class _Visit:
    """A simulated visit (click id, time, campaign and the visitor's details)."""

    click_id: str
    time: datetime
    campaign: Campaign
    source: TrafficSource
    offer: Offer
    lander: Entity
    network: Entity
    external_id: str
    ip: str
    country: str
    city: str
    device: tuple[str, str, str, str]
    referrer: str
    tracking: tuple[str, str]


@dataclass(slots=True)
class _Conversion:
    """A conversion as the tracker received it, and its fate at ingest."""

    click_id: str
    time: datetime
    visit: _Visit | None
    ct: str
    txid: str
    payout: float | None  # as stored (None when the written value does not parse)
    payout_written: Any
    event_type: str = "Conversion"
    fate: str = STORED
    flags: tuple[str, ...] = ()

    @property
    def source_id(self) -> str | None:
        """Traffic source of the converting visit, if known."""
        return self.visit.source.id if self.visit else None

    @property
    def network_id(self) -> str | None:
        """Affiliate network of the converting visit's offer, if known."""
        return self.visit.network.id if self.visit else None


@dataclass(slots=True)
class _Postback:
    """A postback the tracker fired, and its fate at ingest."""

    postback_id: str
    click_id: str
    time: datetime
    is_error: bool
    status: int | None  # as stored (None: no response, or a value that does not parse)
    status_written: str
    message: str
    url: str
    ct: str
    source_id: str  # "" when the postback cannot be tied to a traffic source
    integration_id: str
    campaign_id: str
    event: str
    source_column: bool = True  # the UI row shows its traffic source and campaign
    is_error_written: str | None = None
    fate: str = STORED
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class _Activity:
    """One row of the system activity log."""

    time: datetime
    author: str
    entity_type: str  # as exported ("Traffic Source")
    entity_id: str
    entity_name: str
    action: str  # as exported ("Updated")
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(slots=True)
class _Fault:
    """A time-boxed postback failure of one traffic source."""

    name: str
    source: TrafficSource
    hour: datetime  # first UTC hour bucket
    begin: datetime  # failures from here…
    end: datetime  # …until here (exclusive)
    fail_share: float
    error_kind: str
    push: tuple[datetime, datetime]  # extra traffic on the source, so every incident hour has volume
    cause: _Activity | None = None
    fix: _Activity | None = None

    def active(self, source: TrafficSource, t: datetime) -> bool:
        """True when a postback of ``source`` fired at ``t`` falls in this fault."""
        return source.id == self.source.id and self.begin <= t < self.end


@dataclass(slots=True)
class _Row:
    """One record of an output file, with what a correct ingest does with it."""

    values: Any
    order: tuple[datetime, int]
    fate: str = STORED
    flags: tuple[str, ...] = ()


# --- public ---------------------------------------------------------------------------


@dataclass
class SampleAccount:
    """A generated sample account: its folder, its files by role, and its truth."""

    folder: Path
    files: dict[str, Path]
    truth: dict[str, Any] = field(repr=False)


def generate(
    folder: str | Path,
    *,
    seed: int = 7,
    visits: int = 20_000,
    days: int = 4,
    start: str = "2026-11-16",
    timezone: str = "America/New_York",
) -> SampleAccount:
    """Write the sample account's exports and ``truth.json`` into ``folder``.

    ``visits`` sizes everything (clicks ≈ 45 %, conversions ≈ 8 % of it);
    ``start`` is the first local day, ``days`` ≥ 2 (the first day is clean
    baseline). Incidents are detectable by the default rule from about
    20 000 visits up. Same arguments, byte-identical files.
    """
    if visits < 500:
        raise ValueError(f"visits must be at least 500, got {visits}")
    if days < 2:
        raise ValueError(f"days must be at least 2 (one clean day precedes the faults), got {days}")
    sim = _Simulation(seed=seed, visits=visits, days=days, start=date.fromisoformat(start), tz=ZoneInfo(timezone))
    sim.run()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = sim.write(out)
    truth = sim.truth(seed=seed, start=start, timezone=timezone)
    (out / TRUTH_FILE).write_text(json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return SampleAccount(folder=out, files=files, truth=truth)


# --- simulation -----------------------------------------------------------------------


class _Simulation:
    """Builds the account, simulates its traffic, injects faults and bad rows, writes and scores it."""

    def __init__(self, *, seed: int, visits: int, days: int, start: date, tz: ZoneInfo) -> None:
        """Set up the window (local midnights of the first and after the last day) and the account."""
        self.rng = random.Random(seed)
        self.n_visits = visits
        self.days = days
        self.start = start
        self.tz = tz
        self.window_start = self._local_midnight(start)
        self.window_end = self._local_midnight(start + timedelta(days=days))
        self.account = self._build_account()
        self.visits: list[_Visit] = []
        self.clicks: list[tuple[_Visit, datetime, int]] = []
        self.conversions: list[_Conversion] = []
        self.postbacks: list[_Postback] = []
        self.activity: list[_Activity] = []
        self.faults: list[_Fault] = []
        self.visit_rows: list[_Row] = []
        self.junk_visits: list[_Visit] = []  # stored rows that are not simulated traffic
        self.network_rows: list[dict[str, str]] = []
        self.tokens: list[str] = []
        self.double_fired: list[str] = []

    # -- helpers --

    def _local_midnight(self, day: date) -> datetime:
        """UTC instant of local midnight starting ``day``."""
        return datetime(day.year, day.month, day.day, tzinfo=self.tz).astimezone(UTC)

    def _hex24(self) -> str:
        """A 24-hex id, like ClickFlare's entity ids."""
        return f"{self.rng.getrandbits(96):024x}"

    def _uuid(self) -> str:
        """A UUID4-shaped click id from the seeded generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _text(self, n: int, alphabet: str = _ALNUM) -> str:
        """``n`` random characters of ``alphabet``."""
        return "".join(self.rng.choices(alphabet, k=n))

    def _ambiguous(self, t: datetime) -> bool:
        """True when ``t``'s local wall time occurs twice (DST fall-back)."""
        naive = t.astimezone(self.tz).replace(tzinfo=None)
        return naive.replace(tzinfo=self.tz, fold=0).utcoffset() != naive.replace(tzinfo=self.tz, fold=1).utcoffset()

    def _settle(self, t: datetime) -> datetime:
        """Move ``t`` out of a DST fall-back hour, so every local time written is unambiguous."""
        while self._ambiguous(t):
            t += timedelta(hours=1)
        return t

    def _local(self, t: datetime) -> str:
        """Local ``YYYY-MM-DD HH:MM:SS`` of ``t``."""
        return t.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def _between(self, a: datetime, b: datetime) -> datetime:
        """A random whole second in ``[a, b)``, moved out of ambiguous local hours."""
        return self._settle(a + timedelta(seconds=self.rng.randrange(max(1, int((b - a).total_seconds())))))

    def _local_hour(self, day: int, hour: int) -> datetime:
        """UTC hour bucket holding local ``hour``:00 of window day ``day``."""
        t = datetime.combine(self.start + timedelta(days=day), datetime.min.time()).replace(hour=hour, tzinfo=self.tz)
        return t.astimezone(UTC).replace(minute=0, second=0)

    # -- entities --

    def _build_account(self) -> Account:
        """Networks, offers, landers, traffic sources (and integrations), campaigns."""
        networks = tuple(Entity(self._hex24(), name, prefix) for name, prefix in _NETWORKS)
        offers = tuple(Offer(self._hex24(), name, networks[n].id, steps) for name, n, steps in _OFFERS)
        landers = tuple(Entity(self._hex24(), name) for name in _LANDERS)
        sources = []
        for name, mode, share, ext, referrer, integration in _SOURCES:
            ts_id = self._hex24()
            integration_id = self._hex24() if integration else None
            sources.append(TrafficSource(ts_id, name, mode, share, ext, referrer, integration_id, integration))
        campaigns = tuple(
            Campaign(
                self._hex24(),
                name,
                sources[ts].id,
                tuple(offers[i].id for i in offer_ix),
                tuple(landers[i].id for i in lander_ix),
                weight,
                countries,
            )
            for name, ts, offer_ix, lander_ix, weight, countries in _CAMPAIGNS
        )
        pixels = {"meta": "".join(self.rng.choices("0123456789", k=16)), "tiktok": "C" + self._text(19).upper()}
        pixels["google_customer"] = "".join(self.rng.choices("0123456789", k=10))
        pixels["google_action"] = "".join(self.rng.choices("0123456789", k=9))
        pixels["propeller_aid"] = str(self.rng.randrange(1000, 9999))
        pixels["propeller_tid"] = str(self.rng.randrange(10000, 99999))
        return Account(tuple(sources), campaigns, offers, landers, networks, pixels)

    # -- traffic --

    def run(self) -> None:
        """Simulate the account: faults first (they shape traffic), then events, then bad rows."""
        self._plan_faults()
        self._simulate_visits()
        self._simulate_clicks_and_conversions()
        self._double_fire()
        self._simulate_postbacks()
        self._slip_postbacks()
        self._simulate_activity()
        self._bad_visits()
        self._bad_conversions()
        self._bad_postbacks()
        self._network_export()

    def _plan_faults(self) -> None:
        """Place the four time-boxed faults, after one clean day, near UTC hour boundaries."""
        acc, rng = self.account, self.rng
        last = self.days - 1
        plan = (  # (fault, source, day, local hour, hours, share failing, error kind)
            ("postback_url_edit", "PropellerAds", 1, 10, 3, 1.0, "unreplaced_macro"),
            ("receiver_timeout", "ZeroPark", min(2, last), 10, 2, 0.85, "no_response"),
            ("rate_limit", "TikTok Ads", min(2, last), 17, 2, 0.75, "rate_limit"),
            ("token_expired", "Meta Ads", min(3, last), 12, 3, 1.0, "auth"),
        )
        self.tokens = ["EAAG" + self._text(120), "EAAG" + self._text(120)]
        for name, source, day, hour, hours, share, kind in plan:
            bucket = self._local_hour(day, hour)
            begin = bucket + timedelta(minutes=rng.randint(1, 4), seconds=rng.randrange(60))
            end = bucket + timedelta(hours=hours, minutes=-rng.randint(4, 8), seconds=rng.randrange(60))
            push = (bucket - PUSH_LEAD, end - timedelta(minutes=10))
            fault = _Fault(name, acc.source(source), bucket, begin, end, share, kind, push)
            if name == "postback_url_edit":  # the edit lands a little before its effect
                fault.cause = self._edit_postback_url(
                    begin - timedelta(minutes=2, seconds=rng.randrange(30)), broken=True
                )
                fault.fix = self._edit_postback_url(end, broken=False)
            if name == "token_expired":  # nobody's edit; a reconnect ends it
                fault.fix = self._reconnect(end)
            self.faults.append(fault)

    def _quiet(self, source: TrafficSource, t: datetime) -> bool:
        """True in the hour buckets of a fault of ``source``: no background errors there."""
        bucket = t.replace(minute=0, second=0)
        return any(
            f.source.id == source.id and f.hour <= bucket <= f.end.replace(minute=0, second=0) for f in self.faults
        )

    def _simulate_visits(self) -> None:
        """Visits along the daily curve, plus each fault's traffic push."""
        acc, rng = self.account, self.rng
        pushes = [
            (f, round(self.n_visits * PUSH_PER_HOUR * (f.push[1] - f.push[0]).total_seconds() / 3600))
            for f in self.faults
        ]
        n_base = self.n_visits - sum(n for _, n in pushes)
        hours = []
        t = self.window_start
        while t < self.window_end:
            hours.append(t)
            t += timedelta(hours=1)
        hour_weights = list(
            accumulate(DAILY_CURVE[(h + timedelta(minutes=30)).astimezone(self.tz).hour] for h in hours)
        )
        campaign_weights = list(
            accumulate(acc.source_by_id(c.traffic_source_id).share * c.weight for c in acc.campaigns)
        )
        for _ in range(n_base):
            while True:
                when = self._settle(
                    rng.choices(hours, cum_weights=hour_weights)[0] + timedelta(seconds=rng.randrange(3600))
                )
                if when < self.window_end:
                    break
            campaign = rng.choices(acc.campaigns, cum_weights=campaign_weights)[0]
            self.visits.append(self._visit(when, campaign))
        for fault, n in pushes:
            campaigns = acc.campaigns_of(fault.source)
            weights = list(accumulate(c.weight for c in campaigns))
            for _ in range(n):
                when = self._between(*fault.push)
                self.visits.append(self._visit(when, rng.choices(campaigns, cum_weights=weights)[0]))
        self.visits.sort(key=lambda v: (v.time, v.click_id))

    def _visit(self, when: datetime, campaign: Campaign, click_id: str | None = None) -> _Visit:
        """One visit to ``campaign`` at ``when``."""
        acc, rng = self.account, self.rng
        source = acc.source_by_id(campaign.traffic_source_id)
        offer_id, lander_id = rng.choice(campaign.offer_ids), rng.choice(campaign.lander_ids)
        offer = next(o for o in acc.offers if o.id == offer_id)
        lander = next(lp for lp in acc.landers if lp.id == lander_id)
        network = next(n for n in acc.networks if n.id == offer.affiliate_network_id)
        country = rng.choice(campaign.countries)
        device = rng.choices(_DEVICES, weights=[d[4] for d in _DEVICES])[0]
        ip = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return _Visit(
            click_id=click_id if click_id is not None else self._uuid(),
            time=when,
            campaign=campaign,
            source=source,
            offer=offer,
            lander=lander,
            network=network,
            external_id=self._external_id(source),
            ip=ip,
            country=country,
            city=rng.choice(_CITIES[country]),
            device=device[:4],
            referrer=source.referrer,
            tracking=(
                f"zone_{rng.randrange(100000, 999999)}" if source.mode == "s2s" else "",
                f"cr{rng.randrange(1, 9)}",
            ),
        )

    def _external_id(self, source: TrafficSource) -> str:
        """The click id the traffic source passes (gclid, fbclid…); Google's is sometimes missing."""
        rng = self.rng
        match source.external_id_name:
            case "fbclid":
                return "IwAR" + self._text(58)
            case "gclid":
                return "" if rng.random() < P_MISSING_GCLID else "Cj0KCQiA" + self._text(80, _ALNUM + "_-")
            case "ttclid":
                return "E.C.P." + self._text(72)
            case "visitor_id":
                return self._text(26).lower()
            case "cid":
                return self._uuid()
            case _:
                return f"{rng.getrandbits(64):016x}"

    def _simulate_clicks_and_conversions(self) -> None:
        """Lander clicks (≈ 45 % of visits) and conversions (≈ 8 %), one or two steps each."""
        rng = self.rng
        for visit in self.visits:
            converts = rng.random() < P_CONVERT
            if not converts and rng.random() >= P_CLICK:
                continue
            cta = visit.campaign.offer_ids.index(visit.offer.id) + 1
            click_time = self._settle(visit.time + timedelta(seconds=rng.randint(4, 90)))
            if click_time >= self.window_end:
                continue
            self.clicks.append((visit, click_time, cta))
            if rng.random() < P_SECOND_CLICK:
                again = self._settle(click_time + timedelta(seconds=rng.randint(20, 600)))
                if again < self.window_end:
                    self.clicks.append((visit, again, cta))
            if not converts:
                continue
            when = click_time + self._conversion_delay()
            for step, (ct, payout) in enumerate(visit.offer.steps):
                if step and rng.random() >= P_SECOND_STEP:
                    break
                if step:
                    when += timedelta(seconds=rng.randint(600, 8 * 3600))
                when = self._settle(when)
                if when >= self.window_end:
                    break
                prefix = visit.network.txid_prefix
                txid = f"{prefix}-{rng.randrange(10**9, 10**10)}" if prefix else ""
                self.conversions.append(_Conversion(visit.click_id, when, visit, ct, txid, payout, payout))
        self.clicks.sort(key=lambda c: (c[1], c[0].click_id))
        self.conversions.sort(key=lambda c: (c.time, c.click_id, c.ct))

    def _conversion_delay(self) -> timedelta:
        """Time from the click to the conversion: mostly minutes, sometimes hours."""
        r = self.rng.random()
        if r < 0.7:
            return timedelta(seconds=min(3600, int(self.rng.expovariate(1 / 360)) + 15))
        if r < 0.95:
            return timedelta(seconds=self.rng.randint(1200, 6 * 3600))
        return timedelta(seconds=self.rng.randint(6 * 3600, 30 * 3600))

    def _double_fire(self) -> None:
        """A few conversions the network posted twice: same click, ct and txid, seconds apart."""
        candidates = [c for c in self.conversions if c.visit and c.visit.source.mode != "none"]
        picked = self.rng.sample(candidates, max(2, self.n_visits // 5000))
        for c in picked:
            twin = _Conversion(
                c.click_id,
                self._settle(c.time + timedelta(seconds=self.rng.randint(2, 60))),
                c.visit,
                c.ct,
                c.txid,
                c.payout,
                c.payout_written,
            )
            if twin.time < self.window_end:
                self.conversions.append(twin)
        self.conversions.sort(key=lambda c: (c.time, c.click_id, c.ct))
        self.double_fired = sorted(c.click_id for c in picked)

    # -- postbacks and their faults --

    def _simulate_postbacks(self) -> None:
        """One postback per conversion to its traffic source, unless none is configured."""
        rng = self.rng
        for conv in self.conversions:
            visit = conv.visit
            if visit is None or visit.source.mode == "none":
                continue
            when = self._settle(conv.time + timedelta(seconds=rng.randint(1, 25)))
            if when >= self.window_end:
                continue
            self.postbacks.append(self._postback(visit, conv, when))
        self.postbacks.sort(key=lambda p: (p.time, p.postback_id))

    def _postback(self, visit: _Visit, conv: _Conversion, when: datetime) -> _Postback:
        """The postback fired for ``conv`` at ``when``: fault errors first, then missing gclids, then noise."""
        rng, source = self.rng, visit.source
        fault = next((f for f in self.faults if f.active(source, when)), None)
        failing = fault is not None and rng.random() < fault.fail_share
        url = self._postback_url(visit, conv, when, broken=fault is not None and fault.name == "postback_url_edit")
        status: int | None = 200
        message = ""
        if failing and fault is not None:
            status, message = self._fault_error(fault, when)
        elif source.external_id_name == "gclid" and not visit.external_id:
            status, message = 400, _GCLID_ERROR
        elif not self._quiet(source, when) and rng.random() < P_BACKGROUND_ERROR:
            status, message = self._background_error(source)
        return _Postback(
            postback_id=self._hex24(),
            click_id=conv.click_id,
            time=when,
            is_error=status is None or status >= 400,
            status=status,
            status_written="" if status is None else str(status),
            message=message,
            url=url,
            ct=conv.ct,
            source_id=source.id,
            integration_id=source.integration_id or "",
            campaign_id=visit.campaign.id,
            event=_CAPI_EVENTS[conv.ct] if source.mode == "capi" else "postback",
            source_column=rng.random() < P_SOURCE_COLUMN,
        )

    def _postback_url(self, visit: _Visit, conv: _Conversion, when: datetime, *, broken: bool) -> str:
        """The fully populated postback URL (CAPI endpoints carry their pixel, Meta's its token)."""
        px, ext = self.account.pixels, visit.external_id
        payout = f"{conv.payout:.2f}" if conv.payout is not None else ""
        match visit.source.name:
            case "Meta Ads":
                reconnect = next(f.end for f in self.faults if f.name == "token_expired")
                token = self.tokens[0] if when < reconnect else self.tokens[1]
                return f"https://graph.facebook.com/v21.0/{px['meta']}/events?access_token={token}"
            case "Google Ads":
                return (
                    f"https://googleads.googleapis.com/v17/customers/{px['google_customer']}:uploadClickConversions"
                    f"?conversion_action={px['google_action']}&gclid={ext}"
                )
            case "TikTok Ads":
                event = _CAPI_EVENTS[conv.ct]
                return (
                    "https://business-api.tiktok.com/open_api/v1.3/event/track/"
                    f"?pixel_code={px['tiktok']}&event={event}&ttclid={ext}"
                )
            case "PropellerAds":
                return self._propeller_template(broken=broken).replace("{external_id}", ext).replace("{payout}", payout)
            case _:
                return f"https://postback.zeroparkcdn.com/postback?cid={ext}&payout={payout}"

    def _propeller_template(self, *, broken: bool) -> str:
        """PropellerAds' postback URL template; ``broken`` has the unknown ``{clickid}`` token."""
        px = self.account.pixels
        token = "{clickid}" if broken else "{external_id}"
        return (
            f"http://ad.propellerads.com/conversion.php?aid={px['propeller_aid']}&tid={px['propeller_tid']}"
            f"&visitor_id={token}&payout={{payout}}"
        )

    def _fault_error(self, fault: _Fault, when: datetime) -> tuple[int | None, str]:
        """Status code and message of a postback failing because of ``fault``."""
        rng = self.rng
        match fault.name:
            case "postback_url_edit":
                return 400, "Invalid click id"
            case "token_expired":
                pacific = ZoneInfo("America/Los_Angeles")
                trace = "A" + self._text(22)
                return 401, (
                    '{"error":{"message":"Error validating access token: Session has expired on '
                    f"{_meta_time(fault.begin, pacific)}. The current time is {_meta_time(when, pacific)}."
                    f'","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"{trace}"}}}}'
                )
            case "rate_limit":
                request = f"{when:%Y%m%d%H%M%S}{rng.getrandbits(64):016X}"
                return 429, (
                    '{"code":40100,"message":"Too many requests. Please retry in some time.",'
                    f'"request_id":"{request}"}}'
                )
            case _:
                return None, "Connection timed out after 10000 ms"

    def _background_error(self, source: TrafficSource) -> tuple[int | None, str]:
        """One of the rare errors every receiver returns now and then."""
        return self.rng.choice(_BACKGROUND_ERRORS.get(source.name, _BACKGROUND_ERRORS["s2s"]))

    def _slip_postbacks(self) -> None:
        """Add postbacks that match no conversion: ct slips, test fires and one for an unknown click."""
        rng = self.rng
        last_day = self._local_midnight(self.start + timedelta(days=self.days - 1))
        slips = [p for p in self.postbacks if not p.is_error and p.ct in _CT_SLIPS and p.time < last_day]
        for p in rng.sample(slips, 3):
            p.ct = _CT_SLIPS[p.ct]
        converted = {c.click_id for c in self.conversions}
        first_day = self.window_start + timedelta(hours=18)
        idle = [v for v in self.visits if v.click_id not in converted and v.source.mode == "s2s" and v.time < first_day]
        for visit in rng.sample(idle, 2):  # a tracking engineer's test fires
            when = self._settle(visit.time + timedelta(minutes=rng.randint(30, 180)))
            conv = _Conversion(visit.click_id, when, visit, "", "", 0.0, 0.0)
            pb = self._postback(visit, conv, when)
            pb.is_error, pb.status, pb.status_written, pb.message = False, 200, "200", ""
            pb.source_column = False
            self.postbacks.append(pb)
        stray = self.rng.choice(self.visits[: len(self.visits) // 3])
        self.postbacks.append(
            _Postback(
                postback_id=self._hex24(),
                click_id=self._uuid(),
                time=self._settle(stray.time + timedelta(minutes=7)),
                is_error=True,
                status=404,
                status_written="404",
                message="Not Found",
                url="https://postback.zeroparkcdn.com/postback?cid=&payout=0.00",
                ct="",
                source_id="",
                integration_id="",
                campaign_id="",
                event="postback",
                source_column=False,
            )
        )
        self.postbacks.sort(key=lambda p: (p.time, p.postback_id))

    # -- activity --

    def _edit_postback_url(self, when: datetime, *, broken: bool) -> _Activity:
        """PropellerAds' postback URL edit: ``broken`` swaps its click id token for an unknown ``{clickid}``."""
        good, bad = self._propeller_template(broken=False), self._propeller_template(broken=True)
        old, new = (good, bad) if broken else (bad, good)
        author = "ana@acme.test" if broken else "ben@acme.test"
        source = self.account.source("PropellerAds")
        return self._edit(when, author, ("Traffic Source", source), {"postback_url": old}, {"postback_url": new})

    def _reconnect(self, when: datetime) -> _Activity:
        """Meta's integration reconnected with a fresh token, ending the expiry."""
        ts = self.account.source("Meta Ads")
        integration = Entity(ts.integration_id or "", ts.integration_name or "")
        when -= timedelta(seconds=self.rng.randint(5, 40))
        old = {"access_token": self.tokens[0], "status": "expired"}
        new = {"access_token": self.tokens[1], "status": "connected"}
        return self._edit(when, "mia@acme.test", ("Integration", integration), old, new)

    def _edit(
        self,
        when: datetime,
        author: str,
        target: tuple[str, TrafficSource | Campaign | Offer | Entity],
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        *,
        action: str = "Updated",
    ) -> _Activity:
        """Log one edit of ``target`` (entity type as exported, entity) in the system activity."""
        entity_type, entity = target
        row = _Activity(self._settle(when), author, entity_type, entity.id, entity.name, action, old, new)
        self.activity.append(row)
        return row

    def _simulate_activity(self) -> None:
        """Benign edits: offers, landers, networks, budgets; never postback fields of a failing scope."""
        rng, acc = self.rng, self.account
        authors = ("ana@acme.test", "ben@acme.test", "mia@acme.test", "ops-bot@acme.test")
        quiet_sources = [acc.source("Google Ads"), acc.source("NativeX")]
        for day in range(self.days):
            for _ in range(6):
                when = self._between(self._local_hour(day, 8), self._local_hour(day, 20))
                author, kind = rng.choice(authors), rng.randrange(7)
                if kind == 0:
                    offer = rng.choice(acc.offers)
                    payout = offer.steps[-1][1]
                    self._edit(when, author, ("Offer", offer), {"payout": payout}, {"payout": round(payout * 1.1, 2)})
                elif kind == 1:
                    lander = rng.choice(acc.landers)
                    url = f"https://lp.acme-offers.com/{lander.name.lower().replace(' ', '-')}/"
                    self._edit(when, author, ("Lander", lander), {"url": url}, {"url": f"{url}b/"})
                elif kind in (2, 3):
                    campaign, budget = rng.choice(acc.campaigns), rng.choice((100, 150, 200, 300))
                    self._edit(
                        when, author, ("Campaign", campaign), {"daily_budget": budget}, {"daily_budget": budget + 50}
                    )
                elif kind == 4:
                    source = rng.choice(quiet_sources)
                    self._edit(
                        when, author, ("Traffic Source", source), {"default_cost": 0.02}, {"default_cost": 0.025}
                    )
                elif kind == 5:
                    lander = Entity(self._hex24(), f"{rng.choice(('Quiz Funnel', 'Spin Wheel'))} v{rng.randint(2, 9)}")
                    created = {"name": lander.name, "url": "https://lp.acme-offers.com/new/"}
                    self._edit(when, author, ("Lander", lander), None, created, action="Created")
                else:
                    network = rng.choice(acc.networks)
                    new = {"currency": "USD", "payout_delay_days": 30}
                    self._edit(when, author, ("Affiliate Network", network), {"currency": "USD"}, new)
        gone = Entity(self._hex24(), "Diet Drops (paused)")
        when = self._between(self.window_start + timedelta(hours=14), self.window_start + timedelta(hours=15))
        self._edit(when, "ben@acme.test", ("Offer", gone), {"name": gone.name, "payout": 22.0}, None, action="Deleted")
        for fault in self.faults:  # decoys: the traffic push before each incident is a budget raise
            campaign = acc.campaigns_of(fault.source)[0]
            when = fault.push[0] - timedelta(minutes=rng.randint(3, 20))
            self._edit(when, "ben@acme.test", ("Campaign", campaign), {"daily_budget": 200}, {"daily_budget": 800})
        self.activity.sort(key=lambda a: (a.time, a.entity_id, a.action))

    # -- bad input --

    def _bad_visits(self) -> None:
        """The visits file: every visit plus rows that exercise quarantine, dedup and flags."""
        rng = self.rng
        rows = [_Row(self._visit_values(v), (v.time, i)) for i, v in enumerate(self.visits)]
        early = self.visits[: len(self.visits) // 3]

        def junk(click_id: str | None = None) -> tuple[_Visit, tuple[datetime, int]]:
            """A fresh visit that no conversion refers to, and its place in the file."""
            when = self._between(self.window_start, self.window_end)
            campaign = rng.choice(self.account.campaigns)
            return self._visit(when, campaign, click_id), (when, -1)

        for _ in range(2):
            v, order = junk()
            rows.append(_Row(["", *self._visit_values(v)[1:]], order, "missing_required"))
        v, order = junk()
        rows.append(_Row(self._visit_values(v, when="2026-02-30 10:00:00"), order, "unparseable_required"))
        first, twin = rng.sample(early, 2)
        other = self._visit_values(first)
        other[13] = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        rows.append(_Row(other, (first.time + timedelta(hours=rng.randint(2, 20)), -1), "conflicting_key"))
        rows.append(
            _Row(self._visit_values(twin), (twin.time + timedelta(hours=rng.randint(2, 20)), -1), ALREADY_STORED)
        )
        v, order = junk()
        values = self._visit_values(v)
        values[14], values[15] = "Narnia", "Cair Paravel"
        rows.append(_Row(values, order, STORED, ("flag_invalid_country",)))
        self.junk_visits.append(v)
        v, order = junk()
        rows.append(_Row([*self._visit_values(v), "unexpected"], order, "ragged_row"))
        for macro in ("{subid}", "[CLICKID]"):
            v, order = junk(macro)
            rows.append(_Row(self._visit_values(v), order, STORED, ("flag_click_id_macro",)))
            self.junk_visits.append(v)
        rows.sort(key=lambda r: r.order)
        self.visit_rows = rows

    def _visit_values(self, v: _Visit, when: str | None = None) -> list[str]:
        """The visits.csv row of ``v``."""
        return [
            v.click_id,
            when or self._local(v.time),
            v.campaign.id,
            v.campaign.name,
            v.source.id,
            v.source.name,
            v.offer.id,
            v.offer.name,
            v.lander.id,
            v.lander.name,
            v.network.id,
            v.network.name,
            v.external_id,
            v.ip,
            v.country,
            v.city,
            *v.device,
            v.referrer,
            *v.tracking,
        ]

    def _bad_conversions(self) -> None:
        """Refunds, bad payouts, macro and unknown click ids (the double fires are already in)."""
        rng = self.rng
        others = [c for c in self.conversions if c.visit and c.visit.network.txid_prefix != "MB"]
        negative, garbage = rng.sample(others, 2)
        negative.payout, negative.payout_written, negative.flags = -5.0, "-5", ("flag_negative_payout",)
        garbage.payout, garbage.payout_written, garbage.flags = None, "abc", ("flag_invalid_payout",)
        extra: list[_Conversion] = []
        for c in rng.sample(self.conversions[: len(self.conversions) // 2], 2):
            extra.append(
                _Conversion(
                    c.click_id,
                    self._settle(c.time + timedelta(hours=rng.randint(1, 6))),
                    c.visit,
                    c.ct,
                    c.txid,
                    None,
                    -(c.payout or 0.0),
                    "Refund",
                    "unknown_event_type",
                )
            )
        strays = [
            ("%7Bclick_id%7D", ("flag_click_id_macro",)),
            ("%7Bclick_id%7D", ("flag_click_id_macro",)),
            (self._uuid(), ()),
            (self._uuid(), ()),
            (self._uuid(), ()),
            (self._uuid()[:18], ("flag_click_id_malformed",)),
        ]
        for click_id, flags in strays:
            when = self._between(self.window_start, self.window_end)
            payout = rng.choice((1.8, 11.0, 38.0))
            extra.append(_Conversion(click_id, when, None, "", "", payout, payout, flags=flags))
        self.conversions = sorted(
            (c for c in [*self.conversions, *extra] if c.time < self.window_end),
            key=lambda c: (c.time, c.click_id, c.ct),
        )

    def _bad_postbacks(self) -> None:
        """Invalid status codes, a mismatch, an unparseable is_error and a conflicting id (UI file only)."""
        rng = self.rng
        ui = [p for p in self.postbacks if not self._in_api(p)]
        ok = [p for p in ui if not p.is_error and p.source_id and not self._quiet_any(p)]
        picked = rng.sample(ok[: len(ok) // 2], 6)  # early rows: a repeat seconds later stays in this file
        for p, written in zip(picked[:3], ("abc", "abc", "999"), strict=True):
            p.status, p.status_written, p.flags = None, written, ("flag_invalid_status_code",)
        picked[3].status, picked[3].status_written = 500, "500"
        picked[3].flags = ("flag_error_status_mismatch",)
        for p in ui:
            if p.status is None and p.is_error and "timed out" in p.message and rng.random() < 0.5:
                p.status_written = "0"  # another spelling of "no response"
        maybe, first = picked[4:]
        extra = [
            replace(maybe, postback_id=self._hex24(), is_error_written="maybe", fate="unparseable_required", flags=()),
            replace(
                first,
                time=first.time + timedelta(seconds=95),
                is_error=True,
                status=502,
                status_written="502",
                message="Bad Gateway",
                fate="conflicting_key",
                flags=(),
            ),
        ]
        self.postbacks = sorted([*self.postbacks, *extra], key=lambda p: (p.time, p.fate != STORED, p.postback_id))
        for p in self.postbacks:
            if self._in_api(p):
                p.flags = (*p.flags, "flag_derived_postback_id")

    def _in_api(self, p: _Postback) -> bool:
        """Postbacks of the last local day come from the API; the others from the UI export."""
        return p.time >= self._local_midnight(self.start + timedelta(days=self.days - 1))

    def _quiet_any(self, p: _Postback) -> bool:
        """True in or right after any fault's window."""
        return any(f.hour <= p.time < f.end + timedelta(hours=1) for f in self.faults)

    def _network_export(self) -> None:
        """MaxBounty's own conversion list: matches, payout differences and rows the tracker never saw."""
        rng = self.rng
        network = self.account.networks[0]
        seen: set[tuple[str, str, str]] = set()
        theirs = []
        for c in self.conversions:
            key = (c.click_id, c.ct, c.txid)
            if c.fate == STORED and c.network_id == network.id and key not in seen:
                seen.add(key)
                theirs.append(c)
        dropped = rng.sample(range(len(theirs)), 2)  # reversed by the network: missing in its export
        mismatched = set(rng.sample([i for i in range(len(theirs)) if i not in dropped], 3))
        rows: list[tuple[datetime, dict[str, str]]] = []
        for i, c in enumerate(theirs):
            if i in dropped:
                continue
            payout = (c.payout or 0.0) + (2.5 if i in mismatched else 0.0)
            rows.append((c.time, {"Sub ID": c.click_id, "Transaction ID": c.txid, "Payout": f"{payout:.2f}"}))
        converted = {c.click_id for c in self.conversions}
        idle = [v for v in self.visits if v.click_id not in converted and v.network.id == network.id]
        lost = rng.sample(idle, 4)
        specials = [
            lost[0].click_id[:20],  # truncated by the network
            lost[1].click_id[:20],
            "{clickid}",  # unreplaced macro
            "ZX-00912-B",  # malformed
            lost[2].click_id,  # a real visit whose conversion never reached the tracker
            lost[3].click_id,
            self._uuid(),  # unknown
        ]
        for sub_id in specials:
            when = self._between(self.window_start + timedelta(hours=6), self.window_end - timedelta(hours=1))
            rows.append(
                (
                    when,
                    {
                        "Sub ID": sub_id,
                        "Transaction ID": f"MB-{rng.randrange(10**9, 10**10)}",
                        "Payout": f"{rng.choice((11.0, 38.0)):.2f}",
                    },
                )
            )
        rows.sort(key=lambda r: (r[0], r[1]["Sub ID"]))
        self.network_rows = [{**values, "Conversion Time": self._local(when)} for when, values in rows]

    # -- writers --

    def write(self, out: Path) -> dict[str, Path]:
        """Write every export into ``out``; return role → path."""
        paths = {role: out / name for role, name in FILES.items()}
        _write_csv(paths["visits"], VISIT_HEADER, [r.values for r in self.visit_rows])
        self._write_clicks(paths["clicks"])
        self._write_conversions(paths["conversions"])
        self._write_postbacks(paths["postbacks"], paths["postbacks_api"])
        _write_csv(
            paths["activity"],
            ACTIVITY_HEADER,
            [
                [
                    self._local(a.time),
                    a.author,
                    a.entity_type,
                    a.entity_id,
                    a.entity_name,
                    a.action,
                    _json_text(a.old),
                    _json_text(a.new),
                ]
                for a in self.activity
            ],
        )
        rows = [[r[h] for h in NETWORK_HEADER] for r in self.network_rows]
        _write_csv(paths["network_export"], NETWORK_HEADER, rows)
        return paths

    def _write_clicks(self, path: Path) -> None:
        """clicks.ndjson.gz: report camelCase keys, UTC ``Z`` times, gzip without a time stamp."""
        lines = []
        for visit, when, cta in self.clicks:
            record = {
                "clickID": visit.click_id,
                "clickTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "campaignID": visit.campaign.id,
                "trafficSourceID": visit.source.id,
                "landerID": visit.lander.id,
                "offerID": visit.offer.id,
                "cta": cta,
                "locationCountry": visit.country,
                "deviceBrowser": visit.device[2],
                "connectionIP": visit.ip,
            }
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(("\n".join(lines) + "\n").encode("utf-8"))

    def _write_conversions(self, path: Path) -> None:
        """conversions.json: the API envelope; times alternate Unix seconds and local text."""
        items = []
        for i, c in enumerate(self.conversions):
            unix, v = i % 2 == 0, c.visit
            items.append(
                {
                    "EventType": c.event_type,
                    "ClickID": c.click_id,
                    "ConversionDate": self._stamp(c.time, unix=unix),
                    "VisitTime": self._stamp(v.time, unix=unix) if v else None,
                    "CampaignID": v.campaign.id if v else None,
                    "TrafficSourceID": v.source.id if v else None,
                    "OfferID": v.offer.id if v else None,
                    "AffiliateNetworkID": v.network.id if v else None,
                    "ConversionPayout": c.payout_written,
                    "ConversionTransaction": c.txid,
                    "Ct": c.ct,
                    "Status": "approved",
                }
            )
        _write_json(path, {"items": items, "totals": {"counter": len(items)}})

    def _stamp(self, t: datetime, *, unix: bool) -> int | str:
        """Unix seconds, or local ``YYYY-MM-DD HH:MM:SS`` (the API returns either)."""
        return int(t.timestamp()) if unix else self._local(t)

    def _write_postbacks(self, ui_path: Path, api_path: Path) -> None:
        """postbacks.csv (UI, all days but the last) and postbacks_api.json (API, the last day)."""
        rows, items = [], []
        integration_names = {ts.integration_id: ts.integration_name for ts in self.account.traffic_sources}
        for p in self.postbacks:
            if self._in_api(p):
                items.append(
                    {
                        "ClickID": p.click_id,
                        "PostbackTime": p.time.astimezone(self.tz).isoformat(timespec="seconds"),
                        "IsError": p.is_error,
                        "ErrorMessage": p.message or None,
                        "StatusCode": p.status,
                        "PostbackUrl": p.url,
                        "Ct": p.ct,
                        "IntegrationID": p.integration_id or None,
                        "Event": p.event,
                    }
                )
                continue
            shown = p.source_column
            rows.append(
                [
                    p.postback_id,
                    p.click_id,
                    self._local(p.time),
                    p.is_error_written or ("1" if p.is_error else "0"),
                    p.message,
                    p.status_written,
                    p.url,
                    p.ct,
                    p.integration_id,
                    integration_names.get(p.integration_id) or "",
                    p.source_id if shown else "",
                    p.campaign_id if shown else "",
                ]
            )
        _write_csv(ui_path, POSTBACK_HEADER, rows)
        _write_json(api_path, {"items": items, "totals": {"counter": len(items)}})

    # -- truth --

    def truth(self, *, seed: int, start: str, timezone: str) -> dict[str, Any]:
        """What was injected and what a correct ingest and diagnosis must find."""
        stored_visits = {v.click_id: v for v in self.visits} | {v.click_id: v for v in self.junk_visits}
        conversions = [c for c in self.conversions if c.fate == STORED]
        postbacks = [p for p in self.postbacks if p.fate == STORED]
        return {
            "seed": seed,
            "visits_param": self.n_visits,
            "timezone": timezone,
            "start": start,
            "days": self.days,
            "window": {"start": _z(self.window_start), "end": _z(self.window_end)},
            "files": dict(FILES),
            "ingest": self._ingest_truth(),
            "incidents": self._incident_truth(postbacks),
            "faults": self._fault_truth(conversions, postbacks),
            "gaps": _gaps(conversions, postbacks, set(stored_visits)),
            "postbacks": self._postback_truth(postbacks, stored_visits, conversions),
            "reconcile": self._reconcile_truth(conversions, set(stored_visits)),
            "entities": self._entity_truth(),
        }

    def _ingest_truth(self) -> dict[str, Any]:
        """What a correct ingest of each kind reports."""
        return {
            "visits": _ingest_counts((r.fate, r.flags) for r in self.visit_rows),
            "clicks": _ingest_counts((STORED, ()) for _ in self.clicks),
            "conversions": _ingest_counts((c.fate, c.flags) for c in self.conversions),
            "postbacks": _ingest_counts((p.fate, p.flags) for p in self.postbacks),
            "activity": _ingest_counts((STORED, ()) for _ in self.activity),
        }

    def _incident_truth(self, postbacks: list[_Postback]) -> list[dict[str, Any]]:
        """Faults that are incidents by the default rule: every hour of them has n ≥ 10 and mostly errors."""
        incidents = [i for f in self.faults if (i := self._incident(f, postbacks)) and _detectable(i)]
        return sorted(incidents, key=lambda i: (i["start"], i["id"]))

    def _incident(self, f: _Fault, postbacks: list[_Postback]) -> dict[str, Any] | None:
        """The incident ``f`` caused: its failing postbacks, hour by hour, and the change behind it."""
        capi = f.source.integration_id is not None
        in_scope = [p for p in postbacks if p.source_id == f.source.id]
        failing = [p for p in in_scope if p.is_error and f.begin <= p.time < f.end]
        if not failing:
            return None
        first, last = failing[0].time, failing[-1].time
        hours = []
        bucket = first.replace(minute=0, second=0)
        while bucket <= last:
            n = [p for p in in_scope if bucket <= p.time < bucket + timedelta(hours=1)]
            hours.append({"hour": _z(bucket), "postbacks": len(n), "errors": sum(p.is_error for p in n)})
            bucket += timedelta(hours=1)
        cause = f.cause
        change = None
        if cause is not None:
            change = {
                "changed_at": _z(cause.time),
                "author": cause.author,
                "entity_type": cause.entity_type.lower().replace(" ", "_"),
                "entity_id": cause.entity_id,
                "entity_name": cause.entity_name,
                "action": cause.action.lower(),
            }
        return {
            "scope": "integration" if capi else "traffic_source",
            "id": f.source.integration_id if capi else f.source.id,
            "name": f.source.integration_name if capi else f.source.name,
            "traffic_source_id": f.source.id,
            "fault": f.name,
            "top_error_kind": f.error_kind,
            "start": _z(first),
            "end": _z(last),
            "postbacks": sum(h["postbacks"] for h in hours),
            "errors": sum(h["errors"] for h in hours),
            "hours": hours,
            "suspected_change": change,
        }

    def _fault_truth(self, conversions: list[_Conversion], postbacks: list[_Postback]) -> list[dict[str, Any]]:
        """Every injected fault, the incidents and the ones that are not."""
        faults: list[dict[str, Any]] = []
        for f in self.faults:
            incident = self._incident(f, postbacks)
            faults.append(
                {
                    "fault": f.name,
                    "traffic_source_id": f.source.id,
                    "incident": incident is not None and _detectable(incident),
                    "failing_from": _z(f.begin),
                    "failing_until": _z(f.end),
                    "share_failing": f.fail_share,
                    "failed_postbacks": 0
                    if incident is None
                    else len(
                        [
                            p
                            for p in postbacks
                            if p.source_id == f.source.id and p.is_error and f.begin <= p.time < f.end
                        ]
                    ),
                    "traffic_push": {"start": _z(f.push[0]), "end": _z(f.push[1])},
                    "fixed_by": None if f.fix is None else {"changed_at": _z(f.fix.time), "author": f.fix.author},
                }
            )
        google = self.account.source("Google Ads")
        nativex = self.account.source("NativeX")
        stored = [*self.visits, *self.junk_visits]
        missing = [v for v in stored if v.source.id == google.id and not v.external_id]
        faults.append(
            {
                "fault": "missing_external_id",
                "traffic_source_id": google.id,
                "incident": False,
                "visits": len(missing),
                "error_kind": "missing_click_id",
                "postbacks_failed": sum(p.is_error and "UNPARSEABLE_GCLID" in p.message for p in postbacks),
            }
        )
        faults.append(
            {
                "fault": "no_postback_configured",
                "traffic_source_id": nativex.id,
                "incident": False,
                "conversions": sum(c.source_id == nativex.id for c in conversions),
            }
        )
        faults.append({"fault": "double_fired_conversions", "incident": False, "click_ids": self.double_fired})
        return faults

    def _postback_truth(
        self, postbacks: list[_Postback], visits: dict[str, _Visit], conversions: list[_Conversion]
    ) -> dict[str, Any]:
        """Postback totals by traffic source (own column, else visit, else conversion) and integration."""
        by_conversion: dict[str, str] = {}
        for c in conversions:
            if c.source_id:
                by_conversion.setdefault(c.click_id, c.source_id)
        by_source: dict[str, Counter[str]] = defaultdict(Counter)
        by_integration: dict[str, Counter[str]] = defaultdict(Counter)
        unattributed = 0
        for p in postbacks:
            own = p.source_id if p.source_column and not self._in_api(p) else ""
            visit = visits.get(p.click_id)
            source = own or (visit.source.id if visit else "") or by_conversion.get(p.click_id, "")
            if source:
                by_source[source].update(postbacks=1, errors=int(p.is_error))
            else:
                unattributed += 1
            if p.integration_id:
                by_integration[p.integration_id].update(postbacks=1, errors=int(p.is_error))
        return {
            "total": len(postbacks),
            "errors": sum(p.is_error for p in postbacks),
            "unattributed": unattributed,
            "by_traffic_source": {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
            "by_integration": {k: dict(sorted(v.items())) for k, v in sorted(by_integration.items())},
        }

    def _reconcile_truth(self, conversions: list[_Conversion], visit_ids: set[str]) -> dict[str, Any]:
        """The network export against stored conversions (docs/contract.md §5 reconcile)."""
        times = [_parse_local(r["Conversion Time"], self.tz) for r in self.network_rows]
        lo, hi = min(times) - timedelta(days=1), max(times) + timedelta(days=1)
        tracker: dict[tuple[str, str, str], _Conversion] = {}
        for c in conversions:
            if lo <= c.time <= hi:
                tracker.setdefault((c.click_id, c.ct, c.txid), c)
        by_click: dict[str, list[tuple[tuple[str, str, str], _Conversion]]] = defaultdict(list)
        for key, c in tracker.items():
            by_click[c.click_id].append((key, c))
        matched = mismatched = 0
        reasons: Counter[str] = Counter()
        hit: set[tuple[str, str, str]] = set()
        for row in self.network_rows:
            sub, txid = row["Sub ID"], row["Transaction ID"]
            found = [(k, c) for k, c in by_click.get(sub, []) if not (txid and c.txid) or c.txid == txid]
            if found:
                key, c = found[0]
                hit.add(key)
                same = c.payout is not None and abs(c.payout - float(row["Payout"])) <= 0.01
                matched, mismatched = matched + same, mismatched + (not same)
            elif MACRO_RE.search(sub):
                reasons["unreplaced_macro"] += 1
            elif any(v != sub and v.startswith(sub) for v in visit_ids):
                reasons["truncated_click_id"] += 1
            elif not UUID_RE.match(sub):
                reasons["malformed_click_id"] += 1
            elif sub in visit_ids:
                reasons["postback_not_received"] += 1
            else:
                reasons["unknown_click"] += 1
        network = self.account.networks[0]
        names = (
            "unreplaced_macro",
            "truncated_click_id",
            "malformed_click_id",
            "postback_not_received",
            "unknown_click",
        )
        return {
            "network_id": network.id,
            "network_name": network.name,
            "conversion_time_zone": str(self.tz),
            "rows": len(self.network_rows),
            "matched": matched,
            "payout_mismatch": mismatched,
            "missing_in_tracker": {"total": sum(reasons.values()), "by_reason": {n: reasons[n] for n in names}},
            "missing_in_network": sum(key not in hit for key in tracker),
            "missing_in_network_same_network": sum(
                key not in hit and c.network_id == network.id for key, c in tracker.items()
            ),
            "note": "rows = matched + payout_mismatch + missing_in_tracker.total; missing_in_network counts every "
            "distinct stored (click_id, ct, txid) in the file's span ± 1 day, "
            "missing_in_network_same_network only this network's",
        }

    def _entity_truth(self) -> dict[str, Any]:
        """The account's entities."""
        acc = self.account
        return {
            "traffic_sources": [
                {"id": ts.id, "name": ts.name, "mode": ts.mode, "integration_id": ts.integration_id}
                for ts in acc.traffic_sources
            ],
            "integrations": [
                {"id": ts.integration_id, "name": ts.integration_name, "traffic_source_id": ts.id}
                for ts in acc.traffic_sources
                if ts.integration_id
            ],
            "campaigns": [
                {"id": c.id, "name": c.name, "traffic_source_id": c.traffic_source_id} for c in acc.campaigns
            ],
            "offers": [
                {
                    "id": o.id,
                    "name": o.name,
                    "affiliate_network_id": o.affiliate_network_id,
                    "steps": [{"ct": ct, "payout": payout} for ct, payout in o.steps],
                }
                for o in acc.offers
            ],
            "landers": [{"id": lp.id, "name": lp.name} for lp in acc.landers],
            "affiliate_networks": [{"id": n.id, "name": n.name} for n in acc.networks],
        }


# --- truth helpers (independent of the rest of the package) ------------------------------


def _gaps(conversions: list[_Conversion], postbacks: list[_Postback], visit_ids: set[str]) -> dict[str, int]:
    """Conversion gaps of docs/contract.md §6 with grace 0, over stored rows."""

    def norm(v: str) -> str | None:
        """``""`` is null."""
        return v or None

    outcome: dict[tuple[str, str | None], bool] = {}  # (click_id, ct) → some postback succeeded
    for p in postbacks:
        key = (p.click_id, norm(p.ct))
        outcome[key] = outcome.get(key, False) or not p.is_error
    counts = Counter[str]()
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in conversions:
        key = (c.click_id, norm(c.ct))
        counts["posted_ok" if outcome.get(key) else "posted_failed" if key in outcome else "not_posted"] += 1
        dup_key = (c.click_id, norm(c.ct), norm(c.txid))
        counts["duplicate_conversions"] += dup_key in seen
        seen.add(dup_key)
        if c.click_id not in visit_ids:
            counts["unknown_click"] += 1
            counts["unknown_click_malformed"] += bool(MACRO_RE.search(c.click_id) or not UUID_RE.match(c.click_id))
    converted = {(c.click_id, norm(c.ct)) for c in conversions}
    converted_clicks = {c.click_id for c in conversions}
    for p in postbacks:
        if (p.click_id, norm(p.ct)) not in converted:
            counts["orphan_postbacks"] += 1
            counts["ct_mismatch"] += p.click_id in converted_clicks
    names = (
        "posted_ok",
        "posted_failed",
        "not_posted",
        "pending",
        "orphan_postbacks",
        "ct_mismatch",
        "duplicate_conversions",
        "unknown_click",
        "unknown_click_malformed",
    )
    return {"conversions": len(conversions)} | {n: counts[n] for n in names}


def _detectable(incident: dict[str, Any]) -> bool:
    """Every hour of the incident has enough postbacks (n ≥ 10) and mostly errors for the default rule."""
    return all(h["postbacks"] >= 10 and h["errors"] >= 0.4 * h["postbacks"] for h in incident["hours"])


def _ingest_counts(records: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    """Ingest counts of one kind from each record's (fate, flags)."""
    fates: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for fate, row_flags in records:
        fates[fate] += 1
        if fate == STORED:
            flags.update(row_flags)
    quarantined = {k: v for k, v in sorted(fates.items()) if k not in (STORED, ALREADY_STORED)}
    return {
        "rows_read": sum(fates.values()),
        "rows_stored": fates[STORED],
        "already_stored": fates[ALREADY_STORED],
        "quarantined": sum(quarantined.values()),
        "quarantined_by_reason": quarantined,
        "flagged_by_flag": dict(sorted(flags.items())),
    }


def _meta_time(t: datetime, zone: ZoneInfo) -> str:
    """A time as Meta's Graph API writes it: ``Thursday, 19-Nov-26 09:03:17 PST``."""
    local = t.astimezone(zone)
    return (
        f"{_DAY_NAMES[local.weekday()]}, {local.day:02d}-{_MONTHS[local.month - 1]}-{local.year % 100:02d} "
        f"{local:%H:%M:%S} {local.tzname()}"
    )


def _z(t: datetime) -> str:
    """ISO 8601 UTC with ``Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_local(text: str, tz: ZoneInfo) -> datetime:
    """A local ``YYYY-MM-DD HH:MM:SS`` as UTC."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).astimezone(UTC)


def _json_text(value: dict[str, Any] | None) -> str:
    """JSON text of an activity value; empty when there is none."""
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a UTF-8 CSV with ``\n`` line ends."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_json(path: Path, document: Any) -> None:
    """Write a JSON document (UTF-8, one space indent)."""
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# --- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cfanalytics.sample OUT``: write the sample account into OUT."""
    parser = argparse.ArgumentParser(prog="python -m cfanalytics.sample", description=main.__doc__)
    parser.add_argument("out", type=Path, help="folder to write the exports and truth.json into")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--visits", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--start", default="2026-11-16", help="first local day, YYYY-MM-DD")
    parser.add_argument("--timezone", default="America/New_York", help="account time zone (IANA)")
    args = parser.parse_args(argv)
    try:
        account = generate(
            args.out, seed=args.seed, visits=args.visits, days=args.days, start=args.start, timezone=args.timezone
        )
    except ValueError as exc:
        parser.error(str(exc))
    for role, path in account.files.items():
        print(f"{role:<15} {path}")
    print(f"{'truth':<15} {account.folder / TRUTH_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
