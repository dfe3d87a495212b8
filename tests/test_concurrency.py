"""Writers at once: the store lock serialises them, a dead writer never keeps it (docs/contract.md §4 Writers)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cfanalytics import LogStore, StoreBusyError
from tests.helpers import (
    BAD_TIME,
    ROOT,
    assert_same_store,
    check_store,
    cli,
    cli_env,
    conversions_frame,
    finish,
    postbacks_frame,
    run_cli,
    start_synced,
    visits_frame,
    write_csv,
)

TZ = "America/New_York"

_HOLD_LOCK = """
import sys, time
from cfanalytics import LogStore
with LogStore(sys.argv[1], create=False).lock():
    print("locked", flush=True)
    time.sleep(120)
"""

_SLOW_CREATE = """
import sys, time
import deltalake
create = deltalake.DeltaTable.create
def slow(*args, **kwargs):
    out = create(*args, **kwargs)
    time.sleep(0.4)
    return out
deltalake.DeltaTable.create = slow
from cfanalytics import LogStore
LogStore(sys.argv[1], timezone=sys.argv[2])
"""


def _exports(folder):
    """Four inputs with distinct rows (two postbacks, visits, conversions with two identical rows), and row counts."""
    pb_a = postbacks_frame(20_000, bad_every=4_000)
    pb_b = postbacks_frame(20_000, start=20_000, bad_every=4_000)
    files = [
        write_csv(pb_a, folder / "postbacks_a.csv"),
        write_csv(pb_b, folder / "postbacks_b.csv"),
        write_csv(visits_frame(5_000), folder / "visits.csv"),
        write_csv(conversions_frame([*range(3_000), 5, 5]), folder / "conversions.csv"),
    ]
    bad = sum(int((f.get_column("Postback Time") == BAD_TIME).sum()) for f in (pb_a, pb_b))
    counts = {"postbacks": 40_000 - bad, "visits": 5_000, "conversions": 3_002, "quarantine": bad}
    return files, counts


def _ingest(store, *files):
    return ["ingest", "--store", str(store), "--timezone", TZ, "--json", *map(str, files)]


def _sequential(store, *files):
    """The expected store: the same files ingested one after another by one process into a fresh store."""
    done = run_cli(*_ingest(store, *files))
    assert done.returncode == 0, done.stderr
    return store


def _all_ok(results):
    for code, _, stderr in results:
        assert code == 0, stderr
    return [json.loads(out) for _, out, _ in results]


def _hold_lock(store):
    """A process holding ``store``'s lock until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(store)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env()
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


# ----------------------------------------------------------- writers at once
@pytest.mark.slow
@pytest.mark.parametrize("writers", [2, 4])
def test_writers_at_once_equal_sequential_ingests(tmp_path, writers):
    files, counts = _exports(tmp_path / "exports")
    files = files[:writers]
    store = tmp_path / "store"
    LogStore(store, timezone=TZ)

    docs = _all_ok(finish(start_synced([_ingest(store, f) for f in files], tmp_path / "barrier1")))

    assert [d["failures"] for d in docs] == [[]] * writers
    assert sorted(b["source"] for d in docs for b in d["batches"]) == sorted(map(str, files))
    rows = check_store(store)
    expected = {"postbacks": counts["postbacks"], "quarantine": counts["quarantine"]}
    if writers == 4:
        expected |= {"visits": counts["visits"], "conversions": counts["conversions"]}
    assert {k: rows[k] for k in expected} == expected
    assert_same_store(store, _sequential(tmp_path / "sequential", *files))


@pytest.mark.slow
def test_two_writers_of_the_same_and_of_overlapping_files(tmp_path):
    exports = tmp_path / "exports"
    same = write_csv(postbacks_frame(30_000, bad_every=3_000), exports / "same.csv")
    first = [
        write_csv(postbacks_frame(30_000, bad_every=3_000), exports / "pb_first.csv"),
        write_csv(conversions_frame([*range(2_000), 5, 5]), exports / "conv_first.csv"),
    ]
    second = [
        write_csv(postbacks_frame(30_000, start=15_000, bad_every=3_000), exports / "pb_second.csv"),
        write_csv(conversions_frame([*range(1_000, 3_000), 5, 5]), exports / "conv_second.csv"),
    ]

    # the same file twice at once: stored once, the other writer finds every row already stored
    store = tmp_path / "same"
    LogStore(store, timezone=TZ)
    docs = _all_ok(finish(start_synced([_ingest(store, same), _ingest(store, same)], tmp_path / "barrier2")))
    batches = [b for d in docs for b in d["batches"]]
    assert sum(b["rows_stored"] for b in batches) == 30_000 - 10
    assert sum(b["already_stored"] for b in batches) == 30_000 - 10
    assert check_store(store)["postbacks"] == 30_000 - 10
    assert_same_store(store, _sequential(tmp_path / "same_sequential", same))

    # overlapping exports at once (postbacks 15,000–29,999 in both; conversions 1,000–1,999 and the two repeats)
    store = tmp_path / "overlap"
    docs = _all_ok(finish(start_synced([_ingest(store, *first), _ingest(store, *second)], tmp_path / "barrier3")))
    rows = check_store(store)
    assert rows["postbacks"] == 45_000 - 15
    assert rows["conversions"] == 3_000 + 2  # id 5: in the first range, and twice more in each file (ordinals 1, 2)
    assert_same_store(store, _sequential(tmp_path / "overlap_sequential", *first, *second))


@pytest.mark.slow
def test_fresh_store_created_by_two_writers_at_once(tmp_path):
    files, counts = _exports(tmp_path / "exports")
    store = tmp_path / "store"

    _all_ok(finish(start_synced([_ingest(store, files[0]), _ingest(store, files[2])], tmp_path / "barrier4")))

    meta = json.loads((store / "cfanalytics.json").read_text())
    assert meta["timezone"] == TZ
    opened = LogStore(store, create=False)
    assert opened.timezone == TZ
    assert sorted(p.name for p in store.iterdir() if p.name.endswith(".tmp")) == []
    rows = check_store(store)
    assert rows["visits"] == counts["visits"]
    assert_same_store(store, _sequential(tmp_path / "sequential", files[0], files[2]))


def test_a_store_being_created_is_waited_for(tmp_path):
    store = tmp_path / "store"
    creator = subprocess.Popen([sys.executable, "-c", _SLOW_CREATE, str(store), "UTC"], cwd=ROOT, env=cli_env())
    try:
        deadline = time.monotonic() + 60
        while not (store / "tables").exists() and creator.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not (store / "cfanalytics.json").exists()
        opened = LogStore(store, timezone="UTC", lock_timeout=60)
    finally:
        creator.wait(timeout=60)
    assert creator.returncode == 0
    assert opened.timezone == "UTC"
    assert set(check_store(store).values()) == {0}


def test_a_store_whose_creation_was_killed_is_completed(tmp_path):
    store = tmp_path / "store"
    creator = subprocess.Popen([sys.executable, "-c", _SLOW_CREATE, str(store), "UTC"], cwd=ROOT, env=cli_env())
    deadline = time.monotonic() + 60
    while not (store / "tables").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    _kill(creator)
    assert not (store / "cfanalytics.json").exists()

    opened = LogStore(store, timezone="UTC", lock_timeout=10)
    visits = write_csv(visits_frame(10), tmp_path / "visits.csv")
    assert opened.ingest([visits]).ok
    assert check_store(store)["visits"] == 10


# --------------------------------------------------------------------- lock
def test_ingest_gives_up_while_another_process_holds_the_lock(tmp_path):
    store_path = tmp_path / "store"
    LogStore(store_path, timezone=TZ)
    visits = write_csv(visits_frame(50), tmp_path / "visits.csv")
    holder = _hold_lock(store_path)
    try:
        store = LogStore(store_path, lock_timeout=0.5)
        began = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy"):
            store.ingest([visits])
        assert 0.5 <= time.monotonic() - began < 30

        done = run_cli(*_ingest(store_path, visits), CFANALYTICS_LOCK_TIMEOUT="0.5", timeout=60)
        assert done.returncode == 4
        assert "busy" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert holder.poll() is None
    finally:
        _kill(holder)
    assert check_store(store_path)["visits"] == 0
    assert LogStore(store_path, lock_timeout=5).ingest([visits]).ok
    assert check_store(store_path)["visits"] == 50


def test_a_killed_lock_holder_does_not_keep_the_store_locked(tmp_path):
    store_path = tmp_path / "store"
    LogStore(store_path, timezone=TZ)
    holder = _hold_lock(store_path)
    _kill(holder)

    visits = write_csv(visits_frame(50), tmp_path / "visits.csv")
    began = time.monotonic()
    result = LogStore(store_path, lock_timeout=2).ingest([visits])
    assert result.ok
    assert time.monotonic() - began < 30
    assert check_store(store_path)["visits"] == 50


def test_a_writer_killed_while_committing_does_not_keep_the_store_locked(tmp_path):
    store_path = tmp_path / "store"
    LogStore(store_path, timezone=TZ)
    frame = postbacks_frame(100_000)
    big = write_csv(frame, tmp_path / "postbacks.csv")

    writer = subprocess.Popen(cli(*_ingest(store_path, big)), stdout=subprocess.DEVNULL, env=cli_env())
    fd = os.open(store_path / ".lock", os.O_RDWR)
    try:
        while writer.poll() is None:  # until the writer takes the store lock (to commit)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            fcntl.flock(fd, fcntl.LOCK_UN)
            time.sleep(0.002)
    finally:
        os.close(fd)
    assert writer.poll() is None, "the writer ended before it took the lock"
    _kill(writer)

    result = LogStore(store_path, lock_timeout=5).ingest([big])
    assert result.ok
    assert check_store(store_path)["postbacks"] == frame.height
