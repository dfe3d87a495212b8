"""Answers straight from a store: each loads its frames once and calls the pure diagnostics.

These are the one-line questions of notebooks and scripts
(``cf.diagnose.postback_errors(store, by="traffic_source_id")``). Anything that asks
several questions of the same range (``diagnose()``, the report, the panels) loads
the frames itself (:mod:`~cfanalytics.diagnose.frames`) and calls the pure functions
on them, so nothing is read twice.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> postback_errors(store, by=["traffic_source_id"]).columns
['traffic_source_id', 'traffic_source_name', 'postbacks', 'errors', 'error_rate']
>>> incidents(store).height, gap_summary(store)["conversions"]
(0, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from cfanalytics.diagnose.at_stake import at_stake, lost_conversions, with_integrations
from cfanalytics.diagnose.error_rates import error_rates, grouping
from cfanalytics.diagnose.frames import (
    DiagnosisFrames,
    activity,
    conversion_keys,
    conversions,
    diagnosis_frames,
    enriched_postbacks,
    incident_frames,
    postback_integrations,
    postback_outcomes,
    postback_rows,
    postbacks,
    store_currency,
)
from cfanalytics.diagnose.gaps import (
    classify,
    conversions_by_day,
    funnel_counts,
    gap_counts,
    gap_rows,
    gap_table,
    lag_distributions,
    orphans,
    with_ct_mismatch,
)
from cfanalytics.diagnose.incidents import HISTORY_COLUMNS, SCOPES, find_incidents, history_filter
from cfanalytics.diagnose.names import ENTITY_OF_ID, Names
from cfanalytics.engines import engine_of
from cfanalytics.filters import LogFilter, StoreReader, display_timezone

#: LogFilter fields that filter postbacks on columns :func:`~cfanalytics.diagnose.frames.postbacks` adds.
ENRICHED_FIELDS = ("traffic_sources", "campaigns", "status_classes", "error_kinds")


def names(reader: StoreReader, entity: str) -> pl.DataFrame:
    """``id → name`` of one entity (``"traffic_source"``, ``"campaign"`` …), latest name wins.

    Columns ``<entity>_id`` and ``<entity>_name``, one row per id, sorted by id.
    """
    return Names.load(reader, [entity]).frame(entity)


def _names_of(reader: StoreReader, columns: Sequence[str]) -> Names:
    return Names.load(reader, [ENTITY_OF_ID[c] for c in columns if c in ENTITY_OF_ID])


def postback_errors(
    reader: StoreReader, by: Sequence[str] | str | None = None, where: LogFilter | None = None
) -> pl.DataFrame:
    """Postbacks, errors and error rate per group of :data:`~cfanalytics.diagnose.error_rates.GROUPINGS`
    (sorted by errors descending, then the keys), with the name beside each id column.

    ``hour`` and ``day`` are in the display time zone (the filter's, else the store's).
    """
    keys = grouping(by)
    rows = _engine_frames(reader, where).postbacks if _on_server(reader) else postbacks(reader, where)
    out = error_rates(rows, keys, display_timezone(where, reader.timezone))
    return _names_of(reader, keys).add(out, *keys) if keys else out


def _on_server(reader: StoreReader) -> bool:
    """Whether the reader's engine is another than Polars in this process (then the aggregates run there)."""
    return engine_of(reader).name != "polars"


def _engine_frames(reader: StoreReader, where: LogFilter | None) -> DiagnosisFrames:
    where = where or LogFilter()
    return diagnosis_frames(reader, where, where)


def incidents(reader: StoreReader, where: LogFilter | None = None) -> pl.DataFrame:
    """Incidents overlapping the filter's range (:func:`~cfanalytics.diagnose.incidents.find_incidents`)."""
    where = where or LogFilter()
    wide = history_filter(where, reader.timezone)
    history, links = incident_frames(reader, wide, HISTORY_COLUMNS)
    bounds = where.time_bounds(reader.timezone)
    return find_incidents(history, activity(reader), Names.load(reader, SCOPES), links, bounds)


def orphan_postbacks(reader: StoreReader, where: LogFilter | None = None) -> pl.DataFrame:
    """Postbacks in range with no conversion on the same (click_id, ct), enriched, with ``ct_mismatch``;
    sorted by time and id. Only the orphans are enriched (the stored rows are anti-joined first)."""
    keys = conversion_keys(reader)
    rows = orphans(postback_rows(reader, where), keys).collect().lazy()
    enriched = enriched_postbacks(reader, rows, where)
    return with_ct_mismatch(enriched, keys).collect().sort(["postback_time", "postback_id"])


def gap_summary(reader: StoreReader, where: LogFilter | None = None, *, grace_minutes: float = 0) -> dict[str, int]:
    """The ``gaps`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5)."""
    where = where or LogFilter()
    if _on_server(reader):
        read = _engine_frames(reader, where)
        kept = engine_of(reader).keep(classify(read.conversions, read.outcomes, grace_minutes))
        server_keys = read.conversion_keys
        return gap_counts(kept, with_ct_mismatch(orphans(read.postbacks, server_keys), server_keys))
    keys = conversion_keys(reader)
    classified = classify(conversions(reader, where), postback_outcomes(reader), grace_minutes)
    if any(getattr(where, f) is not None for f in ENRICHED_FIELDS):
        orphan_rows = with_ct_mismatch(orphans(postbacks(reader, where), keys), keys)
    else:
        # no filter on attributed columns: the stored rows are the answer, no enrichment needed
        rest = where.replace(start=None, end=None)
        orphan_rows = rest.apply(
            with_ct_mismatch(orphans(postback_rows(reader, where), keys), keys), None, timezone=reader.timezone
        )
    return gap_counts(classified, orphan_rows)


def money_at_stake(
    reader: StoreReader,
    where: LogFilter | None = None,
    *,
    by: Sequence[str] | str = (),
    grace_minutes: float = 0,
) -> pl.DataFrame:
    """Payout and count of conversions that never reached their traffic source, per currency and group
    (:func:`~cfanalytics.diagnose.at_stake.at_stake`): ``by`` names ``traffic_source_id``,
    ``integration_id``, ``campaign_id`` or ``day`` (local to the store), names beside the ids.

    >>> import tempfile, cfanalytics as cf
    >>> money_at_stake(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")).columns
    ['currency', 'conversions', 'posted_failed', 'not_posted', 'payout']
    """
    keys = [by] if isinstance(by, str) else list(by)
    if _on_server(reader):  # classify gives each conversion its integration (that of with_integrations)
        read = _engine_frames(reader, where)
        lost = lost_conversions(classify(read.conversions, read.outcomes, grace_minutes))
    else:
        lost = lost_conversions(classify(conversions(reader, where), postback_outcomes(reader), grace_minutes))
        if "integration_id" in keys:
            lost = with_integrations(lost, postback_integrations(reader))
    out = at_stake(lost, by=keys, timezone=reader.timezone or "UTC", currency=store_currency(reader))
    if not keys:
        return out
    named = _names_of(reader, keys).add(out, *keys)
    return named.sort(["payout", *keys, "currency"], descending=[True, *([False] * (len(keys) + 1))], nulls_last=True)


def gaps_by(
    reader: StoreReader, by: str = "traffic_source_id", where: LogFilter | None = None, *, grace_minutes: float = 0
) -> pl.DataFrame:
    """Gap classes per traffic source (or campaign …), one column per class, with names."""
    rows = gap_rows(conversions(reader, where), postback_outcomes(reader), grace_minutes)
    return _names_of(reader, [by]).add(gap_table(rows, by), by)


def lags(reader: StoreReader, where: LogFilter | None = None) -> dict[str, pl.DataFrame]:
    """Lag distributions: ``visit_to_conversion`` (minutes) and ``conversion_to_postback`` (seconds)."""
    return lag_distributions(conversions(reader, where), postback_outcomes(reader))


def attribution_by_day(reader: StoreReader, where: LogFilter | None = None) -> pl.DataFrame:
    """Conversions per local day counted by conversion date and by visit date, and the difference."""
    return conversions_by_day(conversions(reader, where), display_timezone(where, reader.timezone))


def funnel(reader: StoreReader, by: str = "campaign_id", where: LogFilter | None = None) -> pl.DataFrame:
    """Visits → clicks → conversions → postbacks sent → postbacks accepted, per campaign or traffic source."""
    where = where or LogFilter()
    timezone = reader.timezone
    out = funnel_counts(
        where.apply(reader.scan("visits"), "visits", timezone=timezone),
        where.apply(reader.scan("clicks"), "clicks", timezone=timezone),
        conversions(reader, where),
        postbacks(reader, where),
        by,
    )
    return _names_of(reader, [by]).add(out, by)
