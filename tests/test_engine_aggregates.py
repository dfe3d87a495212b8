"""The diagnostics' aggregates run where the rows are: the same narwhals code on Polars and on Spark (Sail).

Each test computes a frame or an aggregate on both engines from the same stored rows and
compares them; the values themselves are pinned by hand on small frames, or by DuckDB.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import narwhals.stable.v2 as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics.diagnose import frames
from cfanalytics.diagnose.error_kinds import status_class, status_class_nw
from cfanalytics.diagnose.incidents import find_incidents, incident_cube
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import SparkReader, as_polars, engine_of, fetch, on_spark

WIDE = cf.LogFilter(start="2026-11-10", end="2026-11-18")
WHERE = cf.LogFilter(start="2026-11-17", end="2026-11-18")


@pytest.fixture(scope="module")
def on_sail(sample_store, spark_remote) -> SparkReader:
    return on_spark(sample_store, spark_remote)


def _sorted(frame: object) -> pl.DataFrame:
    df = fetch(frame)
    return df.sort(df.columns, nulls_last=True)


def _same(spark: object, polars: object, *, what: str) -> None:
    expected = _sorted(polars)
    assert expected.height > 0, what  # not two empty frames
    got = _sorted(spark).select(pl.col(c).cast(t) for c, t in expected.schema.items())
    assert_frame_equal(got, expected, check_exact=True)


def test_diagnosis_frames_are_the_same_on_sail(sample_store, on_sail):
    polars = frames.diagnosis_frames(sample_store, WHERE, WIDE)
    spark = frames.diagnosis_frames(on_sail, WHERE, WIDE)
    for name in ("history", "postbacks", "conversions"):
        _same(getattr(spark, name), getattr(polars, name), what=name)
    assert fetch(polars.postbacks).height < fetch(polars.history).height  # the wide range reaches further back


def test_enrichment_derives_on_sail_the_meanings_not_stored(sample_store, on_sail, monkeypatch):
    expected = frames.diagnosis_frames(sample_store, WHERE, WIDE).history
    monkeypatch.setattr(frames, "_has_meanings", lambda reader: False)  # every meaning derived by the rules
    derived = frames.diagnosis_frames(on_sail, WHERE, WIDE).history
    _same(derived, expected, what="history")
    kinds = fetch(derived).filter(pl.col("is_error")).get_column("error_kind")
    assert kinds.null_count() == 0
    assert kinds.n_unique() > 1


def test_incident_cube_by_hand():
    t = lambda h, m: datetime(2026, 3, 8, h, m, tzinfo=UTC)  # noqa: E731
    rows = pl.DataFrame(
        {
            "postback_time": [t(9, 59), t(10, 0), t(10, 30), t(10, 59), t(11, 0), t(10, 10)],
            "is_error": [True, True, False, True, None, True],
            "error_kind": ["auth", "auth", None, "rate_limit", None, "auth"],
            "traffic_source_id": ["t1", "t1", "t1", "t1", "t1", "t2"],
            "integration_id": ["i1", "i1", "i1", "i1", "i1", None],
        }
    )
    cube = incident_cube(rows).select("traffic_source_id", "hour", "error_kind", "n", "e", "known")
    h = lambda hour: datetime(2026, 3, 8, hour, tzinfo=UTC)  # noqa: E731
    assert cube.rows() == [
        ("t1", h(9), "auth", 1, 1, 1),
        ("t1", h(10), None, 1, 0, 1),
        ("t1", h(10), "auth", 1, 1, 1),
        ("t1", h(10), "rate_limit", 1, 1, 1),
        ("t1", h(11), None, 1, 0, 0),
        ("t2", h(10), "auth", 1, 1, 1),
    ]
    t1_10 = incident_cube(rows).filter((pl.col("traffic_source_id") == "t1") & (pl.col("hour") == h(10)))
    assert t1_10.get_column("first_error").min() == t(10, 0)
    assert t1_10.get_column("last_error").max() == t(10, 59)
    assert t1_10.get_column("last_time").max() == t(10, 59)


def test_incident_cube_on_sail_equals_polars_and_duckdb(sample_store, on_sail):
    history = frames.diagnosis_frames(sample_store, WHERE, WIDE).history
    spark_history = frames.diagnosis_frames(on_sail, WHERE, WIDE).history
    cube = incident_cube(history)
    assert_frame_equal(incident_cube(spark_history), cube, check_exact=True)
    rows = as_polars(history).collect()  # read by DuckDB below
    by_sql = duckdb.sql(
        "select traffic_source_id, date_trunc('hour', postback_time) as hour, count(*) as n,"
        " sum(is_error::int) as e from rows group by all order by all"
    ).pl()
    mine = (
        cube.group_by("traffic_source_id", "hour")
        .agg(pl.col("n").sum(), pl.col("e").sum())
        .sort("traffic_source_id", "hour", nulls_last=True)
    )
    assert mine.get_column("n").to_list() == by_sql.get_column("n").to_list()
    assert mine.get_column("e").to_list() == [int(v) for v in by_sql.get_column("e").to_list()]
    assert int(cube.get_column("n").sum()) == rows.height


def test_incidents_are_the_same_from_sail_history(sample_store, on_sail):
    names = Names.load(sample_store)
    activity = frames.activity(sample_store)
    found = find_incidents(
        frames.diagnosis_frames(sample_store, cf.LogFilter(), cf.LogFilter()).history,
        activity,
        names,
        frames.campaign_links(sample_store),
    )
    on_spark_engine = find_incidents(
        frames.diagnosis_frames(on_sail, cf.LogFilter(), cf.LogFilter()).history,
        activity,
        names,
        engine_of(on_sail)  # lazy on Spark: read only for the incidents' traffic sources
        .table("visits")
        .select("traffic_source_id", "campaign_id", "flow_id", "offer_id", "landing_id")
        .filter(~nw.col("traffic_source_id").is_null())
        .unique(),
    )
    assert found.height > 0
    assert found.get_column("suspected_change").is_not_null().any()
    assert_frame_equal(on_spark_engine, found)


FILTERS = [
    cf.LogFilter(errors_only=True),
    cf.LogFilter(cts=["", "sale"]),
    cf.LogFilter(status_classes=["4xx", "none"], error_kinds=["auth", "rate_limit"]),
    cf.LogFilter(click_id="a"),
    cf.LogFilter(start="2026-11-15", end="2026-11-16", timezone="Asia/Kolkata", include_filtered=True),
]


@pytest.fixture(scope="module")
def histories(sample_store, on_sail) -> tuple[nw.LazyFrame, nw.LazyFrame]:
    """The whole enriched history on Polars and on Sail (a union of cached frames there)."""
    everything = cf.LogFilter()
    return (
        frames.diagnosis_frames(sample_store, everything, everything).history,
        frames.diagnosis_frames(on_sail, everything, everything).history,
    )


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: ",".join(k for k, v in vars(w).items() if v))
def test_a_filter_selects_the_same_rows_on_every_engine(sample_store, on_sail, histories, where):
    history, on_sail_history = histories
    polars = as_polars(history)
    expected = where.apply(polars, "postbacks", timezone=sample_store.timezone).collect()
    assert 0 < expected.height < polars.collect().height  # the filter selects something, not everything
    on_polars = fetch(where.apply_nw(history, "postbacks", timezone=sample_store.timezone))
    assert_frame_equal(on_polars, expected)
    ids = expected.sort("postback_id").get_column("postback_id").to_list()
    for spark in (engine_of(on_sail).local(polars), on_sail_history):
        selected = fetch(where.apply_nw(spark, "postbacks", timezone=sample_store.timezone))
        assert selected.sort("postback_id").get_column("postback_id").to_list() == ids


def test_a_filter_of_many_values_works_on_the_sail_history(sample_store, histories):
    history, on_sail_history = histories
    sources = sorted(fetch(history).get_column("traffic_source_id").drop_nulls().unique().to_list())[:5]
    assert len(sources) == 5  # more than the three values Sail's IN lists handle on such plans
    where = cf.LogFilter(traffic_sources=sources)
    expected = fetch(history).filter(pl.col("traffic_source_id").is_in(sources)).height
    assert fetch(where.apply_nw(on_sail_history, "postbacks", timezone=sample_store.timezone)).height == expected


def test_status_class_is_the_same_on_sail(on_sail):
    codes = pl.LazyFrame(
        {"code": [None, 0, 99, 100, 199, 200, 302, 404, 499, 500, 599, 600]}, schema={"code": pl.Int64}
    )
    expected = codes.select(status_class(pl.col("code"))).collect()
    assert expected.to_series().to_list() == [
        "none", "none", "none", "1xx", "1xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "none"
    ]  # fmt: skip
    spark = engine_of(on_sail).local(codes.with_row_index("i").with_columns(pl.col("i").cast(pl.Int64)))
    got = fetch(spark.select("i", status_class_nw(nw.col("code")))).sort("i").drop("i")
    assert_frame_equal(got, expected)


def test_the_queries_give_the_same_answers_on_sail(sample_store, on_sail):
    """The notebook-facing queries aggregate on the server when the reader's engine is Spark."""
    from cfanalytics.diagnose import queries

    where = cf.LogFilter(start="2026-11-15", end="2026-11-18")
    for by in (["traffic_source_id"], ["hour", "integration_id"], "error_kind", None):
        expected = queries.postback_errors(sample_store, by, where)
        assert expected.height > 0
        assert_frame_equal(queries.postback_errors(on_sail, by, where), expected, check_dtypes=False)
    for grace in (0, 240):
        assert queries.gap_summary(on_sail, where, grace_minutes=grace) == queries.gap_summary(
            sample_store, where, grace_minutes=grace
        )
    for by in ((), ["integration_id"], ["traffic_source_id", "day"]):
        expected = queries.money_at_stake(sample_store, where, by=by)
        assert expected.get_column("conversions").sum() > 0
        assert_frame_equal(queries.money_at_stake(on_sail, where, by=by), expected, check_dtypes=False)
    found = queries.incidents(sample_store)
    assert found.height > 0
    assert_frame_equal(queries.incidents(on_sail), found)
