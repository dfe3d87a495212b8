"""The pure diagnostics on small hand-made frames, with numbers worked out by hand (no store)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from cfanalytics.diagnose import attribution as a
from cfanalytics.diagnose.error_rates import error_kind_counts, error_rates, postback_summary, top_signatures
from cfanalytics.diagnose.events import event_volume
from cfanalytics.diagnose.gaps import classify, gap_counts, gap_rows, gap_table, orphans, with_ct_mismatch
from cfanalytics.diagnose.incidents import find_incidents, scope_changes, scope_incidents
from cfanalytics.diagnose.names import Names
from cfanalytics.filters import LogFilter

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
UUID = "6f1c2d3e-0000-4000-8000-0000000000{:02d}"


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- attribution
def _stored_postbacks() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "postback_id": ["p1", "p2", "p3", "p4"],
            "click_id": ["a", "b", "c", "d"],
            "postback_time": [_t(0), _t(1), _t(2), _t(3)],
            "is_error": [False, True, True, False],
            "status_code": [200, 401, None, 200],
            "error_message": [None, "Invalid token", "timeout after 30000 ms", None],
            "postback_url": ["https://t/pb"] * 4,
            "ct": ["sale"] * 4,
            "integration_id": [None, "i1", None, None],
            "traffic_source_id": ["own", None, None, None],
            "campaign_id": ["c-own", None, None, None],
        }
    )


def _visits() -> pl.LazyFrame:
    return pl.LazyFrame(
        {"click_id": ["b"], a.VISIT_TRAFFIC_SOURCE: ["t-visit"], a.VISIT_CAMPAIGN: ["c-visit"], a.VISIT_TIME: [_t(-60)]}
    )


def _by_conversion() -> pl.LazyFrame:
    # click c converted twice with two traffic sources: the smallest id wins
    rows = pl.LazyFrame(
        {"click_id": ["c", "c", "b"], "traffic_source_id": ["t-z", "t-a", "t-conv"], "campaign_id": ["k2", "k1", "k9"]}
    )
    return a.conversion_attribution(rows)


def test_attribution_prefers_own_then_visit_then_the_smallest_conversion():
    out = a.enrich_postbacks(_stored_postbacks(), _visits(), _by_conversion()).collect().sort("postback_id")
    assert out.select("postback_id", "traffic_source_id", "campaign_id", "attributed").rows() == [
        ("p1", "own", "c-own", True),
        ("p2", "t-visit", "c-visit", True),  # the visit wins over the conversion
        ("p3", "t-a", "k1", True),
        ("p4", None, None, False),
    ]
    assert out.get_column("status_class").to_list() == ["2xx", "4xx", "none", "2xx"]
    assert out.get_column("error_kind").to_list()[0] is None  # accepted postbacks have no error kind
    assert out.get_column("signature").to_list() == [None, "Invalid token", "timeout after <n> ms", None]
    assert not {a.VISIT_TRAFFIC_SOURCE, a.CONVERSION_TRAFFIC_SOURCE, a.CONVERSION_CAMPAIGN} & set(out.columns)


def test_attribution_then_applies_the_filter_fields_other_than_the_range():
    where = LogFilter(start="2030-01-01", traffic_sources=["t-a", "own"])  # the range is not re-applied here
    out = a.enrich_postbacks(_stored_postbacks(), _visits(), _by_conversion(), where, timezone="UTC").collect()
    assert sorted(out.get_column("postback_id").to_list()) == ["p1", "p3"]


def test_conversions_take_their_visit_and_know_whether_the_click_is_known():
    conversions = pl.LazyFrame(
        {
            "click_id": ["b", "x"],
            "traffic_source_id": [None, "t-own"],
            "campaign_id": [None, None],
            "visit_time": [None, None],
        },
        schema_overrides={"visit_time": pl.Datetime("us", "UTC")},
    )
    out = a.attribute_conversions(conversions, _visits()).collect().sort("click_id")
    assert out.rows() == [("b", "t-visit", "c-visit", _t(-60), True), ("x", "t-own", None, None, False)]


# --------------------------------------------------------------------------- error rates
def _enriched() -> pl.DataFrame:
    # t1: 4 postbacks, 3 errors; t2: 2 postbacks, 0 errors; unattributed: 1 error
    return pl.DataFrame(
        {
            "postback_time": [_t(0), _t(10), _t(70), _t(80), _t(5), _t(6), _t(7)],
            "traffic_source_id": ["t1", "t1", "t1", "t1", "t2", "t2", None],
            "integration_id": ["i1", "i1", "i1", None, None, None, None],
            "is_error": [True, True, True, False, False, False, True],
            "error_kind": ["auth", "auth", "rate_limit", None, None, None, "auth"],
            "signature": ["Bad token <n>", "Bad token <n>", "Slow down", None, None, None, "Bad token <n>"],
            "error_message": ["Bad token 2", "Bad token 1", "Slow down", None, None, None, "Bad token 3"],
            "attributed": [True, True, True, True, True, True, False],
        }
    )


def test_error_rates_by_group_and_by_local_hour():
    rows = _enriched()
    assert error_rates(rows).rows() == [(7, 4, 4 / 7)]
    assert error_rates(rows, "traffic_source_id").rows() == [("t1", 4, 3, 0.75), (None, 1, 1, 1.0), ("t2", 2, 0, 0.0)]
    # hours in Paris (UTC+1): 10:00Z → 11:00 local; the t1 rows at 11:10Z and 11:20Z fall in 12:00 local
    hourly = error_rates(rows.filter(pl.col("traffic_source_id") == "t1"), ["hour"], "Europe/Paris")
    assert [(h.hour, n, e) for h, n, e, _ in hourly.rows()] == [(11, 2, 2), (12, 2, 1)]
    with pytest.raises(Exception, match="cannot group postbacks by nope"):
        error_rates(rows, "nope")


def test_error_kinds_and_top_signatures_with_the_earliest_example():
    rows = _enriched()
    assert error_kind_counts(rows).rows() == [("auth", 3), ("rate_limit", 1)]
    top = top_signatures(rows, top=1)
    assert top.select("signature", "errors", "example").rows() == [("Bad token <n>", 3, "Bad token 2")]  # earliest
    assert top.get_column("error_kind").to_list() == ["auth"]  # the earliest row's reading


def test_postback_summary_names_groups():
    names = Names(
        {
            "traffic_source": pl.DataFrame({"traffic_source_id": ["t1"], "traffic_source_name": ["Meta"]}),
            "integration": pl.DataFrame({"integration_id": ["i1"], "integration_name": ["CAPI"]}),
        }
    )
    summary = postback_summary(_enriched(), names)
    assert (summary["total"], summary["errors"], summary["unattributed"]) == (7, 4, 1)
    assert [(r["traffic_source_name"], r["postbacks"]) for r in summary["by_traffic_source"]] == [
        ("Meta", 4),
        (None, 2),
    ]
    assert summary["by_integration"] == [
        {"integration_id": "i1", "integration_name": "CAPI", "postbacks": 3, "errors": 3, "error_rate": 1.0}
    ]
    assert summary["last_postback_time"] == "2026-11-20T11:20:00Z"


# --------------------------------------------------------------------------- gaps
def _conversions() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "click_id": [UUID.format(1), UUID.format(2), UUID.format(3), UUID.format(4), UUID.format(4), "{clickid}"],
            "ct": ["", "sale", "sale", "lead", "lead", "sale"],
            "txid": ["t1", "t2", "t3", "t4", "t4", None],
            "conversion_time": [_t(0), _t(1), _t(2), _t(3), _t(4), _t(50)],
            "known_click": [True, True, True, True, True, False],
            "_row_id": ["r1", "r2", "r3", "r4", "r5", "r6"],
        }
    )


def _outcomes() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "click_id": [UUID.format(1), UUID.format(2), UUID.format(2), UUID.format(3), UUID.format(9)],
            "ct": [None, "sale", "sale", "lead", "sale"],
            "is_error": [False, True, True, False, True],
            "postback_time": [_t(5), _t(6), _t(7), _t(8), _t(60)],
        }
    )


def test_gap_rows_classify_every_conversion():
    rows = gap_rows(_conversions(), _outcomes())
    assert rows.filter(pl.col("_row_id") == "r2").select("postbacks", "postback_errors").row(0) == (2, 2)
    got = {r: (g, d) for r, g, d in rows.select("_row_id", "gap", "duplicate").rows()}
    assert got == {
        "r1": ("posted_ok", False),
        "r2": ("posted_failed", False),
        "r3": ("not_posted", False),
        "r4": ("not_posted", False),
        "r5": ("not_posted", True),  # same click, ct, txid as r4, later
        "r6": ("not_posted", False),
    }
    assert rows.filter(pl.col("unknown_click")).get_column("malformed_click").to_list() == [True]
    # grace: the last postback is at +60 min; 15 minutes before it, r6 (+50) is pending
    pending = gap_rows(_conversions(), _outcomes(), grace_minutes=15)
    assert pending.filter(pl.col("gap") == "pending").get_column("_row_id").to_list() == ["r6"]


def test_classify_gives_each_conversion_the_integration_of_its_latest_postback():
    # r1: one integration; r2: two, the later (+7) wins; r4/r5 (click 4, lead): a tie at +9 goes to the
    # greatest id, the later postback naming none is ignored; r3 (its postback is a lead) and r6: none
    outcomes = pl.LazyFrame(
        {
            "click_id": [UUID.format(i) for i in (1, 2, 2, 3, 4, 4, 4)],
            "ct": [None, "sale", "sale", "lead", "lead", "lead", "lead"],
            "is_error": [False, True, True, False, True, True, True],
            "postback_time": [_t(5), _t(7), _t(6), _t(8), _t(9), _t(9), _t(10)],
            "integration_id": ["i1", "i2", "i1", None, "i1", "i3", None],
        }
    )
    rows = classify(_conversions(), outcomes).collect().sort("_row_id")
    assert rows.select("_row_id", "integration_id").rows() == [
        ("r1", "i1"),
        ("r2", "i2"),
        ("r3", None),
        ("r4", "i3"),
        ("r5", "i3"),
        ("r6", None),
    ]


def test_orphans_ct_mismatch_and_counts():
    postbacks = pl.LazyFrame(
        {
            "postback_id": ["q1", "q2", "q3"],
            "click_id": [UUID.format(1), UUID.format(3), UUID.format(9)],
            "ct": ["", "lead", "sale"],
        }
    )
    keys = _conversions().select("click_id", "ct")
    found = with_ct_mismatch(orphans(postbacks, keys), keys).collect().sort("postback_id")
    assert found.select("postback_id", "ct_mismatch").rows() == [("q2", True), ("q3", False)]
    counts = gap_counts(classify(_conversions(), _outcomes()), with_ct_mismatch(orphans(postbacks, keys), keys))
    assert counts == {
        "conversions": 6,
        "posted_ok": 1,
        "posted_failed": 1,
        "not_posted": 4,
        "pending": 0,
        "orphan_postbacks": 2,
        "ct_mismatch": 1,
        "duplicate_conversions": 1,
        "unknown_click": 1,
        "unknown_click_malformed": 1,
    }


def test_gap_table_per_group():
    rows = gap_rows(_conversions(), _outcomes()).with_columns(
        pl.Series("traffic_source_id", ["t1", "t1", "t2", "t2", "t2", None])
    )
    assert gap_table(rows, "traffic_source_id").rows() == [
        ("t2", 0, 0, 3, 0, 3),
        (None, 0, 0, 1, 0, 1),
        ("t1", 1, 1, 0, 0, 2),
    ]


# --------------------------------------------------------------------------- incidents
def _history(kind: str = "auth") -> pl.DataFrame:
    """t1 sends 20 postbacks an hour for 24 hours with 1 error each, then an hour of 20 errors (``kind``)."""
    rows = []
    for hour in range(25):
        for i in range(20):
            failing = i < (20 if hour == 24 else 1)
            rows.append(
                {
                    "postback_id": f"p{hour}-{i}",
                    "postback_time": T0 + timedelta(hours=hour, minutes=2 * i + 1),
                    "is_error": failing,
                    "error_kind": kind if failing else None,
                    "traffic_source_id": "t1",
                    "integration_id": None,
                    "campaign_id": "c1",
                }
            )
    return pl.DataFrame(rows, schema_overrides={"integration_id": pl.String})


def _activity() -> pl.DataFrame:
    start = T0 + timedelta(hours=24)
    return pl.DataFrame(
        {
            "changed_at": [start - timedelta(hours=30), start - timedelta(hours=2), start - timedelta(minutes=30)],
            "author": ["old@x", "cam@x", "ana@x"],
            "entity_type": ["traffic_source", "campaign", "traffic_source"],
            "entity_id": ["t1", "c1", "t2"],
            "entity_name": ["Meta", "Camp", "Other"],
            "action": ["updated"] * 3,
            "old_value": [None, '{"postback_url": "a"}', None],
            "new_value": [None, '{"postback_url": "b"}', None],
        }
    )


def test_an_hour_of_failures_is_one_incident_with_its_suspected_change():
    names = Names({"traffic_source": pl.DataFrame({"traffic_source_id": ["t1"], "traffic_source_name": ["Meta"]})})
    campaigns = pl.DataFrame({"traffic_source_id": ["t1"], "campaign_id": ["c1"]})
    found = find_incidents(_history(), _activity(), names, campaigns)
    assert found.height == 1
    incident = found.row(0, named=True)
    assert (incident["scope"], incident["id"], incident["name"]) == ("traffic_source", "t1", "Meta")
    assert (incident["postbacks"], incident["errors"], incident["error_rate_during"]) == (20, 20, 1.0)
    # baseline: 24 errors in 480 postbacks, smoothed toward the prior 44/500 with weight 20
    assert incident["error_rate_before"] == pytest.approx((24 + 20 * 44 / 500) / (480 + 20))
    assert incident["start"] == T0 + timedelta(hours=24, minutes=1)
    assert incident["end"] == T0 + timedelta(hours=24, minutes=39)
    assert (incident["scope_state"], incident["open"], incident["top_error_kind"]) == ("regressed", True, "auth")
    # the campaign's postback URL edit 2 h before is the only suspect (t2's edit is another scope; t1's own is
    # 30 h old), but a URL edit does not explain an auth failure: not blamed
    ((suspect,),) = [incident["suspects"]]
    assert (suspect["rank"], suspect["author"], suspect["minutes_before"]) == (1, "cam@x", 121.0)
    assert (suspect["family"], suspect["explains"], suspect["own_entity"]) == ("tracking", False, False)
    assert suspect["fields"] == [{"field": "postback_url", "old": "a", "new": "b"}]
    # evidence: the 3 hours before its hour (1 of 20 failing each) against its hour and the 2 after, the last
    # of them the failing one: the same volume, the error rate 0.05 → 0.37 (more than 0.2 apart)
    assert (suspect["postbacks_per_hour_before"], suspect["postbacks_per_hour_after"]) == (20.0, 20.0)
    assert (suspect["error_rate_before"], suspect["error_rate_after"]) == (3 / 60, 22 / 60)
    assert (suspect["volume_changed"], suspect["error_mix_changed"]) == (False, True)
    # fewer than 5 failing postbacks before: no most frequent kind to compare
    assert (suspect["top_error_kind_before"], suspect["top_error_kind_after"]) == (None, "auth")
    assert incident["suspected_change"] is None
    assert incident["resolved_by"] is None
    # the same edit before unreplaced macros is the suspected change
    macros = find_incidents(_history("unreplaced_macro"), _activity(), names, campaigns).row(0, named=True)
    change = macros["suspected_change"]
    assert (change["entity_type"], change["entity_id"], change["author"]) == ("campaign", "c1", "cam@x")
    # outside the window: nothing
    before = (None, T0 + timedelta(hours=24))
    assert find_incidents(_history(), _activity(), names, campaigns, before).height == 0


def test_scope_changes_and_incidents_follow_the_rows_shown():
    history = _history()
    found = find_incidents(
        history, _activity(), Names.empty(), pl.DataFrame({"traffic_source_id": ["t1"], "campaign_id": ["c1"]})
    )
    assert scope_incidents(found, history.filter(pl.col("is_error"))).height == 1
    assert scope_incidents(found, history.filter(pl.col("traffic_source_id") == "t9")).height == 0
    changes = scope_changes(_activity(), history.head(1))
    assert changes.get_column("entity_id").to_list() == ["t1", "c1"]


# --------------------------------------------------------------------------- events and names
def test_event_volume_is_hourly_in_the_zone_then_daily_over_a_week():
    events = pl.DataFrame(
        {"event_time": [_t(0), _t(20), _t(65), _t(70)], "event_type": ["visit", "visit", "visit", "click"]}
    )
    hourly = event_volume(events, "Asia/Tokyo")  # UTC+9: 10:00Z is 19:00 local
    assert [(b.hour, t, n) for b, t, n in hourly.rows()] == [(19, "visit", 2), (20, "click", 1), (20, "visit", 1)]
    long = pl.concat([events, pl.DataFrame({"event_time": [_t(60 * 24 * 9)], "event_type": ["visit"]})])
    daily = event_volume(long, "UTC")
    assert [(b, t, n) for b, t, n in daily.rows()] == [
        (date(2026, 11, 20), "click", 1),
        (date(2026, 11, 20), "visit", 3),
        (date(2026, 11, 29), "visit", 1),
    ]
    assert event_volume(events.clear(), "UTC").columns == ["bucket", "event_type", "count"]


def test_names_label_id_columns_and_skip_others():
    names = Names({"campaign": pl.DataFrame({"campaign_id": ["c1", "c2"], "campaign_name": ["One", "Two"]})})
    frame = pl.DataFrame({"campaign_id": ["c2", "c3"], "hour": [1, 2]})
    assert names.add(frame, "campaign_id", "hour").columns == ["campaign_id", "campaign_name", "hour"]
    assert names.add(frame, "campaign_id").sort("campaign_id").get_column("campaign_name").to_list() == ["Two", None]
    assert names.lookup("campaign_id") == {"c1": "One", "c2": "Two"}
    assert names.lookup("offer_id") == {}
    with pytest.raises(KeyError, match="were not loaded"):
        names.add(pl.DataFrame({"offer_id": ["o1"]}), "offer_id")
