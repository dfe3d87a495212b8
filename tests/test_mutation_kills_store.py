"""Edges of the store and of normalize (the ingest path) that a one-line change would cross (found by the
sampled ``make mutation``).

Each store is tiny and built in the test; every expected value is worked out by hand.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import polars as pl
import pytest

from cfanalytics import LogStore
from cfanalytics.exceptions import UsageError
from tests.helpers import write

A = "00000001-0000-4000-8000-000000000001"
HEAD = "Click ID,Visit Time,Campaign ID\n"


def test_ensure_timezone_settles_an_offsets_store_to_the_given_zone(tmp_path):
    # every time read carried an offset: the store's UTC is taken from the offsets, not settled
    store = LogStore(tmp_path / "s")
    assert store.ingest([write(tmp_path / "v.csv", f"{HEAD}{A},2026-11-20T10:00:00Z,k1\n")]).ok
    assert (store.timezone, store.timezone_settled) == ("UTC", False)
    assert store.ensure_timezone("Europe/Paris") == "Europe/Paris"
    assert (store.timezone, store.timezone_settled) == ("Europe/Paris", True)
    # what was recorded is read back by another handle on the same store
    again = LogStore(tmp_path / "s", create=False)
    assert (again.timezone, again.timezone_settled) == ("Europe/Paris", True)
    # a settled zone stays, whatever is asked next
    assert again.ensure_timezone("Asia/Tokyo") == "Europe/Paris"


def test_events_unite_kinds_whose_columns_differ(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    items = [
        {"EventType": "Visit", "ClickID": A, "VisitTime": "2026-11-20 10:00:00", "CampaignID": "k1"},
        {"EventType": "Conversions", "ClickID": A, "ConversionDate": "2026-11-20 11:00:00", "ConversionPayout": 2.5},
    ]
    path = write(tmp_path / "events.json", json.dumps({"items": items, "totals": {"counter": 2}}))
    assert store.ingest([path]).ok
    events = store.events().collect().sort("event_time")
    # a visit has no payout and a conversion no visit columns: the union keeps both, null where absent
    assert events.select("event_type", "event_time").rows() == [
        ("visit", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("conversion", datetime(2026, 11, 20, 11, tzinfo=UTC)),
    ]
    assert {"payout", "visit_time"} <= set(events.columns)


def test_sort_by_click_id_refuses_a_table_without_one_by_name(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        assert store.sort_by_click_id(kind) == {}  # nothing stored, nothing rewritten
    with pytest.raises(
        UsageError, match=r"^'quarantine' has no click_id; use one of visits, clicks, conversions, postbacks$"
    ):
        store.sort_by_click_id("quarantine")


def test_an_address_that_does_not_parse_is_matched_as_given():
    from cfanalytics.store import _ip_spellings

    assert _ip_spellings("proxy-7") == ["proxy-7"]  # not an address: no compressed or exploded form
    assert _ip_spellings("203.0.113.9") == ["203.0.113.9"]  # IPv4: all three spellings are the same


def test_an_unknown_event_type_is_quarantined_with_its_name_in_the_detail(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    items = [
        {"EventType": "Visit", "ClickID": A, "VisitTime": "2026-11-20 10:00:00", "CampaignID": "k1"},
        {"EventType": "Refund", "ClickID": A, "ConversionDate": "2026-11-20 12:00:00"},
        {"EventType": None, "ClickID": A, "ConversionDate": "2026-11-20 12:00:00"},
    ]
    path = write(tmp_path / "events.json", json.dumps({"items": items, "totals": {"counter": 3}}))
    assert store.ingest([path]).ok
    got = store.quarantine().sort("record").select("record", "reason", "detail").rows()
    # records count from 1 in the file's order; a missing type is the empty text
    assert got == [
        (2, "unknown_event_type", "event type 'Refund' is not visit, click or conversion"),
        (3, "unknown_event_type", "event type '' is not visit, click or conversion"),
    ]


def test_masked_addresses_keep_their_network(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    store.set_privacy(store_ips="masked")
    csv = f"Click ID,Visit Time,Campaign ID,IP\n{A},2026-11-20 10:00:00,k1,203.0.113.9\n"
    assert store.ingest([write(tmp_path / "v.csv", csv)]).ok
    # IPv4 is masked to its /24: the last byte is zeroed
    assert store.scan("visits").select("ip").collect().item() == "203.0.113.0"


def test_a_frame_is_recorded_as_frame_unless_named(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    frame = pl.DataFrame({"Click ID": [A], "Visit Time": ["2026-11-20 10:00:00"], "Campaign ID": ["k1"]})
    assert store.ingest_frame(frame, "visits").ok
    assert store.batches().select("table", "source").rows() == [("visits", "<frame>")]


def test_maintain_counts_the_quarantine_files_it_compacts(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    for i in (1, 2):  # two ingests, one quarantined record each: two small quarantine files
        items = [{"EventType": "Refund", "ClickID": A, "ConversionDate": f"2026-11-2{i} 12:00:00"}]
        bad = write(tmp_path / f"e{i}.json", json.dumps({"items": items, "totals": {"counter": 1}}))
        assert sum(b.quarantined for b in store.ingest([bad]).batches) == 1
    assert store.maintain(retention_hours=0)["quarantine"]["compacted"] == 2


def test_the_store_records_when_it_was_created_in_iso_utc(tmp_path):
    from cfanalytics.store import META_FILE

    before = datetime.now(UTC).replace(microsecond=0)
    LogStore(tmp_path / "s", timezone="UTC")
    created = json.loads((tmp_path / "s" / META_FILE).read_text())["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created
    at = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= at <= datetime.now(UTC)


def test_an_unparseable_required_value_is_shown_to_80_characters(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    long = "x" * 100
    assert store.ingest([write(tmp_path / "v.csv", f"{HEAD}{A},{long},k1\n")]).ok
    ((reason, detail),) = store.quarantine().select("reason", "detail").rows()
    assert reason == "unparseable_required"
    assert detail == "visit_time (Visit Time): cannot parse '" + "x" * 80 + "'"


def test_a_store_of_another_format_is_refused_by_its_version(tmp_path):
    from cfanalytics.exceptions import StoreError
    from cfanalytics.store import META_FILE

    LogStore(tmp_path / "s", timezone="UTC")
    meta_path = tmp_path / "s" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 999
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r": store format 999 is not supported$"):
        LogStore(tmp_path / "s", create=False)


def test_a_fall_back_hour_in_a_newest_first_file_reads_the_later_pass_first():
    from cfanalytics.columns import resolve
    from cfanalytics.normalize import Normalizer
    from tests.test_normalize import NY, VISIT_HEADER, local, visit_batch

    # New York repeats 01:00–02:00 on 2026-11-01 (EDT, then EST); the file runs from the newest visit back
    rows = [
        ("2026-11-01 02:15:00", local("2026-11-01 02:15:00")),  # EST, after the repeated hour: 07:15Z
        ("2026-11-01 01:30:00", local("2026-11-01 01:30:00", fold=1)),  # EST, the second pass: 06:30Z
        ("2026-11-01 01:05:00", local("2026-11-01 01:05:00", fold=1)),  # 06:05Z
        ("2026-11-01 01:50:00", local("2026-11-01 01:50:00", fold=0)),  # EDT, the first pass: 05:50Z
        ("2026-11-01 01:10:00", local("2026-11-01 01:10:00", fold=0)),  # 05:10Z
        ("2026-10-31 23:00:00", local("2026-10-31 23:00:00")),  # EDT: 03:00Z
    ]
    n = Normalizer(resolve(VISIT_HEADER), timezone=NY, source="v.csv")
    got = n.normalize(visit_batch([t for t, _ in rows]))["visits"].rows["visit_time"].to_list()
    assert got == [w for _, w in rows]


def test_a_scratch_folder_of_another_running_process_is_live_and_ours_or_a_dead_ones_is_not():
    import os
    import subprocess
    import sys

    from cfanalytics.store import _live_writer

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _live_writer(f"{child.pid}-a1b2") is True  # another ingest still preparing its input
        assert _live_writer(f"{os.getpid()}-a1b2") is False  # our own leftovers may go
    finally:
        child.kill()
        child.wait()
    assert _live_writer(f"{child.pid}-a1b2") is False  # its process is gone
    assert _live_writer("scratch") is False  # not a writer's folder
