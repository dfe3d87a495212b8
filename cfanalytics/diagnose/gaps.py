"""Conversion gaps: which conversions never reached the traffic source (docs/contract.md §6), pure.

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
Every number can be drilled down to its rows with :func:`gap_rows` and :func:`orphans`.

The functions take frames (attributed conversions from
:func:`~cfanalytics.diagnose.frames.conversions`, postback outcomes from
:func:`~cfanalytics.diagnose.frames.postback_outcomes` …) and never read a store.

Engines: :func:`classify`, :func:`orphans`, :func:`with_ct_mismatch`, :func:`gap_counts`,
:func:`gap_breakdown` and :func:`gap_breakdowns` take Polars frames (a lazy Polars plan, as
before) or narwhals lazy frames of any engine (Polars, Spark Connect), all of one engine. On a
narwhals frame the joins, filters and group-bys run in its engine and only the aggregates come
back to Polars (:func:`~cfanalytics.engines.fetch`); regexes never run there: a narwhals
:func:`classify` has no ``malformed_click`` and :func:`gap_counts` tells the malformed ones
apart in Polars among the distinct unknown click ids (:func:`malformed`, one rule for both).

>>> import polars as pl
>>> from datetime import UTC, datetime
>>> t = datetime(2026, 11, 20, 10, tzinfo=UTC)
>>> conversions = pl.LazyFrame({"click_id": ["a", "b"], "ct": ["", "sale"], "txid": [None, None],
...     "conversion_time": [t, t], "known_click": [True, True], "_row_id": ["r1", "r2"]})
>>> outcomes = pl.LazyFrame({"click_id": ["a"], "ct": [""], "is_error": [False], "postback_time": [t]})
>>> gap_rows(conversions, outcomes).select("click_id", "gap").rows()
[('a', 'posted_ok'), ('b', 'not_posted')]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, TypeAlias, TypeVar, overload

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics.diagnose.names import Names
from cfanalytics.engines import fetch
from cfanalytics.values import MACRO_PATTERN, UUID_PATTERN

GAP_CLASSES: Final = ("posted_ok", "posted_failed", "not_posted", "pending")


#: A frame the engine-generic functions take: Polars' own, or a narwhals frame of any engine.
Frame: TypeAlias = "pl.LazyFrame | pl.DataFrame | nw.LazyFrame[Any] | nw.DataFrame[Any]"

#: What a null (or ``""``) ct is in an engine's join keys, where null matches no null: no ct is a NUL.
NULL_CT: Final = "\x00"


def _null_empty(col: str) -> pl.Expr:
    return pl.when(pl.col(col) != "").then(pl.col(col))


def _nw_null_empty(col: str) -> nw.Expr:
    return nw.when(nw.col(col) != "").then(nw.col(col))


def _ct_key(col: str) -> nw.Expr:
    """The match key of a ct in an engine: the ct, :data:`NULL_CT` for ``""`` and null (null = null)."""
    return nw.when(nw.col(col) != "").then(nw.col(col)).otherwise(nw.lit(NULL_CT))


def _engine(frame: Frame) -> nw.LazyFrame[Any]:
    """``frame`` as a narwhals lazy frame (of its own engine)."""
    if isinstance(frame, nw.LazyFrame):
        return frame
    if isinstance(frame, nw.DataFrame):
        return frame.lazy()
    lazy: nw.LazyFrame[Any] = nw.from_native(frame.lazy())
    return lazy


def malformed(click_id: pl.Expr) -> pl.Expr:
    """Whether click ids are malformed: an unexpanded macro in them, or not UUID-shaped (Polars only:
    the rule of ``malformed_click``, applied to an engine's click ids once they are fetched).

    >>> ids = pl.DataFrame({"click_id": ["{clickid}", "abc", "0f8fad5b-d9cb-469f-a165-70867728950e"]})
    >>> ids.select(malformed(pl.col("click_id"))).to_series().to_list()
    [True, True, False]
    """
    return click_id.str.contains(MACRO_PATTERN) | ~click_id.str.contains(UUID_PATTERN)


def _malformed_click() -> pl.Expr:
    return (pl.col("unknown_click") & malformed(pl.col("click_id"))).alias("malformed_click")


_Rows = TypeVar("_Rows", pl.LazyFrame, pl.DataFrame)


def with_malformed_click(rows: _Rows) -> _Rows:
    """``rows`` (of :func:`classify`, Polars) with ``malformed_click``: an unknown click whose id is
    :func:`malformed`; unchanged when they have it already or lack ``unknown_click``.

    >>> rows = pl.DataFrame({"click_id": ["{clickid}", "x"], "unknown_click": [True, False]})
    >>> with_malformed_click(rows).get_column("malformed_click").to_list()
    [True, False]
    """
    names = rows.collect_schema().names()
    if "malformed_click" in names or "unknown_click" not in names:
        return rows
    return rows.with_columns(_malformed_click())


@overload
def classify(conversions: pl.LazyFrame, outcomes: pl.LazyFrame, grace_minutes: float = 0) -> pl.LazyFrame: ...


@overload
def classify(conversions: Frame, outcomes: Frame, grace_minutes: float = 0) -> Any: ...


def classify(conversions: Frame, outcomes: Frame, grace_minutes: float = 0) -> Any:
    """Attributed conversions with ``gap``, ``postbacks``, ``postback_errors``, ``unknown_click``,
    ``malformed_click`` and the match keys ``_ct`` / ``_tx`` (``""`` = null); lazy, unordered.

    ``outcomes``: every stored postback's ``click_id``, ``ct``, ``is_error``, ``postback_time`` (and, when
    present, ``integration_id``: then each conversion gets the integration of its latest postback that names
    one, as :func:`~cfanalytics.diagnose.at_stake.with_integrations` says, ties to the greatest id; null when
    none does).

    Polars frames give a lazy Polars frame; narwhals frames (both of one engine) a narwhals lazy frame of
    that engine, without ``malformed_click`` (a regex: see :func:`gap_counts`, :func:`with_malformed_click`).
    A ``grace_minutes`` above 0 reads the latest postback time at once (one value).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    >>> conversions = nw.from_native(pl.LazyFrame({"click_id": ["a", "b"], "ct": ["", "sale"],
    ...     "txid": [None, None], "conversion_time": [t, t], "known_click": [True, False]}))
    >>> outcomes = nw.from_native(pl.LazyFrame({"click_id": ["a"], "ct": [None], "is_error": [True],
    ...     "postback_time": [t]}))
    >>> classify(conversions, outcomes).select("click_id", "gap", "unknown_click").sort("click_id").collect().rows()
    [('a', 'posted_failed', False), ('b', 'not_posted', True)]
    """
    if isinstance(conversions, pl.LazyFrame | pl.DataFrame) and isinstance(outcomes, pl.LazyFrame | pl.DataFrame):
        return _classify_polars(conversions.lazy(), outcomes.lazy(), grace_minutes)
    return _classify_in_engine(_engine(conversions), _engine(outcomes), grace_minutes)


def _classify_polars(conversions: pl.LazyFrame, outcomes: pl.LazyFrame, grace_minutes: float) -> pl.LazyFrame:
    keyed = conversions.with_columns(_null_empty("ct").alias("_ct"), _null_empty("txid").alias("_tx"))
    through = "integration_id" in outcomes.collect_schema().names()
    keys = ["click_id", "_ct"]
    if through:
        outcomes = outcomes.select(
            "click_id", _null_empty("ct").alias("_ct"), "is_error", "integration_id", "postback_time"
        )  # read twice, not cached: a cache would hold every postback until the counts per key are done
    else:
        outcomes = outcomes.select("click_id", _null_empty("ct").alias("_ct"), "is_error", "postback_time")
    spread = [pl.col("integration_id").min().alias("_i_lo"), pl.col("integration_id").max().alias("_i_hi")]
    per_key = outcomes.group_by(keys).agg(
        pl.len().alias("postbacks"),
        pl.col("is_error").sum().cast(pl.Int64).alias("postback_errors"),
        *(spread if through else []),
    )
    if through:
        # one integration among a key's postbacks (nearly always) is the answer; the latest is looked up
        # only for the few keys whose postbacks went through several
        mixed = per_key.filter(pl.col("_i_lo") != pl.col("_i_hi")).select(keys)
        latest = (
            outcomes.join(mixed, on=keys, how="semi", nulls_equal=True, build_side="force_right")
            .filter(pl.col("integration_id").is_not_null())
            .group_by(keys)
            .agg(pl.col("integration_id").sort_by("postback_time", "integration_id").last().alias("_i_latest"))
        )
        per_key = (
            per_key.join(latest, on=keys, how="left", nulls_equal=True, build_side="force_right")
            .with_columns(pl.coalesce("_i_latest", "_i_lo").alias("integration_id"))
            .drop("_i_lo", "_i_hi", "_i_latest")
        )
    # the keys' counts the build side (Polars' streaming engine otherwise samples both sides first)
    frame = keyed.join(
        per_key, on=["click_id", "_ct"], how="left", nulls_equal=True, build_side="force_right"
    ).with_columns(pl.col("postbacks").fill_null(0), pl.col("postback_errors").fill_null(0))
    pending = pl.lit(False)
    if grace_minutes > 0:
        last = outcomes.select(pl.col("postback_time").max()).collect().item()
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
        _malformed_click()
    )


def _gap_class(pending: Any) -> Any:
    """The ``gap`` expression of ``postbacks``, ``postback_errors`` and ``pending`` (narwhals)."""
    return (
        nw.when(nw.col("postbacks") > nw.col("postback_errors"))
        .then(nw.lit("posted_ok"))
        .when(nw.col("postbacks") > 0)
        .then(nw.lit("posted_failed"))
        .when(pending)
        .then(nw.lit("pending"))
        .otherwise(nw.lit("not_posted"))
    )


def _classify_in_engine(
    conversions: nw.LazyFrame[Any], outcomes: nw.LazyFrame[Any], grace_minutes: float
) -> nw.LazyFrame[Any]:
    """:func:`classify` in the frames' engine: joins on ``(click_id, _key)``, ``_key`` the ct or
    :data:`NULL_CT` (narwhals joins have no null = null), the latest integration as max time, then max id."""
    keys = ["click_id", "_key"]
    keyed = conversions.with_columns(
        _nw_null_empty("ct").alias("_ct"), _nw_null_empty("txid").alias("_tx"), _ct_key("ct").alias("_key")
    )
    through = "integration_id" in outcomes.collect_schema().names()
    outcomes = outcomes.select(
        "click_id",
        _ct_key("ct").alias("_key"),
        "is_error",
        "postback_time",
        *(["integration_id"] if through else []),
    )
    spread = [nw.col("integration_id").min().alias("_i_lo"), nw.col("integration_id").max().alias("_i_hi")]
    per_key = outcomes.group_by(keys).agg(
        nw.len().alias("postbacks"),
        nw.col("is_error").cast(nw.Int64).sum().alias("postback_errors"),
        *(spread if through else []),
    )
    if through:
        # as on Polars: the latest is looked up only for the keys whose postbacks went through several
        # integrations; latest = the greatest time among those naming one, ties to the greatest id
        mixed = per_key.filter(nw.col("_i_lo") != nw.col("_i_hi")).select(keys)
        named = outcomes.filter(~nw.col("integration_id").is_null()).join(mixed, on=keys, how="semi")
        last = named.group_by(keys).agg(nw.col("postback_time").max())
        latest = (
            named.join(last, on=[*keys, "postback_time"], how="inner")
            .group_by(keys)
            .agg(nw.col("integration_id").max().alias("_i_latest"))
        )
        per_key = (
            per_key.join(latest, on=keys, how="left")
            .with_columns(nw.coalesce(nw.col("_i_latest"), nw.col("_i_lo")).alias("integration_id"))
            .drop("_i_lo", "_i_hi", "_i_latest")
        )
    frame = (
        keyed.join(per_key, on=keys, how="left")
        .drop("_key")
        .with_columns(nw.col("postbacks").fill_null(0), nw.col("postback_errors").fill_null(0))
    )
    pending: Any = nw.lit(value=False)
    if grace_minutes > 0:
        last_time = fetch(outcomes.select(nw.col("postback_time").max())).item()
        if last_time is not None:
            pending = nw.col("conversion_time") > nw.lit(last_time - timedelta(minutes=grace_minutes))
    return frame.with_columns(_gap_class(pending).alias("gap"), (~nw.col("known_click")).alias("unknown_click"))


def gap_rows(conversions: pl.LazyFrame, outcomes: pl.LazyFrame, grace_minutes: float = 0) -> pl.DataFrame:
    """One row per conversion with its ``gap`` class and the other gap facts (see :func:`classify`).

    Columns added: ``gap``, ``postbacks``, ``postback_errors``, ``duplicate``,
    ``unknown_click``, ``malformed_click``. Sorted by conversion time, click id.
    """
    out = classify(conversions, outcomes, grace_minutes).collect()
    # duplicates: rows beyond the first per (click_id, ct, txid), first = earliest, then by row id
    out = out.sort(["conversion_time", "_row_id"]).with_columns(
        pl.struct("click_id", "_ct", "_tx").is_first_distinct().not_().alias("duplicate")
    )
    return out.drop("_ct", "_tx").sort(["conversion_time", "click_id", "_row_id"])


@overload
def orphans(postbacks: pl.LazyFrame, conversions: pl.LazyFrame) -> pl.LazyFrame: ...


@overload
def orphans(postbacks: Frame, conversions: Frame) -> Any: ...


def orphans(postbacks: Frame, conversions: Frame) -> Any:
    """Postbacks with no conversion on the same (click_id, ct) (``conversions``: ``click_id``, ``ct``);
    in the frames' engine (a narwhals frame when they are narwhals).

    >>> postbacks = pl.LazyFrame({"postback_id": ["p1", "p2"], "click_id": ["a", "b"], "ct": ["", "lead"]})
    >>> keys = pl.LazyFrame({"click_id": ["a", "b"], "ct": [None, "sale"]})
    >>> orphans(postbacks, keys).collect().get_column("postback_id").to_list()
    ['p2']
    >>> orphans(nw.from_native(postbacks), nw.from_native(keys)).collect().get_column("postback_id").to_list()
    ['p2']
    """
    if not (
        isinstance(postbacks, pl.LazyFrame | pl.DataFrame) and isinstance(conversions, pl.LazyFrame | pl.DataFrame)
    ):
        key = _ct_key("ct").alias("_key")
        stored = _engine(conversions).select("click_id", key).unique()
        return _engine(postbacks).with_columns(key).join(stored, on=["click_id", "_key"], how="anti").drop("_key")
    keys = conversions.lazy().select("click_id", _null_empty("ct").alias("_ct")).unique()
    return (
        postbacks.lazy()
        .with_columns(_null_empty("ct").alias("_ct"))
        .join(keys, on=["click_id", "_ct"], how="anti", nulls_equal=True, build_side="force_right")
        .drop("_ct")
    )


@overload
def with_ct_mismatch(orphan_rows: pl.LazyFrame, conversions: pl.LazyFrame) -> pl.LazyFrame: ...


@overload
def with_ct_mismatch(orphan_rows: Frame, conversions: Frame) -> Any: ...


def with_ct_mismatch(orphan_rows: Frame, conversions: Frame) -> Any:
    """Orphan postbacks with ``ct_mismatch``: their click has a conversion (with another ct); in the
    frames' engine.

    >>> rows = nw.from_native(pl.LazyFrame({"postback_id": ["p1", "p2"], "click_id": ["a", "b"]}))
    >>> keys = nw.from_native(pl.LazyFrame({"click_id": ["a"], "ct": ["sale"]}))
    >>> with_ct_mismatch(rows, keys).sort("postback_id").collect().get_column("ct_mismatch").to_list()
    [True, False]
    """
    if not (
        isinstance(orphan_rows, pl.LazyFrame | pl.DataFrame) and isinstance(conversions, pl.LazyFrame | pl.DataFrame)
    ):
        stored = _engine(conversions).select("click_id").unique().with_columns(nw.lit(value=True).alias("_has"))
        return (
            _engine(orphan_rows)
            .join(stored, on="click_id", how="left")
            .with_columns(nw.col("_has").fill_null(value=False).alias("ct_mismatch"))
            .drop("_has")
        )
    clicks = conversions.lazy().select("click_id").unique().with_columns(pl.lit(True).alias("_has_conversion"))
    return (
        orphan_rows.lazy()
        .join(clicks, on="click_id", how="left", build_side="force_right")
        .with_columns(pl.col("_has_conversion").fill_null(False).alias("ct_mismatch"))
        .drop("_has_conversion")
    )


def _count(condition: nw.Expr) -> nw.Expr:
    """Rows where ``condition`` holds (nulls not counted), as an Int64 sum every engine computes."""
    return condition.cast(nw.Int64).sum()


def gap_counts(classified: Frame, orphan_rows: Frame) -> dict[str, int]:
    """The ``gaps`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5): counts of
    :func:`classify` rows and of orphan postbacks (with ``ct_mismatch``), aggregated without
    materializing the rows; duplicates are rows minus distinct (click_id, ct, txid).

    Each frame is counted in its own engine; on a narwhals ``classified`` (no ``malformed_click``) the
    distinct unknown click ids come back with their counts and :func:`malformed` tells them apart here.

    >>> rows = nw.from_native(pl.LazyFrame({"click_id": ["{clickid}", "{clickid}", "b"], "_ct": [None] * 3,
    ...     "_tx": [None] * 3, "gap": ["not_posted"] * 3, "unknown_click": [True, True, False]}))
    >>> counts = gap_counts(rows, pl.LazyFrame({"ct_mismatch": [True]}))
    >>> counts["duplicate_conversions"], counts["unknown_click"], counts["unknown_click_malformed"]
    (1, 2, 2)
    """
    if isinstance(classified, pl.LazyFrame | pl.DataFrame):
        counts = (
            with_malformed_click(classified.lazy())
            .select(
                pl.len().alias("conversions"),
                *((pl.col("gap") == cls).sum().alias(cls) for cls in GAP_CLASSES),
                pl.col("unknown_click").sum().alias("unknown_click"),
                pl.col("malformed_click").sum().alias("unknown_click_malformed"),
                pl.struct("click_id", "_ct", "_tx").n_unique().alias("_distinct"),
            )
            .collect()
        )
        c = {k: int(v or 0) for k, v in counts.row(0, named=True).items()}
    else:
        c = _engine_counts(_engine(classified))
    n_orphans, n_mismatch = fetch(_engine(orphan_rows).select(nw.len(), _count(nw.col("ct_mismatch")))).row(0)
    return {
        "conversions": c["conversions"],
        **{cls: c[cls] for cls in GAP_CLASSES},
        "orphan_postbacks": int(n_orphans),
        "ct_mismatch": int(n_mismatch or 0),
        "duplicate_conversions": c["conversions"] - c["_distinct"],
        "unknown_click": c["unknown_click"],
        "unknown_click_malformed": c["unknown_click_malformed"],
    }


def _engine_counts(classified: nw.LazyFrame[Any]) -> dict[str, int]:
    """The counts of :func:`gap_counts` in ``classified``'s engine: one pass grouped by (click_id, _ct, _tx),
    one over the unknown clicks grouped by click id; regexes on the fetched click ids."""
    per_conversion = classified.group_by("click_id", "_ct", "_tx").agg(
        nw.len().alias("_rows"), *(_count(nw.col("gap") == cls).alias(cls) for cls in GAP_CLASSES)
    )
    totals = fetch(
        per_conversion.select(
            nw.col("_rows").sum().alias("conversions"),
            *(nw.col(cls).sum() for cls in GAP_CLASSES),
            nw.len().alias("_distinct"),
        )
    )
    c = {k: int(v or 0) for k, v in totals.row(0, named=True).items()}
    unknown = fetch(classified.filter(nw.col("unknown_click")).group_by("click_id").agg(nw.len().alias("rows")))
    found = unknown.select(
        pl.col("rows").sum().alias("unknown_click"),
        pl.col("rows").filter(malformed(pl.col("click_id"))).sum().alias("unknown_click_malformed"),
    )
    c.update({k: int(v or 0) for k, v in found.row(0, named=True).items()})
    return c


def gap_table(rows: pl.DataFrame, by: str) -> pl.DataFrame:
    """Gap classes per group of :func:`gap_rows`: one column per class and ``conversions``, sorted by
    ``not_posted`` descending, then the group (names are not added).

    >>> rows = pl.DataFrame({"traffic_source_id": ["t1", "t1", "t2"], "gap": ["posted_ok", "not_posted", "posted_ok"]})
    >>> gap_table(rows, "traffic_source_id").rows()
    [('t1', 1, 0, 1, 0, 2), ('t2', 1, 0, 0, 0, 1)]
    """
    schema: dict[str, pl.DataType] = {by: pl.String(), **{c: pl.Int64() for c in (*GAP_CLASSES, "conversions")}}
    if rows.height == 0:
        return pl.DataFrame(schema=schema)
    wide = rows.group_by(by, "gap").len().pivot(on="gap", index=by, values="len").fill_null(0)
    for cls in GAP_CLASSES:
        if cls not in wide.columns:
            wide = wide.with_columns(pl.lit(0).alias(cls))
    wide = wide.select(pl.col(by).cast(pl.String), *(pl.col(c).cast(pl.Int64) for c in GAP_CLASSES)).with_columns(
        pl.sum_horizontal(*GAP_CLASSES).alias("conversions")
    )
    return wide.sort(["not_posted", by], descending=[True, False], nulls_last=True)


#: The groups :func:`gap_breakdown` counts by, and the ``gaps`` key of the diagnose document each goes to.
GAP_BREAKDOWNS: Final = {"traffic_source_id": "by_traffic_source", "integration_id": "by_integration"}


def _with_column(frame: nw.LazyFrame[Any], column: str) -> nw.LazyFrame[Any]:
    if column in frame.collect_schema().names():
        return frame.with_columns(nw.col(column).cast(nw.String))
    return frame.with_columns(nw.lit(None, nw.String).alias(column))


def _sorted_breakdown(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    return frame.sort(["not_posted", "conversions", by], descending=[True, True, False], nulls_last=True)


def _class_counts(classified: Frame, by: list[str]) -> pl.DataFrame:
    """``conversions`` and one Int64 column per gap class per ``by``, counted in ``classified``'s engine."""
    frame = _engine(classified)
    for column in by:
        frame = _with_column(frame, column)
    counted = fetch(
        frame.group_by(*by).agg(
            nw.len().alias("conversions"), *(_count(nw.col("gap") == cls).alias(cls) for cls in GAP_CLASSES)
        )
    )
    return counted.select(
        pl.col(by).cast(pl.String), *(pl.col(c).fill_null(0).cast(pl.Int64) for c in ("conversions", *GAP_CLASSES))
    )


def gap_breakdown(classified: Frame, by: str) -> pl.DataFrame:
    """Every gap class per ``by`` (``traffic_source_id`` or ``integration_id``) of :func:`classify` rows:
    ``conversions`` and one column per class, sorted by ``not_posted`` descending, then ``conversions``
    descending, then the group (null last: conversions with no traffic source found, or posted through no
    integration). A source with no postback configured shows all its conversions ``not_posted``. Counted in
    the rows' engine.

    >>> rows = pl.LazyFrame({"traffic_source_id": ["t1", "t2", "t2", None],
    ...     "gap": ["posted_ok", "not_posted", "not_posted", "posted_failed"]})
    >>> gap_breakdown(rows, "traffic_source_id").rows()
    [('t2', 2, 0, 0, 2, 0), ('t1', 1, 1, 0, 0, 0), (None, 1, 0, 1, 0, 0)]
    """
    return _sorted_breakdown(_class_counts(classified, [by]), by)


def gap_breakdowns(classified: Frame, names: Names) -> dict[str, list[dict[str, Any]]]:
    """The ``gaps.by_traffic_source`` and ``gaps.by_integration`` lists of the diagnose document: each
    :func:`gap_breakdown` row with the group's name (one pass over the rows, in their engine, for both).

    >>> rows = pl.LazyFrame({"traffic_source_id": ["t1", "t2"], "integration_id": ["i1", None],
    ...     "gap": ["posted_ok", "not_posted"]})
    >>> gap_breakdowns(rows, Names.empty())["by_traffic_source"][0]
    {'traffic_source_id': 't2', 'traffic_source_name': None, 'conversions': 1, 'posted_ok': 0, \
'posted_failed': 0, 'not_posted': 1, 'pending': 0}
    """
    both = _class_counts(classified, list(GAP_BREAKDOWNS))
    out: dict[str, list[dict[str, Any]]] = {}
    for by, key in GAP_BREAKDOWNS.items():
        counted = both.group_by(by).agg(pl.col("conversions", *GAP_CLASSES).sum())
        name = by.removesuffix("_id") + "_name"
        table = _sorted_breakdown(names.add(counted, by), by)  # sorted after the join: it may not keep order
        out[key] = table.select(
            by,
            pl.col(name) if name in table.columns else pl.lit(None, pl.String).alias(name),
            "conversions",
            *GAP_CLASSES,
        ).to_dicts()
    return out


def gap_summary_of_rows(rows: pl.DataFrame, orphan_rows: pl.DataFrame) -> dict[str, int]:
    """:func:`gap_counts` of materialized :func:`gap_rows` and orphan postbacks (as a panel holds them)."""
    counts = dict.fromkeys(GAP_CLASSES, 0)
    if rows.height:
        for cls, n in rows.group_by("gap").len().iter_rows():
            counts[cls] = int(n)

    def total(frame: pl.DataFrame, column: str) -> int:
        return int(frame.get_column(column).sum()) if frame.height and column in frame.columns else 0

    return {
        "conversions": rows.height,
        **counts,
        "orphan_postbacks": orphan_rows.height,
        "ct_mismatch": total(orphan_rows, "ct_mismatch"),
        "duplicate_conversions": total(rows, "duplicate"),
        "unknown_click": total(rows, "unknown_click"),
        "unknown_click_malformed": total(rows, "malformed_click"),
    }


def lag_distributions(conversions: pl.LazyFrame, outcomes: pl.LazyFrame) -> dict[str, pl.DataFrame]:
    """Lags of attributed conversions: ``visit_to_conversion`` (minutes) and ``conversion_to_postback``
    (seconds to the first postback on the same click id and ct)."""
    keyed = conversions.with_columns(_null_empty("ct").alias("_ct"))
    visit_to_conversion = keyed.select(
        "click_id", ((pl.col("conversion_time") - pl.col("visit_time")).dt.total_seconds() / 60).alias("minutes")
    ).filter(pl.col("minutes").is_not_null())
    first_postback = (
        outcomes.select("click_id", _null_empty("ct").alias("_ct"), "postback_time")
        .group_by("click_id", "_ct")
        .agg(pl.col("postback_time").min())
    )
    conversion_to_postback = keyed.join(first_postback, on=["click_id", "_ct"], how="inner", nulls_equal=True).select(
        "click_id", (pl.col("postback_time") - pl.col("conversion_time")).dt.total_seconds().alias("seconds")
    )
    return {
        # click id breaks ties: the joins above do not keep row order
        "visit_to_conversion": visit_to_conversion.collect().sort("minutes", "click_id"),
        "conversion_to_postback": conversion_to_postback.collect().sort("seconds", "click_id"),
    }


def conversions_by_day(conversions: pl.LazyFrame, timezone: str) -> pl.DataFrame:
    """Conversions per local day counted by conversion date and by visit date, and the difference."""
    by_conversion = conversions.group_by(
        pl.col("conversion_time").dt.convert_time_zone(timezone).dt.date().alias("day")
    ).agg(pl.len().alias("by_conversion_date"))
    by_visit = (
        conversions.filter(pl.col("visit_time").is_not_null())
        .group_by(pl.col("visit_time").dt.convert_time_zone(timezone).dt.date().alias("day"))
        .agg(pl.len().alias("by_visit_date"))
    )
    out = by_conversion.join(by_visit, on="day", how="full", coalesce=True).collect()
    out = out.with_columns(
        pl.col("by_conversion_date").fill_null(0).cast(pl.Int64), pl.col("by_visit_date").fill_null(0).cast(pl.Int64)
    )
    return out.with_columns((pl.col("by_visit_date") - pl.col("by_conversion_date")).alias("difference")).sort("day")


def funnel_counts(
    visits: pl.LazyFrame, clicks: pl.LazyFrame, conversions: pl.LazyFrame, postbacks: pl.LazyFrame, by: str
) -> pl.DataFrame:
    """Visits → clicks → conversions → postbacks sent → postbacks accepted per ``by`` (visits descending)."""
    if by not in clicks.collect_schema().names():
        clicks = clicks.with_columns(pl.lit(None, pl.String).alias(by))
    parts = (
        clicks.group_by(by).agg(pl.len().alias("clicks")),
        conversions.group_by(by).agg(pl.len().alias("conversions")),
        postbacks.group_by(by).agg(
            pl.len().alias("postbacks_sent"), (~pl.col("is_error")).sum().cast(pl.Int64).alias("postbacks_accepted")
        ),
    )
    out = visits.group_by(by).agg(pl.len().alias("visits"))
    for other in parts:
        out = out.join(other, on=by, how="full", coalesce=True)
    cols = ["visits", "clicks", "conversions", "postbacks_sent", "postbacks_accepted"]
    result = out.collect().with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in cols)
    return result.sort(["visits", by], descending=[True, False], nulls_last=True)
