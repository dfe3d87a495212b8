"""Ingest end to end on small hand-made exports: spellings, formats, times, outcomes (docs/contract.md §2–§4)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import polars as pl
import pytest

from cfanalytics import LogStore, UsageError
from tests.helpers import EXAMPLES, write

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def ingest(store, *paths, **kw):
    """Ingest and check the invariant on every batch."""
    result = store.ingest(list(paths), **kw)
    for b in result.batches:
        assert b.rows_read == b.rows_stored + b.already_stored + b.quarantined, b
    return result


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


POSTBACKS_UI = (
    "Postback ID,Click ID,Postback Time,Is Error,Error Message,Status Code,Postback URL,"
    "Custom Conversion (ct),Integration ID\n"
    f"p1,{A},2026-11-20 00:00:04,0,,200,https://ts.example/pb?cid={A}&token=abc,sale,\n"
    f"p2,{B},2026-11-20 01:00:00,1,Invalid parameter,400,https://ts.example/pb?cid={B},lead,int1\n"
)


# ------------------------------------------------------------------ spellings
def test_ui_csv_local_time_is_read_in_the_store_zone(ny_store, tmp_path):
    # New York 2026-11-20 00:00:04 (EST, UTC-5) is 05:00:04Z.
    r = ingest(ny_store, write(tmp_path / "pb.csv", POSTBACKS_UI))
    assert [(b.kind, b.rows_stored) for b in r.batches] == [("postbacks", 2)]
    rows = ny_store.scan("postbacks").collect().sort("postback_id")
    assert rows.get_column("postback_time").to_list() == [utc(2026, 11, 20, 5, 0, 4), utc(2026, 11, 20, 6)]
    assert rows.get_column("is_error").to_list() == [False, True]
    assert rows.get_column("status_code").to_list() == [200, 400]
    assert rows.get_column("ct").to_list() == ["sale", "lead"]
    assert rows.get_column("integration_id").to_list() == [None, "int1"]
    assert rows.get_column("date").to_list() == [utc(2026, 11, 20).date()] * 2


def test_api_json_envelope_and_csv_give_the_same_row_ids(tmp_path):
    csv = write(tmp_path / "pb.csv", POSTBACKS_UI)
    api = {
        "items": [
            {
                "PostbackID": "p1",
                "ClickID": A,
                "PostbackTime": "2026-11-20T05:00:04Z",
                "IsError": False,
                "StatusCode": 200,
                "PostbackUrl": f"https://ts.example/pb?cid={A}&token=abc",
                "Ct": "sale",
            },
            {
                "PostbackID": "p2",
                "ClickID": B,
                "PostbackTime": "2026-11-20T01:00:00-05:00",
                "IsError": True,
                "ErrorMessage": "Invalid parameter",
                "StatusCode": 400,
                "Ct": "lead",
                "IntegrationID": "int1",
                "PostbackUrl": f"https://ts.example/pb?cid={B}",
            },
        ],
        "totals": {"counter": 2},
    }
    js = write(tmp_path / "pb.json", json.dumps(api))
    s1 = LogStore(tmp_path / "s1", timezone="America/New_York")
    s2 = LogStore(tmp_path / "s2", timezone="America/New_York")
    ingest(s1, csv)
    ingest(s2, js)
    cols = ["_row_id", "postback_id", "click_id", "postback_time", "is_error", "status_code", "ct"]
    a = s1.scan("postbacks").select(cols).collect().sort("_row_id")
    b = s2.scan("postbacks").select(cols).collect().sort("_row_id")
    assert a.equals(b)
    # and loading the API file into the CSV's store adds nothing
    r = ingest(s1, js)
    assert (r.batches[0].rows_stored, r.batches[0].already_stored) == (0, 2)


def test_camelcase_ndjson_gzip_and_parquet(store, tmp_path):
    lines = [
        {
            "clickID": A,
            "clickTime": "2026-11-20T10:00:00Z",
            "campaignID": "k1",
            "trafficSourceID": "t1",
            "cta": "2",
            "locationCountry": "us",
            "deviceBrowser": "Chrome",
            "connectionIP": "203.0.113.9",
        },
        {"clickID": B, "clickTime": "2026-11-20T10:05:00Z", "campaignID": "k1", "cta": "x"},
    ]
    path = tmp_path / "clicks.ndjson.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(x) for x in lines).encode()))
    r = ingest(store, path)
    assert [(b.kind, b.rows_stored, b.flagged) for b in r.batches] == [("clicks", 2, 1)]
    rows = store.scan("clicks").collect().sort("click_id")
    assert rows.get_column("cta").to_list() == [2, None]
    assert rows.get_column("country").to_list() == ["US", None]
    assert rows.get_column("browser").to_list() == ["Chrome", None]
    assert rows.get_column("ip").to_list() == ["203.0.113.9", None]
    assert rows.get_column("flag_invalid_value").to_list() == [False, True]
    assert rows.get_column("_raw").to_list() == [None, '{"cta":"x"}']
    # The same rows as Parquet with typed values are already stored.
    pq_path = tmp_path / "clicks.parquet"
    pl.DataFrame(
        {"ClickID": [A], "ClickTime": [utc(2026, 11, 20, 10)], "CampaignID": ["k1"], "CTA": [2]}
    ).write_parquet(pq_path)
    r = ingest(store, pq_path)
    assert (r.batches[0].rows_stored, r.batches[0].already_stored) == (0, 1)


def test_unknown_columns_are_kept_under_one_name(store, tmp_path):
    write(
        tmp_path / "v1.csv", f"Click ID,Visit Time,Campaign ID,Tracking Field 1,date\n{A},2026-11-20 10:00:00,k1,x1,d\n"
    )
    write(
        tmp_path / "v2.json",
        json.dumps([{"ClickID": B, "VisitTime": "2026-11-20 11:00:00", "CampaignID": "k1", "trackingField1": "x2"}]),
    )
    ingest(store, tmp_path / "v1.csv", tmp_path / "v2.json")
    rows = store.scan("visits").collect().sort("click_id")
    assert rows.get_column("tracking_field_1").to_list() == ["x1", "x2"]
    assert rows.get_column("date_src").to_list() == ["d", None]
    assert "trackingfield1" not in rows.columns


def test_map_override_and_missing_required_column_is_named(store, tmp_path):
    path = write(tmp_path / "odd.csv", f"Sub,When,Camp\n{A},2026-11-20 10:00:00,k1\n")
    r = store.ingest([path])
    assert r.failures == [
        f"{path}: no recognisable log columns (found: Sub, When, Camp); use --kind and --map 'Header=column'"
    ]
    r = ingest(store, path, kind="visits", column_map=["Sub=click_id", "When=visit_time", "Camp=campaign_id"])
    assert r.batches[0].rows_stored == 1
    path2 = write(tmp_path / "nocamp.csv", f"Click ID,Visit Time\n{A},2026-11-20 10:00:00\n")
    r = store.ingest([path2])
    assert r.failures == [f"{path2}: visits input has no campaign_id column (use --map 'Header=campaign_id')"]


# ------------------------------------------------------------- kind inference
@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Postback Time,Click ID,Is Error,Visit Time", "postbacks"),  # postback_time wins over visit_time
        ("Changed At,Author,Entity Type,Action", "activity"),
        ("Click ID,Conversion Date,Visit Time", "conversions"),  # conversion_time before visit_time
        ("Click ID,Click Time,Visit Time,Campaign ID", "clicks"),
        ("Click ID,Visit Time,Campaign ID", "visits"),
    ],
)
def test_kind_inference_order(header, kind):
    from cfanalytics.columns import resolve

    assert resolve(header.split(",")).kind == kind


def test_event_log_is_split_and_kind_option_skips_the_rest(store, tmp_path):
    items = [
        {"EventType": "Visit", "ClickID": A, "VisitTime": "2026-11-20 10:00:00", "CampaignID": "k1"},
        {"EventType": "clicks", "ClickID": A, "ClickTime": "2026-11-20 10:00:05", "CampaignID": "k1"},
        {"EventType": "Conversions", "ClickID": A, "ConversionDate": "2026-11-20 11:00:00", "ConversionPayout": 2.5},
        {"EventType": "Refund", "ClickID": A, "ConversionDate": "2026-11-20 12:00:00"},
    ]
    path = write(tmp_path / "events.json", json.dumps({"items": items, "totals": {"counter": 4}}))
    r = ingest(store, path)
    got = sorted((b.kind, b.rows_stored, b.quarantined) for b in r.batches)
    assert got == [("clicks", 1, 0), ("conversions", 1, 0), ("events", 0, 1), ("visits", 1, 0)]
    assert store.quarantine().get_column("reason").to_list() == ["unknown_event_type"]
    events = store.events().select("event_type", "event_time").collect().sort("event_time")
    assert events.rows() == [
        ("visit", utc(2026, 11, 20, 10)),
        ("click", utc(2026, 11, 20, 10, 0, 5)),
        ("conversion", utc(2026, 11, 20, 11)),
    ]
    other = LogStore(tmp_path / "s2", timezone="UTC")
    r = ingest(other, path, kind="conversions")
    conv = next(b for b in r.batches if b.kind == "conversions")
    assert (conv.rows_stored, conv.skipped) == (1, 2)
    assert other.counts()["visits"] == 0


def test_no_recognisable_columns_lists_what_was_found(store, tmp_path):
    path = write(tmp_path / "x.csv", "foo,bar\n1,2\n")
    r = store.ingest([path])
    assert r.failures == [
        f"{path}: no recognisable log columns (found: foo, bar); use --kind and --map 'Header=column'"
    ]
    assert store.counts()["visits"] == 0


# ----------------------------------------------------------------------- time
def test_dst_fall_back_in_file_order_and_spring_forward_shift(ny_store, tmp_path):
    # 2026-11-01: 01:00–02:00 happens twice in New York (EDT then EST).
    text = "Click ID,Visit Time,Campaign ID\n" + "".join(
        f"{i:08x}-0000-4000-8000-000000000000,{t},k1\n"
        for i, t in enumerate(
            [
                "2026-11-01 00:50:00",
                "2026-11-01 01:20:00",
                "2026-11-01 01:50:00",
                "2026-11-01 01:10:00",
                "2026-11-01 01:40:00",
                "2026-11-01 02:10:00",
            ]
        )
    )
    ingest(ny_store, write(tmp_path / "fall.csv", text))
    rows = ny_store.scan("visits").collect().sort("click_id")
    assert rows.get_column("visit_time").to_list() == [
        utc(2026, 11, 1, 4, 50),
        utc(2026, 11, 1, 5, 20),
        utc(2026, 11, 1, 5, 50),  # EDT (UTC-4)
        utc(2026, 11, 1, 6, 10),
        utc(2026, 11, 1, 6, 40),
        utc(2026, 11, 1, 7, 10),  # EST (UTC-5)
    ]
    assert rows.get_column("flag_ambiguous_time").to_list() == [False, True, True, True, True, False]
    # Not monotonic: ambiguous times take the earlier instant, still flagged.
    text2 = "Click ID,Visit Time,Campaign ID\n" + "".join(
        f"{i:08x}-1111-4000-8000-000000000000,{t},k1\n"
        for i, t in enumerate(["2026-11-01 03:00:00", "2026-11-01 01:30:00", "2026-11-01 05:00:00"])
    )
    ingest(ny_store, write(tmp_path / "mixed.csv", text2))
    amb = ny_store.scan("visits").filter(pl.col("click_id") == "00000001-1111-4000-8000-000000000000").collect()
    assert amb.get_column("visit_time").to_list() == [utc(2026, 11, 1, 5, 30)]
    assert amb.get_column("flag_ambiguous_time").to_list() == [True]
    # 2026-03-08 02:30 does not exist in New York: shifted forward by the gap to 03:30 EDT = 07:30Z.
    spring = "Click ID,Visit Time,Campaign ID\n" + f"{C},2026-03-08 02:30:00,k1\n"
    ingest(ny_store, write(tmp_path / "spring.csv", spring))
    row = ny_store.scan("visits").filter(pl.col("click_id") == C).collect()
    assert row.get_column("visit_time").to_list() == [utc(2026, 3, 8, 7, 30)]
    assert row.get_column("flag_shifted_time").to_list() == [True]


def test_iso_offsets_and_unix_seconds_and_milliseconds(ny_store, tmp_path):
    text = (
        "Click ID,Visit Time,Campaign ID\n"
        f"{A},2026-11-20T10:00:00+02:00,k1\n"  # offset wins over the store zone
        f"{B},1763632804,k1\n"  # Unix seconds
        f"{C},1763632804123,k1\n"  # Unix milliseconds
    )
    ingest(ny_store, write(tmp_path / "t.csv", text))
    rows = ny_store.scan("visits").collect().sort("click_id")
    expected_s = datetime.fromtimestamp(1763632804, tz=UTC)
    assert rows.get_column("visit_time").to_list() == [
        utc(2026, 11, 20, 8),
        expected_s,
        expected_s.replace(microsecond=123_000),
    ]


def test_mismatching_timezone_is_refused(tmp_path):
    LogStore(tmp_path / "s", timezone="America/New_York")
    with pytest.raises(UsageError, match="store time zone is America/New_York, not Europe/Berlin"):
        LogStore(tmp_path / "s", timezone="Europe/Berlin")
    forced = LogStore(tmp_path / "s", timezone="Europe/Berlin", force_timezone=True)
    assert forced.timezone == "America/New_York"
    with pytest.raises(UsageError, match="unknown time zone"):
        LogStore(tmp_path / "t", timezone="Mars/Base")


# ------------------------------------------------------------------- outcomes
def test_every_outcome_class_with_its_reason_code(store, tmp_path):
    text = (
        "Postback ID,Click ID,Postback Time,Is Error,Error Message,Status Code,Postback URL,Custom Conversion (ct)\n"
        f"p1,{A},2026-11-20 10:00:00,0,,200,u,sale\n"  # 2: stored clean
        f"p2,{A},2026-11-20 10:01:00,1,x,abc,u,sale\n"  # 3: stored, status nulled and flagged
        f"p3,{A},2026-11-20 10:02:00,1,x,999,u,sale\n"  # 4: stored, flagged
        f"p4,{A},2026-11-20 10:03:00,1,timeout,0,u,sale\n"  # 5: status 0 = no response, not flagged
        f"p5,{A},2026-11-20 10:04:00,maybe,x,400,u,sale\n"  # 6: quarantined unparseable_required
        f"p6,{A},,1,x,400,u,sale\n"  # 7: quarantined missing_required
        f",{A},2026-11-20 10:05:00,1,x,400,u,sale\n"  # 8: present but empty id → missing_required
        f"p7,{A},2026-02-30 10:00:00,1,x,400,u,sale\n"  # 9: impossible date → unparseable_required
        f"p8,{A},2026-11-20 25:00:00,1,x,400,u,sale\n"  # 10: 25:00 → unparseable_required
        f"p9,{{subid}},2026-11-20 10:06:00,0,,500,u,sale\n"  # 11: macro, is_error disagrees with 500
        f"p1,{A},2026-11-20 10:00:00,0,,200,u,sale\n"  # 12: identical repeat → already stored
        f"p1,{A},2026-11-20 10:00:00,1,changed,500,u,sale\n"  # 13: conflicting_key, first kept
        f"p10,{A},2026-11-20 10:07:00,0,,200,u,sale,extra\n"  # 14: ragged row
    )
    r = ingest(store, write(tmp_path / "pb.csv", text))
    (b,) = r.batches
    assert (b.rows_read, b.rows_stored, b.already_stored, b.quarantined) == (13, 5, 1, 7)
    assert b.quarantined_by_reason == {
        "conflicting_key": 1,
        "missing_required": 2,
        "ragged_row": 1,
        "unparseable_required": 3,
    }
    assert b.flagged == 3
    assert b.flagged_by_flag == {
        "flag_invalid_status_code": 2,
        "flag_error_status_mismatch": 1,
        "flag_click_id_macro": 1,
    }
    rows = store.scan("postbacks").collect().sort("postback_id")
    assert rows.get_column("postback_id").to_list() == ["p1", "p2", "p3", "p4", "p9"]
    assert rows.get_column("status_code").to_list() == [200, None, None, None, 500]
    assert rows.get_column("_raw").to_list() == [None, '{"status_code":"abc"}', '{"status_code":"999"}', None, None]
    assert rows.filter(pl.col("postback_id") == "p1").get_column("error_message").to_list() == [None]
    q = store.quarantine().sort("record")
    assert q.select("record", "reason").rows() == [
        (6, "unparseable_required"),
        (7, "missing_required"),
        (8, "missing_required"),
        (9, "unparseable_required"),
        (10, "unparseable_required"),
        (13, "conflicting_key"),
        (14, "ragged_row"),
    ]
    assert q.get_column("detail").to_list()[0] == "is_error (Is Error): cannot parse 'maybe'"
    assert json.loads(q.get_column("raw").to_list()[0])["Postback ID"] == "p5"
    # The conflicting repeat keeps its own raw record (read again from the input at commit).
    assert json.loads(q.filter(pl.col("reason") == "conflicting_key").get_column("raw").item()) == {
        "Postback ID": "p1",
        "Click ID": A,
        "Postback Time": "2026-11-20 10:00:00",
        "Is Error": "1",
        "Error Message": "changed",
        "Status Code": "500",
        "Postback URL": "u",
        "Custom Conversion (ct)": "sale",
    }
    assert set(q.get_column("source").to_list()) == {str(tmp_path / "pb.csv")}


def test_conflicting_key_against_the_store(store, tmp_path):
    ingest(store, write(tmp_path / "v1.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n"))
    r = ingest(
        store,
        write(
            tmp_path / "v2.csv",
            f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k2\n{B},2026-11-20 10:00:00,k2\n",
        ),
    )
    (b,) = r.batches
    assert (b.rows_stored, b.already_stored, b.quarantined) == (1, 0, 1)
    assert b.quarantined_by_reason == {"conflicting_key": 1}
    assert store.scan("visits").filter(pl.col("click_id") == A).collect().get_column("campaign_id").to_list() == ["k1"]
    (q,) = store.quarantine().select("record", "raw").rows()
    assert q[0] == 2  # the first data record (the header is record 1)
    assert json.loads(q[1]) == {"Click ID": A, "Visit Time": "2026-11-20 10:00:00", "Campaign ID": "k2"}


def test_two_identical_conversions_in_one_file_are_both_kept(store):
    path = EXAMPLES / "gaps" / "conversions.csv"
    r = ingest(store, path)
    assert (r.batches[0].rows_stored, r.batches[0].already_stored) == (4, 0)
    rows = store.scan("conversions").collect()
    assert rows.filter(pl.col("ct").is_null() & (pl.col("payout") == 10.0)).height == 2
    assert rows.get_column("_row_id").n_unique() == 4
    r2 = ingest(store, path)
    assert (r2.batches[0].rows_stored, r2.batches[0].already_stored) == (0, 4)


def test_overlapping_exports_store_nothing_twice(store, tmp_path):
    head = "Click ID,Conversion Date,Custom Conversion (ct),Transaction ID,Payout\n"
    r1 = f"{A},2026-11-20 11:00:00,,,10.00\n"
    r2 = f"{B},2026-11-20 12:00:00,sale,t2,5.00\n"
    r3 = f"{C},2026-11-20 13:00:00,sale,t3,7.00\n"
    ingest(store, write(tmp_path / "a.csv", head + r1 + r1 + r2))
    r = ingest(store, write(tmp_path / "b.csv", head + r1 + r1 + r2 + r3))
    assert (r.batches[0].rows_stored, r.batches[0].already_stored) == (1, 3)
    assert store.counts()["conversions"] == 4


def test_decimal_comma_in_semicolon_file_and_payout_rules(store, tmp_path):
    text = (
        "Click ID;Conversion Date;Payout\n"
        f"{A};2026-11-20 11:00:00;12,50\n"
        f"{B};2026-11-20 11:00:00;3\n"
        f"{C};2026-11-20 11:00:00;-1,25\n"
    )
    ingest(store, write(tmp_path / "c.csv", text))
    rows = store.scan("conversions").collect().sort("click_id")
    assert rows.get_column("payout").to_list() == [12.5, 3.0, -1.25]
    assert rows.get_column("flag_negative_payout").to_list() == [False, False, True]
    bad = "Click ID,Conversion Date,Payout\n" + "".join(
        f"{i:08x}-0000-4000-8000-000000000000,2026-11-21 11:00:00,{p}\n"
        for i, p in enumerate(["$5", "NaN", "inf", '"1,5"'])
    )
    ingest(store, write(tmp_path / "bad.csv", bad))
    rows = store.scan("conversions").filter(pl.col("date") == utc(2026, 11, 21).date()).collect().sort("click_id")
    assert rows.get_column("payout").to_list() == [None, None, None, None]
    assert rows.get_column("flag_invalid_payout").to_list() == [True] * 4
    assert rows.get_column("_raw").to_list() == [
        '{"payout":"$5"}',
        '{"payout":"NaN"}',
        '{"payout":"inf"}',
        '{"payout":"1,5"}',
    ]


def test_postback_ids_are_derived_when_the_column_is_absent(store, tmp_path):
    items = [
        {"ClickID": A, "PostbackTime": "2026-11-20T10:00:00Z", "IsError": "true", "StatusCode": 401, "Ct": "sale"},
        {"ClickID": A, "PostbackTime": "2026-11-20T10:00:00Z", "IsError": "true", "StatusCode": 401, "Ct": "sale"},
        {"ClickID": B, "PostbackTime": "2026-11-20T10:00:00Z", "IsError": "false", "StatusCode": 200},
    ]
    path = write(tmp_path / "pb.json", json.dumps({"items": items, "totals": {"counter": 3}}))
    r = ingest(store, path)
    assert r.batches[0].rows_stored == 3
    rows = store.scan("postbacks").collect()
    assert rows.get_column("postback_id").n_unique() == 3
    assert rows.get_column("flag_derived_postback_id").to_list() == [True] * 3
    assert ingest(store, path).batches[0].already_stored == 3
    empty_id = write(tmp_path / "pb2.csv", f"Postback ID,Click ID,Postback Time,Is Error\n,{A},2026-11-20 10:00:00,0\n")
    assert ingest(store, empty_id).batches[0].quarantined_by_reason == {"missing_required": 1}


def test_activity_vocabularies_and_action_raw(store, tmp_path):
    text = (
        "Date,User,Entity Type,Entity ID,Entity Name,Action,Old Value,New Value\n"
        "2026-11-20 10:00:00,ana@acme.test,Traffic Source,t1,PropellerAds,Updated,"
        '"{""postback_url"":""a""}","{""postback_url"":""b""}"\n'
        "2026-11-20 11:00:00,bo@acme.test,Landing Page,l1,LP,Archived,,\n"
    )
    ingest(store, write(tmp_path / "act.csv", text))
    rows = store.scan("activity").collect().sort("changed_at")
    assert rows.select("entity_type", "action", "action_raw").rows() == [
        ("traffic_source", "updated", "Updated"),
        ("lander", "other", "Archived"),
    ]
    assert json.loads(rows.get_column("new_value")[0]) == {"postback_url": "b"}


def test_forget_removes_a_batch(store, tmp_path):
    r1 = ingest(store, write(tmp_path / "pb.csv", POSTBACKS_UI))
    ingest(store, write(tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n"))
    assert store.counts()["postbacks"] == 2
    ledger = store.batches()
    assert set(ledger.get_column("table").to_list()) == {"postbacks", "visits"}
    deleted = store.forget(r1.batches[0].batch_id)
    assert deleted == {"postbacks": 2}
    assert store.counts()["postbacks"] == 0
    assert store.counts()["visits"] == 1
    # re-ingest after a forget stores the rows again
    assert ingest(store, tmp_path / "pb.csv").batches[0].rows_stored == 2


def test_ips_stored_masked_or_hashed_and_forgotten(tmp_path):
    text = (
        "Click ID,Visit Time,Campaign ID,IP\n"
        f"{A},2026-11-20 10:00:00,k1,203.0.113.77\n"
        f"{B},2026-11-20 10:00:00,k1,2001:db8:abcd:12::1\n"
        f"{C},2026-11-20 10:00:00,k1,198.51.100.4\n"
    )
    path = write(tmp_path / "v.csv", text)
    masked = LogStore(tmp_path / "m", timezone="UTC")
    ingest(masked, path, store_ips="masked")
    assert masked.scan("visits").collect().sort("click_id").get_column("ip").to_list() == [
        "203.0.113.0", "2001:db8:abcd::", "198.51.100.0",
    ]  # fmt: skip
    hashed = LogStore(tmp_path / "h", timezone="UTC")
    hashed.set_privacy(store_ips="hashed")
    ingest(hashed, path)
    ips = hashed.scan("visits").collect().sort("click_id").get_column("ip").to_list()
    assert all(ip.startswith("ip:") and len(ip) == 19 for ip in ips)
    assert "203.0.113.77" not in "".join(ips)
    # a data-subject request: the hashed row of one address goes, the others stay
    assert hashed.forget_ip("203.0.113.77") == {"visits": 1}
    assert sorted(hashed.scan("visits").collect().get_column("click_id").to_list()) == [B, C]
    raw = LogStore(tmp_path / "r", timezone="UTC")
    bad = write(tmp_path / "bad.csv", "Click ID,Visit Time,Campaign ID,IP\n,2026-11-20 10:00:00,k1,198.51.100.4\n")
    ingest(raw, path, bad)
    assert raw.forget_ip("198.51.100.4") == {"visits": 1, "quarantine": 1}
    assert raw.counts()["visits"] == 2


def test_an_event_row_with_a_null_event_type_is_quarantined_not_lost(store, tmp_path):
    rows = [
        {"Event Type": "visit", "Click ID": A, "Visit Time": "2026-11-20 10:00:00", "Campaign ID": "k1"},
        {"Event Type": None, "Click ID": B, "Visit Time": "2026-11-20 10:01:00", "Campaign ID": "k1"},
    ]
    path = write(tmp_path / "events.ndjson", "\n".join(json.dumps(r) for r in rows) + "\n")
    r = ingest(store, path)
    totals = r.totals()
    assert (totals["rows_read"], totals["rows_stored"], totals["quarantined"]) == (2, 1, 1)
    (q,) = store.quarantine().select("record", "reason", "raw").rows()
    assert q[:2] == (2, "unknown_event_type")
    assert json.loads(q[2]) == rows[1]


def test_repeated_ids_are_found_on_the_whole_id_not_its_first_half():
    from cfanalytics.ingest import _repeated_ids

    same_hi = "0123456789abcdef"
    ids = [
        same_hi + "0000000000000001",  # shares its first half with the next one: not a repeat
        same_hi + "0000000000000002",
        "ffffffffffffffff0000000000000003",  # a true repeat
        "ffffffffffffffff0000000000000003",
        "aaaaaaaaaaaaaaaa0000000000000004",
    ]
    assert _repeated_ids(_with_hi(ids), len(ids)) == {"ffffffffffffffff0000000000000003"}
    assert _repeated_ids(_with_hi(ids[:2]), 2) == set()


def _with_hi(ids: list[str]) -> pl.LazyFrame:
    """Scratch rows as pass 1 writes them: the id and its first 64 bits (parsed here by Python)."""
    from cfanalytics.ingest import _ID_HI

    return pl.LazyFrame({"_row_id": ids, _ID_HI: [int(i[:16], 16) for i in ids]}, schema_overrides={_ID_HI: pl.UInt64})


def test_repeated_ids_in_buckets_find_the_same_repeats(monkeypatch: pytest.MonkeyPatch):
    """Counted in buckets of the first half (memory bounded for any input), the repeats are the same."""
    import random

    from cfanalytics import ingest
    from cfanalytics.ingest import _repeated_ids

    rng = random.Random(5)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(300)]
    ids += ids[10:40] + ids[100:101] * 3  # 31 ids repeated, one of them four times
    rng.shuffle(ids)
    by_hand = {i for i in ids if ids.count(i) > 1}
    assert len(by_hand) == 31
    monkeypatch.setattr(ingest, "_REPEAT_BUCKET_ROWS", 50)  # 7 buckets
    assert _repeated_ids(_with_hi(ids), len(ids)) == by_hand


def test_prefetch_keeps_order_raises_the_producers_error_and_stops_early():
    import threading

    from cfanalytics._pipeline import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad record 3")

    it = prefetch(failing())
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="bad record 3"):
        next(it)

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    gen = prefetch(endless(), depth=2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()  # the producer stops: no thread is left running
    assert not any(t.name == "cfanalytics-read" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2  # taken + queued + one in hand


@pytest.mark.parametrize("bucket_rows", [1, 2, 4_000_000])
def test_the_dedupe_join_gives_the_same_answer_in_any_number_of_buckets(store, tmp_path, monkeypatch, bucket_rows):
    import cfanalytics.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_JOIN_BUCKET_ROWS", bucket_rows)
    ids = [f"{n:08x}-0000-4000-8000-00000000000{n}" for n in range(1, 7)]
    head = "Click ID,Visit Time,Campaign ID\n"
    first = "".join(f"{i},2026-11-20 10:0{n}:00,k1\n" for n, i in enumerate(ids[:4]))
    ingest(store, write(tmp_path / "v1.csv", head + first))
    second = (
        f"{ids[0]},2026-11-20 10:00:00,k1\n"  # identical: already stored
        f"{ids[1]},2026-11-20 10:01:00,k2\n"  # other content: conflicting_key
        f"{ids[4]},2026-11-20 10:04:00,k1\n"  # new
        f"{ids[5]},2026-11-20 10:05:00,k1\n"  # new
    )
    (b,) = ingest(store, write(tmp_path / "v2.csv", head + second)).batches
    assert (b.rows_read, b.rows_stored, b.already_stored, b.quarantined) == (4, 2, 1, 1)
    assert store.quarantine().select("record", "reason").rows() == [(3, "conflicting_key")]
    stored = store.scan("visits").select("click_id", "campaign_id").collect().sort("click_id").rows()
    assert stored == [(i, "k1") for i in ids]


@pytest.mark.parametrize("sparse", [0, 10**9])
def test_content_is_compared_on_every_column_the_input_carries(store, tmp_path, monkeypatch, sparse):
    """A keyed row is an identical repeat only when all its stated columns agree; null and "" agree.

    The stored digests differ from the second file's (it has one column less), so every
    found row is verified from its stored columns: by id (``sparse``) or in a stream.
    """
    import cfanalytics.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_SPARSE_HITS", sparse)
    head = "Click ID,Visit Time,Campaign ID,Bot Score,Is Filtered,City\n"
    ids = [f"{n:08x}-0000-4000-8000-00000000000{n}" for n in range(1, 6)]
    ingest(
        store,
        write(
            tmp_path / "v1.csv",
            "Click ID,Visit Time,Campaign ID,Bot Score,Is Filtered,City,ISP\n"
            + "".join(f"{i},2026-11-20 10:0{n}:00,k1,0.5,0,,isp1\n" for n, i in enumerate(ids)),
        ),
    )
    second = (
        f"{ids[0]},2026-11-20 10:00:00,k1,0.5,0,\n"  # identical
        f"{ids[1]},2026-11-20 10:01:01,k1,0.5,0,\n"  # time differs by a second
        f"{ids[2]},2026-11-20 10:02:00,k1,0.25,0,\n"  # score differs
        f"{ids[3]},2026-11-20 10:03:00,k1,0.5,1,\n"  # flag differs
        f'{ids[4]},2026-11-20 10:04:00,k1,0.5,0,""\n'  # empty city: as null, identical
    )
    (b,) = ingest(store, write(tmp_path / "v2.csv", head + second)).batches
    assert (b.rows_read, b.rows_stored, b.already_stored, b.quarantined) == (5, 0, 2, 3)
    assert store.quarantine().select("record").to_series().sort().to_list() == [3, 4, 5]


def test_a_store_with_the_former_content_hash_column_still_dedupes(store, tmp_path):
    """Tables written before content digests were computed on demand keep a ``_content_hash`` column."""
    from deltalake import write_deltalake

    head = "Click ID,Visit Time,Campaign ID\n"
    ingest(store, write(tmp_path / "v1.csv", head + f"{A},2026-11-20 10:00:00,k1\n{B},2026-11-20 10:01:00,k1\n"))
    old = store.scan("visits").collect().drop("_content_digest").with_columns(pl.lit("0" * 32).alias("_content_hash"))
    write_deltalake(
        store.table_path("visits"), old.to_arrow(), mode="overwrite", schema_mode="overwrite", partition_by=["date"]
    )
    again = f"{A},2026-11-20 10:00:00,k1\n{B},2026-11-20 10:01:00,k2\n{C},2026-11-20 10:02:00,k1\n"
    (b,) = ingest(store, write(tmp_path / "v2.csv", head + again)).batches
    assert (b.rows_stored, b.already_stored, b.quarantined) == (1, 1, 1)
    rows = store.scan("visits").select("click_id", "_content_hash", pl.col("_content_digest").is_null())
    assert rows.collect().sort("click_id").rows() == [(A, "0" * 32, True), (B, "0" * 32, True), (C, None, False)]
    # an input column spelled like it is an extra column of its own, not the old internal one
    d = "dddddddd-0000-4000-8000-000000000004"
    ingest(
        store,
        write(tmp_path / "v3.csv", f"Click ID,Visit Time,Campaign ID,Content Hash\n{d},2026-11-20 10:03:00,k1,x\n"),
    )
    got = store.scan("visits").filter(pl.col("click_id") == d).select("_content_hash", "content_hash").collect()
    assert got.rows() == [(None, "x")]


def test_the_writer_thread_runs_calls_in_order_and_hands_errors_back():
    from cfanalytics._pipeline import SerialWorker

    done: list[int] = []
    w = SerialWorker("test-writer")
    for i in range(20):
        w.submit(done.append, i)
    w.close()
    assert done == list(range(20))

    def boom(i: int) -> None:
        if i == 3:
            raise OSError("disk full")
        done.append(i)

    done.clear()
    w = SerialWorker("test-writer")

    def feed() -> None:
        for i in range(50):
            w.submit(boom, i)
        w.close()

    with pytest.raises(OSError, match="disk full"):
        feed()
    w.abort()
    assert done == [0, 1, 2]  # nothing after the failed call ran


def test_scratch_scans_project_filter_and_stop_early(tmp_path):
    import pyarrow as pa

    from cfanalytics._pipeline import ScratchWriter, scan_scratch

    t = pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)], "c": [i % 3 for i in range(10)]})
    w = ScratchWriter(tmp_path / "x.arrow", t.schema)
    w.write_table(t)
    w.write_table(t)
    w.close()
    lf = scan_scratch(tmp_path / "x.arrow")
    assert lf.filter(pl.col("c") == 1).select("b").collect().to_series().to_list() == ["1", "4", "7"] * 2
    assert lf.select(pl.len()).collect().item() == 20
    assert lf.head(12).collect().get_column("a").to_list() == [*range(10), 0, 1]
    assert lf.filter(pl.col("a") > 7).select("a").collect().to_series().to_list() == [8, 9, 8, 9]
