"""Suspects, suspected change and resolved_by of an incident, on hand-made frames (no store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl

from cfanalytics.diagnose.suspects import change_direction, change_family, explain_incident

T0 = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # the incident's first failing postback is at 10:02


def _activity(*rows: tuple[timedelta, str, str, str, dict | None, dict | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "changed_at": T0 + offset,
                "author": author,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "entity_name": entity_id.upper(),
                "action": "updated",
                "old_value": json.dumps(old) if old is not None else None,
                "new_value": json.dumps(new) if new is not None else None,
            }
            for offset, author, entity_type, entity_id, old, new in rows
        ],
        schema_overrides={"changed_at": pl.Datetime("us", "UTC")},
    )


def _incident(kind: str, scope: str = "traffic_source", scope_id: str = "t1") -> dict:
    return {
        "scope": scope,
        "id": scope_id,
        "top_error_kind": kind,
        "start": T0 + timedelta(minutes=2),
        "end": T0 + timedelta(hours=2, minutes=50),
        "error_rate_before": 0.02,
    }


def _hourly(failing_hours: range, *, hours: range = range(-6, 8)) -> pl.DataFrame:
    """20 postbacks an hour; 1 failing, or 19 in ``failing_hours`` (offsets from T0)."""
    return pl.DataFrame(
        {
            "hour": [T0 + timedelta(hours=h) for h in hours],
            "postbacks": [20] * len(hours),
            "errors": [19 if h in failing_hours else 1 for h in hours],
        }
    )


RELATED = {"traffic_source": {"t1"}, "campaign": {"k1"}, "integration": {"i1"}}
URL_EDIT = ({"postback_url": "https://p/?cid={clickid}"}, {"postback_url": "https://p/?cid={click_id}"})
BUDGET = ({"daily_budget": 200}, {"daily_budget": 800})


def test_the_url_edit_explains_macros_and_the_later_budget_raise_does_not():
    activity = _activity(
        (-timedelta(minutes=30), "ana", "traffic_source", "t1", *URL_EDIT),
        (-timedelta(minutes=10), "ben", "campaign", "k1", *BUDGET),
        (-timedelta(hours=2), "mia", "offer", "o1", {"payout": 1}, {"payout": 2}),  # not this incident's entity
    )
    found = explain_incident(_incident("unreplaced_macro"), activity, RELATED, _hourly(range(3)))
    assert found["suspected_change"]["author"] == "ana"
    assert [(s["author"], s["explains"], s["family"], s["rank"]) for s in found["suspects"]] == [
        ("ana", True, "tracking", 1),
        ("ben", False, "volume", 2),
    ]
    ana = found["suspects"][0]
    assert ana["minutes_before"] == 32.0
    assert ana["fields"] == [
        {"field": "postback_url", "old": "https://p/?cid={clickid}", "new": "https://p/?cid={click_id}"}
    ]
    # evidence: 3 hours before 09:00 vs from 09:00 on (19 of 20 failing from 10:00)
    assert (ana["postbacks_per_hour_before"], ana["error_rate_before"]) == (20.0, 0.05)
    assert ana["error_rate_after"] == (1 + 19 + 19) / 60


def test_a_budget_raise_explains_a_rate_limit_but_not_a_time_out():
    activity = _activity((-timedelta(minutes=50), "ben", "campaign", "k1", *BUDGET))
    rate_limited = explain_incident(_incident("rate_limit"), activity, RELATED)
    assert rate_limited["suspected_change"] == {
        "changed_at": T0 - timedelta(minutes=50),
        "author": "ben",
        "entity_type": "campaign",
        "entity_id": "k1",
        "entity_name": "K1",
        "action": "updated",
    }
    timed_out = explain_incident(_incident("no_response"), activity, RELATED)
    assert timed_out["suspected_change"] is None  # a decoy: ranked, but not blamed
    assert [(s["author"], s["explains"]) for s in timed_out["suspects"]] == [("ben", False)]


def test_only_changes_in_the_day_before_the_start_are_suspects():
    activity = _activity(
        (-timedelta(hours=24, minutes=3), "old", "traffic_source", "t1", *URL_EDIT),  # 24 h 5 min before the start
        (timedelta(minutes=5), "after", "traffic_source", "t1", *URL_EDIT),  # after the start
        (-timedelta(hours=23), "inside", "traffic_source", "t1", *URL_EDIT),
    )
    found = explain_incident(_incident("unreplaced_macro"), activity, RELATED)
    assert [s["author"] for s in found["suspects"]] == ["inside"]


def test_the_own_entity_ranks_before_a_campaign_and_the_latest_wins_among_equals():
    activity = _activity(
        (-timedelta(minutes=5), "camp", "campaign", "k1", {"tracking_param": "a"}, {"tracking_param": "b"}),
        (-timedelta(hours=3), "early", "traffic_source", "t1", *URL_EDIT),
        (-timedelta(minutes=40), "late", "traffic_source", "t1", *URL_EDIT),
    )
    found = explain_incident(_incident("missing_click_id"), activity, RELATED)
    assert [s["author"] for s in found["suspects"]] == ["late", "early", "camp"]
    assert found["suspected_change"]["author"] == "late"


def test_an_expired_token_is_nobodys_edit_and_the_reconnect_resolves_it():
    reconnect = ({"status": "expired", "access_token": "EAAGold"}, {"status": "connected", "access_token": "EAAGnew"})
    activity = _activity(
        (-timedelta(hours=1), "ben", "campaign", "k1", *BUDGET),
        (timedelta(hours=2, minutes=49), "mia", "integration", "i1", *reconnect),  # just before the last failure
    )
    incident = _incident("auth", scope="integration", scope_id="i1")
    found = explain_incident(incident, activity, RELATED, _hourly(range(3)))
    assert found["suspected_change"] is None
    assert found["resolved_by"]["author"] == "mia"
    assert found["resolved_by"]["error_rate_after"] == 3 / 60  # 13:00–16:00: back to 1 in 20
    # while the rate has not come back, nothing resolved it
    still = explain_incident(incident, activity, RELATED, _hourly(range(8)))
    assert still["resolved_by"] is None
    # the token itself never leaves redacted form
    assert "EAAGnew" not in json.dumps(found, default=str)


def test_a_fix_must_be_of_the_kind_that_explains_the_failure():
    activity = _activity((timedelta(hours=2, minutes=55), "ben", "campaign", "k1", *BUDGET))
    found = explain_incident(_incident("unreplaced_macro"), activity, RELATED, _hourly(range(3)))
    assert found["resolved_by"] is None


def test_change_families():
    assert change_family("traffic_source", [{"field": "postback_url", "old": "a", "new": "b"}]) == "tracking"
    assert change_family("integration", [{"field": "access_token", "old": "x", "new": "y"}]) == "credential"
    assert change_family("campaign", [{"field": "bid", "old": 1, "new": 2}]) == "volume"
    assert change_family("offer", [{"field": "payout", "old": 1, "new": 2}]) == "other"
    assert change_family("integration", [{"field": "name", "old": "a", "new": "b"}]) == "integration"
    # a value that carries a macro marks a tracking change whatever the field is called
    assert change_family("campaign", [{"field": "destination", "old": "x?s={sub1}", "new": "x"}]) == "tracking"


def test_a_budget_raise_explains_a_rate_limit_and_a_cut_resolves_it():
    cut = ({"daily_budget": 800}, {"daily_budget": 300})
    activity = _activity(
        (-timedelta(minutes=50), "ben", "campaign", "k1", *BUDGET),
        (-timedelta(minutes=20), "cy", "campaign", "k1", *cut),  # later, but a cut does not cause throttling
        (timedelta(hours=2, minutes=40), "dee", "campaign", "k1", *BUDGET),  # a raise does not end it
        (timedelta(hours=2, minutes=45), "eve", "campaign", "k1", *cut),
    )
    found = explain_incident(_incident("rate_limit"), activity, RELATED, _hourly(range(3)))
    assert [(s["author"], s["direction"], s["explains"]) for s in found["suspects"]] == [
        ("ben", "up", True),
        ("cy", "down", False),
    ]
    assert found["suspected_change"]["author"] == "ben"
    assert found["resolved_by"]["author"] == "eve"
    assert change_direction([{"field": "bid", "old": "0.5", "new": "0.5"}]) is None
    assert (
        change_direction([{"field": "bid", "old": "1", "new": "2"}, {"field": "cap", "old": "9", "new": "3"}]) is None
    )


def test_the_evidence_says_whether_volume_and_error_mix_changed():
    # 07:00 and 08:00: 10 postbacks, 1 failing (other); 09:00: 10, 1 failing; 10:00 and 11:00: 30, 20 rate limited
    hourly = pl.DataFrame(
        {
            "hour": [T0 + timedelta(hours=h) for h in (-3, -2, -1, -1, 0, 0, 1, 1)],
            "error_kind": ["other", "other", "other", None, "rate_limit", None, "rate_limit", None],
            "postbacks": [10, 10, 1, 9, 20, 10, 20, 10],
            "errors": [1, 1, 1, 0, 20, 0, 20, 0],
        }
    )
    activity = _activity((-timedelta(minutes=55), "ben", "campaign", "k1", *BUDGET))
    (suspect,) = explain_incident(_incident("rate_limit"), activity, RELATED, hourly)["suspects"]
    # its hour is 09:00: before = 06:00–09:00 (10 + 10 postbacks), after = 09:00–12:00 (10 + 30 + 30)
    assert (suspect["postbacks_per_hour_before"], suspect["postbacks_per_hour_after"]) == (
        round(20 / 3, 2),
        round(70 / 3, 2),
    )
    assert (suspect["error_rate_before"], suspect["error_rate_after"]) == (2 / 20, 41 / 70)
    # fewer than 5 failing before: no top kind to compare; the rate moved by more than 0.2 anyway
    assert (suspect["top_error_kind_before"], suspect["top_error_kind_after"]) == (None, "rate_limit")
    assert (suspect["volume_changed"], suspect["error_mix_changed"]) == (True, True)
