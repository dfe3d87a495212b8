"""The Spark Connect server the engine tests start (Sail, :mod:`tests.sparkserver`): it answers, it runs its
workers, and it reads Delta tables written by delta-rs on a local folder and on the session's S3 server."""

from __future__ import annotations

import re
from datetime import date

import pyarrow as pa
import pytest
from deltalake import write_deltalake

#: A small table with a null, a negative float and a date: written by delta-rs, read back through Spark.
TABLE = pa.table(
    {
        "id": pa.array([3, 1, 2], pa.int64()),
        "name": pa.array(["c", "a", None], pa.string()),
        "amount": pa.array([0.0, 1.5, -2.25], pa.float64()),
        "day": pa.array([date(2026, 11, 20), date(2026, 11, 18), date(2026, 11, 19)], pa.date32()),
        "ok": pa.array([True, False, None], pa.bool_()),
    }
)
#: The rows of :data:`TABLE` ordered by id, written out by hand.
ROWS = [
    (1, "a", 1.5, date(2026, 11, 18), False),
    (2, None, -2.25, date(2026, 11, 19), None),
    (3, "c", 0.0, date(2026, 11, 20), True),
]


@pytest.fixture
def session(spark_remote):
    """A Spark Connect session of its own on the test server, stopped after the test."""
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(spark_remote).create()
    yield spark
    spark.stop()


def _read(session, uri: str) -> list[tuple]:
    frame = session.read.format("delta").load(uri)
    assert frame.columns == ["id", "name", "amount", "day", "ok"]
    return [tuple(row) for row in frame.orderBy("id").collect()]


def test_server_reads_a_local_delta_table(session, tmp_path):
    uri = str(tmp_path / "table")
    write_deltalake(uri, TABLE)
    assert _read(session, uri) == ROWS
    assert _read(session, f"file://{uri}") == ROWS


def test_server_reads_a_delta_table_on_s3(session, s3, s3_uri):
    write_deltalake(s3_uri, TABLE, storage_options=s3.options)
    assert _read(session, s3_uri) == ROWS
    # a second version (an append) is seen too: the reader follows the log, not a listing cached from the first read
    write_deltalake(s3_uri, TABLE.slice(0, 1), mode="append", storage_options=s3.options)
    assert _read(session, s3_uri) == sorted([*ROWS, ROWS[2]])


def test_server_runs_two_workers(spark, session):
    assert spark.remote == f"sc://127.0.0.1:{spark.port}"
    assert session.range(100).repartition(4).selectExpr("sum(id) AS s").collect()[0]["s"] == 4950
    log = spark.log.read_text()
    # each session gets a driver that starts the configured workers; the last one is this test's
    driver = log[log.rindex("activating driver") :]
    assert sorted(set(re.findall(r"worker (\d+) is available", driver))) == ["1", "2"]
    assert spark.process.poll() is None
