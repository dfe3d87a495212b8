"""Attribution: which traffic source and campaign a postback, conversion or event belongs to (pure).

A row's traffic source is its own column, else its visit's (by click id), else
its conversion's (docs/contract.md §6); none found → null, counted as
``unattributed``. Campaigns are attributed the same way. Should a click's
conversions disagree, the smallest id wins, so every engine agrees.

The functions here take frames (the loaders of :mod:`~cfanalytics.diagnose.frames`
read them) and return frames; they never read a store.

>>> import polars as pl
>>> rows = pl.LazyFrame({"click_id": ["a", "b"], "traffic_source_id": [None, "t9"], "campaign_id": [None, "c9"]})
>>> visits = pl.LazyFrame({"click_id": ["a"], VISIT_TRAFFIC_SOURCE: ["t1"], VISIT_CAMPAIGN: ["c1"]})
>>> by_conversion = conversion_attribution(pl.LazyFrame(schema={"click_id": pl.String,
...     "traffic_source_id": pl.String, "campaign_id": pl.String}))
>>> attribute(rows, visits, by_conversion).collect().sort("click_id").rows()
[('a', 't1', 'c1'), ('b', 't9', 'c9')]
"""

from __future__ import annotations

from typing import Any, Final, overload

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics.diagnose.error_kinds import ERROR_MEANING_COLUMNS, signature, status_class, with_error_meaning
from cfanalytics.filters import LogFilter

#: Columns a visit lookup carries (the visit's traffic source, campaign and time).
VISIT_TRAFFIC_SOURCE: Final = "_visit_traffic_source_id"
VISIT_CAMPAIGN: Final = "_visit_campaign_id"
VISIT_TIME: Final = "_visit_time"
#: Columns :func:`conversion_attribution` yields (a click's conversions' traffic source and campaign).
CONVERSION_TRAFFIC_SOURCE: Final = "_conversion_traffic_source_id"
CONVERSION_CAMPAIGN: Final = "_conversion_campaign_id"


def needs_attribution() -> pl.Expr:
    """Rows that do not name both their own traffic source and campaign."""
    return ~(pl.col("traffic_source_id").is_not_null() & pl.col("campaign_id").is_not_null())


@overload
def conversion_attribution(conversions: pl.LazyFrame) -> pl.LazyFrame: ...
@overload
def conversion_attribution(conversions: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]: ...
def conversion_attribution(conversions: pl.LazyFrame | nw.LazyFrame[Any]) -> pl.LazyFrame | nw.LazyFrame[Any]:
    """Per click id of ``conversions`` (``click_id``, ``traffic_source_id``, ``campaign_id``): the smallest
    traffic source and campaign id. A Polars frame in, a Polars frame out; a narwhals frame (any engine,
    :mod:`cfanalytics.engines`) in, a narwhals frame out."""
    out = (
        nw.from_native(conversions)
        .group_by("click_id")
        .agg(
            nw.col("traffic_source_id").min().alias(CONVERSION_TRAFFIC_SOURCE),
            nw.col("campaign_id").min().alias(CONVERSION_CAMPAIGN),
        )
    )
    return out if isinstance(conversions, nw.LazyFrame) else out.to_native()


def attribute(rows: pl.LazyFrame, visits: pl.LazyFrame, by_conversion: pl.LazyFrame) -> pl.LazyFrame:
    """``rows`` with ``traffic_source_id`` and ``campaign_id`` filled from their visit, else their
    conversions (``visits``: a visit lookup; ``by_conversion``: :func:`conversion_attribution`)."""
    return (
        rows.join(visits.select("click_id", VISIT_TRAFFIC_SOURCE, VISIT_CAMPAIGN), on="click_id", how="left")
        .join(by_conversion, on="click_id", how="left")
        .with_columns(
            pl.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE).alias(
                "traffic_source_id"
            ),
            pl.coalesce("campaign_id", VISIT_CAMPAIGN, CONVERSION_CAMPAIGN).alias("campaign_id"),
        )
        .drop(VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE, VISIT_CAMPAIGN, CONVERSION_CAMPAIGN)
    )


def enrich_postbacks(
    rows: pl.LazyFrame,
    visits: pl.LazyFrame,
    by_conversion: pl.LazyFrame,
    where: LogFilter | None = None,
    *,
    timezone: str | None = None,
    meanings: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Stored postback rows with attribution, ``status_class``, ``error_kind`` and the other
    ``ERROR_MEANING_COLUMNS`` (what the answer means), ``signature`` and ``attributed``, then
    filtered by the filter's fields other than its range.

    Only the rows that need attribution (:func:`needs_attribution`) are joined with
    ``visits`` and ``by_conversion``. Error meanings and signatures come from ``meanings``
    (those stored at ingest, one row per ``postback_id``:
    :func:`~cfanalytics.diagnose.frames.error_meanings`); the failing rows it lacks (or all,
    without it) get them computed here.
    """
    own = ~needs_attribution()
    attributed = attribute(rows.filter(~own), visits, by_conversion)
    frame = pl.concat([rows.filter(own), attributed], how="vertical").with_columns(
        pl.col("traffic_source_id").is_not_null().alias("attributed"),
        status_class(pl.col("status_code")).alias("status_class"),
    )
    failing = pl.col("is_error").cast(pl.Boolean, strict=False).fill_null(value=False)
    sig = pl.when(pl.col("is_error")).then(signature(pl.col("error_message"))).alias("signature")
    nothing = [pl.lit(None, dtype).alias(name) for name, dtype in ERROR_MEANING_COLUMNS.items()]
    nothing.append(pl.lit(None, pl.String).alias("signature"))
    frame = frame.cache()  # both halves below, and the meaning's distinct tables, read it: compute it once
    failed = frame.filter(failing)
    if meanings is None:
        explained = with_error_meaning(failed).with_columns(sig)
    else:  # stored at ingest; those missing (or of other rules) are derived here
        rest = failed.join(meanings.select("postback_id"), on="postback_id", how="anti")
        explained = pl.concat(
            [failed.join(meanings, on="postback_id", how="inner"), with_error_meaning(rest).with_columns(sig)],
            how="diagonal",
        )
    frame = pl.concat([frame.filter(~failing).with_columns(nothing), explained], how="diagonal")
    return (where or LogFilter()).replace(start=None, end=None).apply(frame, None, timezone=timezone)


def attribute_conversions(
    conversions: pl.LazyFrame, visits: pl.LazyFrame, where: LogFilter | None = None, *, timezone: str | None = None
) -> pl.LazyFrame:
    """Conversions with the traffic source, campaign and ``visit_time`` of their visit where they name
    none, ``known_click`` (the visit is stored), filtered by the filter's fields other than its range."""
    frame = conversions.join(visits, on="click_id", how="left").with_columns(
        pl.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE).alias("traffic_source_id"),
        pl.coalesce("campaign_id", VISIT_CAMPAIGN).alias("campaign_id"),
        pl.coalesce("visit_time", VISIT_TIME).alias("visit_time"),
        pl.col(VISIT_TIME).is_not_null().alias("known_click"),
    )
    frame = frame.drop(VISIT_TRAFFIC_SOURCE, VISIT_CAMPAIGN, VISIT_TIME)
    return (where or LogFilter()).replace(start=None, end=None).apply(frame, None, timezone=timezone)


def attribute_events(events: pl.LazyFrame, attribution: pl.LazyFrame) -> pl.LazyFrame:
    """Events (visits, clicks, conversions) with the traffic source and campaign of their click where
    they name none (``attribution``: :func:`~cfanalytics.diagnose.frames.click_attribution`)."""
    return (
        events.join(attribution, on="click_id", how="left")
        .with_columns(
            pl.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE).alias(
                "traffic_source_id"
            ),
            pl.coalesce("campaign_id", VISIT_CAMPAIGN, CONVERSION_CAMPAIGN).alias("campaign_id"),
        )
        .drop(VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE, VISIT_CAMPAIGN, CONVERSION_CAMPAIGN)
    )
