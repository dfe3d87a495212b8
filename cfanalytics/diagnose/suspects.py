"""Causes and fixes of an incident: ranked suspects from the activity log, and the change that resolved it.

A pure function of frames: one incident (``scope``, ``id``, ``start``, ``end``,
``top_error_kind``), the activity log, the entities the incident's traffic belongs
to, and the scope's hourly postback counts.

- **Suspects** are the edits in [start − 24 h, start] of the incident's own entity
  and of the entities its postbacks' traffic belongs to (traffic source,
  integration, campaigns, flows, offers, landers). Each carries its evidence: how
  long before the start, which fields changed (old → new, redacted), and the
  scope's volume and error rate in the hours before and after it.
- A suspect **explains** the failure when the kind of change can cause the kind of
  error: a tracking change (postback URL, macro, click-id parameter, pixel, event
  mapping) for unreplaced macros, missing click ids, bad requests and duplicates; a
  credential change (token, key, connection status) or any edit of the integration
  for auth errors; a volume change (budget, bid, cap) for rate limits. Receiver-side
  failures (time-outs, 5xx) are nobody's edit.
- **suspected_change** is the best-ranked suspect that explains the failure (the
  incident's own entity first, then the latest), or null: an expired token or a
  receiver that times out is nobody's edit, and a budget raise before a time-out
  is a decoy, not a cause.
- **resolved_by** is a change in [start, end + 1 h] on the same entities that can
  explain the failure and after which the scope's error rate came back within
  ``MIN_RISE`` of its baseline; the one closest to the end wins.

>>> from datetime import datetime, UTC
>>> activity = pl.DataFrame({
...     "changed_at": [datetime(2026, 11, 18, 9, 50, tzinfo=UTC)], "author": ["ana"],
...     "entity_type": ["traffic_source"], "entity_id": ["t1"], "entity_name": ["Propeller"],
...     "action": ["updated"], "old_value": ['{"postback_url": "a?cid={clickid}"}'],
...     "new_value": ['{"postback_url": "a?cid={click_id}"}']})
>>> incident = {"scope": "traffic_source", "id": "t1", "top_error_kind": "unreplaced_macro",
...             "start": datetime(2026, 11, 18, 10, 2, tzinfo=UTC), "end": datetime(2026, 11, 18, 12, 0, tzinfo=UTC),
...             "error_rate_before": 0.02}
>>> found = explain_incident(incident, activity, {"traffic_source": {"t1"}})
>>> found["suspected_change"]["author"], found["suspects"][0]["minutes_before"], found["suspects"][0]["family"]
('ana', 12.0, 'tracking')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import polars as pl

from cfanalytics.redaction import redact

#: How far before an incident's start a change may be a suspect.
CHANGE_LOOKBACK: Final = timedelta(hours=24)
#: How far after an incident's end a change may be what resolved it.
FIX_LOOKAHEAD: Final = timedelta(hours=1)
#: An error rate within this much of the baseline counts as recovered.
MIN_RISE: Final = 0.2
#: Hours of evidence on each side of a change.
EVIDENCE_HOURS: Final = 3

#: What a changed field is about, by its name (or by its value when the name says nothing).
FAMILIES: Final = {
    "credential": re.compile(
        r"(?i)token|secret|api.?key|password|credential|oauth|auth|connect|status|access|expire|pixel.?id|dataset"
    ),
    "tracking": re.compile(
        r"(?i)postback|url|macro|click.?id|sub.?id|external.?id|gclid|fbclid|ttclid|msclkid|param|pixel|event|"
        r"s2s|capi|conversion.?api|tracking|mapping|\{|%7b"
    ),
    "volume": re.compile(r"(?i)budget|bid|cap\b|caps|cpc|cpm|cpa|spend|limit|weight|share|volume|traffic|pacing"),
}
#: The change families that can cause each error kind.
EXPLAINS: Final[dict[str, frozenset[str]]] = {
    "unreplaced_macro": frozenset({"tracking"}),
    "missing_click_id": frozenset({"tracking"}),
    "bad_request": frozenset({"tracking", "credential"}),
    "duplicate": frozenset({"tracking"}),
    "time_window": frozenset({"tracking"}),
    "auth": frozenset({"credential", "integration"}),
    "rate_limit": frozenset({"volume"}),
    "other": frozenset({"tracking", "credential", "integration"}),
    "no_response": frozenset(),
    "server_error": frozenset(),
}
#: How close an entity is to the incident's scope (lower ranks first).
ENTITY_RANK: Final = {"integration": 1, "traffic_source": 1, "campaign": 2, "flow": 3, "offer": 4, "lander": 4}
CHANGE_KEYS: Final = ("changed_at", "author", "entity_type", "entity_id", "entity_name", "action")
_SHOWN: Final = 120


def _fields(old: str | None, new: str | None) -> list[dict[str, Any]]:
    """The fields an edit changed, old → new (values redacted and shortened)."""

    def parse(text: str | None) -> dict[str, Any]:
        if text is None or text == "":
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {"value": text}
        return value if isinstance(value, dict) else {"value": value}

    def shown(value: Any) -> Any:
        if value is None or isinstance(value, int | float | bool):
            return value
        text = redact(value if isinstance(value, str) else json.dumps(value)) or ""
        return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"

    before, after = parse(old), parse(new)
    keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    return [{"field": k, "old": shown(before.get(k)), "new": shown(after.get(k))} for k in keys]


def change_family(entity_type: str, fields: Sequence[Mapping[str, Any]]) -> str:
    """What an edit is about: ``credential``, ``tracking``, ``volume``, ``integration`` or ``other``.

    >>> change_family("campaign", [{"field": "daily_budget", "old": 200, "new": 800}])
    'volume'
    >>> change_family("integration", [{"field": "status", "old": "expired", "new": "connected"}])
    'credential'
    """
    names = " ".join(str(f["field"]) for f in fields)
    for family, pattern in FAMILIES.items():
        if pattern.search(names):
            return family
    values = " ".join(str(f.get(side)) for f in fields for side in ("old", "new"))
    for family in ("tracking", "credential"):
        if FAMILIES[family].search(values):
            return family
    return "integration" if entity_type == "integration" else "other"


def _explains(kind: str | None, family: str, entity_type: str) -> bool:
    can = EXPLAINS.get(kind or "other", EXPLAINS["other"])
    return family in can or (entity_type == "integration" and "integration" in can)


def _window(hourly: pl.DataFrame | None, lo: datetime, hi: datetime) -> tuple[int, int]:
    if hourly is None or hourly.height == 0:
        return 0, 0
    part = hourly.filter((pl.col("hour") >= lo) & (pl.col("hour") < hi))
    return int(part.get_column("postbacks").sum()), int(part.get_column("errors").sum())


def _evidence(hourly: pl.DataFrame | None, at: datetime) -> dict[str, Any]:
    hour = at.replace(minute=0, second=0, microsecond=0)
    span = timedelta(hours=EVIDENCE_HOURS)
    n0, e0 = _window(hourly, hour - span, hour)
    n1, e1 = _window(hourly, hour, hour + span)
    return {
        "postbacks_per_hour_before": round(n0 / EVIDENCE_HOURS, 2),
        "postbacks_per_hour_after": round(n1 / EVIDENCE_HOURS, 2),
        "error_rate_before": e0 / n0 if n0 else None,
        "error_rate_after": e1 / n1 if n1 else None,
    }


def _candidates(activity: pl.DataFrame, related: Mapping[str, set[str]], lo: datetime, hi: datetime) -> pl.DataFrame:
    keep = pl.lit(False)
    for entity_type, ids in related.items():
        if ids:
            keep = keep | ((pl.col("entity_type") == entity_type) & pl.col("entity_id").is_in(sorted(ids)))
    return activity.filter(pl.col("changed_at").is_between(lo, hi) & keep).sort("changed_at")


def _row_change(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in CHANGE_KEYS}


def explain_incident(
    incident: Mapping[str, Any],
    activity: pl.DataFrame,
    related: Mapping[str, set[str]],
    hourly: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Ranked ``suspects``, the ``suspected_change`` (or None) and ``resolved_by`` (or None) of one incident.

    ``related`` maps entity types (``traffic_source``, ``integration``, ``campaign``, ``flow``, ``offer``,
    ``lander``) to the ids the incident's traffic belongs to; ``hourly`` holds the scope's ``hour``,
    ``postbacks`` and ``errors`` (UTC hours) for the evidence and the recovery check.
    """
    start = incident["start"]
    kind = incident.get("top_error_kind")
    own = (incident["scope"], incident["id"])
    if start is None or activity.height == 0:
        return {"suspects": [], "suspected_change": None, "resolved_by": None}
    suspects: list[dict[str, Any]] = []
    for row in _candidates(activity, related, start - CHANGE_LOOKBACK, start).iter_rows(named=True):
        fields = _fields(row["old_value"], row["new_value"])
        family = change_family(row["entity_type"], fields)
        suspects.append(
            {
                **_row_change(row),
                "minutes_before": round((start - row["changed_at"]).total_seconds() / 60, 1),
                "family": family,
                "explains": _explains(kind, family, row["entity_type"]),
                "own_entity": (row["entity_type"], row["entity_id"]) == own,
                "fields": fields,
                **_evidence(hourly, row["changed_at"]),
            }
        )
    suspects.sort(
        key=lambda s: (
            not s["explains"],
            not s["own_entity"],
            ENTITY_RANK.get(s["entity_type"], 5),
            s["minutes_before"],
        )
    )
    for rank, suspect in enumerate(suspects, 1):
        suspect["rank"] = rank
    best = next((s for s in suspects if s["explains"]), None)
    return {
        "suspects": suspects,
        "suspected_change": {k: best[k] for k in CHANGE_KEYS} if best else None,
        "resolved_by": _resolved_by(incident, activity, related, hourly),
    }


def _resolved_by(
    incident: Mapping[str, Any], activity: pl.DataFrame, related: Mapping[str, set[str]], hourly: pl.DataFrame | None
) -> dict[str, Any] | None:
    start, end, kind = incident["start"], incident["end"], incident.get("top_error_kind")
    if end is None:
        return None
    baseline = incident.get("error_rate_before") or 0.0
    best: tuple[float, dict[str, Any]] | None = None
    for row in _candidates(activity, related, start, end + FIX_LOOKAHEAD).iter_rows(named=True):
        fields = _fields(row["old_value"], row["new_value"])
        if not _explains(kind, change_family(row["entity_type"], fields), row["entity_type"]):
            continue
        after = _evidence(hourly, row["changed_at"] + timedelta(hours=1))["error_rate_after"]
        if hourly is not None and (after is None or after > baseline + MIN_RISE):
            continue
        distance = abs((row["changed_at"] - end).total_seconds())
        if best is None or distance < best[0]:
            best = (distance, {**_row_change(row), "error_rate_after": after})
    return best[1] if best else None


def scope_hourly(postbacks: pl.DataFrame | pl.LazyFrame, column: str, scope_id: str) -> pl.DataFrame:
    """Hourly ``postbacks`` and ``errors`` (UTC hours) of one scope, for :func:`explain_incident`.

    >>> from datetime import datetime, UTC
    >>> pb = pl.DataFrame({"integration_id": ["i1", "i1", "i2"], "is_error": [True, False, True],
    ...     "postback_time": [datetime(2026, 1, 1, 10, 5, tzinfo=UTC)] * 3})
    >>> scope_hourly(pb, "integration_id", "i1").select("postbacks", "errors").row(0)
    (2, 1)
    """
    return (
        postbacks.lazy()
        .filter(pl.col(column) == scope_id)
        .group_by(pl.col("postback_time").dt.truncate("1h").alias("hour"))
        .agg(pl.len().alias("postbacks"), pl.col("is_error").sum().cast(pl.Int64).alias("errors"))
        .collect()
        .sort("hour")
    )


__all__ = ["CHANGE_LOOKBACK", "EXPLAINS", "FIX_LOOKAHEAD", "change_family", "explain_incident", "scope_hourly"]
