"""Incidents: hours when a traffic source or integration suddenly fails, and the change before.

Default rule (docs/contract.md §6), per scope — each traffic source, each integration —
over hourly UTC buckets:

- baseline = the scope's error rate over the preceding 7 days, excluding hours
  already flagged, smoothed toward the account's overall error rate (a prior
  worth :data:`PRIOR_WEIGHT` postbacks), so a scope with little history is not
  judged on a handful of rows;
- an hour is flagged when it has n ≥ 10 postbacks, its rate ≥ baseline + 0.2 and
  a one-sided binomial test gives p < 1e-4;
- flagged hours with gaps ≤ 1 h merge into one incident; ``start`` is the first
  failing postback of its first flagged hour, ``end`` the last of its last;
- a traffic source's incident made of the same failing postbacks as one of its
  integration's is reported once, at integration scope;
- a scope failing from its first hour has ``scope_state = "always_failing"``.

The suspected change is the latest activity row in [start − 24 h, start] that
edits the scope's traffic source or integration, or a campaign sending its
traffic whose old/new values touch postback or tracking fields. None → null.

``incident_id`` hashes the scope, id and first flagged hour, so a scheduled job
recognises an incident it has reported before.

>>> import tempfile, cfanalytics as cf
>>> incidents(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")).height
0
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import xxhash

from cfanalytics.filters import LogFilter

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

MIN_POSTBACKS: Final = 10
MIN_RISE: Final = 0.2
MAX_P: Final = 1e-4
BASELINE_DAYS: Final = 7
PRIOR_WEIGHT: Final = 20.0
MERGE_GAP: Final = timedelta(hours=2)  # flagged hours at most one quiet hour apart merge
CHANGE_LOOKBACK: Final = timedelta(hours=24)
#: Old/new values of a campaign edit that touch postback or tracking fields.
POSTBACK_FIELDS: Final = (
    r"(?i)postback|token|pixel|event|tracking|s2s|capi|conversion.?api|click.?id|sub.?id|external.?id|"
    r"gclid|fbclid|ttclid|macro|param|url"
)

SCOPES: Final = {"integration": "integration_id", "traffic_source": "traffic_source_id"}

INCIDENT_SCHEMA: Final = {
    "incident_id": pl.String,
    "scope": pl.String,
    "id": pl.String,
    "name": pl.String,
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "error_rate_before": pl.Float64,
    "error_rate_during": pl.Float64,
    "postbacks": pl.Int64,
    "errors": pl.Int64,
    "top_error_kind": pl.String,
    "scope_state": pl.String,
    "open": pl.Boolean,
    "suspected_change": pl.Struct(
        {
            "changed_at": pl.Datetime("us", "UTC"),
            "author": pl.String,
            "entity_type": pl.String,
            "entity_id": pl.String,
            "entity_name": pl.String,
            "action": pl.String,
        }
    ),
}


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), computed in log space.

    >>> round(binomial_sf(2, 2, 0.5), 4)
    0.25
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    p = min(max(p, 1e-9), 1 - 1e-9)
    lp, lq = math.log(p), math.log1p(-p)
    lg = math.lgamma
    terms = [lg(n + 1) - lg(i + 1) - lg(n - i + 1) + i * lp + (n - i) * lq for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


@dataclass
class _Hour:
    hour: datetime
    n: int
    e: int
    first_error: datetime | None
    last_error: datetime | None


def _flag_hours(hours: list[_Hour], prior: float) -> tuple[list[tuple[_Hour, float]], bool]:
    """Flagged hours of one scope with their baseline; and whether the first hour was flagged."""
    window: deque[_Hour] = deque()
    n_sum = e_sum = 0
    flagged: list[tuple[_Hour, float]] = []
    first_flagged = False
    for i, h in enumerate(hours):
        while window and window[0].hour < h.hour - timedelta(days=BASELINE_DAYS):
            old = window.popleft()
            n_sum -= old.n
            e_sum -= old.e
        baseline = (e_sum + PRIOR_WEIGHT * prior) / (n_sum + PRIOR_WEIGHT)
        rate = h.e / h.n if h.n else 0.0
        if h.n >= MIN_POSTBACKS and rate >= baseline + MIN_RISE and binomial_sf(h.e, h.n, baseline) < MAX_P:
            flagged.append((h, baseline))
            first_flagged = first_flagged or i == 0
            continue
        window.append(h)
        n_sum += h.n
        e_sum += h.e
    return flagged, first_flagged


def _merge(flagged: list[tuple[_Hour, float]]) -> list[list[tuple[_Hour, float]]]:
    groups: list[list[tuple[_Hour, float]]] = []
    for item in flagged:
        if groups and item[0].hour - groups[-1][-1][0].hour <= MERGE_GAP:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def incident_id(scope: str, scope_id: str, first_hour: datetime) -> str:
    """Stable id of an incident: scope, id and first flagged hour (UTC)."""
    text = f"inc1|{scope}|{scope_id}|{first_hour:%Y-%m-%dT%H}"
    return "inc-" + xxhash.xxh3_64_hexdigest(text.encode())


def history_filter(store: LogStore, where: LogFilter | None = None) -> LogFilter:
    """The filter :func:`incidents` reads postbacks with: ``where`` extended back by the baseline."""
    flt = where or LogFilter()
    lo, hi = flt.time_bounds(store.timezone)
    return flt.replace(start=(lo - timedelta(days=BASELINE_DAYS)) if lo else None, end=hi)


def incidents(store: LogStore, where: LogFilter | None = None, *, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """Incidents overlapping the filter's range, sorted by errors descending, then scope and id.

    ``frame`` lets callers pass the already collected ``postbacks(store, history_filter(store, where))``.
    """
    from cfanalytics.diagnose.frames import names, postbacks

    flt = where or LogFilter()
    lo, hi = flt.time_bounds(store.timezone)
    source = frame.lazy() if frame is not None else postbacks(store, history_filter(store, flt))
    pb = source.select(
        "postback_id",
        "postback_time",
        "is_error",
        "error_kind",
        "traffic_source_id",
        "integration_id",
        "campaign_id",
    ).collect()
    if pb.height == 0:
        return pl.DataFrame(schema=INCIDENT_SCHEMA)
    prior = float(pb.get_column("is_error").mean() or 0.0)
    last_hour = pb.get_column("postback_time").max()
    found: list[dict[str, Any]] = []
    for scope, column in SCOPES.items():
        found.extend(_scope_incidents(pb, scope, column, prior, last_hour))
    found = _dedupe(found)
    found = [i for i in found if (lo is None or i["end"] >= lo) and (hi is None or i["start"] < hi)]
    changes = _activity(store)
    links = _links(store, pb)
    display = {scope: dict(names(store, scope).iter_rows()) for scope in SCOPES}
    for inc in found:
        inc["suspected_change"] = _suspected_change(inc, changes, links)
        inc["name"] = display[inc["scope"]].get(inc["id"])
        inc.pop("_errors")
    frame = pl.DataFrame(found, schema=INCIDENT_SCHEMA) if found else pl.DataFrame(schema=INCIDENT_SCHEMA)
    return frame.sort(["errors", "scope", "id", "start"], descending=[True, False, False, False])


def _scope_incidents(
    pb: pl.DataFrame, scope: str, column: str, prior: float, last_time: datetime
) -> list[dict[str, Any]]:
    hourly = (
        pb.filter(pl.col(column).is_not_null())
        .with_columns(pl.col("postback_time").dt.truncate("1h").alias("hour"))
        .group_by(column, "hour")
        .agg(
            pl.len().alias("n"),
            pl.col("is_error").sum().cast(pl.Int64).alias("e"),
            pl.col("postback_time").filter(pl.col("is_error")).min().alias("first_error"),
            pl.col("postback_time").filter(pl.col("is_error")).max().alias("last_error"),
        )
        .sort(column, "hour")
    )
    out: list[dict[str, Any]] = []
    last_hour = last_time.replace(minute=0, second=0, microsecond=0)
    for (scope_id,), rows in hourly.group_by(column, maintain_order=True):
        hours = [
            _Hour(r["hour"], r["n"], r["e"], r["first_error"], r["last_error"]) for r in rows.iter_rows(named=True)
        ]
        flagged, first_flagged = _flag_hours(hours, prior)
        for group in _merge(flagged):
            first, last = group[0][0], group[-1][0]
            span = pb.filter(
                (pl.col(column) == scope_id)
                & (pl.col("postback_time") >= first.hour)
                & (pl.col("postback_time") < last.hour + timedelta(hours=1))
            )
            errors = span.filter(pl.col("is_error"))
            kinds = errors.group_by("error_kind").len().sort(["len", "error_kind"], descending=[True, False])
            out.append(
                {
                    "incident_id": incident_id(scope, str(scope_id), first.hour),
                    "scope": scope,
                    "id": str(scope_id),
                    "name": None,
                    "start": first.first_error,
                    "end": last.last_error,
                    "error_rate_before": group[0][1],
                    "error_rate_during": errors.height / span.height if span.height else None,
                    "postbacks": span.height,
                    "errors": errors.height,
                    "top_error_kind": kinds.item(0, "error_kind") if kinds.height else None,
                    "scope_state": "always_failing" if (first_flagged and first is hours[0]) else "regressed",
                    "open": last.hour >= last_hour - timedelta(hours=1),
                    "_errors": set(errors.get_column("postback_id").to_list()),
                }
            )
    return out


def _dedupe(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop a traffic-source incident whose failing postbacks are (nearly) those of an integration incident."""
    integ = [i for i in found if i["scope"] == "integration"]
    keep: list[dict[str, Any]] = []
    for inc in found:
        if inc["scope"] == "traffic_source":
            mine = inc["_errors"]
            if any(len(mine & o["_errors"]) >= 0.9 * max(len(mine), len(o["_errors"])) for o in integ):
                continue
        keep.append(inc)
    return keep


def _activity(store: LogStore) -> pl.DataFrame:
    return (
        store.scan("activity")
        .select("changed_at", "author", "entity_type", "entity_id", "entity_name", "action", "old_value", "new_value")
        .collect()
        .sort("changed_at")
    )


@dataclass
class _Links:
    integrations_of_ts: dict[str, set[str]]
    ts_of_integration: dict[str, set[str]]
    campaigns_of_ts: dict[str, set[str]]


def _links(store: LogStore, pb: pl.DataFrame) -> _Links:
    pairs = pb.filter(pl.col("integration_id").is_not_null() & pl.col("traffic_source_id").is_not_null())
    pairs = pairs.select("traffic_source_id", "integration_id").unique()
    its: dict[str, set[str]] = {}
    tsi: dict[str, set[str]] = {}
    for ts, integ in pairs.iter_rows():
        its.setdefault(ts, set()).add(integ)
        tsi.setdefault(integ, set()).add(ts)
    camp = (
        store.scan("visits")
        .select("traffic_source_id", "campaign_id")
        .filter(pl.col("traffic_source_id").is_not_null())
        .unique()
        .collect()
    )
    cts: dict[str, set[str]] = {}
    for ts, cmp in camp.iter_rows():
        cts.setdefault(ts, set()).add(cmp)
    return _Links(its, tsi, cts)


def _suspected_change(inc: dict[str, Any], changes: pl.DataFrame, links: _Links) -> dict[str, Any] | None:
    start: datetime | None = inc["start"]
    if start is None or changes.height == 0:
        return None
    if inc["scope"] == "traffic_source":
        sources = {inc["id"]}
        integrations = links.integrations_of_ts.get(inc["id"], set())
    else:
        integrations = {inc["id"]}
        sources = links.ts_of_integration.get(inc["id"], set())
    campaigns = set().union(*(links.campaigns_of_ts.get(ts, set()) for ts in sources)) if sources else set()
    touches = pl.concat_str([pl.col("old_value").fill_null(""), pl.col("new_value").fill_null("")]).str.contains(
        POSTBACK_FIELDS
    )
    window = changes.filter(pl.col("changed_at").is_between(start - CHANGE_LOOKBACK, start))
    hits = window.filter(
        ((pl.col("entity_type") == "traffic_source") & pl.col("entity_id").is_in(list(sources)))
        | ((pl.col("entity_type") == "integration") & pl.col("entity_id").is_in(list(integrations)))
        | ((pl.col("entity_type") == "campaign") & pl.col("entity_id").is_in(list(campaigns)) & touches)
    )
    if hits.height == 0:
        return None
    row = hits.sort("changed_at").row(-1, named=True)
    keys = ("changed_at", "author", "entity_type", "entity_id", "entity_name", "action")
    return {k: row[k] for k in keys}


def activity_log_until(store: LogStore) -> datetime | None:
    """Time of the last activity row loaded (the activity log has no API: it may lag behind)."""
    return store.scan("activity").select(pl.col("changed_at").max()).collect().item()
