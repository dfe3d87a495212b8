"""The rate cube answers what ``error_rates`` answers on the filtered rows (checked with DuckDB SQL on the rows)."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from cfanalytics.diagnose.error_rates import error_rates
from cfanalytics.diagnose.frames import postbacks
from cfanalytics.diagnose.rate_cube import cube_rates, cube_total, rate_cube
from cfanalytics.filters import LogFilter

TZ = "America/New_York"


@pytest.fixture(scope="module")
def rows(sample) -> pl.DataFrame:
    return postbacks(sample.store).collect()


def _sql_rates(rows: pl.DataFrame, keys: list[str], where: str) -> list[tuple]:
    """Postbacks and errors per group, in SQL over the rows (their local wall-clock time ``t`` made first)."""
    frame = rows.with_columns(pl.col("postback_time").dt.convert_time_zone(TZ).dt.replace_time_zone(None).alias("t"))
    cols = [("date_trunc('hour', t) AS hour" if k == "hour" else k) for k in keys]
    group = ", ".join(keys)
    order = ", ".join(f"{k} ASC NULLS LAST" for k in keys)
    sql = (
        f"SELECT {', '.join(cols)}, count(*) AS n, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS e "
        f"FROM frame WHERE {where} GROUP BY {group} ORDER BY e DESC, {order}"
    )
    con = duckdb.connect()
    con.register("frame", frame.to_arrow())
    return con.sql(sql).fetchall()


@pytest.mark.parametrize(
    ("where", "sql"),
    [
        (LogFilter(), "true"),
        (LogFilter(error_kinds=["auth", "rate_limit"]), "error_kind IN ('auth', 'rate_limit')"),
        (LogFilter(status_classes=["4xx"], errors_only=True), "status_class = '4xx' AND is_error"),
    ],
)
@pytest.mark.parametrize("keys", [["hour", "traffic_source_id"], ["status_class"], ["error_kind"], ["ct"]])
def test_cube_rates_are_the_rows_rates(rows, where, sql, keys):
    cube = rate_cube(rows, TZ)
    assert cube.height < rows.height  # a cube, not the rows again
    filtered_cube = cube.filter(where.expr(cube.columns, timezone=TZ))
    got = cube_rates(filtered_cube, keys)
    filtered_rows = rows.filter(where.expr(rows.columns, timezone=TZ))
    # the same frame error_rates gives on the rows (types, order, rates) …
    assert got.equals(error_rates(filtered_rows, keys, TZ))
    # … and the numbers DuckDB counts from the rows
    local = got.with_columns(pl.col("hour").dt.replace_time_zone(None)) if "hour" in keys else got
    assert [(*r[: len(keys)], r[-3], r[-2]) for r in local.rows()] == _sql_rates(rows, keys, sql)
    n, e = cube_total(filtered_cube)
    assert (n, e) == (filtered_rows.height, filtered_rows.filter(pl.col("is_error")).height)


def test_cube_keeps_null_keys_and_unknown_outcomes():
    from datetime import UTC, datetime

    at = datetime(2026, 11, 20, 9, 50, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "postback_time": [at, at, at, datetime(2026, 11, 20, 10, 5, tzinfo=UTC)],
            "traffic_source_id": [None, None, "t1", "t1"],
            "is_error": [True, None, False, True],
        }
    )
    cube = rate_cube(rows, "Asia/Kolkata")  # 15:20 and 15:35 local: one hour
    assert cube_rates(cube, ["traffic_source_id"]).rows() == [("t1", 2, 1, 0.5), (None, 2, 1, 0.5)]
    assert cube_rates(cube, ["hour"]).height == 1
    assert cube_total(cube.filter(pl.col("is_error"))) == (2, 2)
