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

Each incident is explained by :func:`~cfanalytics.diagnose.suspects.explain_incident`
over the entities its traffic belongs to: the scope's traffic sources and
integrations, the campaigns of its postbacks in the incident's hours, and the
flows, offers and landers of those campaigns' visits (``links``). It gets
``suspects`` (ranked edits of those entities in [start − 24 h, start] with their
evidence), ``suspected_change`` (the best-ranked suspect whose kind of change can
cause the incident's top error kind, else null) and ``resolved_by`` (the change
after which the error rate came back to its baseline, else null).

``incident_id`` hashes the scope, id and first flagged hour, so a scheduled job
recognizes an incident it has reported before.

The functions take frames (the enriched postback history, the activity log, the
traffic sources' campaigns, names) and never read a store.

>>> import polars as pl
>>> from cfanalytics.diagnose.names import Names
>>> history = pl.DataFrame(schema={"postback_id": pl.String, "postback_time": pl.Datetime("us", "UTC"),
...     "is_error": pl.Boolean, "error_kind": pl.String, "traffic_source_id": pl.String,
...     "integration_id": pl.String, "campaign_id": pl.String})
>>> find_incidents(history, pl.DataFrame(), Names.empty(), pl.DataFrame()).height
0
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import narwhals.stable.v2 as nw
import polars as pl
import xxhash

from cfanalytics._portable import one_of
from cfanalytics.diagnose.names import Names
from cfanalytics.diagnose.suspects import (
    CHANGE_SCHEMA,
    RESOLVED_SCHEMA,
    SUSPECT_SCHEMA,
    explain_incident,
)
from cfanalytics.engines import fetch
from cfanalytics.filters import LogFilter

MIN_POSTBACKS: Final = 10
MIN_RISE: Final = 0.2
MAX_P: Final = 1e-4
BASELINE_DAYS: Final = 7
PRIOR_WEIGHT: Final = 20.0
MERGE_GAP: Final = timedelta(hours=2)  # flagged hours at most one quiet hour apart merge
#: Entity types of the activity log → the column of the traffic links (visits) naming them.
LINKED_ENTITIES: Final = {"flow": "flow_id", "offer": "offer_id", "lander": "landing_id"}

SCOPES: Final = {"integration": "integration_id", "traffic_source": "traffic_source_id"}

INCIDENT_SCHEMA: Final = pl.Schema(
    {
        "incident_id": pl.String(),
        "scope": pl.String(),
        "id": pl.String(),
        "name": pl.String(),
        "start": pl.Datetime("us", "UTC"),
        "end": pl.Datetime("us", "UTC"),
        "error_rate_before": pl.Float64(),
        "error_rate_during": pl.Float64(),
        "postbacks": pl.Int64(),
        "errors": pl.Int64(),
        "top_error_kind": pl.String(),
        "scope_state": pl.String(),
        "open": pl.Boolean(),
        "suspects": pl.List(SUSPECT_SCHEMA),
        "suspected_change": CHANGE_SCHEMA,
        "resolved_by": RESOLVED_SCHEMA,
    }
)


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


def history_filter(where: LogFilter | None, timezone: str | None) -> LogFilter:
    """The filter incidents read postbacks with: ``where`` extended back by the baseline
    (``timezone``: the store's, for a filter without its own)."""
    where = where or LogFilter()
    lo, hi = where.time_bounds(timezone)
    return where.replace(start=(lo - timedelta(days=BASELINE_DAYS)) if lo else None, end=hi)


Window = tuple[datetime | None, datetime | None]


#: Columns of the enriched postback history :func:`find_incidents` reads.
HISTORY_COLUMNS: Final = (
    "postback_id",
    "postback_time",
    "is_error",
    "error_kind",
    "traffic_source_id",
    "integration_id",
    "campaign_id",
)


def incident_cube(history: Any) -> pl.DataFrame:
    """Postbacks (``n``), errors (``e``), postbacks with a known outcome (``known``), first and last failing
    postback time and last postback time per traffic source, integration, UTC hour and error kind: the one
    aggregate incidents need of the whole history, computed where the history is (Polars, or any engine of
    :mod:`cfanalytics.engines`), small enough to fetch.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    >>> rows = pl.DataFrame({"postback_time": [t, t], "is_error": [True, False], "error_kind": ["auth", None],
    ...     "traffic_source_id": ["t1", "t1"], "integration_id": [None, None]})
    >>> incident_cube(rows).select("error_kind", "n", "e").rows()
    [(None, 1, 0), ('auth', 1, 1)]
    """
    rows = nw.from_native(history.lazy() if isinstance(history, pl.DataFrame) else history)
    time = nw.col("postback_time")
    failed = nw.col("is_error").fill_null(value=False)
    cube = (
        rows.with_columns(time.dt.truncate("1h").alias("hour"))
        .group_by("traffic_source_id", "integration_id", "hour", "error_kind")
        .agg(
            nw.len().alias("n"),
            nw.col("is_error").cast(nw.Int64()).sum().alias("e"),
            nw.col("is_error").count().alias("known"),
            nw.when(failed).then(time).min().alias("first_error"),
            nw.when(failed).then(time).max().alias("last_error"),
            time.max().alias("last_time"),
        )
    )
    return (
        fetch(cube)
        .with_columns(pl.col("n", "e", "known").cast(pl.Int64).fill_null(0))
        .sort("traffic_source_id", "integration_id", "hour", "error_kind", nulls_last=False)
    )


def find_incidents(
    history: Any,
    activity: pl.DataFrame,
    names: Names,
    campaigns: Any,
    window: Window = (None, None),
) -> pl.DataFrame:
    """Incidents in the enriched postback ``history`` overlapping ``window`` (UTC ``[start, end)``, open
    ends allowed), sorted by errors descending, then scope and id.

    ``history`` should reach :data:`BASELINE_DAYS` before the window (:func:`history_filter`): a
    Polars frame, or a narwhals frame of any engine, of which only :func:`incident_cube` and the
    rows of the flagged hours are read; ``activity`` is the activity log sorted by time (suspects),
    ``campaigns`` the distinct ``traffic_source_id``, ``campaign_id`` (and, when present, ``flow_id``,
    ``offer_id``, ``landing_id``) of the visits (:func:`~cfanalytics.diagnose.frames.campaign_links`; a
    lazy frame is read only when there are incidents, and only for their traffic sources), ``names``
    label the scopes.
    """
    lo, hi = window
    cube = incident_cube(history)
    if cube.height == 0:
        return pl.DataFrame(schema=INCIDENT_SCHEMA)
    known = int(cube.get_column("known").sum())
    prior = float(cube.get_column("e").sum()) / known if known else 0.0
    last_time = cube.get_column("last_time").max()
    assert isinstance(last_time, datetime)
    spans: list[dict[str, Any]] = []
    for scope, column in SCOPES.items():
        spans.extend(_flagged_spans(cube, scope, column, prior, last_time))
    found = _span_incidents(history, cube, spans)
    found = _dedupe(found)
    found = [i for i in found if (lo is None or i["end"] >= lo) and (hi is None or i["start"] < hi)]
    links = _links(cube, campaigns, found)
    for incident in found:
        hourly = _scope_hourly(cube, SCOPES[incident["scope"]], incident["id"])
        incident.update(explain_incident(incident, activity, _related(incident, links), hourly))
        incident["name"] = names.lookup(SCOPES[incident["scope"]]).get(incident["id"])
        incident.pop("_errors")
        incident.pop("_campaigns")
    frame = pl.DataFrame(found, schema=INCIDENT_SCHEMA) if found else pl.DataFrame(schema=INCIDENT_SCHEMA)
    return frame.sort(["errors", "scope", "id", "start"], descending=[True, False, False, False])


def _scope_hourly(cube: pl.DataFrame, column: str, scope_id: str) -> pl.DataFrame:
    """:func:`~cfanalytics.diagnose.suspects.scope_hourly` of one scope, from the cube."""
    return (
        cube.filter(pl.col(column) == scope_id)
        .group_by("hour", "error_kind")
        .agg(pl.col("n").sum().alias("postbacks"), pl.col("e").sum().alias("errors"))
        .sort("hour", "error_kind", nulls_last=False)
    )


def scope_changes(activity: pl.DataFrame, postbacks: pl.DataFrame) -> pl.DataFrame:
    """Activity rows on the traffic sources, integrations and campaigns of ``postbacks``.

    >>> changes = pl.DataFrame({"entity_type": ["campaign", "campaign"], "entity_id": ["c1", "c2"]})
    >>> postbacks = pl.DataFrame({"traffic_source_id": ["t1"], "integration_id": [None], "campaign_id": ["c2"]})
    >>> scope_changes(changes, postbacks).get_column("entity_id").to_list()
    ['c2']
    """
    if activity.height == 0:
        return activity

    def ids(column: str) -> list[str]:
        return postbacks.get_column(column).drop_nulls().unique().to_list()

    kind, entity = pl.col("entity_type"), pl.col("entity_id")
    return activity.filter(
        ((kind == "traffic_source") & entity.is_in(ids("traffic_source_id")))
        | ((kind == "integration") & entity.is_in(ids("integration_id")))
        | ((kind == "campaign") & entity.is_in(ids("campaign_id")))
    )


def scope_incidents(found: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """Incidents of the traffic sources and integrations of the failing postbacks ``errors``."""
    if found.height == 0:
        return found
    sources = errors.get_column("traffic_source_id").drop_nulls().unique().to_list()
    integrations = errors.get_column("integration_id").drop_nulls().unique().to_list()
    scope, ident = pl.col("scope"), pl.col("id")
    return found.filter(
        ((scope == "traffic_source") & ident.is_in(sources)) | ((scope == "integration") & ident.is_in(integrations))
    )


def _flagged_spans(
    cube: pl.DataFrame, scope: str, column: str, prior: float, last_time: datetime
) -> list[dict[str, Any]]:
    """The merged flagged hours of every ``column`` value (:func:`_flag_hours`, :func:`_merge`): the spans
    that become incidents, with what the cube tells of them."""
    hourly = (
        cube.filter(pl.col(column).is_not_null())
        .group_by(column, "hour")
        .agg(
            pl.col("n").sum(),
            pl.col("e").sum(),
            pl.col("first_error").min(),
            pl.col("last_error").max(),
        )
        .sort(column, "hour")
    )
    out: list[dict[str, Any]] = []
    last_hour = last_time.replace(minute=0, second=0, microsecond=0)
    for (scope_id,), scope_hours in hourly.group_by(column, maintain_order=True):
        hours = [
            _Hour(r["hour"], r["n"], r["e"], r["first_error"], r["last_error"])
            for r in scope_hours.iter_rows(named=True)
        ]
        flagged, first_flagged = _flag_hours(hours, prior)
        for group in _merge(flagged):
            first, last = group[0][0], group[-1][0]
            out.append(
                {
                    "scope": scope,
                    "column": column,
                    "id": str(scope_id),
                    "from": first.hour,
                    "to": last.hour + timedelta(hours=1),
                    "start": first.first_error,
                    "end": last.last_error,
                    "error_rate_before": group[0][1],
                    "scope_state": "always_failing" if (first_flagged and first is hours[0]) else "regressed",
                    "open": last.hour >= last_hour - timedelta(hours=1),
                }
            )
    return out


def _span_incidents(history: Any, cube: pl.DataFrame, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The incidents of flagged ``spans``: counts and top error kind from the cube; their failing postbacks'
    ids and their campaigns from the history's rows of those spans only (one read)."""
    if not spans:
        return []
    rows = nw.from_native(history.lazy() if isinstance(history, pl.DataFrame) else history)
    time = nw.col("postback_time")
    in_spans = nw.any_horizontal(
        *((nw.col(s["column"]) == s["id"]) & (time >= s["from"]) & (time < s["to"]) for s in spans),
        ignore_nulls=True,
    )
    span_rows = fetch(
        rows.filter(in_spans).select(
            "postback_id", "postback_time", "is_error", "campaign_id", *dict.fromkeys(s["column"] for s in spans)
        )
    )
    out: list[dict[str, Any]] = []
    for span in spans:
        column, scope_id = span["column"], span["id"]
        part = cube.filter(
            (pl.col(column) == scope_id) & (pl.col("hour") >= span["from"]) & (pl.col("hour") < span["to"])
        )
        n, e = int(part.get_column("n").sum()), int(part.get_column("e").sum())
        kinds = (
            part.filter(pl.col("e") > 0)
            .group_by("error_kind")
            .agg(pl.col("e").sum())
            .sort(["e", "error_kind"], descending=[True, False])
        )
        mine = span_rows.filter(
            (pl.col(column) == scope_id)
            & (pl.col("postback_time") >= span["from"])
            & (pl.col("postback_time") < span["to"])
        )
        out.append(
            {
                "incident_id": incident_id(span["scope"], scope_id, span["from"]),
                "scope": span["scope"],
                "id": scope_id,
                "name": None,
                "start": span["start"],
                "end": span["end"],
                "error_rate_before": span["error_rate_before"],
                "error_rate_during": e / n if n else None,
                "postbacks": n,
                "errors": e,
                "top_error_kind": kinds.item(0, "error_kind") if kinds.height else None,
                "scope_state": span["scope_state"],
                "open": span["open"],
                "_errors": set(mine.filter(pl.col("is_error")).get_column("postback_id").to_list()),
                "_campaigns": set(mine.get_column("campaign_id").drop_nulls().to_list()),
            }
        )
    return out


def _dedupe(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop a traffic-source incident whose failing postbacks are (nearly) those of an integration incident."""
    by_integration = [i for i in found if i["scope"] == "integration"]
    keep: list[dict[str, Any]] = []
    for incident in found:
        if incident["scope"] == "traffic_source":
            mine = incident["_errors"]
            if any(len(mine & o["_errors"]) >= 0.9 * max(len(mine), len(o["_errors"])) for o in by_integration):
                continue
        keep.append(incident)
    return keep


@dataclass
class _Links:
    integrations_of_source: dict[str, set[str]]
    sources_of_integration: dict[str, set[str]]
    #: traffic source → campaign → entity type (flow, offer, lander) → ids, from the visits.
    campaigns_of_source: dict[str, dict[str, dict[str, set[str]]]]


def _links(cube: pl.DataFrame, campaigns: Any, found: list[dict[str, Any]]) -> _Links:
    pairs = cube.filter(pl.col("integration_id").is_not_null() & pl.col("traffic_source_id").is_not_null())
    pairs = pairs.select("traffic_source_id", "integration_id").unique()
    integrations_of_source: dict[str, set[str]] = {}
    sources_of_integration: dict[str, set[str]] = {}
    for source, integration in pairs.iter_rows():
        integrations_of_source.setdefault(source, set()).add(integration)
        sources_of_integration.setdefault(integration, set()).add(source)
    if not isinstance(campaigns, pl.DataFrame):  # lazy, of any engine
        # only the visits of the incidents' traffic sources are read, and nothing when there is no incident
        sources = {i["id"] for i in found if i["scope"] == "traffic_source"}
        sources |= {s for i in found if i["scope"] != "traffic_source" for s in sources_of_integration.get(i["id"], ())}
        lazy = nw.from_native(campaigns)
        names = lazy.collect_schema().names()
        campaigns = (
            fetch(lazy.filter(one_of(nw.col("traffic_source_id"), sorted(sources))))
            if sources and "traffic_source_id" in names
            else fetch(lazy.head(0))
        )
    by_source: dict[str, dict[str, dict[str, set[str]]]] = {}
    if {"traffic_source_id", "campaign_id"} <= set(campaigns.columns):
        linked = {k: v for k, v in LINKED_ENTITIES.items() if v in campaigns.columns}
        for row in campaigns.select("traffic_source_id", "campaign_id", *linked.values()).iter_rows(named=True):
            entities = by_source.setdefault(row["traffic_source_id"], {}).setdefault(row["campaign_id"], {})
            for entity_type, column in linked.items():
                if row[column] is not None:
                    entities.setdefault(entity_type, set()).add(row[column])
    return _Links(integrations_of_source, sources_of_integration, by_source)


def _related(incident: dict[str, Any], links: _Links) -> dict[str, set[str]]:
    """The entities an incident's traffic belongs to: entity type → ids (for its suspects)."""
    if incident["scope"] == "traffic_source":
        sources = {incident["id"]}
        integrations = set(links.integrations_of_source.get(incident["id"], set()))
    else:
        integrations = {incident["id"]}
        sources = set(links.sources_of_integration.get(incident["id"], set()))
    # the campaigns of the incident's own postbacks; with no campaign on them, every campaign of its sources
    campaigns: set[str] = set(incident["_campaigns"]) or {
        c for s in sources for c in links.campaigns_of_source.get(s, {})
    }
    related: dict[str, set[str]] = {
        "traffic_source": sources,
        "integration": integrations,
        "campaign": campaigns,
        **{entity_type: set() for entity_type in LINKED_ENTITIES},
    }
    for source in sources:
        for campaign, entities in links.campaigns_of_source.get(source, {}).items():
            if campaign in campaigns:
                for entity_type, ids in entities.items():
                    related[entity_type] |= ids
    return related
