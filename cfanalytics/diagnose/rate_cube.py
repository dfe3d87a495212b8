"""Postback counts per local hour and filter dimension: a small cube that answers error rates without the rows.

A panel that filters enriched postbacks by traffic source, integration, campaign,
ct, status class, error kind or errors-only, then counts them by hour or by one of
those columns, can count once per date range (:func:`rate_cube`) and answer each
filter from the cube (:func:`cube_rates`): the same frame
:func:`~cfanalytics.diagnose.error_rates.error_rates` gives on the filtered rows,
from a few thousand groups instead of every row.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
>>> rows = pl.DataFrame({"postback_time": [at, at, at], "traffic_source_id": ["t1", "t1", "t2"],
...     "is_error": [True, False, False]})
>>> cube = rate_cube(rows, "UTC")
>>> cube_rates(cube.filter(pl.col("traffic_source_id") == "t1"), ["traffic_source_id"]).rows()
[('t1', 2, 1, 0.5)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from cfanalytics.diagnose.error_rates import _rates, grouping

#: The columns a cube keeps (those of the postbacks given), besides ``hour``, ``postbacks`` and ``errors``.
CUBE_KEYS: Final = (
    "traffic_source_id",
    "integration_id",
    "campaign_id",
    "ct",
    "status_class",
    "error_kind",
    "attributed",
    "is_error",
)


def rate_cube(postbacks: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """Postbacks and failing postbacks per local ``hour`` (in ``timezone``) and each combination of the
    :data:`CUBE_KEYS` the frame has (enriched postbacks, :func:`~cfanalytics.diagnose.frames.postbacks`).

    >>> from datetime import UTC, datetime
    >>> rows = pl.DataFrame({"postback_time": [datetime(2026, 11, 20, 9, 50, tzinfo=UTC)] * 2,
    ...     "ct": ["sale", "sale"], "is_error": [True, None]})
    >>> rate_cube(rows, "Asia/Kolkata").select("ct", "is_error", "postbacks", "errors").sort("is_error").rows()
    [('sale', None, 1, 0), ('sale', True, 1, 1)]
    """
    keys = [k for k in CUBE_KEYS if k in postbacks.columns]
    hour = pl.col("postback_time").dt.convert_time_zone(timezone).dt.truncate("1h").alias("hour")
    return (
        postbacks.lazy()
        .group_by(hour, *keys)
        .agg(
            pl.len().cast(pl.get_index_type()).alias("postbacks"),
            pl.col("is_error").cast(pl.Int64).sum().alias("errors"),
        )
        .sort("hour", *keys, nulls_last=True)
        .collect()
    )


def cube_rates(cube: pl.DataFrame, by: Sequence[str] | str | None = None) -> pl.DataFrame:
    """What :func:`~cfanalytics.diagnose.error_rates.error_rates` gives on the rows a (filtered) cube counts:
    ``by`` (``hour`` or cube columns), ``postbacks``, ``errors``, ``error_rate``, errors descending then keys.

    >>> cube = pl.DataFrame({"hour": [1, 1, 2], "ct": ["a", "b", "a"], "postbacks": [4, 1, 5], "errors": [1, 0, 0]},
    ...     schema_overrides={"postbacks": pl.get_index_type()})
    >>> cube_rates(cube, "ct").rows()
    [('a', 9, 1, 0.1111111111111111), ('b', 1, 0, 0.0)]
    >>> cube_rates(cube).rows()
    [(10, 1, 0.1)]
    """
    keys = grouping(by)
    sums = [pl.col("postbacks").sum().cast(pl.get_index_type()), pl.col("errors").sum().cast(pl.Int64)]
    counts = cube.lazy().group_by(keys).agg(sums) if keys else cube.lazy().select(sums)
    return _rates(counts, keys).collect()


def cube_total(cube: pl.DataFrame) -> tuple[int, int]:
    """Postbacks and failing postbacks a cube counts.

    >>> cube_total(pl.DataFrame({"postbacks": [4, 1], "errors": [1, 0]}))
    (5, 1)
    """
    return int(cube.get_column("postbacks").sum()), int(cube.get_column("errors").sum())
