"""The diagnostics' query plans stay bounded: visits are restricted to the click ids needed
(semi joins) before any join, and the summaries give the same answers as the row-level frames."""

from __future__ import annotations

import re

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cfanalytics.diagnose import diagnose, gap_summary, gaps_by, incidents, orphan_postbacks
from cfanalytics.diagnose.attribution import (
    CONVERSION_CAMPAIGN,
    CONVERSION_TRAFFIC_SOURCE,
    VISIT_CAMPAIGN,
    VISIT_TRAFFIC_SOURCE,
    enrich_postbacks,
    needs_attribution,
)
from cfanalytics.diagnose.error_rates import postback_summary
from cfanalytics.diagnose.frames import (
    click_attribution,
    conversion_keys,
    conversion_rows,
    conversions,
    conversions_of,
    postback_outcomes,
    postback_rows,
    postbacks,
    visit_lookup,
)
from cfanalytics.diagnose.gaps import GAP_CLASSES, classify, gap_counts, gap_rows, orphans, with_ct_mismatch
from cfanalytics.diagnose.names import Names
from cfanalytics.diagnose.queries import money_at_stake
from cfanalytics.filters import LogFilter


@pytest.fixture
def reader(sample_store):
    """The sample account's store (read-only)."""
    return sample_store


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


def test_enriched_postbacks_restrict_visits_by_a_semi_join(reader):
    plan = postbacks(reader).explain()
    assert "SEMI JOIN" in plan
    assert "FULL JOIN" not in plan  # the 10M-row attribution is never built
    parents = _scan_parents(plan, "visits")
    assert parents
    assert all(p.startswith("SEMI JOIN") for p in parents), parents
    assert all(p.startswith("SEMI JOIN") for p in _scan_parents(plan, "conversions"))


def test_conversions_restrict_visits_by_a_semi_join(reader):
    parents = _scan_parents(conversions(reader).explain(), "visits")
    assert parents
    assert all(p.startswith("SEMI JOIN") for p in parents), parents


def test_orphans_anti_join_the_stored_postbacks_without_visits(reader):
    plan = orphans(postback_rows(reader), conversion_keys(reader)).explain()
    assert "ANTI JOIN" in plan
    assert "/visits/" not in plan


def test_restricted_attribution_equals_the_full_one(reader):
    rows = reader.scan("postbacks").select("click_id").unique()
    full = rows.join(click_attribution(reader), on="click_id", how="left").collect().sort("click_id")
    restricted = rows.join(click_attribution(reader, rows), on="click_id", how="left").collect().sort("click_id")
    assert_frame_equal(restricted, full)


def test_enriched_postbacks_equal_the_unrestricted_join(reader):
    pb = reader.scan("postbacks").select(postbacks(reader).collect_schema().names()[:12])
    reference = (
        pb.join(click_attribution(reader), on="click_id", how="left")
        .with_columns(
            pl.coalesce("traffic_source_id", VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE).alias(
                "traffic_source_id"
            ),
            pl.coalesce("campaign_id", VISIT_CAMPAIGN, CONVERSION_CAMPAIGN).alias("campaign_id"),
        )
        .drop(VISIT_TRAFFIC_SOURCE, CONVERSION_TRAFFIC_SOURCE, VISIT_CAMPAIGN, CONVERSION_CAMPAIGN)
        .collect()
        .sort("postback_id")
    )
    got = postbacks(reader).collect().sort("postback_id")
    assert_frame_equal(got.select(reference.columns), reference)


@pytest.mark.parametrize(
    "where",
    [LogFilter(), LogFilter(start="2026-11-19", end="2026-11-21"), LogFilter(error_kinds=["auth", "other"])],
    ids=["all", "days", "kinds"],
)
def test_gap_summary_agrees_with_the_row_frames(reader, where):
    rows = gap_rows(conversions(reader, where), postback_outcomes(reader), grace_minutes=30)
    orphan_rows = orphan_postbacks(reader, where)
    summary = gap_summary(reader, where, grace_minutes=30)
    assert summary["conversions"] == rows.height
    assert summary["duplicate_conversions"] == int(rows.get_column("duplicate").sum())
    assert summary["unknown_click"] == int(rows.get_column("unknown_click").sum())
    assert summary["orphan_postbacks"] == orphan_rows.height
    assert summary["ct_mismatch"] == int(orphan_rows.get_column("ct_mismatch").sum())
    for cls, n in rows.group_by("gap").len().iter_rows():
        assert summary[cls] == n
    # the same from an already enriched frame (as diagnose() computes it)
    frame = postbacks(reader, where)
    keys = conversion_keys(reader)
    from_frame = with_ct_mismatch(orphans(frame, keys), keys)
    classified = classify(conversions(reader, where), postback_outcomes(reader), 30)
    assert gap_counts(classified, from_frame) == summary
    assert_frame_equal(from_frame.collect().sort(["postback_time", "postback_id"]), orphan_rows)


def test_diagnose_shares_one_frame_with_the_same_answers(reader):
    where = LogFilter(start="2026-11-18", end="2026-11-20")
    doc = diagnose(reader, where)
    summary = postback_summary(postbacks(reader, where), Names.load(reader, ["traffic_source", "integration"]))
    summary.pop("last_postback_time")
    assert doc["postbacks"] == summary
    counts = gap_summary(reader, where)
    assert {k: doc["gaps"][k] for k in counts} == counts
    # the classes per traffic source and integration: those of the gap rows, grouped
    for key, by in (("by_traffic_source", "traffic_source_id"), ("by_integration", "integration_id")):
        name = by.removesuffix("_id") + "_name"
        table = gaps_by(reader, by, where).select(by, name, "conversions", *GAP_CLASSES)
        assert doc["gaps"][key]
        assert sorted(doc["gaps"][key], key=str) == sorted(table.to_dicts(), key=str)
    stake = money_at_stake(reader, where)
    assert [(r["currency"], r["conversions"], r["payout"]) for r in doc["gaps"]["at_stake"]["total"]] == stake.select(
        "currency", "conversions", "payout"
    ).rows()
    found = incidents(reader, where)
    assert [i["incident_id"] for i in doc["incidents"]] == found.get_column("incident_id").to_list()


def test_one_visit_lookup_serves_postbacks_and_conversions(reader):
    """diagnose() reads the visits once, for the click ids of postbacks and conversions alike."""
    where = LogFilter(start="2026-11-20", end="2026-11-22")
    keys = pl.concat(
        [postback_rows(reader, where).select("click_id"), conversion_rows(reader, where).select("click_id")]
    )
    visits = visit_lookup(reader, keys)
    # every visit of those click ids, and no other (checked against a plain join of the stored tables)
    wanted = keys.unique().collect().get_column("click_id")
    stored = reader.scan("visits").select("click_id").collect().get_column("click_id")
    assert sorted(visits.get_column("click_id").to_list()) == sorted(set(wanted.to_list()) & set(stored.to_list()))
    order = ["postback_time", "postback_id"]
    rows = postback_rows(reader, where)
    unattributed = rows.filter(needs_attribution()).select("click_id")
    shared = enrich_postbacks(
        rows, visits.lazy(), conversions_of(reader, unattributed), where, timezone=reader.timezone
    )
    assert_frame_equal(shared.collect().sort(order), postbacks(reader, where).collect().sort(order))
    # and diagnose() without incidents answers the same
    doc, bare = diagnose(reader, where), diagnose(reader, where, with_incidents=False)
    assert bare["incidents"] == []
    assert {k: v for k, v in bare.items() if k != "incidents"} == {k: v for k, v in doc.items() if k != "incidents"}
