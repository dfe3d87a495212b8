"""LogStore: its time zone is never guessed, a failed ingest leaves no store, bad arguments are one line."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from cfanalytics import LogStore
from cfanalytics.exceptions import StoreError, UsageError
from tests.helpers import run_cli, write

HEAD = "Click ID,Visit Time,Campaign ID\n"
A = "00000001-0000-4000-8000-000000000001"
B = "00000002-0000-4000-8000-000000000002"


def _times(store: LogStore) -> list[tuple[str, datetime]]:
    return store.scan("visits").select("click_id", "visit_time").collect().sort("click_id").rows()


def test_a_new_store_takes_utc_from_offsets_and_says_so(tmp_path):
    path = write(tmp_path / "v.csv", f"{HEAD}{A},2026-11-20T10:00:00Z,k1\n{B},2026-11-20 12:30:00+02:00,k1\n")
    r = run_cli("ingest", "--store", str(tmp_path / "s"), str(path))
    assert r.returncode == 0, r.stderr
    assert "store time zone: UTC (every time read carried a UTC offset" in r.stdout
    store = LogStore(tmp_path / "s", create=False)
    assert store.timezone == "UTC"
    assert _times(store) == [
        (A, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (B, datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
    ]


def test_local_times_into_a_store_without_a_zone_are_refused_in_one_line(tmp_path):
    path = write(tmp_path / "v.csv", f"{HEAD}{A},2026-11-20 10:00:00,k1\n")
    r = run_cli("ingest", "--store", str(tmp_path / "s"), str(path))
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "times without a UTC offset" in line
    assert "pass --timezone" in line
    assert not (tmp_path / "s").exists()  # nothing created, nothing pinned
    # mixed: offsets first, a local time later in the same input is still refused
    mixed = write(tmp_path / "m.csv", f"{HEAD}{A},2026-11-20T10:00:00Z,k1\n{B},2026-11-20 10:00:00,k1\n")
    with pytest.raises(UsageError, match="pass --timezone"):
        LogStore(tmp_path / "api").ingest([mixed])
    assert LogStore(tmp_path / "api").counts()["visits"] == 0
    assert LogStore(tmp_path / "api").timezone is None
    # with a zone the same input is read in it, and the zone is recorded
    r = run_cli("ingest", "--store", str(tmp_path / "s"), "--timezone", "America/New_York", str(path))
    assert r.returncode == 0, r.stderr
    store = LogStore(tmp_path / "s", create=False)
    assert store.timezone == "America/New_York"
    assert _times(store) == [(A, datetime(2026, 11, 20, 15, tzinfo=UTC))]  # 10:00 EST


def test_a_zone_taken_from_offsets_still_refuses_local_times_until_one_is_given(tmp_path):
    store = LogStore(tmp_path / "s")
    store.ingest([write(tmp_path / "o.csv", f"{HEAD}{A},2026-11-20T10:00:00Z,k1\n")])
    assert store.timezone == "UTC"
    local = write(tmp_path / "l.csv", f"{HEAD}{B},2026-11-20 10:00:00,k1\n")
    with pytest.raises(UsageError, match="times without a UTC offset"):
        store.ingest([local])
    assert store.counts()["visits"] == 1
    assert store.ingest([local], timezone="UTC").totals()["rows_stored"] == 1


def test_a_failed_ingest_creates_no_store(tmp_path):
    for args in (["missing.csv"], [str(write(tmp_path / "bad.csv", "\x00\x01\x02garbage"))]):
        r = run_cli("ingest", "--store", str(tmp_path / "s"), "--timezone", "UTC", *args)
        assert r.returncode == 1
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "s").exists(), args
    # an empty folder given as the store stays an empty folder
    (tmp_path / "empty").mkdir()
    r = run_cli("ingest", "--store", str(tmp_path / "empty"), "--timezone", "UTC", "missing.csv")
    assert r.returncode == 1
    assert list((tmp_path / "empty").iterdir()) == []
    # the first input that stores something creates the store, in the given zone
    good = write(tmp_path / "v.csv", f"{HEAD}{A},2026-11-20 10:00:00,k1\n")
    r = run_cli("ingest", "--store", str(tmp_path / "s"), "--timezone", "Europe/Berlin", "missing.csv", str(good))
    assert r.returncode == 1  # one input failed
    assert LogStore(tmp_path / "s", create=False).timezone == "Europe/Berlin"


def test_store_on_write_is_not_created_until_a_commit(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC", create="on_write")
    assert not store.exists
    assert store.scan("visits").collect().height == 0
    assert not (tmp_path / "s").exists()
    store.ingest_frame(pl.DataFrame({"Click ID": [A], "Visit Time": ["2026-11-20 10:00:00"], "Campaign ID": ["k"]}))
    assert store.exists
    assert LogStore(tmp_path / "s", create=False).counts()["visits"] == 1


def test_a_regular_file_as_the_store_is_one_line(tmp_path):
    path = write(tmp_path / "notes.txt", "not a store\n")
    for create in (True, False, "on_write"):
        with pytest.raises(StoreError, match="a file, not a store folder"):
            LogStore(path, timezone="UTC", create=create)
    for argv in (["ingest", "--store", str(path), str(path)], ["diagnose", "--store", str(path)]):
        r = run_cli(*argv)
        assert r.returncode in (1, 2)  # refused by the command line's own check, or by the store
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("cfanalytics: ")
        assert "a file, not a store folder" in line
    assert path.read_text() == "not a store\n"


def test_a_negative_retention_is_refused_in_one_line(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    with pytest.raises(UsageError, match="must be 0 or more"):
        store.maintain(retention_hours=-1)
    r = run_cli("maintain", "--store", str(store.path), "--retention-hours", "-1")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("cfanalytics: ")
    assert "0 or more" in line


def test_a_zone_given_later_replaces_the_utc_taken_from_offsets_without_shifting_rows(tmp_path):
    first = write(tmp_path / "o.csv", f"{HEAD}{A},2026-11-20T10:00:00Z,k1\n")
    assert run_cli("ingest", "--store", str(tmp_path / "s"), str(first)).returncode == 0
    again = run_cli("ingest", "--store", str(tmp_path / "s"), str(first))  # the zone is not announced twice
    assert again.returncode == 0
    assert "store time zone" not in again.stdout
    local = write(tmp_path / "l.csv", f"{HEAD}{B},2026-11-20 10:00:00,k1\n")
    r = run_cli("ingest", "--store", str(tmp_path / "s"), "--timezone", "Asia/Tokyo", str(local))
    assert r.returncode == 0, r.stderr
    assert "store time zone: Asia/Tokyo\n" in r.stdout
    store = LogStore(tmp_path / "s", create=False)
    assert (store.timezone, store.timezone_settled) == ("Asia/Tokyo", True)
    # the first row kept its instant; the new one was read in Tokyo time (UTC+9)
    assert _times(store) == [(A, datetime(2026, 11, 20, 10, tzinfo=UTC)), (B, datetime(2026, 11, 20, 1, tzinfo=UTC))]
    # now settled: another zone is refused as before
    r = run_cli("ingest", "--store", str(tmp_path / "s"), "--timezone", "Europe/Berlin", str(local))
    assert r.returncode == 2
    assert "store time zone is Asia/Tokyo, not Europe/Berlin" in r.stderr
