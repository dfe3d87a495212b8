"""The diagnostics' query plans stay bounded: visits are restricted to the click ids needed
(semi joins) before any join, and the summaries give the same answers as the row-level frames."""

from __future__ import annotations

import re

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics.diagnose import conversion_gaps, diagnose, gap_summary, incidents, orphan_postbacks, postback_summary
from cfanalytics.diagnose.frames import click_attribution, postbacks
from cfanalytics.diagnose.gaps import _orphans, conversions
from cfanalytics.diagnose.incidents import history_filter
from cfanalytics.filters import LogFilter
from cfanalytics.sample import generate


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans")
    account = generate(folder / "exports", seed=7, visits=20_000)
    store = cf.LogStore(folder / "store", timezone=account.truth["timezone"])
    result = store.ingest([p for role, p in sorted(account.files.items()) if role != "network_export"])
    assert result.ok, result.failures
    return store


def _scan_parents(plan: str, kind: str) -> list[str]:
    """The plan node directly above each scan of ``kind``'s table (the nearest less-indented join/select)."""
    lines = plan.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if "SCAN" in line and f"/{kind}/" in line:
            depth = len(line) - len(line.lstrip())
            for above in reversed(lines[:i]):
                indent = len(above) - len(above.lstrip())
                if indent < depth and re.search(r"JOIN:|AGGREGATE|FILTER", above):
                    out.append(above.strip())
                    break
    return out


def test_enriched_postbacks_restrict_visits_by_a_semi_join(sample):
    plan = postbacks(sample).explain()
    assert "SEMI JOIN" in plan
    assert "FULL JOIN" not in plan  # the 10M-row attribution is never built
    parents = _scan_parents(plan, "visits")
    assert parents
    assert all(p.startswith("SEMI JOIN") for p in parents), parents
    assert all(p.startswith("SEMI JOIN") for p in _scan_parents(plan, "conversions"))


def test_conversions_restrict_visits_by_a_semi_join(sample):
    parents = _scan_parents(conversions(sample).explain(), "visits")
    assert parents
    assert all(p.startswith("SEMI JOIN") for p in parents), parents


def test_orphans_anti_join_the_stored_postbacks_without_visits(sample):
    plan = _orphans(sample, LogFilter()).explain()
    assert "ANTI JOIN" in plan
    assert "/visits/" not in plan


def test_restricted_attribution_equals_the_full_one(sample):
    rows = sample.scan("postbacks").select("click_id").unique()
    full = rows.join(click_attribution(sample), on="click_id", how="left").collect().sort("click_id")
    restricted = rows.join(click_attribution(sample, rows), on="click_id", how="left").collect().sort("click_id")
    assert_frame_equal(restricted, full)


def test_enriched_postbacks_equal_the_unrestricted_join(sample):
    pb = sample.scan("postbacks").select(postbacks(sample).collect_schema().names()[:12])
    reference = (
        pb.join(click_attribution(sample), on="click_id", how="left")
        .with_columns(
            pl.coalesce("traffic_source_id", "_v_ts", "_c_ts").alias("traffic_source_id"),
            pl.coalesce("campaign_id", "_v_cmp", "_c_cmp").alias("campaign_id"),
        )
        .drop("_v_ts", "_c_ts", "_v_cmp", "_c_cmp")
        .collect()
        .sort("postback_id")
    )
    got = postbacks(sample).collect().sort("postback_id")
    assert_frame_equal(got.select(reference.columns), reference)


@pytest.mark.parametrize(
    "where",
    [LogFilter(), LogFilter(start="2026-11-19", end="2026-11-21"), LogFilter(error_kinds=["auth", "other"])],
    ids=["all", "days", "kinds"],
)
def test_gap_summary_agrees_with_the_row_frames(sample, where):
    rows = conversion_gaps(sample, where, grace_minutes=30)
    orphans = orphan_postbacks(sample, where)
    summary = gap_summary(sample, where, grace_minutes=30)
    assert summary["conversions"] == rows.height
    assert summary["duplicate_conversions"] == int(rows.get_column("duplicate").sum())
    assert summary["unknown_click"] == int(rows.get_column("unknown_click").sum())
    assert summary["orphan_postbacks"] == orphans.height
    assert summary["ct_mismatch"] == int(orphans.get_column("ct_mismatch").sum())
    for cls, n in rows.group_by("gap").len().iter_rows():
        assert summary[cls] == n
    # the same from an already enriched frame (as diagnose() passes it)
    frame = postbacks(sample, where).collect()
    assert gap_summary(sample, where, grace_minutes=30, postbacks_frame=frame) == summary
    assert_frame_equal(orphan_postbacks(sample, where, frame=frame), orphans)


def test_diagnose_shares_one_frame_with_the_same_answers(sample):
    where = LogFilter(start="2026-11-20", end="2026-11-22")
    doc = diagnose(sample, where)
    pb = postback_summary(sample, where)
    pb.pop("last_postback_time")
    assert doc["postbacks"] == pb
    assert doc["gaps"] == gap_summary(sample, where)
    history = postbacks(sample, history_filter(sample, where)).collect()
    assert_frame_equal(incidents(sample, where, frame=history), incidents(sample, where))


def test_one_visit_lookup_serves_postbacks_and_conversions(sample):
    """diagnose() reads the visits once, for the click ids of postbacks and conversions alike."""
    from cfanalytics.diagnose.frames import postback_rows, visit_lookup
    from cfanalytics.diagnose.gaps import conversion_rows

    where = LogFilter(start="2026-11-20", end="2026-11-22")
    keys = pl.concat(
        [postback_rows(sample, where).select("click_id"), conversion_rows(sample, where).select("click_id")]
    )
    visits = visit_lookup(sample, keys)
    # every visit of those click ids, and no other (checked against a plain join of the stored tables)
    wanted = keys.unique().collect().get_column("click_id")
    stored = sample.scan("visits").select("click_id").collect().get_column("click_id")
    assert sorted(visits.get_column("click_id").to_list()) == sorted(set(wanted.to_list()) & set(stored.to_list()))
    order = ["postback_time", "postback_id"]
    assert_frame_equal(
        postbacks(sample, where, visits=visits).collect().sort(order), postbacks(sample, where).collect().sort(order)
    )
    assert gap_summary(sample, where, grace_minutes=30, visits=visits) == gap_summary(sample, where, grace_minutes=30)
    # and diagnose() without incidents answers the same
    doc, bare = diagnose(sample, where), diagnose(sample, where, with_incidents=False)
    assert bare["incidents"] == []
    assert {k: v for k, v in bare.items() if k != "incidents"} == {k: v for k, v in doc.items() if k != "incidents"}
