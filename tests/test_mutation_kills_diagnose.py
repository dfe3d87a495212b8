"""Edges of the pure diagnostics that a one-line change to them would cross (found by ``make mutation``).

Every frame is small and built by hand; every expected number is worked out in the comments, never read
back from the code under test.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import xxhash

from cfanalytics.diagnose.incidents import binomial_sf, find_incidents, history_filter, incident_id
from cfanalytics.diagnose.names import Names
from cfanalytics.diagnose.suspects import explain_incident
from cfanalytics.filters import LogFilter

T0 = datetime(2026, 11, 20, 0, tzinfo=UTC)
HISTORY_SCHEMA = {
    "postback_id": pl.String,
    "postback_time": pl.Datetime("us", "UTC"),
    "is_error": pl.Boolean,
    "error_kind": pl.String,
    "traffic_source_id": pl.String,
    "integration_id": pl.String,
    "campaign_id": pl.String,
}
ACTIVITY_SCHEMA = {
    "changed_at": pl.Datetime("us", "UTC"),
    "author": pl.String,
    "entity_type": pl.String,
    "entity_id": pl.String,
    "entity_name": pl.String,
    "action": pl.String,
    "old_value": pl.String,
    "new_value": pl.String,
}
NO_CAMPAIGNS = pl.DataFrame(schema={"traffic_source_id": pl.String, "campaign_id": pl.String})


class History:
    """Postbacks hour by hour: ``sent`` of them 2 minutes apart from minute 1, the first ``failing`` failing."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def hour(
        self,
        hour: int,
        *,
        sent: int = 20,
        failing: int = 1,
        ts: str | None = "t1",
        integration: str | None = None,
        kinds: tuple[str, ...] = ("auth",),
        step: timedelta = timedelta(minutes=2),
    ) -> None:
        for i in range(sent):
            failed = i < failing
            self.rows.append(
                {
                    "postback_id": f"{ts}-{integration}-{hour}-{i}",
                    "postback_time": T0 + timedelta(hours=hour, minutes=1) + i * step,
                    "is_error": failed,
                    "error_kind": kinds[i % len(kinds)] if failed else None,
                    "traffic_source_id": ts,
                    "integration_id": integration,
                    "campaign_id": f"c-{ts}",
                }
            )

    def steady(self, hours: range, **kwargs: Any) -> None:
        for h in hours:
            self.hour(h, **kwargs)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=HISTORY_SCHEMA)


def _activity(*rows: tuple[datetime, str, str, str, str | None]) -> pl.DataFrame:
    """(changed_at, author, entity_type, entity_id, new_value) rows of the activity log."""
    return pl.DataFrame(
        [
            {
                "changed_at": at,
                "author": who,
                "entity_type": kind,
                "entity_id": ident,
                "entity_name": ident,
                "action": "updated",
                "old_value": None,
                "new_value": new,
            }
            for at, who, kind, ident, new in rows
        ],
        schema=ACTIVITY_SCHEMA,
    )


def _incidents(history: pl.DataFrame, activity: pl.DataFrame | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    activity = activity if activity is not None else pl.DataFrame(schema=ACTIVITY_SCHEMA)
    campaigns = kwargs.pop("campaigns", NO_CAMPAIGNS)
    return find_incidents(history, activity, Names.empty(), campaigns, **kwargs).to_dicts()


# --------------------------------------------------------------------------- the binomial tail
def test_binomial_tail_at_its_edges():
    assert binomial_sf(0, 5, 0.3) == 1.0  # P(X ≥ 0)
    assert binomial_sf(-1, 5, 0.3) == 1.0
    assert binomial_sf(6, 5, 0.3) == 0.0  # more successes than trials
    assert binomial_sf(5, 5, 0.3) == pytest.approx(0.3**5)
    assert binomial_sf(1, 3, 0.5) == pytest.approx(1 - 0.5**3)  # 7/8
    assert binomial_sf(2, 4, 0.25) == pytest.approx(1 - 0.75**4 - 4 * 0.25 * 0.75**3)
    # p = 0 is held at 1e-9, so one error in one postback is (nearly) impossible but not an error
    assert 0 < binomial_sf(1, 1, 0.0) < 1e-8
    # p = 1 is held just below 1: all 3 succeed with probability (1 - 1e-9)³
    assert binomial_sf(3, 3, 1.0) == pytest.approx(1.0)
    assert binomial_sf(3, 3, 1.0) <= 1.0
    # summed in floating point, P(X ≥ 1) for 14 trials at 0.95 comes to 1 + 2e-15: held at 1
    assert binomial_sf(1, 14, 0.95) == 1.0


# --------------------------------------------------------------------------- ids and the history window
def test_incident_id_hashes_scope_id_and_the_first_hour():
    hour = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)
    expected = "inc-" + xxhash.xxh3_64_hexdigest(b"inc1|integration|i9|2026-11-21T07")
    assert incident_id("integration", "i9", hour) == expected
    # minutes do not matter, the hour does
    assert incident_id("integration", "i9", hour + timedelta(minutes=59)) == expected
    assert incident_id("integration", "i9", hour + timedelta(hours=1)) != expected
    assert incident_id("traffic_source", "i9", hour) != expected


def test_history_reaches_seven_days_before_the_filter():
    where = LogFilter(start="2026-11-20", end="2026-11-21", timezone="UTC")
    history = history_filter(where, None)
    # the range [Nov 20, Nov 22) (the end day is inclusive) starts 7 days earlier; the end does not move
    assert history.time_bounds(None) == (datetime(2026, 11, 13, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
    # no start: none; no filter at all: an open filter
    assert history_filter(LogFilter(end="2026-11-21"), "UTC").time_bounds("UTC")[0] is None
    assert history_filter(None, "UTC").time_bounds("UTC") == (None, None)


# --------------------------------------------------------------------------- flagging hours
def test_a_scope_failing_from_its_first_hour_is_always_failing():
    history = History()
    history.steady(range(24), ts="t1")  # 24 × 20 postbacks, 1 error each: the account's rate is low
    history.steady(range(20, 24), ts="t2", failing=20)  # t2 appears at hour 20 and never works
    (incident,) = _incidents(history.frame())
    # t2's four hours are flagged against the account's prior (no history of its own) and merge into one
    assert (incident["id"], incident["postbacks"], incident["errors"]) == ("t2", 80, 80)
    assert incident["scope_state"] == "always_failing"
    assert incident["start"] == T0 + timedelta(hours=20, minutes=1)
    assert incident["end"] == T0 + timedelta(hours=23, minutes=39)
    # the prior: 24 + 80 errors in 480 + 80 postbacks
    assert incident["error_rate_before"] == pytest.approx(104 / 560)


def test_a_scope_that_worked_first_has_regressed():
    history = History()
    history.steady(range(24), ts="t1")
    history.hour(24, ts="t1", failing=20)
    (incident,) = _incidents(history.frame())
    assert incident["scope_state"] == "regressed"


def test_flagged_hours_stay_out_of_the_baseline():
    # hours 0–23 steady (1/20), hours 24–26 failing; hour 27 steady, then hour 40 fails again.
    # Were the flagged hours 24–26 in hour 40's baseline, it would be (24 + 60 + 13) / (40 × 20)
    # instead of (24 + 13) / (37 × 20) before smoothing: the rate before hour 40 shows which.
    history = History()
    history.steady(range(24))
    history.steady(range(24, 27), failing=20)
    history.steady(range(27, 40))
    history.hour(40, failing=20)
    first, second = sorted(_incidents(history.frame()), key=lambda i: i["start"])
    prior = (24 + 60 + 13 + 20) / (41 * 20)
    assert second["error_rate_before"] == pytest.approx((24 + 13 + 20 * prior) / (37 * 20 + 20))
    assert first["error_rate_before"] == pytest.approx((24 + 20 * prior) / (24 * 20 + 20))
    assert (first["postbacks"], second["postbacks"]) == (60, 20)


def test_the_baseline_forgets_hours_older_than_seven_days():
    # 24 hours with 5 errors in 20, then 7 days (168 h) of 1 in 20, then one failing hour.
    # The window before hour 192 is [hour 24, hour 191]: exactly 168 steady hours; the 5-in-20 hours
    # are older than 7 days and left out (hour 24 itself is exactly 7 days back and stays in).
    history = History()
    history.steady(range(24), failing=5)
    history.steady(range(24, 192))
    history.hour(192, failing=20)
    (incident,) = _incidents(history.frame())
    total_errors = 24 * 5 + 168 + 20
    prior = total_errors / (193 * 20)
    assert incident["error_rate_before"] == pytest.approx((168 + 20 * prior) / (168 * 20 + 20))


def test_a_rise_of_less_than_twenty_points_is_not_an_incident():
    # baseline about 5 %; an hour at 20 % (4/20) is far from chance alone but rises only 15 points
    history = History()
    history.steady(range(48))
    history.hour(48, failing=4)
    assert _incidents(history.frame()) == []
    # 30 of 200 (15 %) is beyond doubt a rise, but of 10 points only: not an incident either
    history.hour(50, sent=200, failing=30, step=timedelta(seconds=15))
    assert _incidents(history.frame()) == []
    # 10/20 = 50 %: flagged
    history.hour(49, failing=10)
    assert [(i["postbacks"], i["errors"]) for i in _incidents(history.frame())] == [(20, 10)]


# --------------------------------------------------------------------------- what an incident reports
def test_top_error_kind_is_the_most_frequent_then_the_first_by_name():
    history = History()
    history.steady(range(24))  # steady errors are "auth"
    # 20 failing: kinds alternate timeout, rate_limit, timeout … → 10 timeout, 10 rate_limit: the tie
    # goes to the first by name
    history.hour(24, failing=20, kinds=("timeout", "rate_limit"))
    (incident,) = _incidents(history.frame())
    assert incident["top_error_kind"] == "rate_limit"
    history = History()
    history.steady(range(24))
    history.hour(24, failing=20, kinds=("timeout", "timeout", "rate_limit"))  # 14 timeout, 6 rate_limit
    (incident,) = _incidents(history.frame())
    assert incident["top_error_kind"] == "timeout"


def test_an_incident_is_open_until_an_hour_passes_after_it():
    # the data ends in hour 30; an incident whose last flagged hour is 29 is open, one ending in 28 is not
    for last_failing, is_open in ((29, True), (28, False)):
        history = History()
        history.steady(range(24))
        history.steady(range(24, last_failing + 1), failing=20)
        history.steady(range(last_failing + 1, 31))
        # the last postback at 30:45:07.25: the data's last hour is still 30:00
        last = {**history.rows[-1], "postback_id": "last", "is_error": False, "error_kind": None}
        history.rows.append({**last, "postback_time": T0 + timedelta(hours=30, minutes=45, seconds=7.25)})
        (incident,) = _incidents(history.frame())
        assert incident["open"] is is_open, last_failing


def test_the_window_keeps_incidents_overlapping_it():
    history = History()
    history.steady(range(24))
    history.hour(24, failing=20)  # failing postbacks from 24:01 to 24:39
    history.steady(range(25, 28))
    start, end = T0 + timedelta(hours=24, minutes=1), T0 + timedelta(hours=24, minutes=39)
    assert len(_incidents(history.frame(), window=(end, None))) == 1  # ends exactly at the window's start
    assert len(_incidents(history.frame(), window=(end + timedelta(seconds=1), None))) == 0
    assert len(_incidents(history.frame(), window=(None, start))) == 0  # [.., start) excludes the start
    assert len(_incidents(history.frame(), window=(None, start + timedelta(seconds=1)))) == 1


def test_incidents_are_sorted_by_errors_then_scope_then_id():
    history = History()
    history.steady(range(24), ts="ta")
    history.steady(range(24), ts="tb")
    history.steady(range(24), ts="tc", integration="i1")
    history.hour(24, ts="tb", failing=20)  # 20 errors
    history.hour(24, ts="ta", failing=15)  # 15 errors
    history.steady(range(24, 26), ts="tc", integration="i1", failing=20)  # 40 errors, at both scopes
    history.hour(24, ts="tc", sent=20, failing=0)  # tc: 20 more postbacks without an integration, all fine
    found = [(i["scope"], i["id"], i["errors"]) for i in _incidents(history.frame())]
    # tc's failing postbacks are exactly i1's: reported once, as i1
    assert found == [("integration", "i1", 40), ("traffic_source", "tb", 20), ("traffic_source", "ta", 15)]


def test_equal_errors_sort_by_scope_then_id():
    history = History()
    for ts in ("tb", "ta"):
        history.steady(range(24), ts=ts)
        history.hour(24, ts=ts, failing=20)
    history.steady(range(24), ts=None, integration="i1")
    history.hour(24, ts=None, integration="i1", failing=20)
    found = [(i["scope"], i["id"]) for i in _incidents(history.frame())]
    assert found == [("integration", "i1"), ("traffic_source", "ta"), ("traffic_source", "tb")]


# --------------------------------------------------------------------------- which change is suspected
def _onset_history(**kwargs: Any) -> tuple[pl.DataFrame, datetime]:
    history = History()
    history.steady(range(30), **kwargs)
    history.hour(30, failing=20, **kwargs)
    return history.frame(), T0 + timedelta(hours=30, minutes=1)


URL = '{"postback_url": "https://p/?cid={click_id}"}'  # a tracking edit: it explains unreplaced macros


def _macro_incident(scope: str = "traffic_source", scope_id: str = "t1") -> dict[str, Any]:
    """An incident of unreplaced macros from 30:01 to 30:39 (what ``_onset_history`` makes)."""
    start = T0 + timedelta(hours=30, minutes=1)
    return {
        "scope": scope,
        "id": scope_id,
        "top_error_kind": "unreplaced_macro",
        "start": start,
        "end": start + timedelta(minutes=38),
        "error_rate_before": 0.05,
    }


def test_a_suspect_is_changed_in_the_closed_day_before_the_start():
    incident = _macro_incident()
    start = incident["start"]
    tick = timedelta(microseconds=1)
    log = _activity(
        (start + tick, "late@x", "traffic_source", "t1", URL),  # after the start: outside
        (start, "start@x", "traffic_source", "t1", URL),  # at the start: inside (0 minutes before)
        (start - timedelta(hours=24), "day@x", "traffic_source", "t1", URL),  # exactly 24 h before: inside
        (start - timedelta(hours=24) - tick, "early@x", "traffic_source", "t1", URL),  # outside
    )
    found = explain_incident(incident, log, {"traffic_source": {"t1"}})
    # both explain, both on the incident's own source, no evidence: the later (0 min) ranks first
    assert [(s["author"], s["minutes_before"], s["rank"]) for s in found["suspects"]] == [
        ("start@x", 0.0, 1),
        ("day@x", 1440.0, 2),
    ]
    assert found["suspected_change"]["author"] == "start@x"
    # with only the changes outside, nothing is suspected
    outside = log.filter(pl.col("author").is_in(["late@x", "early@x"]))
    assert explain_incident(incident, outside, {"traffic_source": {"t1"}})["suspects"] == []


def test_the_latest_explaining_change_of_the_own_entity_ranks_first_whatever_the_log_order():
    incident = _macro_incident()
    start = incident["start"]
    log = _activity(
        (start - timedelta(hours=1), "mid@x", "traffic_source", "t1", URL),
        (start - timedelta(minutes=1), "budget@x", "traffic_source", "t1", '{"daily_budget": 900}'),  # volume
        (start - timedelta(minutes=5), "last@x", "traffic_source", "t1", URL),
        (start - timedelta(minutes=2), "int@x", "integration", "i1", URL),  # explains, not the own entity
        (start - timedelta(hours=5), "first@x", "traffic_source", "t1", URL),
    )
    found = explain_incident(incident, log, {"traffic_source": {"t1"}, "integration": {"i1"}})
    # explaining first; among them the own source before the integration; then the latest (fewest minutes)
    assert [(s["author"], s["explains"], s["own_entity"], s["minutes_before"]) for s in found["suspects"]] == [
        ("last@x", True, True, 5.0),
        ("mid@x", True, True, 60.0),
        ("first@x", True, True, 300.0),
        ("int@x", True, False, 2.0),
        ("budget@x", False, True, 1.0),
    ]
    assert [s["rank"] for s in found["suspects"]] == [1, 2, 3, 4, 5]
    assert found["suspected_change"] == {
        "changed_at": start - timedelta(minutes=5),
        "author": "last@x",
        "entity_type": "traffic_source",
        "entity_id": "t1",
        "entity_name": "t1",
        "action": "updated",
    }
    # a suspect that explains nothing is listed but never the suspected change
    budget = log.filter(pl.col("author") == "budget@x")
    found = explain_incident(incident, budget, {"traffic_source": {"t1"}})
    assert [(s["author"], s["rank"]) for s in found["suspects"]] == [("budget@x", 1)]
    assert found["suspected_change"] is None


def test_campaign_edits_are_suspects_of_a_traffic_source_incident():
    history, onset = _onset_history(kinds=("unreplaced_macro",))  # every postback of t1 is on campaign c-t1
    hour = timedelta(hours=1)
    log = _activity(
        (onset - 2 * hour, "url@x", "campaign", "c-t1", URL),
        (onset - hour, "budget@x", "campaign", "c-t1", '{"daily_budget": 50}'),  # later, but cannot cause macros
        (onset - hour, "other@x", "campaign", "c-t9", URL),  # a campaign t1's postbacks are not on
    )
    (incident,) = _incidents(history, log)
    assert (incident["scope"], incident["id"], incident["top_error_kind"]) == (
        "traffic_source",
        "t1",
        "unreplaced_macro",
    )
    assert [(s["author"], s["explains"]) for s in incident["suspects"]] == [("url@x", True), ("budget@x", False)]
    assert incident["suspected_change"]["author"] == "url@x"
    # postbacks with no campaign: every campaign of the source's visits is related, and their flows
    bare = history.with_columns(pl.lit(None, pl.String).alias("campaign_id"))
    visits = pl.DataFrame({"traffic_source_id": ["t1", "t9"], "campaign_id": ["c-t1", "c-t9"], "flow_id": ["f1", "f9"]})
    flows = _activity(
        (onset - 3 * hour, "flow@x", "flow", "f1", URL),
        (onset - 3 * hour, "flow9@x", "flow", "f9", URL),
    )
    (incident,) = _incidents(bare, pl.concat([log, flows]), campaigns=visits)
    assert [s["author"] for s in incident["suspects"]] == ["url@x", "flow@x", "budget@x"]


def test_an_integration_incident_suspects_its_traffic_sources_after_its_own_edits():
    history, onset = _onset_history(ts="t1", integration="i1", kinds=("unreplaced_macro",))
    hour = timedelta(hours=1)
    source_edit = _activity(
        (onset - 2 * hour, "ts@x", "traffic_source", "t1", URL),
        (onset - hour, "t2@x", "traffic_source", "t2", URL),  # later, but not a source of i1
        (onset - hour, "i2@x", "integration", "i2", URL),  # later, but another integration
    )
    (incident,) = _incidents(history, source_edit)  # t1's incident has i1's failures: reported once, as i1
    assert (incident["scope"], incident["id"]) == ("integration", "i1")
    assert [s["author"] for s in incident["suspects"]] == ["ts@x"]
    assert incident["suspected_change"]["author"] == "ts@x"
    # the integration's own (older) edit ranks before its source's
    own = pl.concat([source_edit, _activity((onset - 3 * hour, "int@x", "integration", "i1", URL))])
    (incident,) = _incidents(history, own)
    assert [(s["author"], s["own_entity"]) for s in incident["suspects"]] == [("int@x", True), ("ts@x", False)]
    assert incident["suspected_change"]["author"] == "int@x"


def test_a_traffic_source_incident_suspects_its_integrations():
    # t1 fails through i1 and also without an integration, so the traffic-source incident stands alone
    history = History()
    history.steady(range(30), ts="t1", integration="i1")
    history.steady(range(30), ts="t1", sent=20, failing=0)
    history.hour(30, ts="t1", failing=20)  # only the postbacks without an integration fail
    onset = T0 + timedelta(hours=30, minutes=1)
    log = _activity((onset - timedelta(hours=1), "int@x", "integration", "i1", None))
    found = _incidents(history.frame(), log)
    assert [(i["scope"], i["id"]) for i in found] == [("traffic_source", "t1")]
    assert found[0]["suspected_change"]["author"] == "int@x"


def test_no_activity_log_means_no_suspect():
    history, _onset = _onset_history()
    (incident,) = _incidents(history, pl.DataFrame(schema=ACTIVITY_SCHEMA))
    assert incident["suspected_change"] is None
    # a store without an activity table gives a frame without columns
    (incident,) = _incidents(history, pl.DataFrame())
    assert incident["suspected_change"] is None
    assert math.isclose(incident["error_rate_during"], 1.0)


# --------------------------------------------------------------------------- conversion gaps
def _uuid(n: int) -> str:
    return f"6f1c2d3e-0000-4000-8000-{n:012x}"


def _conv(rows: list[tuple[str, str, str | None, int, bool, str]]) -> pl.LazyFrame:
    """(click_id, ct, txid, minute, known_click, row id) conversions."""
    return pl.LazyFrame(
        {
            "click_id": [r[0] for r in rows],
            "ct": [r[1] for r in rows],
            "txid": [r[2] for r in rows],
            "conversion_time": [T0 + timedelta(minutes=r[3]) for r in rows],
            "visit_time": [T0 - timedelta(minutes=30)] * len(rows),
            "known_click": [r[4] for r in rows],
            "_row_id": [r[5] for r in rows],
        },
        schema_overrides={"txid": pl.String},
    )


def _out(rows: list[tuple[str, str | None, bool, int]]) -> pl.LazyFrame:
    """(click_id, ct, is_error, minute) postback outcomes."""
    return pl.LazyFrame(
        {
            "click_id": [r[0] for r in rows],
            "ct": [r[1] for r in rows],
            "is_error": [r[2] for r in rows],
            "postback_time": [T0 + timedelta(minutes=r[3]) for r in rows],
        },
        schema_overrides={"ct": pl.String},
    )


def test_one_accepted_postback_among_failures_is_posted_ok():
    from cfanalytics.diagnose.gaps import gap_rows

    conversions = _conv([(_uuid(1), "sale", None, 0, True, "r1"), (_uuid(2), "sale", None, 0, True, "r2")])
    outcomes = _out([(_uuid(1), "sale", True, 1), (_uuid(1), "sale", False, 2), (_uuid(2), "sale", True, 3)])
    rows = gap_rows(conversions, outcomes)
    assert rows.select("_row_id", "gap", "postbacks", "postback_errors").rows() == [
        ("r1", "posted_ok", 2, 1),
        ("r2", "posted_failed", 1, 1),
    ]


def test_pending_is_strictly_within_the_grace_before_the_last_postback():
    from cfanalytics.diagnose.gaps import gap_rows

    # the last postback is at minute 100; a grace of 30 minutes makes conversions after minute 70 pending
    conversions = _conv(
        [
            (_uuid(1), "sale", None, 70, True, "at"),  # exactly 30 minutes before: not pending
            (_uuid(2), "sale", None, 71, True, "in"),
            (_uuid(3), "sale", None, 120, True, "after"),  # after the last postback: pending too
        ]
    )
    outcomes = _out([(_uuid(9), "sale", False, 100), (_uuid(9), "sale", False, 40)])
    gaps = dict(gap_rows(conversions, outcomes, grace_minutes=30).select("_row_id", "gap").rows())
    assert gaps == {"at": "not_posted", "in": "pending", "after": "pending"}
    # no grace: nothing is pending, however recent (also by default: minute 120 is after the last postback)
    gaps = dict(gap_rows(conversions, outcomes, grace_minutes=0).select("_row_id", "gap").rows())
    assert set(gaps.values()) == {"not_posted"}
    assert set(gap_rows(conversions, outcomes).get_column("gap")) == {"not_posted"}
    # no postback at all: nothing to measure the grace from
    none = _out([]).with_columns(pl.col("click_id").cast(pl.String))
    gaps = dict(gap_rows(conversions, none, grace_minutes=30).select("_row_id", "gap").rows())
    assert set(gaps.values()) == {"not_posted"}


def test_only_unknown_clicks_can_be_malformed():
    from cfanalytics.diagnose.gaps import gap_rows

    conversions = _conv(
        [
            (_uuid(1), "", None, 0, False, "unknown-uuid"),  # unknown but well formed
            ("not-a-uuid", "", None, 1, False, "unknown-junk"),
            ("{clickid}", "", None, 2, False, "unknown-macro"),
            ("also-junk", "", None, 3, True, "known-junk"),  # stored visit: known, so not malformed
            (_uuid(2) + "{x}", "", None, 4, False, "uuid-with-macro"),  # a macro anywhere makes it malformed
        ]
    )
    rows = gap_rows(conversions, _out([]).with_columns(pl.col("click_id").cast(pl.String)))
    got = {r: (u, m) for r, u, m in rows.select("_row_id", "unknown_click", "malformed_click").rows()}
    assert got == {
        "unknown-uuid": (True, False),
        "unknown-junk": (True, True),
        "unknown-macro": (True, True),
        "known-junk": (False, False),
        "uuid-with-macro": (True, True),
    }


def test_the_first_of_duplicates_is_the_earliest_then_the_smallest_row_id():
    from cfanalytics.diagnose.gaps import gap_rows

    conversions = _conv(
        [
            (_uuid(1), "sale", "x", 5, True, "r-b"),
            (_uuid(1), "sale", "x", 5, True, "r-a"),  # same time: r-a is the first
            (_uuid(1), "sale", "x", 1, True, "r-c"),  # earlier: the real first
            (_uuid(1), "", "x", 6, True, "r-d"),  # another ct: first of its own key
            (_uuid(1), "sale", None, 7, True, "r-e"),  # no txid: its own key
            (_uuid(1), "sale", "", 8, True, "r-f"),  # "" txid = no txid: duplicate of r-e
        ]
    )
    rows = gap_rows(conversions, _out([]).with_columns(pl.col("click_id").cast(pl.String)))
    assert rows.select("_row_id", "duplicate").rows() == [
        ("r-c", False),
        ("r-a", True),
        ("r-b", True),
        ("r-d", False),
        ("r-e", False),
        ("r-f", True),
    ]


def test_gap_counts_equal_the_counts_of_the_rows():
    from cfanalytics.diagnose.gaps import classify, gap_counts, gap_rows, gap_summary_of_rows, orphans, with_ct_mismatch

    conversions = _conv(
        [
            (_uuid(1), "sale", "a", 0, True, "r1"),
            (_uuid(1), "sale", "a", 1, True, "r2"),  # duplicate
            (_uuid(2), "lead", None, 2, False, "r3"),  # unknown, well formed
            ("junk", "", None, 3, False, "r4"),  # unknown, malformed
            (_uuid(5), "sale", None, 90, True, "r5"),  # pending with a 60-minute grace
        ]
    )
    outcomes = _out([(_uuid(1), "sale", False, 5), (_uuid(2), "lead", True, 6), (_uuid(2), "sale", False, 100)])
    postbacks = outcomes.with_row_index("postback_id").with_columns(pl.col("postback_id").cast(pl.String))
    keys = conversions.select("click_id", "ct")
    orphan_rows = with_ct_mismatch(orphans(postbacks, keys), keys)
    expected = {
        "conversions": 5,
        "posted_ok": 2,
        "posted_failed": 1,
        "not_posted": 1,
        "pending": 1,
        "orphan_postbacks": 1,  # uuid 2's "sale" postback: its click converted as "lead"
        "ct_mismatch": 1,
        "duplicate_conversions": 1,
        "unknown_click": 2,
        "unknown_click_malformed": 1,
    }
    assert gap_counts(classify(conversions, outcomes, 60), orphan_rows) == expected
    rows = gap_rows(conversions, outcomes, 60)
    assert gap_summary_of_rows(rows, orphan_rows.collect()) == expected
    # nothing at all: zeros
    empty = gap_summary_of_rows(rows.clear(), orphan_rows.collect().clear())
    assert set(empty.values()) == {0}


def test_gap_table_adds_missing_classes_and_sorts_by_not_posted():
    from cfanalytics.diagnose.gaps import gap_table

    rows = pl.DataFrame(
        {
            "campaign_id": ["k2", "k1", "k1", "k3", "k3"],
            "gap": ["pending", "posted_ok", "pending", "pending", "pending"],
        }
    )
    # no not_posted anywhere: all 0, so the tie is broken by the group
    assert gap_table(rows, "campaign_id").rows() == [
        ("k1", 1, 0, 0, 1, 2),
        ("k2", 0, 0, 0, 1, 1),
        ("k3", 0, 0, 0, 2, 2),
    ]
    # conversions of no campaign are a group of their own, after the named ones at equal not_posted
    unnamed = pl.DataFrame(
        {"campaign_id": [None, "k1"], "gap": ["pending", "pending"]}, schema_overrides={"campaign_id": pl.String}
    )
    assert gap_table(unnamed, "campaign_id").rows() == [("k1", 0, 0, 0, 1, 1), (None, 0, 0, 0, 1, 1)]
    assert gap_table(rows.clear(), "campaign_id").columns == [
        "campaign_id",
        "posted_ok",
        "posted_failed",
        "not_posted",
        "pending",
        "conversions",
    ]


def test_lags_in_minutes_and_seconds_to_the_first_postback():
    from cfanalytics.diagnose.gaps import lag_distributions

    conversions = pl.LazyFrame(
        {
            "click_id": ["a", "b", "c"],
            "ct": ["", "sale", "sale"],
            "conversion_time": [T0, T0 + timedelta(minutes=10), T0],
            "visit_time": [T0 - timedelta(minutes=90), T0 - timedelta(seconds=30), None],
        }
    )
    outcomes = pl.LazyFrame(
        {
            "click_id": ["a", "a", "b", "c"],
            "ct": [None, None, "lead", "sale"],
            "postback_time": [T0 + timedelta(seconds=50), T0 + timedelta(seconds=20), T0, T0 + timedelta(hours=1)],
        }
    )
    lags = lag_distributions(conversions, outcomes)
    # a: 90 minutes after its visit; b: 10 minutes 30 s = 10.5 minutes; c has no visit time
    assert lags["visit_to_conversion"].rows() == [("b", 10.5), ("a", 90.0)]
    # a's first postback 20 s after (ct "" = null); b's postback is another ct; c's an hour later
    assert lags["conversion_to_postback"].rows() == [("a", 20.0), ("c", 3600.0)]


def test_conversions_by_local_day_of_conversion_and_of_visit():
    from datetime import date

    from cfanalytics.diagnose.gaps import conversions_by_day

    conversions = pl.LazyFrame(
        {
            # 23:30 UTC on Nov 20 is 00:30 on Nov 21 in Paris
            "conversion_time": [datetime(2026, 11, 20, 23, 30, tzinfo=UTC), datetime(2026, 11, 21, 8, tzinfo=UTC)],
            "visit_time": [datetime(2026, 11, 20, 22, 30, tzinfo=UTC), None],
        }
    )
    out = conversions_by_day(conversions, "Europe/Paris")
    assert out.rows() == [(date(2026, 11, 20), 0, 1, 1), (date(2026, 11, 21), 2, 0, -2)]
    assert out.columns == ["day", "by_conversion_date", "by_visit_date", "difference"]


def test_funnel_counts_per_group():
    from cfanalytics.diagnose.gaps import funnel_counts

    visits = pl.LazyFrame({"traffic_source_id": ["t1", "t1", "t1", "t2"]})
    clicks = pl.LazyFrame({"click_id": ["a", "b"]})  # clicks name no traffic source: one null group
    conversions = pl.LazyFrame({"traffic_source_id": ["t1", "t2", "t2"]})
    postbacks = pl.LazyFrame({"traffic_source_id": ["t2", "t2", "t1"], "is_error": [True, False, True]})
    out = funnel_counts(visits, clicks, conversions, postbacks, "traffic_source_id")
    assert out.rows() == [("t1", 3, 0, 1, 1, 0), ("t2", 1, 0, 2, 2, 1), (None, 0, 2, 0, 0, 0)]


# --------------------------------------------------------------------------- error rates
def _postbacks(rows: list[tuple[str | None, str | None, bool, str | None, str | None, int]]) -> pl.DataFrame:
    """(traffic_source_id, integration_id, is_error, error_kind, error_message, minute) enriched postbacks."""
    return pl.DataFrame(
        {
            "traffic_source_id": [r[0] for r in rows],
            "integration_id": [r[1] for r in rows],
            "is_error": [r[2] for r in rows],
            "error_kind": [r[3] for r in rows],
            "error_message": [r[4] for r in rows],
            "signature": [r[4] for r in rows],
            "postback_time": [T0 + timedelta(minutes=r[5]) for r in rows],
            "attributed": [r[0] is not None for r in rows],
        },
        schema_overrides={
            "traffic_source_id": pl.String,
            "integration_id": pl.String,
            "is_error": pl.Boolean,
            "error_kind": pl.String,
            "error_message": pl.String,
            "signature": pl.String,
            "attributed": pl.Boolean,
        },
    )


def test_error_rates_of_nothing_is_null_and_unknown_groupings_are_named():
    from cfanalytics.diagnose.error_rates import GROUPINGS, error_rates, grouping
    from cfanalytics.exceptions import UsageError

    empty = _postbacks([])
    assert error_rates(empty).rows() == [(0, 0, None)]
    assert error_rates(empty, "traffic_source_id").height == 0
    assert grouping(None) == []
    assert grouping("day") == ["day"]
    assert grouping(("hour", "ct")) == ["hour", "ct"]
    with pytest.raises(UsageError) as failure:
        grouping(["hour", "colour", "flavour"])
    assert str(failure.value) == f"cannot group postbacks by colour, flavour; use {', '.join(GROUPINGS)}"


def test_error_rates_sort_by_errors_then_keys_with_nulls_last():
    from cfanalytics.diagnose.error_rates import error_rates

    rows = _postbacks(
        [
            ("tb", None, True, "auth", "x", 0),
            ("ta", None, True, "auth", "x", 1),
            (None, None, True, "auth", "x", 2),
            ("tc", None, False, None, None, 3),
            ("tc", None, False, None, None, 4),
            ("ta", None, False, None, None, 5),
        ]
    )
    assert error_rates(rows, "traffic_source_id").rows() == [
        ("ta", 2, 1, 0.5),
        ("tb", 1, 1, 1.0),
        (None, 1, 1, 1.0),
        ("tc", 2, 0, 0.0),
    ]


def test_error_rates_by_local_day_and_two_keys():
    from datetime import date

    from cfanalytics.diagnose.error_rates import error_rates

    # minute 0 of T0 is Nov 20 00:00 UTC = Nov 19 19:00 in New York; minute 600 is 05:00 there, Nov 20
    rows = _postbacks([("t1", None, True, "auth", "x", 0), ("t1", None, False, None, None, 600)])
    by_day = error_rates(rows, ["day"], "America/New_York")
    assert by_day.rows() == [(date(2026, 11, 19), 1, 1, 1.0), (date(2026, 11, 20), 1, 0, 0.0)]
    by_both = error_rates(rows, ["traffic_source_id", "hour"], "UTC")
    assert [(ts, h.hour, n, e) for ts, h, n, e, _ in by_both.rows()] == [("t1", 0, 1, 1), ("t1", 10, 1, 0)]


def test_kind_counts_and_signatures_break_ties_by_name_and_put_no_message_last():
    from cfanalytics.diagnose.error_rates import error_kind_counts, top_signatures

    rows = _postbacks(
        [
            ("t1", None, True, "timeout", "slow", 3),
            ("t1", None, True, "auth", "bad", 4),
            ("t1", None, True, "auth", "bad", 1),
            ("t1", None, True, "timeout", None, 2),
            ("t1", None, False, None, None, 0),
        ]
    )
    assert error_kind_counts(rows).rows() == [("auth", 2), ("timeout", 2)]
    top = top_signatures(rows)
    assert top.select("signature", "errors", "example").rows() == [
        ("bad", 2, "bad"),
        ("slow", 1, "slow"),
        (None, 1, None),
    ]
    # the meaning comes from the earliest row: "bad" at minute 1 is auth
    assert top.get_column("error_kind").to_list() == ["auth", "timeout", "timeout"]
    assert top_signatures(rows, top=2).height == 2
    # without the meaning columns, none are added
    assert top_signatures(rows.drop("error_kind")).columns == ["signature", "errors", "example"]


def test_postback_summary_fills_advice_and_redacts_examples():
    from cfanalytics.diagnose.error_kinds import KIND_ACTIONS
    from cfanalytics.diagnose.error_rates import postback_summary

    rows = _postbacks(
        [
            ("t1", "i1", True, "auth", "bad https://x.example/?api_key=abc123", 0),
            ("t1", None, True, "auth", "bad https://x.example/?api_key=abc123", 4),
            ("t1", None, True, None, None, 1),
            (None, "i1", False, None, None, 2),
            ("t2", None, False, None, None, 3),
        ]
    )
    summary = postback_summary(rows, Names.empty())
    assert (summary["total"], summary["errors"], summary["error_rate"], summary["unattributed"]) == (5, 3, 0.6, 1)
    assert summary["last_postback_time"] == "2026-11-20T00:04:00Z"
    assert [(r["traffic_source_id"], r["postbacks"], r["errors"]) for r in summary["by_traffic_source"]] == [
        ("t1", 3, 3),
        ("t2", 1, 0),
    ]
    assert [(r["integration_id"], r["postbacks"], r["errors"]) for r in summary["by_integration"]] == [("i1", 2, 1)]
    # a failing postback without a kind is counted under its null kind, advised as "other"
    auth_action, auth_retry, auth_owner = KIND_ACTIONS["auth"]
    other_action, other_retry, other_owner = KIND_ACTIONS["other"]
    assert summary["by_error_kind"] == [
        {"error_kind": "auth", "errors": 2, "action": auth_action, "retryable": auth_retry, "fix_owner": auth_owner},
        {"error_kind": None, "errors": 1, "action": other_action, "retryable": other_retry, "fix_owner": other_owner},
    ]
    signatures = {s["signature"]: s for s in summary["top_signatures"]}
    assert signatures["(no message)"]["example"] is None
    assert signatures["(no message)"]["action"] == other_action
    assert signatures["(no message)"]["retryable"] is other_retry
    message = "bad https://x.example/?api_key=abc123"
    assert signatures[message]["example"] == "bad https://x.example/?api_key=***"
    assert (signatures[message]["action"], signatures[message]["retryable"]) == (auth_action, auth_retry)
    assert signatures[message]["error_kind"] == "auth"


def test_postback_summary_prefers_the_rows_own_action_and_retryable():
    from cfanalytics.diagnose.error_rates import postback_summary

    rows = _postbacks([("t1", None, True, "auth", "m", 0)]).with_columns(
        pl.lit("call them").alias("action"), pl.lit(value=False).alias("retryable")
    )
    (signature,) = postback_summary(rows, Names.empty())["top_signatures"]
    assert (signature["action"], signature["retryable"]) == ("call them", False)
    rows = rows.with_columns(pl.lit(value=True).alias("retryable"))
    (signature,) = postback_summary(rows, Names.empty())["top_signatures"]
    assert signature["retryable"] is True
    empty = postback_summary(_postbacks([]), Names.empty())
    assert (empty["total"], empty["error_rate"], empty["last_postback_time"]) == (0, None, None)


# --------------------------------------------------------------------------- attribution
def test_only_rows_missing_a_source_or_a_campaign_need_attribution():
    from cfanalytics.diagnose.attribution import needs_attribution

    rows = pl.DataFrame(
        {"traffic_source_id": ["t", "t", None, None], "campaign_id": ["c", None, "c", None]},
        schema={"traffic_source_id": pl.String, "campaign_id": pl.String},
    )
    assert rows.select(needs_attribution()).to_series().to_list() == [False, True, True, True]


def test_a_row_keeps_its_own_source_and_takes_only_the_missing_campaign():
    from cfanalytics.diagnose import attribution as a

    rows = pl.LazyFrame(
        {"click_id": ["k1", "k2", "k3"], "traffic_source_id": ["own", None, None], "campaign_id": [None, "own-c", None]}
    )
    visits = pl.LazyFrame(
        {"click_id": ["k1", "k2"], a.VISIT_TRAFFIC_SOURCE: ["v1", "v2"], a.VISIT_CAMPAIGN: ["vc1", None]}
    )
    by_conversion = a.conversion_attribution(
        pl.LazyFrame(
            {
                "click_id": ["k2", "k3", "k3"],
                "traffic_source_id": ["x2", "x3", "x1"],
                "campaign_id": ["xc2", None, "xc9"],
            }
        )
    )
    out = a.attribute(rows, visits, by_conversion).collect().sort("click_id")
    assert out.rows() == [
        ("k1", "own", "vc1"),  # own source kept, campaign from the visit
        ("k2", "v2", "own-c"),  # own campaign kept, source from the visit
        ("k3", "x1", "xc9"),  # the smallest source and the smallest (non-null) campaign of its conversions
    ]


def test_a_null_is_error_is_not_a_failure_and_gets_no_meaning():
    from cfanalytics.diagnose import attribution as a

    rows = pl.LazyFrame(
        {
            "postback_id": ["p1", "p2", "p3"],
            "click_id": ["a", "b", "c"],
            "postback_time": [T0, T0, T0],
            "is_error": [None, True, False],
            "status_code": [500, 401, 200],
            "error_message": ["Internal error", "Invalid token", None],
            "postback_url": ["https://t/pb"] * 3,
            "ct": [""] * 3,
            "integration_id": [None] * 3,
            "traffic_source_id": ["t1"] * 3,
            "campaign_id": ["c1"] * 3,
        },
        schema_overrides={"is_error": pl.Boolean, "integration_id": pl.String},
    )
    empty = pl.LazyFrame(schema={"click_id": pl.String, a.VISIT_TRAFFIC_SOURCE: pl.String, a.VISIT_CAMPAIGN: pl.String})
    by_conversion = a.conversion_attribution(
        pl.LazyFrame(schema={"click_id": pl.String, "traffic_source_id": pl.String, "campaign_id": pl.String})
    )
    out = a.enrich_postbacks(rows, empty, by_conversion).collect().sort("postback_id")
    assert out.select("postback_id", "signature").rows() == [("p1", None), ("p2", "Invalid token"), ("p3", None)]
    assert out.get_column("error_kind").is_null().to_list() == [True, False, True]
    assert out.get_column("attributed").to_list() == [True, True, True]
    assert out.get_column("status_class").to_list() == ["5xx", "4xx", "2xx"]


def test_events_take_the_visit_then_the_conversion_attribution():
    from cfanalytics.diagnose import attribution as a

    events = pl.LazyFrame(
        {
            "click_id": ["k1", "k2", "k3", "k4"],
            "traffic_source_id": [None, None, "own", "own4"],
            "campaign_id": [None, "own-c", None, "own-c4"],
        },
        schema_overrides={"traffic_source_id": pl.String, "campaign_id": pl.String},
    )
    attribution = pl.LazyFrame(
        {
            "click_id": ["k1", "k2", "k3"],
            a.VISIT_TRAFFIC_SOURCE: ["v1", None, "v3"],
            a.VISIT_CAMPAIGN: [None, "vc2", "vc3"],
            a.CONVERSION_TRAFFIC_SOURCE: ["x1", "x2", "x3"],
            a.CONVERSION_CAMPAIGN: ["xc1", "xc2", "xc3"],
        }
    )
    out = a.attribute_events(events, attribution).collect().sort("click_id")
    # own values first, then the visit's, then the conversion's; k4's click is not in the lookup: kept as is
    assert out.rows() == [("k1", "v1", "xc1"), ("k2", "x2", "own-c"), ("k3", "own", "vc3"), ("k4", "own4", "own-c4")]


def test_conversions_keep_their_own_visit_time_and_filter_by_source():
    from cfanalytics.diagnose import attribution as a

    conversions = pl.LazyFrame(
        {
            "click_id": ["b", "b2"],
            "traffic_source_id": [None, None],
            "campaign_id": ["own-c", None],
            "visit_time": [T0, None],
        },
        schema_overrides={
            "traffic_source_id": pl.String,
            "campaign_id": pl.String,
            "visit_time": pl.Datetime("us", "UTC"),
        },
    )
    visits = pl.LazyFrame(
        {
            "click_id": ["b", "b2"],
            a.VISIT_TRAFFIC_SOURCE: ["t-v", "t-w"],
            a.VISIT_CAMPAIGN: ["c-v", "c-w"],
            a.VISIT_TIME: [T0 - timedelta(hours=1), T0 - timedelta(hours=2)],
        }
    )
    out = a.attribute_conversions(conversions, visits).collect().sort("click_id")
    assert out.rows() == [("b", "t-v", "own-c", T0, True), ("b2", "t-w", "c-w", T0 - timedelta(hours=2), True)]
    only = a.attribute_conversions(conversions, visits, LogFilter(traffic_sources=["t-w"]), timezone="UTC")
    assert only.collect().get_column("click_id").to_list() == ["b2"]


def test_scope_changes_match_the_kind_and_the_id_together():
    from cfanalytics.diagnose.incidents import scope_changes

    activity = pl.DataFrame(
        {
            "entity_type": ["integration", "integration", "traffic_source", "campaign", "campaign", "traffic_source"],
            "entity_id": ["i1", "i2", "i1", "c9", "c1", "t1"],
        }
    )
    postbacks = pl.DataFrame(
        {"traffic_source_id": ["t1", None], "integration_id": ["i1", None], "campaign_id": ["c1", None]}
    )
    # an id counts only under its own kind: i1 as a traffic source is no change of this scope
    assert scope_changes(activity, postbacks).rows() == [
        ("integration", "i1"),
        ("campaign", "c1"),
        ("traffic_source", "t1"),
    ]
    # one row of another scope: none
    assert scope_changes(activity.slice(3, 1), postbacks).height == 0
    assert scope_changes(activity.clear(), postbacks).height == 0


def test_scope_incidents_match_the_scope_and_the_id_together():
    from cfanalytics.diagnose.incidents import scope_incidents

    found = pl.DataFrame(
        {
            "scope": ["integration", "integration", "traffic_source", "traffic_source", "integration"],
            "id": ["i1", "i2", "t1", "i1", "t1"],
        }
    )
    errors = pl.DataFrame({"traffic_source_id": ["t1", None], "integration_id": [None, "i1"]})
    # i1 is an integration of the errors, t1 a traffic source: neither counts under the other scope
    assert scope_incidents(found, errors).rows() == [("integration", "i1"), ("traffic_source", "t1")]
    assert scope_incidents(found.clear(), errors).height == 0


def test_an_integration_without_traffic_sources_still_has_its_own_edit_suspected():
    history, onset = _onset_history(ts=None, integration="i7")
    log = _activity(
        (onset - timedelta(hours=1), "int@x", "integration", "i7", None),
        (onset - timedelta(minutes=1), "ts@x", "traffic_source", "t1", None),
    )
    found = _incidents(history, log)
    assert [(i["scope"], i["id"], i["suspected_change"]["author"]) for i in found] == [("integration", "i7", "int@x")]


def test_an_incident_counts_the_postbacks_of_its_hours_from_the_top_of_the_hour():
    history = History()
    history.steady(range(24))
    history.hour(24, failing=20)
    history.steady(range(25, 27))
    frame = history.frame()
    edge = {"traffic_source_id": "t1", "integration_id": None, "campaign_id": "c-t1", "error_kind": None}
    extra = pl.DataFrame(
        [
            # exactly at the start of the failing hour: in it; exactly at the start of the next: not
            {**edge, "postback_id": "at-24", "postback_time": T0 + timedelta(hours=24), "is_error": False},
            {**edge, "postback_id": "at-25", "postback_time": T0 + timedelta(hours=25), "is_error": False},
        ],
        schema=HISTORY_SCHEMA,
    )
    (incident,) = _incidents(pl.concat([frame, extra]))
    assert (incident["postbacks"], incident["errors"]) == (21, 20)
    assert incident["error_rate_during"] == pytest.approx(20 / 21)


def test_only_an_incident_from_the_first_hour_is_always_failing():
    history = History()
    history.steady(range(48), ts="t1")
    history.hour(10, ts="t3", failing=20)  # t3's first hour fails, the next ones work
    history.steady(range(11, 30), ts="t3")
    history.hour(30, ts="t3", failing=20)  # and fails again later
    history.steady(range(31, 34), ts="t3")
    found = sorted(_incidents(history.frame()), key=lambda i: i["start"])
    assert [(i["id"], i["scope_state"], i["postbacks"]) for i in found] == [
        ("t3", "always_failing", 20),
        ("t3", "regressed", 20),
    ]


def test_a_rise_of_exactly_twenty_points_is_flagged():
    # t1: 1 error in 20, then 50 in 200 (25 %). t2: 800 postbacks without an error. The account's rate
    # is 51 / 1020 = 5 %, so t1's second hour has the baseline (1 + 20 × 0.05) / (20 + 20) = 5 % and
    # rises by exactly 20 points
    history = History()
    history.hour(0, ts="t1", sent=20, failing=1)
    history.hour(1, ts="t1", sent=200, failing=50, step=timedelta(seconds=15))
    history.steady(range(40), ts="t2", failing=0)
    (incident,) = _incidents(history.frame())
    assert (incident["id"], incident["postbacks"], incident["errors"]) == ("t1", 200, 50)
    assert incident["error_rate_before"] == pytest.approx(0.05)


def test_a_scope_failing_in_its_first_hour_only_is_always_failing():
    history = History()
    history.steady(range(30), ts="t1")
    history.hour(5, ts="t3", failing=20)
    history.steady(range(6, 30), ts="t3")
    (incident,) = _incidents(history.frame())
    assert (incident["id"], incident["scope_state"]) == ("t3", "always_failing")


def test_no_history_no_incidents_but_every_column():
    from cfanalytics.diagnose.incidents import INCIDENT_SCHEMA

    found = find_incidents(pl.DataFrame(schema=HISTORY_SCHEMA), pl.DataFrame(), Names.empty(), NO_CAMPAIGNS)
    assert found.height == 0
    assert found.schema == INCIDENT_SCHEMA


def test_an_html_error_page_is_read_by_its_title_and_heading():
    from cfanalytics.diagnose.error_kinds import error_kind, kind_actions, with_error_meaning

    # no status: only the page can say what failed, and its heading says the token is invalid
    page = "<html><head><title>Error</title></head><body><h1>Invalid token</h1></body></html>"
    frame = pl.DataFrame(
        {
            "is_error": [True, True],
            "status_code": [None, None],
            "error_message": [page, None],
            "postback_url": ["https://ts.example/pb?cid=abc", None],
            "integration_name": [None, None],
        },
        schema_overrides={"status_code": pl.Int64, "integration_name": pl.String},
    )
    # the page: auth (token_invalid, the ad account's to fix); nothing at all: no response, nobody's
    out = with_error_meaning(frame.lazy()).collect()
    assert out.select("error_kind", "error_detail", "fix_owner").rows() == [
        ("auth", "token_invalid", "ad_account"),
        ("no_response", "no_response", "nobody"),
    ]
    kinds = frame.select(
        error_kind(
            is_error=pl.col("is_error"),
            status_code=pl.col("status_code"),
            error_message=pl.col("error_message"),
            postback_url=pl.col("postback_url"),
        )
    )
    assert kinds.to_series().to_list() == ["auth", "no_response"]
    assert kind_actions().columns == ["error_kind", "action", "retryable", "fix_owner"]


def test_an_unknown_kind_is_explained_as_other_and_new_values_name_the_family():
    from cfanalytics.diagnose.suspects import change_family

    # a field name that says nothing: the new value (a URL with a click-id macro) says tracking
    assert change_family("campaign", [{"field": "notes", "old": "a", "new": "https://p/?cid={click_id}"}]) == "tracking"
    assert change_family("campaign", [{"field": "notes", "old": "a", "new": "b"}]) == "other"
    # an error kind the table does not know is read as "other": a tracking edit explains it
    incident = {**_macro_incident(), "top_error_kind": "brand_new_kind"}
    log = _activity((incident["start"] - timedelta(hours=1), "url@x", "traffic_source", "t1", URL))
    found = explain_incident(incident, log, {"traffic_source": {"t1"}})
    assert [(s["author"], s["explains"]) for s in found["suspects"]] == [("url@x", True)]


def test_of_two_fixes_as_far_from_the_end_the_earlier_resolved_it():
    end = T0 + timedelta(hours=31)
    incident = {**_macro_incident(), "top_error_kind": "auth", "end": end}
    token = '{"api_token": "***"}'  # a credential change: it can end auth errors
    log = _activity(
        (end + timedelta(minutes=10), "after@x", "traffic_source", "t1", token),
        (end - timedelta(minutes=10), "before@x", "traffic_source", "t9", token),
    )
    # both 10 minutes from the end, no hourly counts to check: the first in time wins the tie
    found = explain_incident(incident, log, {"traffic_source": {"t1", "t9"}})
    assert found["resolved_by"]["author"] == "before@x"


def test_an_affiliate_network_answer_an_ad_account_would_fix_is_the_networks_to_fix():
    from cfanalytics.diagnose.error_kinds import with_error_meaning

    # "Invalid access token" with a 401: on a plain S2S URL the ad account renews its token; sent to an
    # affiliate network (Affise's host), which has no ad account, the network fixes it
    urls = ["https://example.com/pb?cid=1", "https://offers-acme.affise.com/postback?clickid=65a1f0c2e4b0d3a1f2c3d4e5"]
    rows = pl.LazyFrame(
        {"is_error": [True, True], "status_code": [401, 401], "error_message": ["Invalid access token"] * 2,
         "postback_url": urls}
    )  # fmt: skip
    got = with_error_meaning(rows).collect().select("platform", "error_kind", "fix_owner").rows()
    assert got == [("s2s", "auth", "ad_account"), ("affiliate_network", "auth", "network")]
