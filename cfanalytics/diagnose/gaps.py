"""Conversion gaps: which conversions never reached the traffic source (docs/contract.md §6).

Every stored conversion row (duplicates included) falls in exactly one class,
matched to postbacks on ``(click_id, ct)`` with ``""`` = null and null = null:

- ``posted_ok`` — a postback without error;
- ``posted_failed`` — postbacks, all of them errors;
- ``pending`` — none yet, but newer than ``grace`` minutes before the last postback loaded (0 when grace is 0);
- ``not_posted`` — none.

Also: orphan postbacks (no conversion on the same click id and ct) and among them
``ct_mismatch`` (the click has a conversion with another ct); duplicate
conversions (rows beyond the first per click id, ct, txid); unknown clicks
(conversion click ids not among stored visits) and the malformed ones among them.
Every number can be drilled down to its rows with :func:`conversion_gaps` and
:func:`orphan_postbacks`.

>>> import tempfile, cfanalytics as cf
>>> gap_summary(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))["conversions"]
0
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

import polars as pl

from cfanalytics.diagnose.frames import visits_of
from cfanalytics.filters import LogFilter
from cfanalytics.normalize import MACRO_PATTERN, UUID_PATTERN

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

GAP_CLASSES: Final = ("posted_ok", "posted_failed", "not_posted", "pending")


def _null_empty(col: str) -> pl.Expr:
    return pl.when(pl.col(col) != "").then(pl.col(col))


def _tz(store: LogStore, where: LogFilter | None) -> str:
    return (where.timezone if where else None) or store.timezone or "UTC"


def conversion_rows(store: LogStore, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored conversions in the filter's time range, not attributed yet."""
    flt = where or LogFilter()
    return LogFilter(start=flt.start, end=flt.end, timezone=flt.timezone).apply(
        store.scan("conversions"), "conversions", timezone=store.timezone
    )


def conversions(store: LogStore, where: LogFilter | None = None, *, visits: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Conversions with the attributed traffic source/campaign (own column, else the visit's), filtered.

    ``visits`` may be a :func:`~cfanalytics.diagnose.frames.visit_lookup` covering the
    conversions' click ids; else the visits are read here.
    """
    flt = where or LogFilter()
    conv = conversion_rows(store, flt)
    # only the visits of these conversions' clicks (semi join), not every stored visit
    found = visits_of(store, conv) if visits is None else visits.lazy()
    conv = conv.join(found, on="click_id", how="left").with_columns(
        pl.coalesce("traffic_source_id", "_v_ts").alias("traffic_source_id"),
        pl.coalesce("campaign_id", "_v_cmp").alias("campaign_id"),
        pl.coalesce("visit_time", "_v_time").alias("visit_time"),
        pl.col("_v_time").is_not_null().alias("known_click"),
    )
    conv = conv.drop("_v_ts", "_v_cmp", "_v_time")
    return flt.replace(start=None, end=None).apply(conv, None, timezone=store.timezone)


def _classified(
    store: LogStore, where: LogFilter | None, grace_minutes: float, visits: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """Conversions in range with ``gap``, ``postbacks``, ``postback_errors``, ``unknown_click``,
    ``malformed_click`` and the match keys ``_ct`` / ``_tx`` (``""`` = null); lazy, unordered."""
    conv = conversions(store, where, visits=visits).with_columns(
        _null_empty("ct").alias("_ct"), _null_empty("txid").alias("_tx")
    )
    pb = store.scan("postbacks").select("click_id", _null_empty("ct").alias("_ct"), "is_error")
    per_key = pb.group_by("click_id", "_ct").agg(
        pl.len().alias("postbacks"),
        pl.col("is_error").sum().cast(pl.Int64).alias("postback_errors"),
    )
    frame = conv.join(per_key, on=["click_id", "_ct"], how="left", nulls_equal=True).with_columns(
        pl.col("postbacks").fill_null(0), pl.col("postback_errors").fill_null(0)
    )
    pending = pl.lit(False)
    if grace_minutes > 0:
        last = store.scan("postbacks").select(pl.col("postback_time").max()).collect().item()
        if last is not None:
            pending = pl.col("conversion_time") > pl.lit(last - timedelta(minutes=grace_minutes))
    gap = (
        pl.when(pl.col("postbacks") > pl.col("postback_errors"))
        .then(pl.lit("posted_ok"))
        .when(pl.col("postbacks") > 0)
        .then(pl.lit("posted_failed"))
        .when(pending)
        .then(pl.lit("pending"))
        .otherwise(pl.lit("not_posted"))
    )
    return frame.with_columns(gap.alias("gap"), (~pl.col("known_click")).alias("unknown_click")).with_columns(
        (
            pl.col("unknown_click")
            & (pl.col("click_id").str.contains(MACRO_PATTERN) | ~pl.col("click_id").str.contains(UUID_PATTERN))
        ).alias("malformed_click")
    )


def conversion_gaps(store: LogStore, where: LogFilter | None = None, *, grace_minutes: float = 0) -> pl.DataFrame:
    """One row per stored conversion in range with its ``gap`` class and the other gap facts.

    Columns added: ``gap``, ``postbacks``, ``postback_errors``, ``duplicate``,
    ``unknown_click``, ``malformed_click``. Sorted by conversion time, click id.
    """
    out = _classified(store, where, grace_minutes).collect()
    # duplicates: rows beyond the first per (click_id, ct, txid), first = earliest, then by row id
    out = out.sort(["conversion_time", "_row_id"]).with_columns(
        pl.struct("click_id", "_ct", "_tx").is_first_distinct().not_().alias("duplicate")
    )
    return out.drop("_ct", "_tx").sort(["conversion_time", "click_id", "_row_id"])


def _orphans(store: LogStore, flt: LogFilter) -> pl.LazyFrame:
    """Stored postbacks in the time range with no conversion on the same (click_id, ct), not enriched."""
    from cfanalytics.diagnose.frames import postback_rows

    conv_keys = store.scan("conversions").select("click_id", _null_empty("ct").alias("_ct")).unique()
    return (
        postback_rows(store, flt)
        .with_columns(_null_empty("ct").alias("_ct"))
        .join(conv_keys, on=["click_id", "_ct"], how="anti", nulls_equal=True)
        .drop("_ct")
    )


def _with_ct_mismatch(store: LogStore, orphans: pl.LazyFrame) -> pl.LazyFrame:
    conv_clicks = store.scan("conversions").select("click_id").unique().with_columns(pl.lit(True).alias("_has_conv"))
    return (
        orphans.join(conv_clicks, on="click_id", how="left")
        .with_columns(pl.col("_has_conv").fill_null(False).alias("ct_mismatch"))
        .drop("_has_conv")
    )


def orphan_postbacks(
    store: LogStore, where: LogFilter | None = None, *, frame: pl.DataFrame | pl.LazyFrame | None = None
) -> pl.DataFrame:
    """Postbacks in range with no conversion on the same (click_id, ct); ``ct_mismatch`` marks
    those whose click has a conversion with another ct.

    The stored postbacks are anti-joined with the conversion keys first and only the orphans
    are enriched (as :func:`~cfanalytics.diagnose.frames.postbacks`). ``frame`` lets callers
    pass an already enriched ``postbacks(store, where)`` frame to anti-join instead.
    """
    flt = where or LogFilter()
    if frame is not None:
        conv_keys = store.scan("conversions").select("click_id", _null_empty("ct").alias("_ct")).unique()
        orphans = (
            frame.lazy()
            .with_columns(_null_empty("ct").alias("_ct"))
            .join(conv_keys, on=["click_id", "_ct"], how="anti", nulls_equal=True)
            .drop("_ct")
        )
    else:
        from cfanalytics.diagnose.frames import enrich_postbacks

        rows = _orphans(store, flt).collect().lazy()
        orphans = enrich_postbacks(store, rows, flt)
    return _with_ct_mismatch(store, orphans).collect().sort(["postback_time", "postback_id"])


#: LogFilter fields that filter postbacks on columns :func:`~cfanalytics.diagnose.frames.postbacks` adds.
_ENRICHED_FIELDS: Final = ("traffic_sources", "campaigns", "status_classes", "error_kinds")


def gap_summary(
    store: LogStore,
    where: LogFilter | None = None,
    *,
    grace_minutes: float = 0,
    postbacks_frame: pl.DataFrame | pl.LazyFrame | None = None,
    visits: pl.DataFrame | None = None,
) -> dict[str, int]:
    """The ``gaps`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5).

    Counts are aggregated without materialising the rows; duplicates are rows minus distinct
    (click_id, ct, txid). ``postbacks_frame`` may be an already enriched
    ``postbacks(store, where)`` frame (as :func:`orphan_postbacks` takes), ``visits`` a
    :func:`~cfanalytics.diagnose.frames.visit_lookup` covering the conversions' click ids.
    """
    flt = where or LogFilter()
    rows = _classified(store, flt, grace_minutes, visits)
    counts = rows.select(
        pl.len().alias("conversions"),
        *((pl.col("gap") == cls).sum().alias(cls) for cls in GAP_CLASSES),
        pl.col("unknown_click").sum().alias("unknown_click"),
        pl.col("malformed_click").sum().alias("unknown_click_malformed"),
        pl.struct("click_id", "_ct", "_tx").n_unique().alias("_distinct"),
    ).collect()
    c = {k: int(v or 0) for k, v in counts.row(0, named=True).items()}
    if postbacks_frame is not None or any(getattr(flt, f) is not None for f in _ENRICHED_FIELDS):
        orphans = orphan_postbacks(store, flt, frame=postbacks_frame)
        n_orphans, n_mismatch = orphans.height, int(orphans.get_column("ct_mismatch").sum())
    else:
        # no filter on attributed columns: the stored rows are the answer, no enrichment needed
        rest = flt.replace(start=None, end=None)
        orphans_lf = rest.apply(_with_ct_mismatch(store, _orphans(store, flt)), None, timezone=store.timezone)
        n_orphans, n_mismatch = orphans_lf.select(pl.len(), pl.col("ct_mismatch").sum()).collect().row(0)
    return {
        "conversions": c["conversions"],
        **{cls: c[cls] for cls in GAP_CLASSES},
        "orphan_postbacks": int(n_orphans),
        "ct_mismatch": int(n_mismatch or 0),
        "duplicate_conversions": c["conversions"] - c["_distinct"],
        "unknown_click": c["unknown_click"],
        "unknown_click_malformed": c["unknown_click_malformed"],
    }


def gaps_by(
    store: LogStore, by: str = "traffic_source_id", where: LogFilter | None = None, *, grace_minutes: float = 0
) -> pl.DataFrame:
    """Gap classes per traffic source (or campaign…), one column per class, with names."""
    from cfanalytics.diagnose.frames import with_names

    rows = conversion_gaps(store, where, grace_minutes=grace_minutes)
    wide = rows.group_by(by, "gap").len().pivot(on="gap", index=by, values="len").fill_null(0)
    for cls in GAP_CLASSES:
        if cls not in wide.columns:
            wide = wide.with_columns(pl.lit(0, pl.UInt32).alias(cls))
    wide = wide.select(by, *(pl.col(c).cast(pl.Int64) for c in GAP_CLASSES)).with_columns(
        pl.sum_horizontal(*GAP_CLASSES).alias("conversions")
    )
    wide = wide.sort(["not_posted", by], descending=[True, False], nulls_last=True)
    return with_names(wide, store, by)


def lags(store: LogStore, where: LogFilter | None = None) -> dict[str, pl.DataFrame]:
    """Lag distributions: ``visit_to_conversion`` (minutes) and ``conversion_to_postback`` (seconds)."""
    conv = conversions(store, where).with_columns(_null_empty("ct").alias("_ct"))
    v2c = conv.select(
        "click_id", ((pl.col("conversion_time") - pl.col("visit_time")).dt.total_seconds() / 60).alias("minutes")
    ).filter(pl.col("minutes").is_not_null())
    first_pb = (
        store.scan("postbacks")
        .select("click_id", _null_empty("ct").alias("_ct"), "postback_time")
        .group_by("click_id", "_ct")
        .agg(pl.col("postback_time").min())
    )
    c2p = conv.join(first_pb, on=["click_id", "_ct"], how="inner", nulls_equal=True).select(
        "click_id", (pl.col("postback_time") - pl.col("conversion_time")).dt.total_seconds().alias("seconds")
    )
    return {
        # click id breaks ties: the joins above do not keep row order
        "visit_to_conversion": v2c.collect().sort("minutes", "click_id"),
        "conversion_to_postback": c2p.collect().sort("seconds", "click_id"),
    }


def attribution_by_day(store: LogStore, where: LogFilter | None = None) -> pl.DataFrame:
    """Conversions per local day counted by conversion date and by visit date, and the difference."""
    tz = _tz(store, where)
    conv = conversions(store, where)
    by_conv = conv.group_by(pl.col("conversion_time").dt.convert_time_zone(tz).dt.date().alias("day")).agg(
        pl.len().alias("by_conversion_date")
    )
    by_visit = (
        conv.filter(pl.col("visit_time").is_not_null())
        .group_by(pl.col("visit_time").dt.convert_time_zone(tz).dt.date().alias("day"))
        .agg(pl.len().alias("by_visit_date"))
    )
    out = by_conv.join(by_visit, on="day", how="full", coalesce=True).collect()
    out = out.with_columns(
        pl.col("by_conversion_date").fill_null(0).cast(pl.Int64), pl.col("by_visit_date").fill_null(0).cast(pl.Int64)
    )
    return out.with_columns((pl.col("by_visit_date") - pl.col("by_conversion_date")).alias("difference")).sort("day")


def funnel(store: LogStore, by: str = "campaign_id", where: LogFilter | None = None) -> pl.DataFrame:
    """Visits → clicks → conversions → postbacks sent → postbacks accepted, per campaign or traffic source."""
    from cfanalytics.diagnose.frames import postbacks, with_names

    flt = where or LogFilter()
    tz = store.timezone
    visits = flt.apply(store.scan("visits"), "visits", timezone=tz).group_by(by).agg(pl.len().alias("visits"))
    clicks = flt.apply(store.scan("clicks"), "clicks", timezone=tz)
    if by not in clicks.collect_schema().names():
        clicks = clicks.with_columns(pl.lit(None, pl.String).alias(by))
    clicks = clicks.group_by(by).agg(pl.len().alias("clicks"))
    conv = conversions(store, flt).group_by(by).agg(pl.len().alias("conversions"))
    pb = (
        postbacks(store, flt)
        .group_by(by)
        .agg(pl.len().alias("postbacks_sent"), (~pl.col("is_error")).sum().cast(pl.Int64).alias("postbacks_accepted"))
    )
    out = visits
    for other in (clicks, conv, pb):
        out = out.join(other, on=by, how="full", coalesce=True)
    cols = ["visits", "clicks", "conversions", "postbacks_sent", "postbacks_accepted"]
    result = out.collect().with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in cols)
    result = result.sort(["visits", by], descending=[True, False], nulls_last=True)
    return with_names(result, store, by)
