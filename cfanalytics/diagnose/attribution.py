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

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast, overload

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics.diagnose.error_kinds import ERROR_MEANING_COLUMNS, signature, status_class_nw, with_error_meaning
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


def _nw(frame: Any) -> nw.LazyFrame[Any]:
    """A Polars frame (lazy or not) or a narwhals frame of any engine, as a narwhals lazy frame."""
    if isinstance(frame, nw.LazyFrame):
        return frame
    return nw.from_native(frame.lazy() if isinstance(frame, pl.DataFrame) else frame)


def _like(out: nw.LazyFrame[Any], template: Any) -> Any:
    """``out`` as the kind of frame ``template`` is: narwhals stays narwhals, Polars in → Polars out."""
    return out if isinstance(template, nw.LazyFrame) else out.to_native()


def lookup_join(rows: nw.LazyFrame[Any], table: nw.LazyFrame[Any], on: str | list[str], how: Any) -> nw.LazyFrame[Any]:
    """``rows`` joined (``left``, ``semi``, ``anti``) with a lookup ``table``, frames of one engine: on Polars
    the table is the join's build side, the rows streamed through it (left alone, Polars' streaming engine
    first samples both sides to pick one, holding millions of rows of the larger).

    >>> rows = nw.from_native(pl.LazyFrame({"k": ["a", "b", "c"]}))
    >>> lookup_join(rows, nw.from_native(pl.LazyFrame({"k": ["b"]})), "k", "semi").collect().rows()
    [('b',)]
    """
    native, other = rows.to_native(), table.to_native()
    if isinstance(native, pl.LazyFrame) and isinstance(other, pl.LazyFrame):
        joined: nw.LazyFrame[Any] = nw.from_native(native.join(other, on=on, how=how, build_side="force_right"))
        return joined
    return rows.join(table, on=on, how=how)


def _cached(frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """A Polars plan read several times, computed once (another engine keeps what its caller kept)."""
    native = frame.to_native()
    return nw.from_native(native.cache()) if isinstance(native, pl.LazyFrame) else frame


#: A frame of the functions below: Polars in gives Polars out, a narwhals frame (any engine) gives narwhals.
Rows = TypeVar("Rows", pl.LazyFrame, nw.LazyFrame[Any])


def _own_attribution() -> nw.Expr:
    """Rows that name both their own traffic source and campaign (:func:`needs_attribution`'s complement)."""
    return ~nw.col("traffic_source_id").is_null() & ~nw.col("campaign_id").is_null()


def attribute(rows: Rows, visits: Any, by_conversion: Any) -> Rows:
    """``rows`` with ``traffic_source_id`` and ``campaign_id`` filled from their visit, else their
    conversions (``visits``: a visit lookup; ``by_conversion``: :func:`conversion_attribution`); frames of
    any engine (:mod:`cfanalytics.engines`), all of the same one."""
    looked_up = lookup_join(
        _nw(rows), _nw(visits).select("click_id", VISIT_TRAFFIC_SOURCE, VISIT_CAMPAIGN), "click_id", "left"
    )
    out = (
        lookup_join(looked_up, _nw(by_conversion), "click_id", "left")
        .with_columns(
            nw.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE).alias(
                "traffic_source_id"
            ),
            nw.coalesce("campaign_id", VISIT_CAMPAIGN, CONVERSION_CAMPAIGN).alias("campaign_id"),
        )
        .drop(VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE, VISIT_CAMPAIGN, CONVERSION_CAMPAIGN)
    )
    return cast("Rows", _like(out, rows))


#: How the meanings a frame of failing postbacks lacks are computed (see :func:`enrich_postbacks`).
Derive = Callable[[nw.LazyFrame[Any]], nw.LazyFrame[Any]]


def derive_in_polars(failed: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """The error-meaning columns and ``signature`` of failing postbacks, computed by the rules (Polars regexes):
    what :func:`enrich_postbacks` does with the rows whose meaning was not stored, on a Polars frame."""
    native = failed.to_native()
    if not isinstance(native, pl.LazyFrame):
        raise TypeError("derive_in_polars needs a Polars frame: pass enrich_postbacks a derive of the engine's")
    sig = pl.when(pl.col("is_error")).then(signature(pl.col("error_message"))).alias("signature")
    return nw.from_native(with_error_meaning(native).with_columns(sig))


def enrich_postbacks(
    rows: Rows,
    visits: Any,
    by_conversion: Any,
    where: LogFilter | None = None,
    *,
    timezone: str | None = None,
    meanings: Any = None,
    derive: Derive = derive_in_polars,
) -> Rows:
    """Stored postback rows with attribution, ``status_class``, ``error_kind`` and the other
    ``ERROR_MEANING_COLUMNS`` (what the answer means), ``signature`` and ``attributed``, then
    filtered by the filter's fields other than its range.

    Only the rows that need attribution (:func:`needs_attribution`) are joined with
    ``visits`` and ``by_conversion``. Error meanings and signatures come from ``meanings``
    (those stored at ingest, one row per ``postback_id``:
    :func:`~cfanalytics.diagnose.frames.error_meanings`); the failing rows it lacks (or all,
    without it) get them from ``derive`` (by default computed here, on Polars frames). Polars
    frames in give a Polars frame; narwhals frames of one engine give a frame of that engine.
    """
    lazy = _nw(rows)
    own = _own_attribution()
    attributed = attribute(lazy.filter(~own), visits, by_conversion)
    frame = nw.concat([lazy.filter(own), attributed], how="vertical").with_columns(
        (~nw.col("traffic_source_id").is_null()).alias("attributed"),
        status_class_nw(nw.col("status_code")),
    )
    failing = nw.col("is_error").cast(nw.Boolean()).fill_null(value=False)
    nothing = [nw.lit(None, _NW_TYPES[dtype]).alias(name) for name, dtype in ERROR_MEANING_COLUMNS.items()]
    nothing.append(nw.lit(None, nw.String()).alias("signature"))
    frame = _cached(frame)  # both halves below, and the meaning's distinct tables, read it: compute it once
    failed = frame.filter(failing)
    if meanings is None:
        explained = derive(failed)
    else:  # stored at ingest; those missing (or of other rules) are derived
        stored = _nw(meanings)
        rest = failed.join(stored.select("postback_id"), on="postback_id", how="anti")
        explained = nw.concat([failed.join(stored, on="postback_id", how="inner"), derive(rest)], how="diagonal")
    frame = nw.concat([frame.filter(~failing).with_columns(nothing), explained], how="diagonal")
    out = (where or LogFilter()).replace(start=None, end=None).apply_nw(frame, None, timezone=timezone)
    return cast("Rows", _like(out, rows))


#: Polars types of the error-meaning columns → the same narwhals types.
_NW_TYPES: Final[dict[pl.DataType, Any]] = {pl.String(): nw.String(), pl.Boolean(): nw.Boolean()}


def attribute_conversions(
    conversions: Rows, visits: Any, where: LogFilter | None = None, *, timezone: str | None = None
) -> Rows:
    """Conversions with the traffic source, campaign and ``visit_time`` of their visit where they name
    none, ``known_click`` (the visit is stored), filtered by the filter's fields other than its range;
    frames of any engine, as :func:`attribute`."""
    frame = (
        lookup_join(_nw(conversions), _nw(visits), "click_id", "left")
        .with_columns(
            nw.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE).alias("traffic_source_id"),
            nw.coalesce("campaign_id", VISIT_CAMPAIGN).alias("campaign_id"),
            nw.coalesce("visit_time", VISIT_TIME).alias("visit_time"),
            (~nw.col(VISIT_TIME).is_null()).alias("known_click"),
        )
        .drop(VISIT_TRAFFIC_SOURCE, VISIT_CAMPAIGN, VISIT_TIME)
    )
    out = (where or LogFilter()).replace(start=None, end=None).apply_nw(frame, None, timezone=timezone)
    return cast("Rows", _like(out, conversions))


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
