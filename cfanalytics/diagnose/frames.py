"""Loaders: a :class:`~cfanalytics.filters.StoreReader` and a ``LogFilter`` in, lazy frames out.

This is the only part of :mod:`cfanalytics.diagnose` that reads a store. Each
loader prunes by the filter's time range first (partition pruning) and restricts
visits and conversions to the click ids needed (semi joins) before any join; the
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

from datetime import datetime
from typing import Final

import polars as pl

from cfanalytics.diagnose.attribution import (
    VISIT_CAMPAIGN,
    VISIT_TIME,
    VISIT_TRAFFIC_SOURCE,
    attribute_conversions,
    conversion_attribution,
    enrich_postbacks,
    needs_attribution,
)
from cfanalytics.filters import LogFilter, StoreReader

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


def _time_only(where: LogFilter | None) -> LogFilter:
    where = where or LogFilter()
    return LogFilter(start=where.start, end=where.end, timezone=where.timezone)


def postback_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored postbacks (:data:`POSTBACK_COLUMNS`) in the filter's time range, not enriched yet."""
    rows = reader.scan("postbacks").select(POSTBACK_COLUMNS)
    # Prune by time first (partition pruning); other fields may name attributed columns.
    return _time_only(where).apply(rows, "postbacks", timezone=reader.timezone)


def conversion_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored conversions in the filter's time range, not attributed yet."""
    return _time_only(where).apply(reader.scan("conversions"), "conversions", timezone=reader.timezone)


def visits_of(reader: StoreReader, click_ids: pl.LazyFrame) -> pl.LazyFrame:
    """The stored visits of ``click_ids`` (a frame with a ``click_id`` column), semi-joined: ``click_id``
    and the visit's traffic source, campaign and time (:mod:`~cfanalytics.diagnose.attribution` names)."""
    return (
        reader.scan("visits")
        .select(
            "click_id",
            pl.col("traffic_source_id").alias(VISIT_TRAFFIC_SOURCE),
            pl.col("campaign_id").alias(VISIT_CAMPAIGN),
            pl.col("visit_time").alias(VISIT_TIME),
        )
        .join(click_ids.select("click_id"), on="click_id", how="semi")
    )


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


def conversions_of(reader: StoreReader, click_ids: pl.LazyFrame | None) -> pl.LazyFrame:
    """Per click id of ``click_ids`` (all when ``None``): the traffic source and campaign of its conversions."""
    rows = reader.scan("conversions").select("click_id", "traffic_source_id", "campaign_id")
    if click_ids is not None:
        rows = rows.join(click_ids.select("click_id"), on="click_id", how="semi")
    return conversion_attribution(rows)


def click_attribution(reader: StoreReader, click_ids: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Per click id: the traffic source and campaign of its visit and of its conversions (both null when
    unknown); ``click_ids`` restricts visits and conversions to those click ids before the join."""
    keys = None if click_ids is None else click_ids.select("click_id")
    visits = reader.scan("visits").select(
        "click_id",
        pl.col("traffic_source_id").alias(VISIT_TRAFFIC_SOURCE),
        pl.col("campaign_id").alias(VISIT_CAMPAIGN),
    )
    if keys is not None:
        visits = visits.join(keys, on="click_id", how="semi")
    return visits.join(conversions_of(reader, keys), on="click_id", how="full", coalesce=True)


def enriched_postbacks(reader: StoreReader, rows: pl.LazyFrame, where: LogFilter | None = None) -> pl.LazyFrame:
    """:func:`~cfanalytics.diagnose.attribution.enrich_postbacks` of ``rows`` (stored postback rows), with the
    visits and conversions of the rows that need attribution read here."""
    keys = rows.filter(needs_attribution()).select("click_id")
    return enrich_postbacks(
        rows, visits_of(reader, keys), conversions_of(reader, keys), where, timezone=reader.timezone
    )


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
    return reader.scan("postbacks").select("click_id", "ct", "is_error", "postback_time", "integration_id")


def postback_integrations(reader: StoreReader) -> pl.LazyFrame:
    """Every stored postback's ``click_id``, ``ct``, ``integration_id`` and ``postback_time`` (which
    Conversion API integration a conversion was posted through)."""
    rows = reader.scan("postbacks")
    if "integration_id" not in rows.collect_schema().names():
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
    return reader.scan("conversions").select("click_id", "ct")


def activity_rows(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored activity rows (every column) filtered by ``where``."""
    rows = reader.scan("activity")
    return rows if where is None else where.apply(rows, "activity", timezone=reader.timezone)


def activity(reader: StoreReader, where: LogFilter | None = None) -> pl.DataFrame:
    """Activity rows (:data:`ACTIVITY_COLUMNS`) filtered by ``where``, sorted by ``changed_at``."""
    return activity_rows(reader, where).select(ACTIVITY_COLUMNS).collect().sort("changed_at")


def campaign_links(reader: StoreReader) -> pl.LazyFrame:
    """Distinct ``traffic_source_id``, ``campaign_id``, ``flow_id``, ``offer_id``, ``landing_id`` of the stored
    visits (who sends whose traffic, and where it goes: the entities an incident's suspects are edits of);
    lazy: :func:`~cfanalytics.diagnose.incidents.find_incidents` reads it only for its incidents' sources."""
    return (
        reader.scan("visits")
        .select("traffic_source_id", "campaign_id", "flow_id", "offer_id", "landing_id")
        .filter(pl.col("traffic_source_id").is_not_null())
        .unique()
    )


def events(reader: StoreReader, where: LogFilter | None = None) -> pl.LazyFrame:
    """Visits, clicks and conversions as one event log, filtered by ``where`` (filtered traffic kept
    when the filter says so)."""
    return (where or LogFilter()).apply(reader.events(), None, timezone=reader.timezone)


def latest_time(reader: StoreReader, kind: str, column: str) -> datetime | None:
    """The newest value of a time column of one kind (``None`` when the table is empty)."""
    value = reader.scan(kind).select(pl.col(column).max()).collect().item()
    return value if isinstance(value, datetime) else None


def activity_log_until(reader: StoreReader) -> datetime | None:
    """Time of the last activity row loaded (the activity log has no API: it may lag behind)."""
    return latest_time(reader, "activity", "changed_at")
