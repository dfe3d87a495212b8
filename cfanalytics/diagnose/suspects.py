"""Causes and fixes of an incident: ranked suspects from the activity log, and the change that resolved it.

A pure function of frames: one incident (``scope``, ``id``, ``start``, ``end``,
``top_error_kind``), the activity log, the entities the incident's traffic belongs
to, and the scope's hourly postback counts.

- **Suspects** are the edits in [start − 24 h, start] of the incident's own entity
  and of the entities its postbacks' traffic belongs to (traffic source,
  integration, campaigns, flows, offers, landers). Each carries its evidence: how
  long before the start, which fields changed (old → new, redacted, as text), and
  the scope's volume, error rate and most frequent error kind in the
  :data:`EVIDENCE_HOURS` hours before and after it, with whether the volume
  (by :data:`VOLUME_FACTOR`) or the error mix (rate by ``MIN_RISE``, or another
  top kind) changed.
- A suspect **explains** the failure when the kind of change can cause the kind of
  error: a tracking change (postback URL, macro, click-id parameter, pixel, event
  mapping) for unreplaced macros, missing click ids, bad requests and duplicates; a
  credential change (token, key, connection status) or any edit of the integration
  for auth errors; a volume change (budget, bid, cap) that raises it for rate limits.
  Receiver-side failures (time-outs, 5xx) are nobody's edit.
- Suspects rank: those that explain the failure first, then the incident's own
  entity, then those after which the volume or error mix changed, then the
  entities closest to the scope (integration, traffic source, campaign, flow,
  offer/lander), then the latest.
- **suspected_change** is the best-ranked suspect that explains the failure (the
  incident's own entity first, then the latest), or null: an expired token or a
  receiver that times out is nobody's edit, and a budget raise before a time-out
  is a decoy, not a cause.
- **resolved_by** is a change in [start, end + 1 h] on the same entities of a kind
  that can fix the failure (for a rate limit: a volume change that lowers it) and
  after which the scope's error rate came back within ``MIN_RISE`` of its
  baseline; the one closest to the end wins.

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
import math
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
#: An error rate within this much of the baseline counts as recovered; a move this large changes the error mix.
MIN_RISE: Final = 0.2
#: Hours of evidence on each side of a change.
EVIDENCE_HOURS: Final = 3
#: Postbacks per hour after a change this many times those before (or fewer by as much): the volume changed.
VOLUME_FACTOR: Final = 1.5
#: Failing postbacks each side needs before a different most frequent error kind counts as a change of mix.
MIN_MIX_ERRORS: Final = 5

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

_TIME: Final = pl.Datetime("us", "UTC")
#: ``suspected_change``: the activity row, as stored.
CHANGE_SCHEMA: Final = pl.Struct(
    {
        "changed_at": _TIME,
        "author": pl.String(),
        "entity_type": pl.String(),
        "entity_id": pl.String(),
        "entity_name": pl.String(),
        "action": pl.String(),
    }
)
#: ``resolved_by``: the activity row and the scope's error rate in the hours after it.
RESOLVED_SCHEMA: Final = pl.Struct({**dict(CHANGE_SCHEMA.to_schema()), "error_rate_after": pl.Float64()})
#: One of ``suspects``: the activity row, its rank, what it changed and the evidence around it.
SUSPECT_SCHEMA: Final = pl.Struct(
    {
        "rank": pl.Int64(),
        **dict(CHANGE_SCHEMA.to_schema()),
        "minutes_before": pl.Float64(),
        "family": pl.String(),
        "direction": pl.String(),
        "explains": pl.Boolean(),
        "own_entity": pl.Boolean(),
        "fields": pl.List(pl.Struct({"field": pl.String(), "old": pl.String(), "new": pl.String()})),
        "postbacks_per_hour_before": pl.Float64(),
        "postbacks_per_hour_after": pl.Float64(),
        "error_rate_before": pl.Float64(),
        "error_rate_after": pl.Float64(),
        "top_error_kind_before": pl.String(),
        "top_error_kind_after": pl.String(),
        "volume_changed": pl.Boolean(),
        "error_mix_changed": pl.Boolean(),
    }
)


def _fields(old: str | None, new: str | None) -> list[dict[str, Any]]:
    """The fields an edit changed, old → new (values as text, redacted and shortened)."""

    def parse(text: str | None) -> dict[str, Any]:
        if text is None or text == "":
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {"value": text}
        return value if isinstance(value, dict) else {"value": value}

    def shown(value: Any) -> str | None:
        if value is None:
            return None
        text = redact(value if isinstance(value, str) else json.dumps(value)) or ""
        return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"

    before, after = parse(old), parse(new)
    keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    return [{"field": str(k), "old": shown(before.get(k)), "new": shown(after.get(k))} for k in keys]


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


def change_direction(fields: Sequence[Mapping[str, Any]]) -> str | None:
    """``up`` or ``down`` when the volume fields an edit changed all moved one way (numbers), else None.

    >>> change_direction([{"field": "daily_budget", "old": "200", "new": "800"}])
    'up'
    >>> change_direction([{"field": "bid", "old": 0.5, "new": 0.4}, {"field": "name", "old": "a", "new": "b"}])
    'down'
    >>> change_direction([{"field": "daily_budget", "old": None, "new": "800"}]) is None
    True
    """
    moves: set[str] = set()
    for f in fields:
        if not FAMILIES["volume"].search(str(f["field"])):
            continue
        try:
            old, new = float(f["old"]), float(f["new"])
        except (TypeError, ValueError):
            continue
        if math.isfinite(old) and math.isfinite(new) and old != new:
            moves.add("up" if new > old else "down")
    return moves.pop() if len(moves) == 1 else None


def _explains(kind: str | None, family: str, entity_type: str, direction: str | None, *, fixes: bool = False) -> bool:
    """Whether a change of ``family`` can cause (or, with ``fixes``, end) errors of ``kind``."""
    can = EXPLAINS.get(kind or "other", EXPLAINS["other"])
    if family == "volume" and direction is not None and direction != ("down" if fixes else "up"):
        return False  # more traffic causes a rate limit, less ends it; not the other way round
    return family in can or (entity_type == "integration" and "integration" in can)


def _window(hourly: pl.DataFrame | None, lo: datetime, hi: datetime) -> tuple[int, int, str | None]:
    """Postbacks, failing postbacks and the most frequent error kind of ``hourly`` in [lo, hi)."""
    if hourly is None or hourly.height == 0:
        return 0, 0, None
    part = hourly.filter((pl.col("hour") >= lo) & (pl.col("hour") < hi))
    n, e = int(part.get_column("postbacks").sum()), int(part.get_column("errors").sum())
    top = None
    if e and "error_kind" in part.columns:
        kinds = (
            part.filter(pl.col("error_kind").is_not_null())
            .group_by("error_kind")
            .agg(pl.col("errors").sum())
            .sort(["errors", "error_kind"], descending=[True, False])
        )
        top = kinds.item(0, "error_kind") if kinds.height and e >= MIN_MIX_ERRORS else None
    return n, e, top


def _evidence(hourly: pl.DataFrame | None, at: datetime) -> dict[str, Any]:
    hour = at.replace(minute=0, second=0, microsecond=0)
    span = timedelta(hours=EVIDENCE_HOURS)
    n0, e0, k0 = _window(hourly, hour - span, hour)
    n1, e1, k1 = _window(hourly, hour, hour + span)
    r0, r1 = (e0 / n0 if n0 else None), (e1 / n1 if n1 else None)
    return {
        "postbacks_per_hour_before": round(n0 / EVIDENCE_HOURS, 2),
        "postbacks_per_hour_after": round(n1 / EVIDENCE_HOURS, 2),
        "error_rate_before": r0,
        "error_rate_after": r1,
        "top_error_kind_before": k0,
        "top_error_kind_after": k1,
        "volume_changed": (n0 + n1 > 0) and (n1 >= VOLUME_FACTOR * n0 or n0 >= VOLUME_FACTOR * n1),
        "error_mix_changed": (r0 is not None and r1 is not None and abs(r1 - r0) >= MIN_RISE)
        or (k0 is not None and k1 is not None and k0 != k1),
    }


def _candidates(activity: pl.DataFrame, related: Mapping[str, set[str]], lo: datetime, hi: datetime) -> pl.DataFrame:
    keep = pl.lit(False)
    for entity_type, ids in related.items():
        if ids:
            keep = keep | ((pl.col("entity_type") == entity_type) & pl.col("entity_id").is_in(sorted(ids)))
    return activity.filter(pl.col("changed_at").is_between(lo, hi) & keep).sort("changed_at", "entity_id")


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
    ``postbacks`` and ``errors`` (UTC hours; with ``error_kind``, one row per hour and kind:
    :func:`scope_hourly`) for the evidence and the recovery check.
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
        direction = change_direction(fields) if family == "volume" else None
        suspects.append(
            {
                "rank": 0,
                **_row_change(row),
                "minutes_before": round((start - row["changed_at"]).total_seconds() / 60, 1),
                "family": family,
                "direction": direction,
                "explains": _explains(kind, family, row["entity_type"], direction),
                "own_entity": (row["entity_type"], row["entity_id"]) == own,
                "fields": fields,
                **_evidence(hourly, row["changed_at"]),
            }
        )
    suspects.sort(
        key=lambda s: (
            not s["explains"],
            not s["own_entity"],
            not (s["volume_changed"] or s["error_mix_changed"]),
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
        family = change_family(row["entity_type"], fields)
        direction = change_direction(fields) if family == "volume" else None
        if not _explains(kind, family, row["entity_type"], direction, fixes=True):
            continue
        after = _evidence(hourly, row["changed_at"] + timedelta(hours=1))["error_rate_after"]
        if hourly is not None and (after is None or after > baseline + MIN_RISE):
            continue
        distance = abs((row["changed_at"] - end).total_seconds())
        if best is None or distance < best[0]:
            best = (distance, {**_row_change(row), "error_rate_after": after})
    return best[1] if best else None


def scope_hourly(postbacks: pl.DataFrame | pl.LazyFrame, column: str, scope_id: str) -> pl.DataFrame:
    """Hourly ``postbacks`` and ``errors`` (UTC hours) of one scope, for :func:`explain_incident`; one row per
    hour and ``error_kind`` when the postbacks have that column (null for the rows that did not fail).

    >>> from datetime import datetime, UTC
    >>> pb = pl.DataFrame({"integration_id": ["i1", "i1", "i2"], "is_error": [True, False, True],
    ...     "error_kind": ["auth", None, "auth"], "postback_time": [datetime(2026, 1, 1, 10, 5, tzinfo=UTC)] * 3})
    >>> scope_hourly(pb, "integration_id", "i1").select("error_kind", "postbacks", "errors").rows()
    [(None, 1, 0), ('auth', 1, 1)]
    """
    frame = postbacks.lazy()
    keys = [pl.col("postback_time").dt.truncate("1h").alias("hour")]
    if "error_kind" in frame.collect_schema().names():
        keys.append(pl.col("error_kind"))
    return (
        frame.filter(pl.col(column) == scope_id)
        .group_by(*keys)
        .agg(pl.len().cast(pl.Int64).alias("postbacks"), pl.col("is_error").sum().cast(pl.Int64).alias("errors"))
        .collect()
        .sort("hour", *(["error_kind"] if len(keys) > 1 else []), nulls_last=False)
    )


__all__ = [
    "CHANGE_LOOKBACK",
    "CHANGE_SCHEMA",
    "EXPLAINS",
    "FIX_LOOKAHEAD",
    "RESOLVED_SCHEMA",
    "SUSPECT_SCHEMA",
    "change_direction",
    "change_family",
    "explain_incident",
    "scope_hourly",
]
