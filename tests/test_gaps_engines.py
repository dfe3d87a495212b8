"""The conversion-gap core on every engine: Polars frames, narwhals over Polars, and Spark Connect (Sail).

A hand-built fixture pins every gap class, ``""`` = null cts, duplicates, unknown clicks (malformed and
not), orphans with ``ct_mismatch`` and the latest-integration tie to values worked out by hand; on the
sample account every function gives on Sail what it gives on Polars, and :func:`gap_counts` what a plain
DuckDB SQL query gives over the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import narwhals.stable.v2 as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cfanalytics.diagnose.at_stake import lost_conversions
from cfanalytics.diagnose.attribution import attribute_conversions, needs_attribution
from cfanalytics.diagnose.frames import (
    conversion_keys,
    conversion_rows,
    postback_outcomes,
    postback_rows,
    visit_lookup,
)
from cfanalytics.diagnose.gaps import (
    GAP_BREAKDOWNS,
    GAP_CLASSES,
    NULL_CT,
    classify,
    gap_breakdown,
    gap_breakdowns,
    gap_counts,
    orphans,
    with_ct_mismatch,
    with_malformed_click,
)
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import fetch, on_spark
from cfanalytics.values import MACRO_PATTERN, UUID_PATTERN

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
A, B, C, D, E, Z = (f"6f1c2d3e-0000-4000-8000-0000000000{i:02d}" for i in range(1, 7))
MACRO = "{clickid}"


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _conversions() -> pl.LazyFrame:
    """r1/r2: one conversion fired twice (ct "" then null: a duplicate); r5 is recent (pending with a grace
    of 60 min: the last postback is at 12:00); r6/r7 an unexpanded macro (unknown, malformed, two txids);
    r8 an unknown but well-formed click id."""
    return pl.LazyFrame(
        {
            "_row_id": ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"],
            "click_id": [A, A, B, C, D, MACRO, MACRO, E],
            "ct": ["", None, "sale", "lead", "", "", "", "sale"],
            "txid": [None, "", "x1", None, None, None, "x2", None],
            "conversion_time": [_t(0), _t(1), _t(10), _t(15), _t(110), _t(20), _t(21), _t(30)],
            "known_click": [True, True, True, True, True, False, False, False],
            "traffic_source_id": ["t1", "t1", "t2", "t2", "t3", None, None, "t1"],
            "campaign_id": ["k1", "k1", "k2", "k2", "k3", None, None, "k1"],
            "payout": [1.0, 1.0, 5.0, 3.0, 2.0, 4.0, 4.0, 6.0],
            "currency": ["USD"] * 8,
        }
    )


def _postbacks() -> pl.LazyFrame:
    """A's postbacks name ct null and "" (both match A's conversions); B's three all failed, two of them at
    the latest time (11:30) through i2 and i3 (the tie goes to i3, neither B's min nor max id); E's named
    once (i1); C's is for another ct (an orphan, ct_mismatch) and Z's for no conversion (an orphan)."""
    return pl.LazyFrame(
        {
            "postback_id": ["p1", "p9", "p2", "p3", "p4", "p5", "p6", "p7", "p8"],
            "click_id": [A, A, B, B, B, E, E, C, Z],
            "ct": [None, "", "sale", "sale", "sale", "sale", "sale", "sale", ""],
            "is_error": [False, False, True, True, True, True, False, False, False],
            "postback_time": [_t(5), _t(6), _t(30), _t(90), _t(90), _t(40), _t(50), _t(20), _t(120)],
            "integration_id": ["i1", "i1", "i9", "i2", "i3", None, "i1", "i4", None],
        }
    )


def _outcomes() -> pl.LazyFrame:
    return _postbacks().select("click_id", "ct", "is_error", "postback_time", "integration_id")


def _keys() -> pl.LazyFrame:
    return _conversions().select("click_id", "ct")


#: By hand, per row: gap (grace 60), postbacks, postback_errors, integration_id, unknown, malformed.
EXPECTED_ROWS = {
    "r1": ("posted_ok", 2, 0, "i1", False, False),
    "r2": ("posted_ok", 2, 0, "i1", False, False),
    "r3": ("posted_failed", 3, 3, "i3", False, False),
    "r4": ("not_posted", 0, 0, None, False, False),
    "r5": ("pending", 0, 0, None, False, False),
    "r6": ("not_posted", 0, 0, None, True, True),
    "r7": ("not_posted", 0, 0, None, True, True),
    "r8": ("posted_ok", 2, 1, "i1", True, False),
}
EXPECTED_COUNTS = {
    "conversions": 8,
    "posted_ok": 3,
    "posted_failed": 1,
    "not_posted": 3,
    "pending": 1,
    "orphan_postbacks": 2,
    "ct_mismatch": 1,
    "duplicate_conversions": 1,
    "unknown_click": 3,
    "unknown_click_malformed": 2,
}


@pytest.fixture(scope="module")
def sail(spark_remote, tmp_path_factory) -> Any:
    """A Spark engine on the Sail server (its store is only a handle: frames are moved with ``local``)."""
    import cfanalytics as cf

    store = cf.LogStore(tmp_path_factory.mktemp("gaps") / "s", timezone="UTC")
    return on_spark(store, spark_remote).engine


Mover = Callable[[pl.LazyFrame], Any]


@pytest.fixture(params=["polars", "narwhals", "spark"])
def move(request) -> Mover:
    """Frames as each engine's caller passes them: Polars lazy frames, narwhals over Polars, Spark's."""
    if request.param == "polars":
        return lambda frame: frame
    if request.param == "narwhals":
        return nw.from_native
    engine = request.getfixturevalue("sail")
    return engine.local  # type: ignore[no-any-return]


def _rows(frame: Any) -> pl.DataFrame:
    """Any engine's frame collected, with ``malformed_click`` (computed here when the engine gave none)."""
    return with_malformed_click(fetch(frame))


def test_classify_by_hand_on_every_engine(move):
    classified = classify(move(_conversions()), move(_outcomes()), 60)
    rows = _rows(classified).sort("_row_id")
    cols = ["gap", "postbacks", "postback_errors", "integration_id", "unknown_click", "malformed_click"]
    got = {r[0]: tuple(r[1:]) for r in rows.select("_row_id", *cols).rows()}
    assert got == EXPECTED_ROWS
    assert rows.get_column("_ct").to_list() == [None, None, "sale", "lead", None, None, None, "sale"]
    assert rows.get_column("_tx").to_list() == [None, None, "x1", None, None, None, "x2", None]
    assert NULL_CT not in rows.get_column("_ct").to_list()  # the engine's join key never leaks out
    no_grace = _rows(classify(move(_conversions()), move(_outcomes()))).sort("_row_id")
    assert no_grace.filter(pl.col("_row_id") == "r5").get_column("gap").item() == "not_posted"
    assert "pending" not in no_grace.get_column("gap").to_list()


def test_a_narwhals_classify_stays_in_its_engine_without_the_regex_column():
    classified = classify(nw.from_native(_conversions()), nw.from_native(_outcomes()))
    assert isinstance(classified, nw.LazyFrame)
    assert "malformed_click" not in classified.collect_schema().names()
    assert "malformed_click" in classify(_conversions(), _outcomes()).collect_schema().names()


def test_null_and_empty_cts_match_each_other_in_the_engines_joins(move):
    """Conversions with ct "" and null match postbacks with ct null and "", both ways; "sale" matches only
    "sale" (narwhals joins have no null = null: the engine path keys null as NUL)."""
    conversions = pl.LazyFrame(
        {
            "_row_id": ["c1", "c2", "c3"],
            "click_id": ["a", "a", "b"],
            "ct": ["", None, None],
            "txid": [None, None, None],
            "conversion_time": [T0] * 3,
            "known_click": [True] * 3,
        }
    )
    outcomes = pl.LazyFrame(
        {
            "click_id": ["a", "a", "b"],
            "ct": [None, "", "sale"],
            "is_error": [False, True, False],
            "postback_time": [T0] * 3,
        }
    )
    rows = _rows(classify(move(conversions), move(outcomes))).sort("_row_id")
    assert rows.select("_row_id", "postbacks", "postback_errors", "gap").rows() == [
        ("c1", 2, 1, "posted_ok"),
        ("c2", 2, 1, "posted_ok"),
        ("c3", 0, 0, "not_posted"),
    ]
    postbacks = outcomes.with_columns(pl.Series("postback_id", ["p1", "p2", "p3"]))
    left = fetch(orphans(move(postbacks), move(conversions.select("click_id", "ct"))))
    assert left.get_column("postback_id").to_list() == ["p3"]


def test_orphans_and_ct_mismatch_by_hand_on_every_engine(move):
    found = with_ct_mismatch(orphans(move(_postbacks()), move(_keys())), move(_keys()))
    rows = fetch(found).sort("postback_id")
    assert rows.select("postback_id", "ct_mismatch").rows() == [("p7", True), ("p8", False)]
    assert rows.columns == [*_postbacks().collect_schema().names(), "ct_mismatch"]


def test_gap_counts_by_hand_on_every_engine(move):
    keys = move(_keys())
    orphan_rows = with_ct_mismatch(orphans(move(_postbacks()), keys), keys)
    assert gap_counts(classify(move(_conversions()), move(_outcomes()), 60), orphan_rows) == EXPECTED_COUNTS
    no_grace = gap_counts(classify(move(_conversions()), move(_outcomes())), orphan_rows)
    assert no_grace == {**EXPECTED_COUNTS, "pending": 0, "not_posted": 4}


def test_breakdowns_by_hand_on_every_engine(move):
    classified = classify(move(_conversions()), move(_outcomes()), 60)
    by_source = [(None, 2, 0, 0, 2, 0), ("t2", 2, 0, 1, 1, 0), ("t1", 3, 3, 0, 0, 0), ("t3", 1, 0, 0, 0, 1)]
    by_integration = [(None, 4, 0, 0, 3, 1), ("i1", 3, 3, 0, 0, 0), ("i3", 1, 0, 1, 0, 0)]
    assert gap_breakdown(classified, "traffic_source_id").rows() == by_source
    assert gap_breakdown(classified, "integration_id").rows() == by_integration
    names = Names.empty()
    both = gap_breakdowns(classified, names)
    fields = ("conversions", *GAP_CLASSES)
    assert [(r["traffic_source_id"], *(r[f] for f in fields)) for r in both["by_traffic_source"]] == by_source
    assert [(r["integration_id"], *(r[f] for f in fields)) for r in both["by_integration"]] == by_integration


def test_lost_conversions_by_hand_on_every_engine(move):
    lost = lost_conversions(classify(move(_conversions()), move(_outcomes()), 60))
    assert lost.select("_row_id", "gap", "duplicate", "malformed_click").rows() == [
        ("r3", "posted_failed", False, False),
        ("r4", "not_posted", False, False),
        ("r6", "not_posted", False, True),
        ("r7", "not_posted", False, True),
    ]
    assert lost.schema["postbacks"] == pl.Int64
    no_grace = lost_conversions(classify(move(_conversions()), move(_outcomes())))
    assert no_grace.get_column("_row_id").to_list() == ["r3", "r4", "r6", "r7", "r5"]


# --------------------------------------------------------------------------- the sample account


@pytest.fixture(scope="module")
def sample_inputs(sample_store) -> dict[str, pl.DataFrame]:
    """What ``diagnose`` classifies on the sample account, built with Polars as document.py builds it."""
    rows = postback_rows(sample_store).collect()
    conversions = conversion_rows(sample_store)
    click_ids = pl.concat([rows.lazy().filter(needs_attribution()).select("click_id"), conversions.select("click_id")])
    visits = visit_lookup(sample_store, click_ids).lazy()
    return {
        "conversions": attribute_conversions(conversions, visits, timezone=sample_store.timezone).collect(),
        "outcomes": postback_outcomes(sample_store).collect(),
        "keys": conversion_keys(sample_store).collect(),
        "postbacks": rows,
    }


def _comparable(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Rows sorted by their id, counts as Int64 (Polars' len is UInt32, Spark's Int64)."""
    counts = [c for c in ("postbacks", "postback_errors") if c in frame.columns]
    return frame.with_columns(pl.col(counts).cast(pl.Int64)).sort(key)


# a grace long enough for the sample's last hours to be pending
GRACES = (0, 240)


def test_every_function_gives_on_sail_what_it_gives_on_polars(sample_store, sample_inputs, sail):
    polars = {name: frame.lazy() for name, frame in sample_inputs.items()}
    engines: dict[str, dict[str, Any]] = {
        "narwhals": {name: nw.from_native(frame) for name, frame in polars.items()},
        "spark": {name: sail.local(frame) for name, frame in polars.items()},
    }
    names = Names.load(sample_store)
    for grace in GRACES:
        expected = classify(polars["conversions"], polars["outcomes"], grace).collect()
        exp_orphans = with_ct_mismatch(orphans(polars["postbacks"], polars["keys"]), polars["keys"]).collect()
        exp_counts = gap_counts(expected.lazy(), exp_orphans.lazy())
        assert exp_counts["unknown_click_malformed"] > 0
        assert exp_counts["ct_mismatch"] > 0
        assert (exp_counts["pending"] > 0) == (grace > 0)
        exp_breakdowns = gap_breakdowns(expected.lazy(), names)
        exp_lost = lost_conversions(expected.lazy())
        assert exp_lost.height > 0
        for engine, frames in engines.items():
            classified = classify(frames["conversions"], frames["outcomes"], grace)
            got = _rows(classified)
            assert_frame_equal(
                _comparable(got, "_row_id"), _comparable(expected, "_row_id"), check_exact=True, check_dtypes=False
            )
            found = with_ct_mismatch(orphans(frames["postbacks"], frames["keys"]), frames["keys"])
            assert_frame_equal(fetch(found).sort("postback_id"), exp_orphans.sort("postback_id"), check_exact=True)
            assert gap_counts(classified, found) == exp_counts, engine
            for by in GAP_BREAKDOWNS:
                assert_frame_equal(gap_breakdown(classified, by), gap_breakdown(expected, by))
            assert gap_breakdowns(classified, names) == exp_breakdowns, engine
            assert_frame_equal(
                _comparable(lost_conversions(classified), "_row_id"),
                _comparable(exp_lost, "_row_id"),
                check_exact=True,
            )


def test_classified_column_types_agree_across_engines(sample_inputs, sail):
    """Beyond the counts' integer width, Spark gives back the types Polars has."""
    polars = classify(sample_inputs["conversions"].lazy(), sample_inputs["outcomes"].lazy()).collect()
    spark = _rows(
        classify(sail.local(sample_inputs["conversions"].lazy()), sail.local(sample_inputs["outcomes"].lazy()))
    )
    assert _comparable(spark, "_row_id").schema == _comparable(polars, "_row_id").schema


def _duckdb_counts(inputs: dict[str, pl.DataFrame], grace: int) -> dict[str, int]:
    """The gaps counts as plain SQL over the same rows (cts and txids "" = null, null = null)."""
    con = duckdb.connect()
    for name, frame in inputs.items():
        con.register(name, frame.to_arrow())
    sql = f"""
    with conv as (select *, nullif(ct, '') as k_ct, nullif(txid, '') as k_tx from conversions),
    per as (select click_id, nullif(ct, '') as k_ct, count(*) as n, sum(is_error::int) as e
            from outcomes group by 1, 2),
    last as (select max(postback_time) as t from outcomes),
    cls as (
        select conv.*, coalesce(per.n, 0) as n, coalesce(per.e, 0) as e from conv left join per
        on conv.click_id = per.click_id and conv.k_ct is not distinct from per.k_ct),
    orphan as (
        select p.click_id from postbacks p where not exists (select 1 from keys k where k.click_id = p.click_id
            and nullif(k.ct, '') is not distinct from nullif(p.ct, '')))
    select
        count(*) as conversions,
        count(*) filter (where n > e) as posted_ok,
        count(*) filter (where n > 0 and n = e) as posted_failed,
        count(*) filter (where n = 0 and not ({grace} > 0
            and conversion_time > (select t from last) - interval '{grace} minutes')) as not_posted,
        count(*) filter (where n = 0 and {grace} > 0
            and conversion_time > (select t from last) - interval '{grace} minutes') as pending,
        (select count(*) from orphan) as orphan_postbacks,
        (select count(*) from orphan o where exists (select 1 from keys k where k.click_id = o.click_id))
            as ct_mismatch,
        count(*) - (select count(*) from (select distinct click_id, k_ct, k_tx from conv)) as duplicate_conversions,
        count(*) filter (where not known_click) as unknown_click,
        count(*) filter (where not known_click and (regexp_matches(click_id, '{MACRO_PATTERN}')
            or not regexp_matches(click_id, '{UUID_PATTERN}'))) as unknown_click_malformed
    from cls
    """
    relation = con.sql(sql)
    (row,) = relation.fetchall()
    return dict(zip(relation.columns, (int(v) for v in row), strict=True))


def test_gap_counts_on_sail_match_a_duckdb_query_over_the_same_rows(sample_inputs, sail):
    frames = {name: sail.local(frame.lazy()) for name, frame in sample_inputs.items()}
    for grace in GRACES:
        expected = _duckdb_counts(sample_inputs, grace)
        assert expected["conversions"] > expected["not_posted"] > 0
        found = with_ct_mismatch(orphans(frames["postbacks"], frames["keys"]), frames["keys"])
        assert gap_counts(classify(frames["conversions"], frames["outcomes"], grace), found) == expected


def test_no_rows_count_zero_on_every_engine(move):
    conversions, postbacks = _conversions().clear(), _postbacks().clear()
    keys = move(conversions.select("click_id", "ct"))
    classified = classify(move(conversions), move(postbacks.drop("postback_id")), 60)
    counts = gap_counts(classified, with_ct_mismatch(orphans(move(postbacks), keys), keys))
    assert counts == dict.fromkeys(EXPECTED_COUNTS, 0)
    assert gap_breakdowns(classified, Names.empty()) == {"by_traffic_source": [], "by_integration": []}
    assert lost_conversions(classified).height == 0
