"""Loaders: a :class:`~cfanalytics.filters.StoreReader` and a ``LogFilter`` in, lazy frames out.

This is the only part of :mod:`cfanalytics.diagnose` that reads a store. Each
loader prunes by the filter's time range first (partition pruning) and restricts
visits and conversions to the click ids needed (semi joins) before any join. The
loaders that read large tables are narwhals queries run by the reader's engine
(:mod:`cfanalytics.engines`: lazy Polars by default, or Spark); the
diagnostics themselves are pure functions of the frames loaded here
(:mod:`~cfanalytics.diagnose.attribution`, :mod:`~cfanalytics.diagnose.error_rates`,
:mod:`~cfanalytics.diagnose.gaps`, :mod:`~cfanalytics.diagnose.incidents`,
:mod:`~cfanalytics.diagnose.events`).

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> postbacks(store).collect().columns[:4]
['postback_id', 'click_id', 'postback_time', 'is_error']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._meanings import ERROR_MEANINGS, current_meanings
from cfanalytics.diagnose.attribution import (
    VISIT_CAMPAIGN,
    VISIT_TIME,
    VISIT_TRAFFIC_SOURCE,
    attribute_conversions,
    conversion_attribution,
    derive_in_polars,
    enrich_postbacks,
    lookup_join,
    needs_attribution,
)
from cfanalytics.engines import Engine, Source, engine_of
from cfanalytics.filters import LogFilter, StoreReader
from cfanalytics.schemas import MAIN_TIME

#: Columns of a stored postback the diagnostics read.
POSTBACK_COLUMNS: Final = (
    "postback_id",
    "click_id",
    "postback_time",
    "is_error",
    "status_code",
    "error_message",
    "postback_url",
    "ct",
    "integration_id",
    "traffic_source_id",
    "campaign_id",
    "date",
)
#: Columns of a stored postback no section reads once it is enriched (the rules that explain a failing
#: postback read its URL): left out of the kept history (:func:`diagnosis_frames`), half of its bytes.
UNREAD_COLUMNS: Final = ("postback_url",)
#: Columns of an activity row the diagnostics read.
ACTIVITY_COLUMNS: Final = (
    "changed_at",
    "author",
    "entity_type",
    "entity_id",
    "entity_name",
    "action",
    "old_value",
    "new_value",
)


def in_range(rows: nw.LazyFrame[Any], kind: str, where: LogFilter | None, timezone: str | None) -> nw.LazyFrame[Any]:
    """Stored ``rows`` of ``kind`` in the filter's time range (its other fields are not applied), bot
    traffic left out: the range part of :meth:`~cfanalytics.filters.LogFilter.expr`, on any engine.

    >>> from datetime import datetime, UTC
    >>> rows = nw.from_native(pl.LazyFrame({"postback_time": [datetime(2026, 1, 1, 23, tzinfo=UTC)]}))
    >>> in_range(rows, "postbacks", LogFilter(start="2026-01-02"), "UTC").to_native().collect().height
    0
    """
    where = where or LogFilter()
    names = rows.collect_schema().names()
    parts = [test(nw.col(column)) for column, test in where.range_conditions(names, MAIN_TIME[kind], timezone)]
    if "is_filtered" in names:
        parts.append(~nw.col("is_filtered").fill_null(value=False))
    return rows.filter(*parts) if parts else rows


def postback_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored postbacks (:data:`POSTBACK_COLUMNS`) in the filter's time range, not enriched yet."""
    # Prune by time first (partition pruning); other fields may name attributed columns.
    return engine_of(reader).run(
        lambda s: in_range(s.table("postbacks").select(POSTBACK_COLUMNS), "postbacks", where, reader.timezone)
    )


def conversion_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored conversions in the filter's time range, not attributed yet."""
    return engine_of(reader).run(lambda s: in_range(s.table("conversions"), "conversions", where, reader.timezone))


def _visit_columns(source: Source) -> nw.LazyFrame[Any]:
    """Every stored visit's ``click_id`` and its traffic source, campaign and time (attribution names)."""
    return source.table("visits").select(
        "click_id",
        nw.col("traffic_source_id").alias(VISIT_TRAFFIC_SOURCE),
        nw.col("campaign_id").alias(VISIT_CAMPAIGN),
        nw.col("visit_time").alias(VISIT_TIME),
    )


def _visits_of(source: Source, click_ids: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """The visits of ``click_ids`` (a frame of the source's engine with a ``click_id`` column)."""
    return lookup_join(_visit_columns(source), click_ids.select("click_id"), "click_id", "semi")


def _kept_visits(engine: Engine, click_ids: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """:func:`_visits_of` the distinct ``click_ids``, kept in the engine. On Polars the ids are collected
    first and the visits filtered by them as they are read: the streaming semi join buffered about a
    gigabyte of visits at 50M (peak 2.36 GB for 0.75M ids, 1.19 GB with the filter, and no slower)."""
    native, visits = click_ids.to_native(), _visit_columns(engine).to_native()
    if not (isinstance(native, pl.LazyFrame) and isinstance(visits, pl.LazyFrame)):
        return engine.keep(_visits_of(engine, click_ids.unique()))
    ids = native.select(pl.col("click_id").drop_nulls().unique()).collect().get_column("click_id")
    return engine.keep(nw.from_native(visits.filter(pl.col("click_id").is_in(ids.implode()))))


def visits_of(reader: StoreReader, click_ids: pl.LazyFrame) -> pl.LazyFrame:
    """The stored visits of ``click_ids`` (a frame with a ``click_id`` column), semi-joined: ``click_id``
    and the visit's traffic source, campaign and time (:mod:`~cfanalytics.diagnose.attribution` names)."""
    return engine_of(reader).run(lambda s: _visits_of(s, s.local(click_ids.select("click_id"))))


def visit_lookup(reader: StoreReader, click_ids: pl.LazyFrame) -> pl.DataFrame:
    """:func:`visits_of` the distinct ``click_ids``, collected once to serve several diagnostics.

    Reading the visits is the costly part of attributing postbacks and classifying
    conversions: :func:`~cfanalytics.diagnose.document.diagnose` reads them once, for the
    click ids of both (postbacks naming their own traffic source and campaign need none).

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> visit_lookup(store, pl.LazyFrame({"click_id": ["a"]})).columns
    ['click_id', '_visit_traffic_source_id', '_visit_campaign_id', '_visit_time']
    """
    return visits_of(reader, click_ids.select("click_id").unique()).collect()


def _conversions_of(source: Source, click_ids: nw.LazyFrame[Any] | None) -> nw.LazyFrame[Any]:
    rows = source.table("conversions").select("click_id", "traffic_source_id", "campaign_id")
    if click_ids is not None:
        rows = rows.join(click_ids.select("click_id"), on="click_id", how="semi")
    return conversion_attribution(rows)


def conversions_of(reader: StoreReader, click_ids: pl.LazyFrame | None) -> pl.LazyFrame:
    """Per click id of ``click_ids`` (all when ``None``): the traffic source and campaign of its conversions."""
    return engine_of(reader).run(
        lambda s: _conversions_of(s, None if click_ids is None else s.local(click_ids.select("click_id")))
    )


def click_attribution(reader: StoreReader, click_ids: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Per click id: the traffic source and campaign of its visit and of its conversions (both null when
    unknown); ``click_ids`` restricts visits and conversions to those click ids before the join."""
    keys = None if click_ids is None else click_ids.select("click_id")

    def query(source: Source) -> nw.LazyFrame[Any]:
        visits = source.table("visits").select(
            "click_id",
            nw.col("traffic_source_id").alias(VISIT_TRAFFIC_SOURCE),
            nw.col("campaign_id").alias(VISIT_CAMPAIGN),
        )
        if keys is not None:
            visits = visits.join(source.local(keys), on="click_id", how="semi")
        return visits

    return engine_of(reader).run(query).join(conversions_of(reader, keys), on="click_id", how="full", coalesce=True)


def _has_meanings(reader: StoreReader) -> bool:
    """Whether the reader's store holds the table of error meanings (a wrapper's store counts)."""
    store = getattr(reader, "store", reader)
    has_table = getattr(store, "has_table", None)
    return callable(has_table) and bool(has_table(ERROR_MEANINGS))


def _meanings_of(source: Source, rows: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """The stored meanings (current rules) of the failing ones among ``rows`` (a frame of the source's engine)."""
    keys = rows.filter(nw.col("is_error").cast(nw.Boolean()).fill_null(value=False)).select("postback_id")
    return current_meanings(source.table(ERROR_MEANINGS)).join(keys, on="postback_id", how="semi")


def error_meanings(reader: StoreReader, postback_rows: pl.LazyFrame) -> pl.LazyFrame | None:
    """The error meanings stored at ingest (by the current rules) of the failing ones among ``postback_rows``:
    ``postback_id``, the error-meaning columns and ``signature``, one row per postback (see
    :mod:`cfanalytics._meanings`). None when the reader's store has no such table.

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> error_meanings(store, postback_rows(store)) is None
    True
    """
    if not _has_meanings(reader):
        return None
    return engine_of(reader).run(lambda s: _meanings_of(s, s.local(postback_rows.select("postback_id", "is_error"))))


def enriched_postbacks(reader: StoreReader, rows: pl.LazyFrame, where: LogFilter | None = None) -> pl.LazyFrame:
    """:func:`~cfanalytics.diagnose.attribution.enrich_postbacks` of ``rows`` (stored postback rows), with the
    visits and conversions of the rows that need attribution, and the error meanings stored, read here."""
    keys = rows.filter(needs_attribution()).select("click_id")
    return enrich_postbacks(
        rows,
        visits_of(reader, keys),
        conversions_of(reader, keys),
        where,
        timezone=reader.timezone,
        meanings=error_meanings(reader, rows),
    )


@dataclass(frozen=True)
class DiagnosisFrames:
    """What :func:`~cfanalytics.diagnose.document.diagnose` reads, as frames of the reader's engine (kept
    there: collected on Polars, checkpointed on Spark), so that every aggregate runs where the rows are."""

    #: Enriched postbacks (:func:`postbacks`, but :data:`UNREAD_COLUMNS`) of the wide range (the filter's,
    #: extended back for incidents).
    history: nw.LazyFrame[Any]
    #: The same, in the filter's own range (a filter of the history, not a copy).
    postbacks: nw.LazyFrame[Any]
    #: Attributed conversions (:func:`conversions`) in the filter's range.
    conversions: nw.LazyFrame[Any]
    #: Every stored postback's ``click_id``, ``ct``, ``is_error``, ``postback_time``, ``integration_id``.
    outcomes: nw.LazyFrame[Any]
    #: Every stored conversion's ``click_id`` and ``ct``.
    conversion_keys: nw.LazyFrame[Any]
    #: :func:`campaign_links`, a query not run yet (incidents read it for their traffic sources only).
    campaign_links: nw.LazyFrame[Any]
    #: Frames kept in the engine that the ones above are made of: held while these are (a Spark client
    #: releases a checkpoint on the server when the frame that made it is garbage-collected).
    kept: tuple[nw.LazyFrame[Any], ...] = field(default=(), repr=False, compare=False)


def diagnosis_frames(reader: StoreReader, where: LogFilter, wide: LogFilter) -> DiagnosisFrames:
    """The frames of a diagnosis over ``where`` (incidents read ``wide``, see
    :func:`~cfanalytics.diagnose.incidents.history_filter`), on the reader's engine.

    Each table is read once: the postbacks of the wide range, the visits of the click ids of the
    postbacks that need attribution and of the conversions, one enrichment serving every section.
    Error meanings not stored at ingest are derived in Polars on those few rows. The frames kept are
    row-level: on Polars a large one is spilled to scratch files (:meth:`~cfanalytics.engines.PolarsEngine.keep`);
    the history leaves out :data:`UNREAD_COLUMNS`, and the postback rows it is made of hold the URL of
    the failing ones only.

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> frames = diagnosis_frames(store, LogFilter(), LogFilter())
    >>> frames.postbacks.to_native().collect().height, "attributed" in frames.history.collect_schema().names()
    (0, True)
    """
    engine, timezone = engine_of(reader), reader.timezone
    conversion_rows = in_range(engine.table("conversions"), "conversions", where, timezone)
    history, visits = _kept_history(reader, wide, conversion_rows.select("click_id"))
    own_range = LogFilter(start=where.start, end=where.end, timezone=where.timezone)
    return DiagnosisFrames(
        history=history,
        postbacks=own_range.apply_nw(history, "postbacks", timezone=timezone),  # a filter of the kept history
        conversions=attribute_conversions(conversion_rows, visits, where, timezone=timezone),
        outcomes=engine.table("postbacks").select("click_id", "ct", "is_error", "postback_time", "integration_id"),
        conversion_keys=engine.table("conversions").select("click_id", "ct"),
        campaign_links=_campaign_links(engine),
        kept=(visits,),  # the conversions' plan reads it; the history, kept itself, no longer reads the visits
    )


def incident_frames(
    reader: StoreReader, wide: LogFilter, columns: Sequence[str] | None = None
) -> tuple[nw.LazyFrame[Any], nw.LazyFrame[Any]]:
    """What :func:`~cfanalytics.diagnose.queries.incidents` reads, as frames of the reader's engine: the
    enriched postbacks of ``wide`` (:func:`postbacks` but :data:`UNREAD_COLUMNS`), kept as
    :func:`diagnosis_frames` keeps its history (on Polars: spilled to scratch files when large) but
    attributed without the conversions' visits (only its ``columns``, when given), and the campaign links
    (a query not run yet).

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> history, links = incident_frames(store, LogFilter())
    >>> history.to_native().collect().height, "campaign_id" in links.collect_schema().names()
    (0, True)
    """
    return _kept_history(reader, wide, None, columns)[0], _campaign_links(engine_of(reader))


def _kept_history(
    reader: StoreReader,
    wide: LogFilter,
    more_click_ids: nw.LazyFrame[Any] | None,
    columns: Sequence[str] | None = None,
) -> tuple[nw.LazyFrame[Any], nw.LazyFrame[Any]]:
    """The kept enriched history of ``wide`` and the kept visits it was attributed with: those of the
    postbacks lacking their own traffic source or campaign, and of ``more_click_ids`` (one read of the visits)."""
    engine, timezone = engine_of(reader), reader.timezone
    stored = in_range(engine.table("postbacks").select(POSTBACK_COLUMNS), "postbacks", wide, timezone)
    # the URL of the failing postbacks only: the rules that explain them read it, nothing else does
    failing = nw.col("is_error").cast(nw.Boolean()).fill_null(value=False)
    rows = engine.keep(stored.with_columns(nw.when(failing).then(nw.col("postback_url")).alias("postback_url")))
    own = ~nw.col("traffic_source_id").is_null() & ~nw.col("campaign_id").is_null()
    unattributed = rows.filter(~own).select("click_id")
    wanted = unattributed if more_click_ids is None else nw.concat([unattributed, more_click_ids], how="vertical")
    visits = _kept_visits(engine, wanted)
    enriched = enrich_postbacks(
        rows,
        visits,
        _conversions_of(engine, unattributed),
        wide,
        timezone=timezone,
        meanings=_meanings_of(engine, rows) if _has_meanings(reader) else None,
        derive=lambda failed: engine.in_polars(failed, derive_in_polars),
    ).drop(*UNREAD_COLUMNS)
    history = engine.keep(enriched if columns is None else enriched.select(*columns))
    return history, visits


def postbacks(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Postbacks with attributed ``traffic_source_id`` / ``campaign_id``, ``status_class``,
    ``error_kind`` and the other error-meaning columns, ``signature`` and ``attributed`` (False when
    no traffic source was found), filtered by ``where`` (range on ``postback_time``)."""
    return enriched_postbacks(reader, postback_rows(reader, where), where)


def conversions(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Conversions with the attributed traffic source / campaign (own column, else the visit's),
    ``visit_time`` and ``known_click``, filtered by ``where``."""
    rows = conversion_rows(reader, where)
    return attribute_conversions(rows, visits_of(reader, rows), where, timezone=reader.timezone)


def postback_outcomes(reader: StoreReader) -> pl.LazyFrame:
    """Every stored postback's ``click_id``, ``ct``, ``is_error``, ``postback_time`` and ``integration_id``
    (what conversions are matched with, whatever the range)."""
    return engine_of(reader).run(
        lambda s: s.table("postbacks").select("click_id", "ct", "is_error", "postback_time", "integration_id")
    )


def postback_integrations(reader: StoreReader) -> pl.LazyFrame:
    """Every stored postback's ``click_id``, ``ct``, ``integration_id`` and ``postback_time`` (which
    Conversion API integration a conversion was posted through)."""
    # every stored postback has the column; a reader of older or foreign tables may not
    has_integration = "integration_id" in reader.scan("postbacks").collect_schema().names()
    columns = ("click_id", "ct", "postback_time", *(("integration_id",) if has_integration else ()))
    rows = engine_of(reader).run(lambda s: s.table("postbacks").select(columns))
    if not has_integration:
        rows = rows.with_columns(pl.lit(None, pl.String).alias("integration_id"))
    return rows.select("click_id", "ct", "integration_id", "postback_time")


def store_currency(reader: StoreReader) -> str | None:
    """The store's ``currency`` setting (the currency of conversions that carry none), when the reader
    has store metadata and it names one.

    >>> import tempfile, cfanalytics as cf
    >>> store_currency(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")) is None
    True
    """
    meta = getattr(reader, "metadata", None)
    if meta is None:
        meta = getattr(getattr(reader, "store", None), "metadata", None)  # a wrapper such as CountingStore
    value = meta.get("currency") if isinstance(meta, dict) else None
    return str(value).upper() if value else None


def conversion_keys(reader: StoreReader) -> pl.LazyFrame:
    """Every stored conversion's ``click_id`` and ``ct`` (what orphan postbacks are matched with)."""
    return engine_of(reader).run(lambda s: s.table("conversions").select("click_id", "ct"))


def activity_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored activity rows (every column) filtered by ``where``."""
    rows = engine_of(reader).run(lambda s: s.table("activity"))
    return rows if where is None else where.apply(rows, "activity", timezone=reader.timezone)


def activity(reader: StoreReader, where: LogFilter | None = None) -> pl.DataFrame:
    """Activity rows (:data:`ACTIVITY_COLUMNS`) filtered by ``where``, sorted by ``changed_at``."""
    return activity_rows(reader, where).select(ACTIVITY_COLUMNS).collect().sort("changed_at")


def campaign_links(reader: StoreReader) -> pl.LazyFrame:
    """Distinct ``traffic_source_id``, ``campaign_id``, ``flow_id``, ``offer_id``, ``landing_id`` of the stored
    visits (who sends whose traffic, and where it goes: the entities an incident's suspects are edits of);
    lazy on Polars: :func:`~cfanalytics.diagnose.incidents.find_incidents` reads it only for its incidents'
    sources (on Spark the distinct is computed, then filtered here)."""
    return engine_of(reader).run(_campaign_links)


def _campaign_links(source: Source) -> nw.LazyFrame[Any]:
    return (
        source.table("visits")
        .select("traffic_source_id", "campaign_id", "flow_id", "offer_id", "landing_id")
        .filter(~nw.col("traffic_source_id").is_null())
        .unique()
    )


def events(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Visits, clicks and conversions as one event log, filtered by ``where`` (filtered traffic kept
    when the filter says so)."""
    return (where or LogFilter()).apply(reader.events(), None, timezone=reader.timezone)


def latest_time(reader: StoreReader, kind: str, column: str) -> datetime | None:
    """The newest value of a time column of one kind (``None`` when the table is empty)."""
    value = engine_of(reader).run(lambda s: s.table(kind).select(nw.col(column).max())).collect().item()
    return value if isinstance(value, datetime) else None


def activity_log_until(reader: StoreReader) -> datetime | None:
    """Time of the last activity row loaded (the activity log has no API: it may lag behind)."""
    return latest_time(reader, "activity", "changed_at")
