"""Money at stake: the payout of conversions that never reached their traffic source.

A pure function of gap rows (one row per stored conversion with its ``gap`` class,
as :func:`cfanalytics.diagnose.gaps.gap_rows` returns them): the conversions
whose postbacks all failed (``posted_failed``) or that were never posted
(``not_posted``), counted and summed **per currency** — amounts in different
currencies are never added together. Duplicate conversions (rows beyond the first
per click id, ct and txid, ``duplicate`` true) are double fires, not money, and are
left out. Rows without a currency take the store's currency when one is given.

:func:`lost_conversions` takes the lazy classified conversions
(:func:`~cfanalytics.diagnose.gaps.classify`) and materializes only the lost ones;
:func:`with_integrations` names the Conversion API integration of each (that of its
postbacks; none for a conversion never posted or posted by plain S2S).

>>> rows = pl.DataFrame({
...     "gap": ["not_posted", "posted_failed", "posted_ok", "not_posted"],
...     "payout": [10.0, 2.5, 99.0, 4.0],
...     "currency": ["USD", "USD", "USD", "EUR"],
...     "traffic_source_id": ["t1", "t1", "t1", "t2"],
... })
>>> at_stake(rows, by=["traffic_source_id"]).rows()
[('t1', 'USD', 2, 1, 1, 12.5), ('t2', 'EUR', 1, 0, 1, 4.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._portable import one_of
from cfanalytics.diagnose.gaps import Frame, with_malformed_click
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import fetch

#: The gap classes whose payout did not reach the traffic source.
AT_STAKE_CLASSES: Final = ("posted_failed", "not_posted")
#: Groupings of the JSON section, by key.
AT_STAKE_GROUPINGS: Final = {
    "by_traffic_source": "traffic_source_id",
    "by_integration": "integration_id",
    "by_campaign": "campaign_id",
    "by_day": "day",
}
_COUNTS: Final = ("conversions", "posted_failed", "not_posted")
#: The keys of the rows of each grouping and total, in order (names follow their id).
AT_STAKE_FIELDS: Final = ("currency", *_COUNTS, "payout")


def _null_empty(col: str) -> pl.Expr:
    return pl.when(pl.col(col) != "").then(pl.col(col))


def lost_conversions(classified: Frame) -> pl.DataFrame:
    """The classified conversions at stake (``posted_failed``, ``not_posted``) with ``duplicate``, collected.

    ``duplicate`` is what :func:`~cfanalytics.diagnose.gaps.gap_rows` says of the same rows: all rows of
    one (click id, ct, txid) share their postbacks, so the first of them is at stake whenever a later one
    is (only ``pending`` depends on the time, and it takes the later rows). Sorted by time, click id.

    ``classified``: Polars' or any engine's (narwhals): the engine filters, only the lost rows come back;
    they get ``malformed_click`` here when they lack it (:func:`~cfanalytics.diagnose.gaps.with_malformed_click`),
    and ``postbacks`` / ``postback_errors`` are Int64 on every engine.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 11, 20, tzinfo=UTC)
    >>> rows = pl.LazyFrame({"gap": ["not_posted", "not_posted", "posted_ok"], "click_id": ["a", "a", "b"],
    ...     "ct": ["", None, ""], "txid": [None, None, None], "conversion_time": [t, t, t], "_row_id": ["1", "2", "3"]})
    >>> lost_conversions(rows).get_column("duplicate").to_list()
    [False, True]
    """
    if isinstance(classified, pl.LazyFrame | pl.DataFrame):
        lost = classified.lazy().filter(pl.col("gap").is_in(AT_STAKE_CLASSES)).collect()
    else:
        lost = fetch(classified.filter(one_of(nw.col("gap"), AT_STAKE_CLASSES)))
    counts = [c for c in ("postbacks", "postback_errors") if c in lost.columns]
    lost = with_malformed_click(lost)
    lost = lost.with_columns(pl.col(counts).cast(pl.Int64))
    out = lost.with_columns(_null_empty("ct").alias("_ct"), _null_empty("txid").alias("_tx"))
    out = out.sort(["conversion_time", "_row_id"])
    out = out.with_columns(pl.struct("click_id", "_ct", "_tx").is_first_distinct().not_().alias("duplicate"))
    return out.drop("_ct", "_tx").sort(["conversion_time", "click_id", "_row_id"])


def with_integrations(rows: pl.DataFrame, postbacks: pl.LazyFrame) -> pl.DataFrame:
    """``rows`` (conversions) with ``integration_id``: the integration of the latest postback on the same
    click id and ct that names one (``postbacks``: ``click_id``, ``ct``, ``integration_id``,
    ``postback_time``); null when none does.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 11, 20, tzinfo=UTC)
    >>> pbs = pl.LazyFrame({"click_id": ["a", "a"], "ct": ["", None], "integration_id": ["i1", "i2"],
    ...     "postback_time": [t, t.replace(hour=1)]})
    >>> with_integrations(pl.DataFrame({"click_id": ["a", "b"], "ct": [None, ""]}), pbs).rows()
    [('a', None, 'i2'), ('b', '', None)]
    """
    if rows.height == 0:
        return rows.with_columns(pl.lit(None, pl.String).alias("integration_id"))
    latest = (
        postbacks.filter(pl.col("integration_id").is_not_null())
        .join(rows.lazy().select("click_id").unique(), on="click_id", how="semi")
        .select("click_id", _null_empty("ct").alias("_ct"), "integration_id", "postback_time")
        .group_by("click_id", "_ct")
        .agg(pl.col("integration_id").sort_by("postback_time", "integration_id").last())
        .collect()
    )
    keyed = rows.drop("integration_id", strict=False).with_columns(_null_empty("ct").alias("_ct"))
    return keyed.join(latest, on=["click_id", "_ct"], how="left", nulls_equal=True, maintain_order="left").drop("_ct")


def _lost(gap_rows: pl.DataFrame | pl.LazyFrame, timezone: str, currency: str | None) -> pl.LazyFrame:
    lf = gap_rows.lazy()
    names = lf.collect_schema().names()
    keep = pl.col("gap").is_in(AT_STAKE_CLASSES)
    if "duplicate" in names:
        keep = keep & ~pl.col("duplicate").fill_null(False)
    extra = []
    if "currency" not in names:
        extra.append(pl.lit(None, pl.String).alias("currency"))
    if "conversion_time" in names:
        extra.append(pl.col("conversion_time").dt.convert_time_zone(timezone).dt.date().alias("day"))
    lf = lf.filter(keep).with_columns(extra) if extra else lf.filter(keep)
    return lf.with_columns(
        pl.col("currency").fill_null(pl.lit(currency, pl.String)),
        pl.col("payout").cast(pl.Float64),
    )


def at_stake(
    gap_rows: pl.DataFrame | pl.LazyFrame,
    *,
    by: Sequence[str] = (),
    timezone: str = "UTC",
    currency: str | None = None,
) -> pl.DataFrame:
    """Conversions and payout at stake per group and currency.

    ``by`` names columns of the gap rows, or ``"day"`` (the local date of the conversion in
    ``timezone``). Columns: the keys, ``currency``, ``conversions``, ``posted_failed``,
    ``not_posted``, ``payout`` (null payouts count as 0). Sorted by payout descending, then the keys.
    """
    keys = [*by, "currency"]
    out = (
        _lost(gap_rows, timezone, currency)
        .group_by(keys)
        .agg(
            pl.len().alias("conversions"),
            (pl.col("gap") == "posted_failed").sum().cast(pl.Int64).alias("posted_failed"),
            (pl.col("gap") == "not_posted").sum().cast(pl.Int64).alias("not_posted"),
            pl.col("payout").fill_null(0.0).sum().round(6).alias("payout"),
        )
        .collect()
    )
    return _sorted(out.with_columns(pl.col("conversions").cast(pl.Int64)), keys)


def _sorted(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Payout descending, then the keys (joins do not keep order)."""
    return frame.sort(["payout", *keys], descending=[True, *([False] * len(keys))], nulls_last=True)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def at_stake_summary(
    gap_rows: pl.DataFrame | pl.LazyFrame,
    *,
    timezone: str = "UTC",
    currency: str | None = None,
    names: Names | None = None,
) -> dict[str, Any]:
    """The ``gaps.at_stake`` section of ``cfanalytics diagnose --json``: totals and each grouping.

    Each grouping is a list of rows (the id, its name when ``names`` are given, then
    :data:`AT_STAKE_FIELDS`); a grouping whose column the rows lack is empty.

    >>> rows = pl.DataFrame({"gap": ["not_posted"], "payout": [3.0], "currency": ["USD"]})
    >>> at_stake_summary(rows)["total"]
    [{'currency': 'USD', 'conversions': 1, 'posted_failed': 0, 'not_posted': 1, 'payout': 3.0}]
    """
    lost = _lost(gap_rows, timezone, currency).collect()
    doc: dict[str, Any] = {"total": at_stake(lost, timezone=timezone, currency=currency).to_dicts()}
    for section, key in AT_STAKE_GROUPINGS.items():
        if key not in lost.columns:
            doc[section] = []
            continue
        frame = at_stake(lost, by=[key], timezone=timezone, currency=currency)
        if names is not None:
            frame = _sorted(names.add(frame, key), [key, "currency"])
        doc[section] = [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dicts()]
    return doc


__all__ = [
    "AT_STAKE_CLASSES",
    "AT_STAKE_FIELDS",
    "AT_STAKE_GROUPINGS",
    "at_stake",
    "at_stake_summary",
    "lost_conversions",
    "with_integrations",
]
