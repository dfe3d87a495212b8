"""Diagnostics on small hand-made stores; every expected number is worked out in the test (docs/contract.md §6)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

import cfanalytics as cf
from cfanalytics.diagnose import (
    diagnose,
    gap_rows,
    gap_summary,
    incidents,
    orphan_postbacks,
    postback_errors,
)
from cfanalytics.diagnose.frames import conversions, postback_outcomes
from cfanalytics.diagnose.incidents import binomial_sf
from tests.helpers import EXAMPLES, gap_counts_of, write

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def test_gaps_worked_example_from_the_spec(store):
    ex = EXAMPLES / "gaps"
    store.ingest([ex / "visits.csv", ex / "conversions.csv", ex / "postbacks.csv"])
    expected = json.loads((ex / "expected.json").read_text())
    doc = diagnose(store)
    assert gap_counts_of(doc["gaps"]) == expected["gaps"]
    assert doc["gaps"]["at_stake"] == expected["at_stake"]
    assert {k: doc["gaps"][k] for k in expected["gaps_by"]} == expected["gaps_by"]
    assert {k: doc["postbacks"][k] for k in ("total", "errors")} == {"total": 3, "errors": 1}
    kinds = [{"error_kind": r["error_kind"], "errors": r["errors"]} for r in doc["postbacks"]["by_error_kind"]]
    assert kinds == expected["postbacks"]["by_error_kind"]
    # each kind says what to do and whether a re-send later can succeed
    assert all(r["action"] and isinstance(r["retryable"], bool) for r in doc["postbacks"]["by_error_kind"])
    # p3's click has no visit and no conversion: no traffic source found
    assert doc["postbacks"]["unattributed"] == 1


def test_tricky_gap_cases(store, tmp_path):
    write(tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID,Traffic Source ID\n{A},2026-11-20 10:00:00,k1,t1\n")
    write(
        tmp_path / "c.csv",
        "Click ID,Conversion Date,Custom Conversion (ct),Transaction ID,Payout\n"
        f"{A},2026-11-20 11:00:00,sale,tx1,10\n"  # two postbacks: one failed, one ok → posted_ok
        f"{A},2026-11-20 11:05:00,lead,,0\n"  # only failed postbacks → posted_failed
        f"{B},2026-11-20 12:00:00,,,5\n"  # no visit for B → unknown click (well-formed)
        "{clickid},2026-11-20 12:10:00,,,5\n"  # unknown and malformed (macro)
        f"{B},2026-11-20 12:00:00,,,5\n",  # identical to row 3 → duplicate, also unknown
    )
    write(
        tmp_path / "p.csv",
        "Postback ID,Click ID,Postback Time,Is Error,Status Code,Custom Conversion (ct)\n"
        f"p1,{A},2026-11-20 11:00:05,1,500,sale\n"
        f"p2,{A},2026-11-20 11:10:00,0,200,sale\n"
        f"p3,{A},2026-11-20 11:05:05,1,400,lead\n"
        f"p4,{A},2026-11-20 11:06:00,1,400,upsell\n"  # orphan; click A has conversions → ct_mismatch
        f"p5,{C},2026-11-20 13:00:00,0,200,\n",  # orphan, click without conversions
    )
    store.ingest([tmp_path / "v.csv", tmp_path / "c.csv", tmp_path / "p.csv"])
    g = gap_summary(store)
    assert g == {
        "conversions": 5,
        "posted_ok": 1,
        "posted_failed": 1,
        "not_posted": 3,
        "pending": 0,
        "orphan_postbacks": 2,
        "ct_mismatch": 1,
        "duplicate_conversions": 1,
        "unknown_click": 3,
        "unknown_click_malformed": 1,
    }
    rows = gap_rows(conversions(store), postback_outcomes(store))
    assert rows.select("click_id", "ct", "gap").rows() == [
        (A, "sale", "posted_ok"),
        (A, "lead", "posted_failed"),
        (B, None, "not_posted"),
        (B, None, "not_posted"),
        ("{clickid}", None, "not_posted"),
    ]
    assert rows.get_column("duplicate").to_list() == [False, False, False, True, False]
    orphans = orphan_postbacks(store)
    assert orphans.select("postback_id", "ct_mismatch").rows() == [("p4", True), ("p5", False)]
    # pending: not posted and newer than 60 minutes before the last postback (13:00), i.e. after 12:00:
    # only {clickid} at 12:10; B's two rows at 12:00 sharp stay not_posted
    g = gap_summary(store, grace_minutes=60)
    assert (g["pending"], g["not_posted"]) == (1, 2)


def test_error_rates_by_traffic_source_with_names_and_attribution(store, tmp_path):
    write(
        tmp_path / "v.csv",
        "Click ID,Visit Time,Campaign ID,Traffic Source ID,Traffic Source\n"
        f"{A},2026-11-20 10:00:00,k1,t1,Alpha Ads\n{B},2026-11-20 10:00:00,k2,t2,Beta Net\n",
    )
    write(
        tmp_path / "p.csv",
        "Postback ID,Click ID,Postback Time,Is Error,Status Code,Traffic Source ID\n"
        f"p1,{A},2026-11-20 11:00:00,1,500,\n"  # t1 via the visit
        f"p2,{A},2026-11-20 11:00:01,0,200,\n"
        f"p3,{A},2026-11-20 11:00:02,1,,\n"
        f"p4,{B},2026-11-20 11:00:03,0,200,\n"  # t2 via the visit
        f"p5,{C},2026-11-20 11:00:04,1,401,t2\n"  # own column wins
        f"p6,{C},2026-11-20 11:00:05,1,401,\n",  # unattributed
    )
    store.ingest([tmp_path / "v.csv", tmp_path / "p.csv"])
    by_ts = postback_errors(store, by=["traffic_source_id"])
    assert by_ts.rows() == [
        ("t1", "Alpha Ads", 3, 2, 2 / 3),
        ("t2", "Beta Net", 2, 1, 0.5),
        (None, None, 1, 1, 1.0),
    ]
    doc = diagnose(store)["postbacks"]
    assert doc["unattributed"] == 1
    assert [r["traffic_source_id"] for r in doc["by_traffic_source"]] == ["t1", "t2"]
    by_class = postback_errors(store, by="status_class")
    assert by_class.select("status_class", "postbacks", "errors").rows() == [
        ("4xx", 2, 2),
        ("5xx", 1, 1),
        ("none", 1, 1),
        ("2xx", 2, 0),
    ]
    flt = cf.LogFilter(traffic_sources=["t1"], errors_only=True)
    assert postback_errors(store, where=flt).select("postbacks", "errors").row(0) == (2, 2)


def test_log_filter_dates_are_local_and_inclusive(tmp_path):
    store = cf.LogStore(tmp_path / "s", timezone="America/New_York")
    write(
        tmp_path / "v.csv",
        "Click ID,Visit Time,Campaign ID,Is Filtered\n"
        f"{uuid(1)},2026-11-19 23:59:59,k1,0\n"  # Nov 19 local (Nov 20 04:59:59Z)
        f"{uuid(2)},2026-11-20 00:00:00,k1,0\n"
        f"{uuid(3)},2026-11-20 23:59:59,k1,1\n"  # filtered traffic
        f"{uuid(4)},2026-11-21 00:00:00,k1,0\n",
    )
    store.ingest([tmp_path / "v.csv"])
    flt = cf.LogFilter(start=date(2026, 11, 20), end=date(2026, 11, 20))
    got = flt.apply(store.scan("visits"), "visits", timezone=store.timezone).collect()
    assert got.get_column("click_id").to_list() == [uuid(2)]
    both = flt.replace(include_filtered=True).apply(store.scan("visits"), "visits", timezone=store.timezone).collect()
    assert sorted(both.get_column("click_id").to_list()) == [uuid(2), uuid(3)]
    # the UTC date partitions that can hold Nov 20 local are Nov 20 and Nov 21
    assert flt.date_bounds(store.timezone) == (date(2026, 11, 20), date(2026, 11, 21))
    plan = flt.apply(store.scan("visits"), "visits", timezone=store.timezone).explain()
    assert "date=2026-11-19" not in plan


# ---------------------------------------------------------------- incidents
def _incident_store(tmp_path, *, with_edit: bool):
    """One traffic source t1 (S2S) and one integration i1 (CAPI, on t2), 2 days of hourly traffic.

    Per hour: t1 sends 20 postbacks (1 error), t2/i1 sends 20 (1 error).
    From 2026-11-21 12:00Z t1 fails 18/20 for 3 hours; from 2026-11-21 18:00Z i1 fails 20/20 for 2 hours.
    """
    start = datetime(2026, 11, 20, 0, tzinfo=UTC)
    visits, postbacks = [], []
    n = 0
    for hour in range(48):
        t0 = start + timedelta(hours=hour)
        for ts, integ, cmp in (("t1", None, "k1"), ("t2", "i1", "k2")):
            fail = 1
            if (
                ts == "t1"
                and t0 >= datetime(2026, 11, 21, 12, tzinfo=UTC)
                and t0 < datetime(2026, 11, 21, 15, tzinfo=UTC)
            ):
                fail = 18
            if (
                ts == "t2"
                and t0 >= datetime(2026, 11, 21, 18, tzinfo=UTC)
                and t0 < datetime(2026, 11, 21, 20, tzinfo=UTC)
            ):
                fail = 20
            for i in range(20):
                n += 1
                cid = uuid(n)
                t = t0 + timedelta(minutes=2 * i + 1)
                visits.append(
                    {
                        "Click ID": cid,
                        "Visit Time": (t - timedelta(minutes=1)).isoformat(),
                        "Campaign ID": cmp,
                        "Traffic Source ID": ts,
                        "Traffic Source": f"Source {ts}",
                    }
                )
                err = i < fail
                postbacks.append(
                    {
                        "Postback ID": f"p{n}",
                        "Click ID": cid,
                        "Postback Time": t.isoformat(),
                        "Is Error": int(err),
                        "Status Code": (401 if integ else 400) if err else 200,
                        "Integration ID": integ or "",
                        "Error Message": ("Error validating access token: Session has expired" if integ else "Bad")
                        if err
                        else "",
                    }
                )
    activity = [
        # benign: an offer edit just before t1's incident (unrelated entity)
        {
            "Date": "2026-11-21T11:50:00Z",
            "User": "bo@x.test",
            "Entity Type": "Offer",
            "Entity ID": "o1",
            "Entity Name": "Offer 1",
            "Action": "Updated",
            "Old Value": '{"payout":1}',
            "New Value": '{"payout":2}',
        },
        # a campaign edit on t1's campaign AFTER the incident began: never the suspect
        {
            "Date": "2026-11-21T12:30:00Z",
            "User": "cy@x.test",
            "Entity Type": "Campaign",
            "Entity ID": "k1",
            "Entity Name": "Camp 1",
            "Action": "Updated",
            "Old Value": '{"postback_url":"a"}',
            "New Value": '{"postback_url":"b"}',
        },
        # a budget edit on t1's campaign before: does not touch postback fields
        {
            "Date": "2026-11-21T11:55:00Z",
            "User": "dee@x.test",
            "Entity Type": "Campaign",
            "Entity ID": "k1",
            "Entity Name": "Camp 1",
            "Action": "Updated",
            "Old Value": '{"budget":10}',
            "New Value": '{"budget":20}',
        },
    ]
    if with_edit:
        activity.append(
            {
                "Date": "2026-11-21T11:40:00Z",
                "User": "ana@x.test",
                "Entity Type": "Traffic Source",
                "Entity ID": "t1",
                "Entity Name": "Source t1",
                "Action": "Updated",
                "Old Value": '{"postback_url":"https://a/?cid={clickid}"}',
                "New Value": '{"postback_url":"https://a/?cid="}',
            }
        )
    store = cf.LogStore(tmp_path / "s", timezone="UTC")
    store.ingest_frame(pl.DataFrame(visits), name="visits")
    store.ingest_frame(pl.DataFrame(postbacks), name="postbacks")
    store.ingest_frame(pl.DataFrame(activity), name="activity")
    return store


def test_incidents_with_cause_benign_edits_and_token_expiry(tmp_path):
    store = _incident_store(tmp_path, with_edit=True)
    inc = incidents(store)
    assert inc.select("scope", "id", "postbacks", "errors").rows() == [
        ("traffic_source", "t1", 60, 54),  # 3 hours × 20, 18 failing each
        ("integration", "i1", 40, 40),  # 2 hours × 20, all failing; t2's identical incident is not repeated
    ]
    t1, i1 = inc.to_dicts()
    # first failing postback of 12:00 is at minute 1; the last failing one of 14:00 is i = 17 → minute 35
    assert (t1["start"], t1["end"]) == (
        datetime(2026, 11, 21, 12, 1, tzinfo=UTC),
        datetime(2026, 11, 21, 14, 35, tzinfo=UTC),
    )
    assert t1["name"] == "Source t1"
    assert t1["top_error_kind"] == "bad_request"
    assert t1["suspected_change"]["author"] == "ana@x.test"  # not the later campaign edit, not the benign ones
    assert t1["suspected_change"]["changed_at"] == datetime(2026, 11, 21, 11, 40, tzinfo=UTC)
    assert i1["suspected_change"] is None  # an expired token is nobody's edit
    assert i1["top_error_kind"] == "auth"
    assert i1["start"] == datetime(2026, 11, 21, 18, 1, tzinfo=UTC)
    # ids are stable across runs and do not depend on the filter
    again = incidents(store, cf.LogFilter(start=date(2026, 11, 21), end=date(2026, 11, 21)))
    assert again.get_column("incident_id").to_list() == inc.get_column("incident_id").to_list()


def test_without_the_edit_no_change_is_suspected(tmp_path):
    store = _incident_store(tmp_path, with_edit=False)
    t1 = incidents(store).filter(pl.col("id") == "t1").to_dicts()[0]
    assert t1["suspected_change"] is None


def test_binomial_tail_against_exact_sums():
    # P(X >= 3) for n = 4, p = 0.5: (4 + 1) / 16
    assert binomial_sf(3, 4, 0.5) == pytest.approx(5 / 16)
    assert binomial_sf(0, 4, 0.3) == 1.0
    assert binomial_sf(5, 4, 0.3) == 0.0
    # n = 20, k = 18, p = 0.05: sum_{i=18}^{20} C(20,i) p^i q^(20-i)
    from math import comb

    exact = sum(comb(20, i) * 0.05**i * 0.95 ** (20 - i) for i in range(18, 21))
    assert binomial_sf(18, 20, 0.05) == pytest.approx(exact, rel=1e-9)


def test_funnel_lags_and_attribution_by_day(tmp_path):
    store = cf.LogStore(tmp_path / "s", timezone="UTC")
    write(
        tmp_path / "v.csv",
        "Click ID,Visit Time,Campaign ID,Traffic Source ID\n"
        f"{A},2026-11-20 23:30:00,k1,t1\n{B},2026-11-21 10:00:00,k1,t1\n{C},2026-11-21 11:00:00,k2,t2\n",
    )
    write(
        tmp_path / "k.csv", f"Click ID,Click Time,Campaign ID\n{A},2026-11-20 23:31:00,k1\n{B},2026-11-21 10:01:00,k1\n"
    )
    write(
        tmp_path / "c.csv",
        "Click ID,Conversion Date,Custom Conversion (ct),Payout\n"
        f"{A},2026-11-21 00:30:00,sale,1\n"  # visit on the 20th, conversion on the 21st: 60 minutes later
        f"{B},2026-11-21 10:30:00,sale,1\n",  # 30 minutes
    )
    write(
        tmp_path / "p.csv",
        "Postback ID,Click ID,Postback Time,Is Error,Status Code,Custom Conversion (ct)\n"
        f"p1,{A},2026-11-21 00:30:10,0,200,sale\n"  # 10 s after its conversion
        f"p2,{B},2026-11-21 10:30:05,1,500,sale\n"  # 5 s
        f"p3,{B},2026-11-21 10:35:05,0,200,sale\n",
    )
    store.ingest([tmp_path / f for f in ("v.csv", "k.csv", "c.csv", "p.csv")])
    f = cf.diagnose.funnel(store, by="campaign_id")
    assert f.select(
        "campaign_id", "visits", "clicks", "conversions", "postbacks_sent", "postbacks_accepted"
    ).rows() == [
        ("k1", 2, 2, 2, 3, 2),
        ("k2", 1, 0, 0, 0, 0),
    ]
    lags = cf.diagnose.lags(store)
    assert lags["visit_to_conversion"].get_column("minutes").to_list() == [30.0, 60.0]
    assert lags["conversion_to_postback"].get_column("seconds").to_list() == [5.0, 10.0]
    by_day = cf.diagnose.attribution_by_day(store)
    assert by_day.rows() == [(date(2026, 11, 20), 0, 1, 1), (date(2026, 11, 21), 2, 1, -1)]
