"""Error rates, kinds, top signatures and the ``postbacks`` summary on every engine.

The functions of :mod:`cfanalytics.diagnose.error_rates` take a Polars frame or a narwhals frame of any backend.
A tiny hand-made set of enriched postbacks pins their values (worked out by hand below) on Polars, on DuckDB
(an engine other than Polars in this process: counts per UTC minute, local hours made in Polars) and on Spark
(a Sail server); the sample account's postbacks give the same results on Polars and on Sail, and DuckDB SQL
over the same rows counts the same errors per traffic source and per local hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import narwhals.stable.v2 as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cfanalytics.diagnose import frames
from cfanalytics.diagnose.error_kinds import KIND_ACTIONS
from cfanalytics.diagnose.error_rates import (
    GROUPINGS,
    error_kind_counts,
    error_rates,
    postback_summary,
    top_signatures,
)
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import on_spark

KOLKATA = "Asia/Kolkata"  # UTC+05:30 all year
KATHMANDU = "Asia/Kathmandu"  # UTC+05:45


def _utc(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def _ist(day: int, hour: int) -> datetime:
    """An hour of India as the hours :func:`error_rates` gives (aware, in Asia/Kolkata)."""
    return pl.Series([datetime(2026, 11, day, hour)]).dt.replace_time_zone(KOLKATA).item()  # type: ignore[no-any-return]


def _hand() -> pl.DataFrame:
    """Seven enriched postbacks. p1 and p0 fail with the same signature at the same first time (09:50Z): the
    smaller id, p0, is listed later and its message sorts after p1's, so only the id rule picks it."""
    rows = [
        # id, time, source, integration, error, code, signature, message, kind, action, retryable, attributed
        ("p1", _utc(19, 9, 50), "t1", "i1", True, 401, "Bad token <n>", "Bad token 7", "auth", None, None, True),
        ("p2", _utc(19, 10, 10), "t1", "i1", False, 200, None, None, None, None, None, True),
        ("p3", _utc(19, 10, 40), "t1", None, True, 429, "Slow down", "Slow down", "rate_limit", "wait", True, True),
        ("p4", _utc(19, 18, 45), "t2", None, True, 401, "Bad token <n>", "Bad token 9", "auth", None, None, True),
        ("p0", _utc(19, 9, 50), "t2", "i2", True, 401, "Bad token <n>", "Bad token 8", "other", "look", False, True),
        ("p6", _utc(19, 11, 0), None, None, True, None, None, None, None, None, None, False),
        ("p7", _utc(19, 12, 0), "t2", "i2", False, 200, None, None, None, None, None, True),
    ]
    columns = {
        "postback_id": pl.String,
        "postback_time": pl.Datetime("us", "UTC"),
        "traffic_source_id": pl.String,
        "integration_id": pl.String,
        "is_error": pl.Boolean,
        "status_code": pl.Int64,
        "signature": pl.String,
        "error_message": pl.String,
        "error_kind": pl.String,
        "action": pl.String,
        "retryable": pl.Boolean,
        "attributed": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=columns, orient="row")


def _duckdb(frame: pl.DataFrame) -> nw.LazyFrame[Any]:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    return nw.from_native(con.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest())))


@pytest.fixture(scope="module")
def to_spark(sample_store, spark_remote) -> Callable[[pl.DataFrame], nw.LazyFrame[Any]]:
    engine = on_spark(sample_store, spark_remote).engine
    return lambda frame: engine.local(frame.lazy())


ENGINES = ("polars", "polars-lazy", "narwhals-polars", "duckdb", "spark")


@pytest.fixture(params=ENGINES)
def on(request) -> Callable[[pl.DataFrame], Any]:
    """The hand-made rows as a frame of each engine."""
    if request.param == "spark":  # a Sail server starts only for these
        mover: Callable[[pl.DataFrame], Any] = request.getfixturevalue("to_spark")
        return mover
    movers: dict[str, Callable[[pl.DataFrame], Any]] = {
        "polars": lambda frame: frame,
        "polars-lazy": lambda frame: frame.lazy(),
        "narwhals-polars": lambda frame: nw.from_native(frame.lazy()),
        "duckdb": _duckdb,
    }
    return movers[request.param]


def test_error_rates_by_hand_on_every_engine(on):
    rows = on(_hand())
    assert error_rates(rows).rows() == [(7, 5, 5 / 7)]
    assert error_rates(rows, "traffic_source_id").rows() == [
        ("t1", 3, 2, 2 / 3),
        ("t2", 3, 2, 2 / 3),
        (None, 1, 1, 1.0),
    ]
    # India's hours start at :30 UTC: 09:50Z, 09:50Z and 10:10Z are all 15:xx there; 10:40Z and 11:00Z are 16:xx;
    # 12:00Z is 17:30; 18:45Z is 00:15 on the next day
    assert error_rates(rows, "hour", KOLKATA).rows() == [
        (_ist(19, 15), 3, 2, 2 / 3),
        (_ist(19, 16), 2, 2, 1.0),
        (_ist(20, 0), 1, 1, 1.0),
        (_ist(19, 17), 1, 0, 0.0),
    ]
    # the same rows by UTC hour group otherwise
    assert [(h.hour, n, e) for h, n, e, _ in error_rates(rows, "hour", "UTC").rows()] == [
        (9, 2, 2),
        (10, 2, 1),
        (11, 1, 1),
        (18, 1, 1),
        (12, 1, 0),
    ]
    assert error_rates(rows, "day", KOLKATA).rows() == [
        (date(2026, 11, 19), 6, 4, 4 / 6),
        (date(2026, 11, 20), 1, 1, 1.0),
    ]
    assert error_rates(rows, "day", "UTC").rows() == [(date(2026, 11, 19), 7, 5, 5 / 7)]
    assert error_rates(rows, ["traffic_source_id", "hour"], KOLKATA).rows() == [
        ("t1", _ist(19, 15), 2, 1, 0.5),
        ("t1", _ist(19, 16), 1, 1, 1.0),
        ("t2", _ist(19, 15), 1, 1, 1.0),
        ("t2", _ist(20, 0), 1, 1, 1.0),
        (None, _ist(19, 16), 1, 1, 1.0),
        ("t2", _ist(19, 17), 1, 0, 0.0),
    ]
    hourly = error_rates(rows, "hour", KOLKATA)
    assert hourly.schema == pl.Schema(
        {
            "hour": pl.Datetime("us", KOLKATA),
            "postbacks": pl.get_index_type(),
            "errors": pl.Int64,
            "error_rate": pl.Float64,
        }
    )


def test_local_hours_across_the_end_of_summer_time_on_every_engine(on):
    # New York, 1 November 2026: 01:00-02:00 comes twice (EDT until 06:00Z, then EST)
    times = [_utc(1, 5, 10), _utc(1, 5, 50), _utc(1, 6, 10), _utc(1, 6, 50), _utc(1, 7, 10), _utc(1, 3, 59)]
    rows = pl.DataFrame(
        {
            "postback_time": times,
            "traffic_source_id": ["t1", "t1", "t1", "t2", "t2", "t2"],
            "is_error": [True, False, True, True, False, False],
        }
    )
    frame = on(rows)
    # 01:10 and 01:50 EDT; 01:10 and 01:50 EST; 02:10 EST; 23:59 EDT the day before
    hourly = error_rates(frame, "hour", "America/New_York").with_columns(pl.col("hour").dt.convert_time_zone("UTC"))
    assert hourly.select("hour", "postbacks", "errors").rows() == [
        (_utc(1, 6, 0), 2, 2),
        (_utc(1, 5, 0), 2, 1),
        (_utc(1, 3, 0), 1, 0),
        (_utc(1, 7, 0), 1, 0),
    ]
    by_source = error_rates(frame, ["traffic_source_id", "hour"], "America/New_York")
    assert [(s, h.astimezone(UTC).hour, n, e) for s, h, n, e, _ in by_source.rows()] == [
        ("t1", 5, 2, 1),
        ("t1", 6, 1, 1),
        ("t2", 6, 1, 1),
        ("t2", 3, 1, 0),
        ("t2", 7, 1, 0),
    ]
    daily = error_rates(frame, "day", "America/New_York")
    assert daily.rows() == [(date(2026, 11, 1), 5, 3, 0.6), (date(2026, 10, 31), 1, 0, 0.0)]


def test_error_rates_of_no_rows_on_every_engine(on):
    rows = on(_hand().filter(pl.col("postback_id") == "none"))
    assert error_rates(rows).rows() == [(0, 0, None)]
    assert error_rates(rows, "traffic_source_id").height == 0
    assert error_rates(rows, ["hour", "status_code"], KOLKATA).height == 0
    assert error_kind_counts(rows).height == 0
    assert top_signatures(rows).rows() == []
    summary = postback_summary(rows, Names.empty())
    assert (summary["total"], summary["errors"], summary["error_rate"], summary["unattributed"]) == (0, 0, None, 0)
    assert summary["last_postback_time"] is None
    assert summary["top_signatures"] == summary["by_error_kind"] == summary["by_traffic_source"] == []


def test_kinds_and_signatures_by_hand_on_every_engine(on):
    rows = on(_hand())
    # failing: p1 auth, p3 rate_limit, p4 auth, p0 other, p6 no kind (a null kind sorts first among ties)
    assert error_kind_counts(rows).rows() == [("auth", 2), (None, 1), ("other", 1), ("rate_limit", 1)]
    top = top_signatures(rows)
    assert top.columns == ["signature", "errors", "example", "error_kind", "action", "retryable"]
    # "Bad token <n>" fails first at 09:50Z twice: p0 (the smaller id) gives the example and the meaning
    assert top.rows() == [
        ("Bad token <n>", 3, "Bad token 8", "other", "look", False),
        ("Slow down", 1, "Slow down", "rate_limit", "wait", True),
        (None, 1, None, None, None, None),
    ]
    assert top_signatures(rows, top=1).rows() == [("Bad token <n>", 3, "Bad token 8", "other", "look", False)]
    assert top_signatures(rows, top=2).get_column("signature").to_list() == ["Bad token <n>", "Slow down"]


def test_signature_ties_without_ids_take_the_smallest_message():
    rows = _hand().drop("postback_id")
    # p1 ("Bad token 7") and p0 ("Bad token 8") tie at 09:50Z; without ids the smaller message wins
    for frame in (rows, _duckdb(rows)):
        assert top_signatures(frame, top=1).rows() == [("Bad token <n>", 3, "Bad token 7", "auth", None, None)]


def test_postback_summary_by_hand_on_every_engine(on):
    names = Names(
        {
            "traffic_source": pl.DataFrame({"traffic_source_id": ["t1"], "traffic_source_name": ["Meta"]}),
            "integration": pl.DataFrame({"integration_id": ["i1"], "integration_name": ["CAPI"]}),
        }
    )
    summary = postback_summary(on(_hand()), names)
    advice = {k: dict(zip(("action", "retryable", "fix_owner"), v, strict=True)) for k, v in KIND_ACTIONS.items()}
    assert summary == {
        "last_postback_time": "2026-11-19T18:45:00Z",
        "total": 7,
        "errors": 5,
        "error_rate": 5 / 7,
        "unattributed": 1,  # p6, whose failure counts in the totals but under no traffic source
        "by_traffic_source": [
            {
                "traffic_source_id": "t1",
                "traffic_source_name": "Meta",
                "postbacks": 3,
                "errors": 2,
                "error_rate": 2 / 3,
            },
            {"traffic_source_id": "t2", "traffic_source_name": None, "postbacks": 3, "errors": 2, "error_rate": 2 / 3},
        ],
        "by_integration": [
            {"integration_id": "i1", "integration_name": "CAPI", "postbacks": 2, "errors": 1, "error_rate": 0.5},
            {"integration_id": "i2", "integration_name": None, "postbacks": 2, "errors": 1, "error_rate": 0.5},
        ],
        "by_error_kind": [
            {"error_kind": "auth", "errors": 2, **advice["auth"]},
            {"error_kind": None, "errors": 1, **advice["other"]},
            {"error_kind": "other", "errors": 1, **advice["other"]},
            {"error_kind": "rate_limit", "errors": 1, **advice["rate_limit"]},
        ],
        "top_signatures": [
            {
                "signature": "Bad token <n>",
                "errors": 3,
                "example": "Bad token 8",
                "error_kind": "other",
                "action": "look",
                "retryable": False,
            },
            {
                "signature": "Slow down",
                "errors": 1,
                "example": "Slow down",
                "error_kind": "rate_limit",
                "action": "wait",
                "retryable": True,
            },
            {
                "signature": "(no message)",
                "errors": 1,
                "example": None,
                "error_kind": None,
                "action": advice["other"]["action"],
                "retryable": advice["other"]["retryable"],
            },
        ],
    }


# --------------------------------------------------------------------------- the sample account, Polars and Sail
@pytest.fixture(scope="module")
def sample_postbacks(sample_store) -> pl.DataFrame:
    return frames.postbacks(sample_store).collect()


@pytest.fixture(scope="module")
def with_ties(sample_postbacks) -> pl.DataFrame:
    """The sample's postbacks and, for each signature, a copy of its first failure with a smaller id, another
    message and another kind (at the same time): the copy gives the example."""
    first = (
        sample_postbacks.filter(pl.col("is_error"))
        .sort("postback_time", "postback_id")
        .unique("signature", keep="first", maintain_order=True)
    )
    copies = first.with_columns(
        ("0" + pl.col("postback_id")).alias("postback_id"),
        (pl.col("error_message") + " (copy)").alias("error_message"),
        pl.lit("other").alias("error_kind"),
    )
    return pl.concat([sample_postbacks, copies])


CALLS: dict[str, Callable[[Any], pl.DataFrame]] = {
    "total": error_rates,
    **{key: (lambda rows, key=key: error_rates(rows, key)) for key in GROUPINGS},
    **{
        f"{key}-{zone}": (lambda rows, key=key, zone=zone: error_rates(rows, key, zone))
        for key in ("hour", "day")
        for zone in (KOLKATA, KATHMANDU, "America/New_York")
    },
    "source-hour": lambda rows: error_rates(rows, ["traffic_source_id", "hour"], KATHMANDU),
    "day-kind-class": lambda rows: error_rates(rows, ["day", "error_kind", "status_class"], KOLKATA),
    "kinds": error_kind_counts,
    "top": top_signatures,
    "top-all": lambda rows: top_signatures(rows, top=1000),
    "top-1": lambda rows: top_signatures(rows, top=1),
}


def test_every_function_gives_the_same_on_sail_as_on_polars(sample_store, sample_postbacks, with_ties, to_spark):
    names = Names.load(sample_store, ["traffic_source", "integration"])
    for rows in (sample_postbacks, with_ties):
        spark = to_spark(rows)
        for name, call in CALLS.items():
            polars = call(rows)
            assert polars.height > 0, name  # not two empty frames
            assert_frame_equal(call(spark), polars, check_exact=True), name
        assert postback_summary(spark, names) == postback_summary(rows, names)
    # the copies made above won: their examples and kinds are those of the top signatures
    top = top_signatures(with_ties, top=1000)
    assert top.height == sample_postbacks.filter(pl.col("is_error")).get_column("signature").n_unique()
    assert top.get_column("example").str.ends_with(" (copy)").all()
    assert (top.get_column("error_kind") == "other").all()


def test_the_sample_counts_equal_duckdb_sql(sample_postbacks, to_spark):
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.register("pb", sample_postbacks.to_arrow(compat_level=pl.CompatLevel.oldest()))
    by_source = con.sql(
        "select traffic_source_id, count(*), count(*) filter (where is_error) from pb group by all"
    ).fetchall()
    by_hour = con.sql(
        f"select date_trunc('hour', timezone('{KOLKATA}', postback_time)) as hour, count(*),"
        " count(*) filter (where is_error) from pb group by all"
    ).fetchall()
    assert len(by_hour) > 24  # several days of hours
    for rows in (sample_postbacks, to_spark(sample_postbacks)):
        sources = error_rates(rows, "traffic_source_id")
        assert sorted(sources.select("traffic_source_id", "postbacks", "errors").rows(), key=str) == sorted(
            by_source, key=str
        )
        hours = error_rates(rows, "hour", KOLKATA).with_columns(pl.col("hour").dt.replace_time_zone(None))
        assert sorted(hours.select("hour", "postbacks", "errors").rows()) == sorted(by_hour)
        assert (hours.get_column("hour").dt.minute() == 0).all()  # local hours, not UTC ones shifted by 5:30
