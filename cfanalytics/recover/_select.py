"""Which lost conversions can still be sent to their traffic source, where, and why the others cannot.

:func:`select` is a pure function of three frames (the input contract below) and
returns one row per candidate conversion — a conversion that never reached its
traffic source (gap ``not_posted`` or ``posted_failed``) — with its destination and
either the values to send or the reason it is left out.

Input contract
--------------
``conversions`` — one row per stored conversion (the gap rows of
:func:`cfanalytics.diagnose.gap_rows`): ``click_id``, ``conversion_time``
(UTC), ``ct``, ``txid``, ``payout``, ``currency``, ``traffic_source_id``, ``gap``
(``posted_ok`` / ``posted_failed`` / ``not_posted`` / ``pending``) and ``duplicate``
(a row beyond the first per click id, ct, txid).

``postbacks`` — every postback of those click ids, whatever its time:
``click_id``, ``ct``, ``postback_time``, ``is_error``, ``postback_url``,
``error_kind``, ``traffic_source_id``; optional ``integration_name``, ``event``,
``retryable`` (bool) and ``platform`` (as :func:`cfanalytics.diagnose.postbacks` gives
them; any spelling, read through ``destination_of``). Where they are absent or null,
they are derived here from ``error_kind`` (:data:`RECOVERABLE_KINDS`) and from the URL
host or integration name (``platform_of``).

``visits`` — the visits of those click ids: ``click_id``, ``visit_time``,
``external_id``; optional ``referrer``, ``user_agent``, ``ip`` and
``tracking_field_*`` columns (where a click id may also be found).

Rules, in order (the first that applies is the conversion's reason):
``accepted`` (a postback of the same click id and ct succeeded),
``duplicate``, ``already_recovered`` (in the recovery ledger),
``error_not_recoverable`` (an attempt failed with a kind that is neither
retryable nor fixable), ``no_destination``, ``outside_window`` for a conversion
after ``now``, then per destination: S2S ``no_postback_url`` (never posted: no URL
to fire), ``no_click_id`` (an empty click-id parameter and no stored click id),
``unfillable_macro`` (a macro no stored value fills); ad platforms ``no_click_id``
and ``outside_window`` (the platform's upload window at ``now``, ``WINDOWS`` in ``_platforms``).

The destination is the platform of the conversion's failed postbacks (URL host or
integration name); for a conversion never posted, the platform most postbacks of its
traffic source go to; else an ad platform named by the visit (a click-id parameter in
a tracking field or the referrer, or the referrer's host). The platform's click id
comes from the failed postback URL's query, else the visit's external id (what the
traffic source passed), else a tracking field or the referrer holding
``gclid=`` / ``fbclid=`` / ``ttclid=`` / ``msclkid=``.

>>> platform_of("https://graph.facebook.com/v21.0/1/events?access_token=x", None)
'meta'
>>> platform_of("https://ts.example/pb?cid=1", "Google Ads API - MCC 431")
'google_ads'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import polars as pl

from cfanalytics.recover._macros import fill_url
from cfanalytics.recover._platforms import (
    CLICK_PARAM,
    UNSUPPORTED,
    WINDOWS,
    destination_of,
    endpoint_of,
    platform_of,
    query_of,
    usable_click_id,
)

#: error_kind → how it can be recovered, until the error-intelligence columns provide ``retryable``:
#: a retryable error goes again as it was; a fixable one once the URL (macro, click id) is repaired.
RECOVERABLE_KINDS: Final[dict[str, str]] = {
    "rate_limit": "retryable",
    "no_response": "retryable",
    "server_error": "retryable",
    "unreplaced_macro": "fixable",
    "missing_click_id": "fixable",
}

REASONS: Final = (
    "accepted",
    "duplicate",
    "already_recovered",
    "error_not_recoverable",
    "no_destination",
    "no_postback_url",
    "no_click_id",
    "unfillable_macro",
    "outside_window",
)


def conversion_key(click_id: Any, ct: Any, txid: Any) -> str:
    """A conversion's identity across runs: click id, ct and txid (``""`` = null), as duplicates are counted.

    >>> conversion_key("c1", None, "T9")
    'c1||T9'
    """
    return f"{click_id or ''}|{ct or ''}|{txid or ''}"


@dataclass(frozen=True)
class _Attempts:
    ok: bool
    kinds: tuple[str | None, ...]
    retryable: tuple[bool | None, ...]
    last_url: str | None
    url_platform: str | None
    event: str | None


def _attempts(postbacks: pl.DataFrame) -> dict[tuple[str, str], _Attempts]:
    """Per (click id, ct) the postbacks' outcome, oldest first."""
    cols = postbacks.columns
    out: dict[tuple[str, str], _Attempts] = {}
    rows = postbacks.sort("postback_time", nulls_last=True).iter_rows(named=True)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["click_id"], row.get("ct") or ""), []).append(row)
    for key, group in grouped.items():
        failed = [r for r in group if r["is_error"] is not False]
        last = failed[-1] if failed else group[-1]
        if "platform" in cols and last.get("platform"):
            platform = destination_of(last["platform"])
        else:
            platform = platform_of(last.get("postback_url"), last.get("integration_name"))
        out[key] = _Attempts(
            ok=any(r["is_error"] is False for r in group),
            kinds=tuple(r.get("error_kind") for r in failed),
            retryable=tuple(r.get("retryable") for r in failed) if "retryable" in cols else (),
            last_url=last.get("postback_url"),
            url_platform=platform,
            event=last.get("event"),
        )
    return out


def _source_platforms(postbacks: pl.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Per traffic source, the destination most of its postbacks go to (ties: alphabetical), and
    the latest postback URL to that destination (its endpoint, for conversions never posted)."""
    counts: dict[str, Counter[str]] = {}
    latest: dict[tuple[str, str], str] = {}
    has_platform = "platform" in postbacks.columns
    for row in postbacks.sort("postback_time", nulls_last=True).iter_rows(named=True):
        ts = row.get("traffic_source_id")
        if ts is None:
            continue
        given = row.get("platform") if has_platform else None
        platform = destination_of(given) if given else platform_of(row.get("postback_url"), row.get("integration_name"))
        counts.setdefault(ts, Counter())[platform] += 1
        if row.get("postback_url"):
            latest[(ts, platform)] = row["postback_url"]
    chosen = {ts: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for ts, c in counts.items()}
    return chosen, {ts: latest[(ts, p)] for ts, p in chosen.items() if (ts, p) in latest}


def _visit_platform(visit: Mapping[str, Any]) -> str | None:
    """An ad platform named by the visit: a click-id parameter in a tracking field or the referrer, or its host."""
    for value in _visit_texts(visit):
        query = query_of(value if "?" in value else "?" + value)
        for platform, param in CLICK_PARAM.items():
            if usable_click_id(query.get(param)):
                return platform
    referrer = visit.get("referrer")
    if referrer:
        found = platform_of(referrer, None)
        return None if found == "s2s" else found
    return None


def _visit_texts(visit: Mapping[str, Any]) -> list[str]:
    keys = [*sorted(k for k in visit if k.startswith("tracking_field")), "referrer"]
    return [v for k in keys if isinstance(v := visit.get(k), str) and "=" in v]


def _click_id(platform: str, url: str | None, visit: Mapping[str, Any] | None, url_is_platform: bool) -> str | None:
    """The platform's click id: from the failed postback URL, the visit's external id, or a tracking field."""
    param = CLICK_PARAM[platform]
    found = usable_click_id(query_of(url).get(param))
    if found:
        return found
    if visit is None:
        return None
    if url_is_platform or visit.get("_ts_platform") == platform:
        found = usable_click_id(visit.get("external_id"))
        if found:
            return found
    for value in _visit_texts(visit):
        found = usable_click_id(query_of(value if "?" in value else "?" + value).get(param))
        if found:
            return found
    return None


def select(
    conversions: pl.DataFrame,
    postbacks: pl.DataFrame,
    visits: pl.DataFrame,
    *,
    now: datetime,
    recovered: Collection[str] = (),
    currency: str | None = None,
    fixed: Collection[str] = (),
) -> pl.DataFrame:
    """One row per candidate conversion: ``key``, identity and payout columns, ``destination``,
    ``platform_click_id``, ``url`` (S2S: the real URL to fire), ``reason`` (null = included) and ``detail``.

    ``recovered`` holds the keys already in the recovery ledger; ``currency`` is the currency of
    conversions that carry none (null stays null: counted as ``unknown``, never mixed).
    ``fixed`` names error kinds whose cause has been fixed since (``auth`` once the token is
    renewed): their conversions go to the ad-platform files, which are sent with the current
    credentials; S2S URLs would be fired as they were, so those stay left out.
    Sorted by conversion time, key.
    """
    candidates = conversions.filter(pl.col("gap").is_in(["posted_failed", "not_posted"]))
    attempts = _attempts(postbacks)
    ts_platform, ts_url = _source_platforms(postbacks)
    visit_of: dict[str, dict[str, Any]] = {}
    for row in visits.sort("visit_time", nulls_last=True).iter_rows(named=True):
        visit_of.setdefault(row["click_id"], row)
    recovered = set(recovered)
    out: list[dict[str, Any]] = []
    for conv in candidates.sort("conversion_time", "click_id").iter_rows(named=True):
        out.append(
            _decide(
                conv,
                attempts=attempts,
                sources=(ts_platform, ts_url),
                visit_of=visit_of,
                recovered=recovered,
                now=now,
                currency=currency,
                fixed=frozenset(fixed),
            )
        )
    schema = {
        "key": pl.String,
        "click_id": pl.String,
        "conversion_time": pl.Datetime("us", "UTC"),
        "visit_time": pl.Datetime("us", "UTC"),
        "ct": pl.String,
        "txid": pl.String,
        "payout": pl.Float64,
        "currency": pl.String,
        "traffic_source_id": pl.String,
        "gap": pl.String,
        "destination": pl.String,
        "platform_click_id": pl.String,
        "event": pl.String,
        "url": pl.String,
        "endpoint": pl.String,
        "pixel": pl.String,
        "user_agent": pl.String,
        "ip": pl.String,
        "reason": pl.String,
        "detail": pl.String,
    }
    return pl.DataFrame(out, schema=schema, orient="row").sort("conversion_time", "key")


def _decide(
    conv: dict[str, Any],
    *,
    attempts: Mapping[tuple[str, str], _Attempts],
    sources: tuple[Mapping[str, str], Mapping[str, str]],
    visit_of: Mapping[str, dict[str, Any]],
    recovered: set[str],
    now: datetime,
    currency: str | None,
    fixed: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    ts_platform, ts_url = sources
    key = conversion_key(conv["click_id"], conv.get("ct"), conv.get("txid"))
    visit = visit_of.get(conv["click_id"])
    att = attempts.get((conv["click_id"], conv.get("ct") or ""))
    row: dict[str, Any] = {
        "key": key,
        "click_id": conv["click_id"],
        "conversion_time": conv["conversion_time"],
        "visit_time": (visit or {}).get("visit_time") or conv.get("visit_time"),
        "ct": conv.get("ct"),
        "txid": conv.get("txid"),
        "payout": conv.get("payout"),
        "currency": (conv.get("currency") or currency or None),
        "traffic_source_id": conv.get("traffic_source_id"),
        "gap": conv["gap"],
        "destination": None,
        "platform_click_id": None,
        "event": att.event if att else None,
        "url": None,
        "endpoint": None,
        "pixel": None,
        "user_agent": (visit or {}).get("user_agent"),
        "ip": _ip((visit or {}).get("ip")),
        "reason": None,
        "detail": None,
    }
    if row["currency"]:
        row["currency"] = str(row["currency"]).upper()

    def leave(reason: str, detail: str | None = None) -> dict[str, Any]:
        row["reason"], row["detail"] = reason, detail
        return row

    if att is not None and att.ok:
        return leave("accepted", "a postback of this click id and ct succeeded")
    if conv.get("duplicate"):
        return leave("duplicate", "same click id, ct and txid as an earlier conversion")
    if key in recovered:
        return leave("already_recovered", "in the recovery ledger")
    if att is not None:
        blocked = _blocking_kind(att, fixed)
        if blocked is not None:
            return leave("error_not_recoverable", f"an attempt failed with {blocked}")
        if att.url_platform == "s2s" and (found := _blocking_kind(att, frozenset())) is not None:
            return leave("error_not_recoverable", f"an attempt failed with {found} (S2S URLs are fired as they were)")
    platform = att.url_platform if att else ts_platform.get(conv.get("traffic_source_id") or "")
    if platform is None and visit is not None:
        platform = _visit_platform(visit)
    if platform is None:
        return leave("no_destination", "no postback of this traffic source and no ad-platform click id")
    if platform == UNSUPPORTED:
        return leave("no_destination", "an ad platform this package writes no upload file for")
    row["destination"] = platform
    if conv["conversion_time"] > now:
        return leave("outside_window", "conversion after --now")
    if platform == "s2s":
        return _s2s(row, att, visit, leave)
    vis = dict(visit or {})
    vis["_ts_platform"] = ts_platform.get(conv.get("traffic_source_id") or "")
    click = _click_id(platform, att.last_url if att else None, vis if visit else None, att is not None)
    if click is None:
        return leave("no_click_id", f"no {CLICK_PARAM[platform]} in the postback URL, the visit or its fields")
    row["platform_click_id"] = click
    row["endpoint"], row["pixel"] = endpoint_of(
        att.last_url if att else ts_url.get(conv.get("traffic_source_id") or "")
    )
    basis, longest, _doc = WINDOWS[platform]
    ref = conv["conversion_time"] if basis == "event" else (row["visit_time"] or conv["conversion_time"])
    if now - ref > longest:
        return leave("outside_window", f"{basis} older than {longest.days} days at --now")
    return row


def _ip(value: Any) -> str | None:
    """``value`` if it is an IP address (a hashed or garbled one is not sent)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _blocking_kind(att: _Attempts, fixed: frozenset[str]) -> str | None:
    """The first failed attempt's kind that is neither retryable nor fixable (nor in ``fixed``), or None.

    A ``retryable`` column, when given, decides for retryable kinds; fixable kinds stay fixable.
    """
    for i, kind in enumerate(att.kinds):
        flag = att.retryable[i] if att.retryable else None
        local = RECOVERABLE_KINDS.get(kind or "")
        if flag is True or local == "fixable" or (flag is None and local == "retryable") or kind in fixed:
            continue
        return kind or "unknown"
    return None


def _s2s(row: dict[str, Any], att: _Attempts | None, visit: Mapping[str, Any] | None, leave: Any) -> dict[str, Any]:
    if att is None or not att.last_url:
        return leave("no_postback_url", "never posted: no URL to fire again")
    external = usable_click_id((visit or {}).get("external_id"))
    values = {
        "external_id": external,
        "ts_click_id": external,
        "payout": row["payout"],
        "txid": row["txid"],
        "ct": row["ct"],
    }
    url, left = fill_url(att.last_url, values)
    empty = sorted({x for x in left if x.endswith("=")})
    if empty:
        return leave("no_click_id", f"no stored click id for {', '.join(empty)}")
    if left:
        return leave("unfillable_macro", f"no stored value for {', '.join(sorted(set(left)))}")
    row["url"] = url
    row["platform_click_id"] = values["ts_click_id"]
    return row
