"""A killed ingest leaves whole batches; re-running it completes the store (docs/contract.md §3, §4 Atomicity)."""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import signal
import subprocess
import time

import pytest

from tests.helpers import (
    BAD_TIME,
    assert_same_store,
    check_store,
    cli,
    cli_env,
    content,
    conversions_frame,
    postbacks_frame,
    run_cli,
    visits_frame,
    write_csv,
)

TZ = "America/New_York"
SPREAD_KILLS = 7  # at random moments spread over the reading and preparing part of an ingest
WRITE_KILLS = 1  # at a random moment just after a run writes its first file into the store (data in flight)
COMMIT_KILLS = 2  # at a random moment just after a run's first Delta commit (other commits still to come)


def _inputs(folder):
    """A small visits export, a big postbacks export (with a few quarantined rows), two identical conversions."""
    postbacks = postbacks_frame(1_000_020, bad_every=50_001)
    files = [
        write_csv(visits_frame(3), folder / "visits.csv"),
        write_csv(postbacks, folder / "postbacks.csv"),
        write_csv(conversions_frame([1, 1]), folder / "conversions.csv"),
    ]
    bad = int((postbacks.get_column("Postback Time") == BAD_TIME).sum())
    return files, {"postbacks": postbacks.height - bad, "visits": 3, "conversions": 2, "quarantine": bad}


def _store_files(store, pattern):
    tables = store / "tables"
    return set(tables.glob(pattern)) if tables.exists() else set()


def _kill(argv, store, *, after=None, anchor="*/*/*", then=0.0):
    """Run ``cfanalytics ARGV`` and SIGKILL it (unless it ended first): ``after`` seconds from its start,
    else ``then`` seconds after a new file matching ``anchor`` appears under the store's tables. Its exit code."""
    before = _store_files(store, anchor)
    proc = subprocess.Popen(cli(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env())
    if after is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=after)
    else:
        while proc.poll() is None:
            if _store_files(store, anchor) - before:
                time.sleep(then)
                break
            time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return proc.returncode


@pytest.mark.slow
def test_sigkill_at_random_moments_keeps_whole_batches_and_a_rerun_completes(tmp_path):
    files, expected = _inputs(tmp_path / "exports")
    assert expected["quarantine"] == 20

    def args(store):
        return ["ingest", "--store", str(store), "--timezone", TZ, "--json", *map(str, files)]

    # one clean ingest into a fresh store: the reference content, and how long an ingest takes
    reference = tmp_path / "reference"
    began = time.monotonic()
    done = run_cli(*args(reference))
    duration = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    rows = check_store(reference)
    assert {k: rows[k] for k in expected} == expected
    assert rows["clicks"] == rows["activity"] == 0
    assert content(reference, "postbacks").get_column("date").n_unique() >= 3

    # the same store killed again and again, as a cron job re-run after each crash would find it
    rng = random.Random(20_240_501)
    lo, step = 0.05 * duration, 0.65 * duration / SPREAD_KILLS
    kills = [{"after": lo + (i + rng.random()) * step} for i in range(SPREAD_KILLS)]
    kills += [{"anchor": "*/*/*", "then": rng.uniform(0.0, 0.3)} for _ in range(WRITE_KILLS)]
    kills += [{"anchor": "*/_delta_log/*.json", "then": rng.uniform(0.0, 0.15)} for _ in range(COMMIT_KILLS)]
    store = tmp_path / "store"
    outcomes = []
    for kill in kills:
        outcomes.append(_kill(args(store), store, **kill))
        if (store / "cfanalytics.json").exists():
            check_store(store)
    assert outcomes.count(-signal.SIGKILL) >= len(kills) // 2, outcomes

    # re-running completes the store with nothing twice: the same content as one clean ingest
    done = run_cli(*args(store))
    assert done.returncode == 0, done.stderr
    rows = check_store(store)
    assert {k: rows[k] for k in expected} == expected
    assert_same_store(store, reference)
    batches = json.loads(done.stdout)["batches"]
    assert sum(b["rows_read"] for b in batches) == sum(expected.values())


def test_truncated_gzip_writes_nothing(tmp_path):
    from cfanalytics import LogStore

    store = LogStore(tmp_path / "store", timezone="UTC")
    good = write_csv(postbacks_frame(500, bad_every=100), tmp_path / "good.csv")
    first = store.ingest([good])
    assert first.ok
    before = store.counts()
    versions = {k: store.table(k).version() for k in before}
    assert before["postbacks"] == 495
    assert before["quarantine"] == 5

    whole = gzip.compress(postbacks_frame(20_000, start=1_000).write_csv().encode())
    broken = tmp_path / "postbacks.csv.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    result = store.ingest([broken])

    assert result.batches == []
    assert len(result.failures) == 1
    assert str(broken) in result.failures[0]
    assert "\n" not in result.failures[0]
    assert store.counts() == before
    assert {k: store.table(k).version() for k in before} == versions


def test_truncated_gzip_among_good_files_fails_alone(tmp_path):
    from cfanalytics import LogStore

    whole = gzip.compress(postbacks_frame(20_000).write_csv().encode())
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    visits = write_csv(visits_frame(40), tmp_path / "visits.csv")
    conversions = write_csv(conversions_frame([3, 3, 4]), tmp_path / "conversions.csv")

    done = run_cli("ingest", "--store", str(tmp_path / "store"), "--timezone", "UTC", "--json",
                   str(visits), str(broken), str(conversions))  # fmt: skip
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert sorted(b["source"] for b in doc["batches"]) == sorted([str(visits), str(conversions)])
    assert len(doc["failures"]) == 1
    assert str(broken) in doc["failures"][0]
    store = LogStore(tmp_path / "store", create=False)
    counts = store.counts()
    assert counts["visits"] == 40
    assert counts["conversions"] == 3
    assert counts["postbacks"] == 0
    assert counts["quarantine"] == 0
    assert store.batches().filter(store.batches()["source"] == str(broken)).height == 0
