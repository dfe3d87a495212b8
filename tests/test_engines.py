"""The diagnostics on Spark (a Sail server the tests start) give what they give on Polars, on a local store and on S3.

The loaders are one narwhals implementation (:mod:`cfanalytics.engines`); these tests compare every loader's
frame and the whole ``diagnose`` document across engines and stores, and pin the values they agree on to
counts made another way (DuckDB over the table's Parquet files, or by hand).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics.cli import main
from cfanalytics.diagnose import frames
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import SparkEngine, SparkReader, engine_of, on_spark, redact_remote, spark_session
from cfanalytics.exceptions import UsageError
from cfanalytics.schemas import ENTITIES

WINDOW = cf.LogFilter(start=date(2026, 11, 17), end=date(2026, 11, 18))


def _doc(reader: object, where: cf.LogFilter | None = None) -> str:
    return json.dumps(cf.diagnose.diagnose(reader, where), sort_keys=True)  # type: ignore[arg-type]


def _sorted(frame: pl.LazyFrame) -> pl.DataFrame:
    df = frame.collect()
    return df.sort(df.columns, nulls_last=True)


@pytest.fixture(scope="module")
def on_sail(sample_store, spark_remote) -> SparkReader:
    return on_spark(sample_store, spark_remote)


@pytest.fixture(scope="module")
def s3_sample(sample, s3, tmp_path_factory) -> cf.LogStore:
    """The sample account's exports ingested into a store on the session's S3 server."""
    uri = f"s3://{s3.bucket}/engines-sample"
    store = cf.LogStore(uri, timezone=sample.account.truth["timezone"], storage_options=s3.options)
    files = [p for role, p in sorted(sample.account.files.items()) if role != "network_export"]
    result = store.ingest(files)
    assert result.ok, result.failures
    return store


def _duckdb_count(store: cf.LogStore, kind: str, where: str = "true") -> int:
    files = ", ".join(f"'{f}'" for f in store.file_uris(kind))
    return duckdb.sql(
        f"select count(*) from read_parquet([{files}], hive_partitioning=false) where {where}"
    ).fetchall()[0][0]


def test_the_default_engine_is_polars_and_stays_lazy(sample_store):
    engine = engine_of(sample_store)
    assert engine.name == "polars"
    plan = frames.postback_rows(sample_store, WINDOW)
    assert isinstance(plan, pl.LazyFrame)
    assert "FILTER" in plan.explain() or "SELECTION" in plan.explain()  # a plan, not a collected frame


def test_every_loader_gives_the_same_frame_on_sail(sample_store, on_sail):
    keys = frames.postback_rows(sample_store).select("click_id").head(300)
    loaders = {
        "postback_rows": lambda r: frames.postback_rows(r, WINDOW),
        "postback_rows_all": frames.postback_rows,
        "conversion_rows": lambda r: frames.conversion_rows(r, WINDOW),
        "visits_of": lambda r: frames.visits_of(r, keys),
        "conversions_of_all": lambda r: frames.conversions_of(r, None),
        "conversions_of_keys": lambda r: frames.conversions_of(r, keys),
        "click_attribution": lambda r: frames.click_attribution(r, keys),
        "postback_outcomes": frames.postback_outcomes,
        "postback_integrations": frames.postback_integrations,
        "conversion_keys": frames.conversion_keys,
        "campaign_links": frames.campaign_links,
        "activity_rows": lambda r: frames.activity_rows(r, cf.LogFilter(entity_types=["traffic_source"])),
    }
    for name, load in loaders.items():
        polars, spark = load(sample_store), load(on_sail)
        assert spark.collect_schema() == polars.collect_schema(), name
        expected = _sorted(polars)
        assert expected.height > 0, name  # the comparison is not between two empty frames
        assert_frame_equal(_sorted(spark), expected, check_exact=True), name
    for kind, column in (("postbacks", "postback_time"), ("activity", "changed_at"), ("visits", "visit_time")):
        assert frames.latest_time(on_sail, kind, column) == frames.latest_time(sample_store, kind, column)


def test_loader_counts_match_duckdb_over_the_parquet_files(sample_store, on_sail):
    lo, hi = WINDOW.time_bounds(sample_store.timezone)
    where = f"postback_time >= '{lo.isoformat()}'::timestamptz and postback_time < '{hi.isoformat()}'::timestamptz"
    assert frames.postback_rows(on_sail, WINDOW).collect().height == _duckdb_count(sample_store, "postbacks", where)
    assert frames.conversion_keys(on_sail).collect().height == _duckdb_count(sample_store, "conversions")
    files = ", ".join(f"'{f}'" for f in sample_store.file_uris("visits"))
    links = duckdb.sql(
        "select count(*) from (select distinct traffic_source_id, campaign_id, flow_id, offer_id, landing_id"
        f" from read_parquet([{files}], hive_partitioning=false) where traffic_source_id is not null)"
    ).fetchall()[0][0]
    assert frames.campaign_links(on_sail).collect().height == links


def test_names_are_the_same_on_sail(sample_store, on_sail):
    polars, spark = Names.load(sample_store), Names.load(on_sail)
    for entity in ENTITIES:
        assert_frame_equal(spark.frame(entity), polars.frame(entity))
    assert polars.lookup("traffic_source_id")  # names were found at all


def test_diagnose_on_sail_equals_polars_on_the_sample_account(sample_store, on_sail):
    for where in (None, WINDOW, cf.LogFilter(traffic_sources=["nothing-here"])):
        assert _doc(on_sail, where) == _doc(sample_store, where)
    doc = cf.diagnose.diagnose(on_sail)
    assert doc["postbacks"]["total"] == _duckdb_count(sample_store, "postbacks")
    assert doc["postbacks"]["errors"] == _duckdb_count(sample_store, "postbacks", "is_error")
    assert doc["incidents"]  # the sample account has incidents: suspects and all were compared above


def test_three_ways_polars_local_polars_s3_and_sail_s3_agree(sample_store, s3_sample, spark_remote):
    local = _doc(sample_store)
    assert _doc(s3_sample) == local
    assert _doc(on_spark(s3_sample, spark_remote)) == local
    assert _doc(on_spark(s3_sample, spark_remote), WINDOW) == _doc(sample_store, WINDOW)


def test_cli_diagnose_on_s3_with_the_spark_engine_prints_what_the_local_store_prints(
    sample, s3_sample, spark_remote, s3_env, capsys
):
    assert main(["diagnose", "--store", str(sample.store.path)]) == 0
    local = capsys.readouterr().out
    args = ["diagnose", "--store", s3_sample.uri, "--engine", "spark", "--spark-remote", spark_remote]
    assert main(args) == 0
    assert capsys.readouterr().out == local
    assert main([*args, "--json"]) == 0
    spark_json = json.loads(capsys.readouterr().out)
    assert main(["diagnose", "--store", str(sample.store.path), "--json"]) == 0
    assert spark_json == json.loads(capsys.readouterr().out)


def test_spark_remote_from_the_environment(sample, spark_remote, monkeypatch, capsys):
    monkeypatch.setenv("SPARK_REMOTE", spark_remote)
    assert main(["diagnose", "--store", str(sample.store.path), "--engine", "spark", "--json"]) == 0
    spark = json.loads(capsys.readouterr().out)
    assert main(["diagnose", "--store", str(sample.store.path), "--json"]) == 0
    assert spark == json.loads(capsys.readouterr().out)


def test_a_relative_store_path_is_read_where_the_client_sees_it(sample, spark_remote, monkeypatch):
    monkeypatch.chdir(sample.store.path.parent)
    store = cf.LogStore(sample.store.path.name, create=False)
    assert _doc(on_spark(store, spark_remote)) == _doc(sample.store)


def test_empty_and_not_yet_created_stores_on_sail(tmp_path, spark_remote):
    empty = cf.LogStore(tmp_path / "empty", timezone="UTC")  # tables created, no rows
    pending = cf.LogStore(tmp_path / "pending", timezone="UTC", create="on_write")  # no tables at all
    for store in (empty, pending):
        doc = cf.diagnose.diagnose(on_spark(store, spark_remote))
        assert doc == cf.diagnose.diagnose(store)
        assert doc["postbacks"]["total"] == 0
        assert doc["incidents"] == []


def test_hand_made_attribution_and_a_local_day_across_dst(tmp_path, spark_remote):
    """New York's clocks went forward on 2026-03-08: that local day is 23 hours, 05:00Z → 04:00Z."""
    store = cf.LogStore(tmp_path / "s", timezone="America/New_York")
    store.ingest_frame(
        pl.DataFrame(
            {
                "Click ID": ["a" * 24, "b" * 24],
                "Visit Time": ["2026-03-08T12:00:00Z", "2026-03-08T13:00:00Z"],
                "Traffic Source ID": ["ts-visit", None],
                "Campaign ID": ["k-visit", None],
            }
        ),
        name="visits",
    )
    store.ingest_frame(
        pl.DataFrame(
            {
                "Click ID": ["b" * 24, "b" * 24, "c" * 24],
                "Conversion Time": ["2026-03-08T14:00:00Z", "2026-03-08T15:00:00Z", "2026-03-08T16:00:00Z"],
                "Transaction ID": ["x1", "x2", "x3"],
                "Traffic Source ID": ["ts-9", "ts-3", None],
                "Campaign ID": ["k-9", "k-3", "k-c"],
                "Payout": ["1", "2", "3"],
            }
        ),
        name="conversions",
    )
    times = ["2026-03-08T04:59:00Z", "2026-03-08T05:00:00Z", "2026-03-09T03:59:00Z", "2026-03-09T04:00:00Z"]
    store.ingest_frame(
        pl.DataFrame(
            {
                "Click ID": ["a" * 24, "b" * 24, "c" * 24, "d" * 24],
                "Postback Time": times,
                "Status Code": ["200", "500", "200", "200"],
                "Error": ["false", "true", "false", "false"],
                "Postback URL": ["https://t.example/pb"] * 4,
            }
        ),
        name="postbacks",
    )
    spark = on_spark(store, spark_remote)
    day = cf.LogFilter(start=date(2026, 3, 8), end=date(2026, 3, 8))
    for reader in (store, spark):
        rows = frames.postback_rows(reader, day).collect().sort("postback_time")
        assert rows.get_column("postback_time").to_list() == [
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            datetime(2026, 3, 9, 3, 59, tzinfo=UTC),
        ]
        # a click's conversions disagreeing: the smallest traffic source and campaign id
        by_click = dict(
            frames.conversions_of(reader, None)
            .collect()
            .select("click_id", pl.concat_list(pl.all().exclude("click_id")).alias("v"))
            .iter_rows()
        )
        assert by_click == {"b" * 24: ["ts-3", "k-3"], "c" * 24: [None, "k-c"]}
        # the postbacks' traffic sources: a's visit, b's conversions (its visit names none), none for c and d
        by_source = cf.diagnose.postback_errors(reader, by=["traffic_source_id"]).sort("traffic_source_id")
        assert by_source.select("traffic_source_id", "postbacks", "errors").rows() == [
            (None, 2, 0),
            ("ts-3", 1, 1),
            ("ts-visit", 1, 0),
        ]
    assert _doc(spark, day) == _doc(store, day)


def test_a_server_error_is_one_line(sample_store, spark_remote):
    class Broken(SparkEngine):
        def table(self, kind: str):  # a table the server cannot find
            import narwhals.stable.v2 as nw

            return nw.from_native(self.session.read.format("delta").load(f"/nonexistent/cfanalytics/{kind}"))

    engine = Broken(sample_store, spark_session(spark_remote))
    with pytest.raises(UsageError, match=r"^the Spark engine failed: ") as caught:
        frames.postback_outcomes(SparkReader(sample_store, engine))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ("sc://127.0.0.1:1/;token=dapiSECRET;use_ssl=true", r"cannot reach Spark at sc://127.0.0.1:1/;token=\*\*\*"),
        ("http://127.0.0.1:1", r"a Spark Connect URL starts with sc://"),
        ("sc://127.0.0.1:notaport", r"--spark-remote sc://127.0.0.1:notaport: "),
    ],
)
def test_bad_remotes_are_one_line_without_secrets(sample, remote, message, capsys):
    assert main(["diagnose", "--store", str(sample.store.path), "--engine", "spark", "--spark-remote", remote]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "SECRET" not in err
    with pytest.raises(UsageError, match=message):
        spark_session(remote)


def test_the_spark_engine_needs_a_url(sample, monkeypatch, capsys):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert main(["diagnose", "--store", str(sample.store.path), "--engine", "spark"]) == 2
    assert "--spark-remote sc://HOST:PORT or SPARK_REMOTE" in capsys.readouterr().err


def test_redact_remote_hides_tokens_and_passwords():
    assert redact_remote("sc://h:443/;token=abc;x-databricks-cluster-id=1;user_id=me") == (
        "sc://h:443/;token=***;x-databricks-cluster-id=***;user_id=me"
    )
    assert redact_remote("sc://me:pw@h:15002") == "sc://***@h:15002"
    assert redact_remote("sc://h:15002/;PASSWORD=p;use_ssl=true") == "sc://h:15002/;PASSWORD=***;use_ssl=true"


def test_the_spark_engine_only_reads(sample_store, on_sail):
    versions = {kind: sample_store.table(kind).version() for kind in cf.schemas.KINDS}
    names = lambda: sorted(p.name for p in sample_store.path.rglob("*"))  # noqa: E731
    before = names()
    cf.diagnose.diagnose(on_sail)
    assert {kind: sample_store.table(kind).version() for kind in cf.schemas.KINDS} == versions
    assert names() == before


def test_a_session_of_the_callers_own_in_another_time_zone(sample_store, spark_remote):
    """``session=``: the caller's session is used as it is; its time zone changes nothing (bounds are instants)."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(spark_remote).create()
    try:
        session.conf.set("spark.sql.session.timeZone", "Asia/Kolkata")
        reader = on_spark(sample_store, session=session)
        assert reader.engine.session is session
        assert _doc(reader, WINDOW) == _doc(sample_store, WINDOW)
        assert session.conf.get("spark.sql.session.timeZone") == "Asia/Kolkata"
    finally:
        session.stop()


def test_the_report_on_spark_equals_the_local_report(sample, spark_remote, tmp_path, monkeypatch):
    """``report --engine spark``: the summary and thresholds are the local report's; the notebook's kernel
    reads on the server too (its URL reaches it through the environment, never the HTML)."""
    import shutil

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    for name in ("local", "spark"):
        shutil.copytree(sample.store.path, tmp_path / name)  # a report records what it listed in its store
    common = ["--fail-on", "error_rate>0.5"]
    assert main(["report", "--store", str(tmp_path / "local"), "--out", str(tmp_path / "local.html"), *common]) == 0
    args = ["report", "--store", str(tmp_path / "spark"), "--out", str(tmp_path / "spark.html"), *common]
    assert main([*args, "--engine", "spark", "--spark-remote", spark_remote]) == 0
    local, spark = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "spark"))
    assert spark == local
    assert local["current"]["incident_ids"]  # incidents were compared, not two empty lists
    html = (tmp_path / "spark.html").read_text()
    assert spark_remote not in html
    assert "Traceback" not in html


def test_the_report_notebook_opens_the_store_on_spark(sample, spark_remote, monkeypatch):
    """What the notebook's kernel does with ``engine = "spark"``: the store on the server of ``SPARK_REMOTE``."""
    from cfanalytics.report import open_period

    monkeypatch.setenv("SPARK_REMOTE", spark_remote)
    reader, period, where = open_period(str(sample.store.path), "", "", "", engine="spark")
    assert isinstance(reader, SparkReader)
    assert reader.location.uri == sample.store.location.uri  # the alert state is the store's own
    assert (period, where) == open_period(str(sample.store.path), "", "", "")[1:]
