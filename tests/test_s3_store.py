"""The store on S3-compatible object storage (a SeaweedFS the tests start): same answers as a local store,
concurrent writers, the writer lease, a killed writer, and one-line errors without secrets."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import subprocess
import threading
import time

import polars as pl
import pytest

from cfanalytics import LogStore
from cfanalytics.lease import Lease, LeaseLostError
from cfanalytics.storage import location
from tests.helpers import (
    BAD_TIME,
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


def _diagnose_json(store: str, **env: str) -> dict:
    out = run_cli("diagnose", "--store", store, "--json", **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sample_account_diagnoses_the_same_on_s3_as_on_a_local_store(sample, s3_env, s3_uri):
    files = [str(p) for role, p in sorted(sample.account.files.items()) if role != "network_export"]
    ingest = run_cli("ingest", "--store", s3_uri, "--timezone", sample.account.truth["timezone"], "--json", *files)
    assert ingest.returncode == 0, ingest.stderr
    local = _diagnose_json(str(sample.folder / "store"))
    remote = _diagnose_json(s3_uri)
    assert remote == local
    assert remote["incidents"], "the sample account holds incidents"
    # the same rows, checked table by table (a second way: the rows themselves, not the diagnostics)
    for table in ("visits", "clicks", "conversions", "postbacks", "activity", "quarantine"):
        got, want = content(s3_uri, table), content(sample.folder / "store", table)
        assert got.height == want.height, table
        assert got.get_column("_row_id").to_list() == want.get_column("_row_id").to_list(), table
    # every command reads it: report, maintain, forget (of a batch it holds), and the ledger on S3
    report = run_cli("report", "--store", s3_uri, "--out", str(sample.folder.parent / "s3-report.html"))
    assert report.returncode == 0, report.stderr
    assert run_cli("maintain", "--store", s3_uri).returncode == 0
    assert content(s3_uri, "postbacks").get_column("_row_id").to_list() == want_ids(sample, "postbacks")
    assert not (sample.folder / "store" / ".lease").exists()


def want_ids(sample, table: str) -> list[str]:
    return content(sample.folder / "store", table).get_column("_row_id").to_list()


# ------------------------------------------------------------------ four concurrent writers
def _exports(folder):
    """Four inputs whose postbacks overlap (rows 0–8999, each shared by two inputs), with some bad times."""
    inputs = []
    for i in range(4):
        pb = write_csv(postbacks_frame(3_000, start=i * 2_000, bad_every=997), folder / f"pb{i}.csv")
        vi = write_csv(visits_frame(500, start=i * 400), folder / f"v{i}.csv")
        inputs.append([str(pb), str(vi)])
    inputs[3].append(str(write_csv(conversions_frame([1, 2, 3]), folder / "c.csv")))
    return inputs


def _ingest_worker(uri: str, options: dict[str, str], files: list[str], barrier, results) -> None:
    """One writer (a process started with ``spawn``): wait for the others, then ingest ``files``."""
    store = LogStore(uri, timezone=TZ, storage_options=options)
    barrier.wait(120)
    result = store.ingest(files)
    results.put([(b.rows_read, b.rows_stored, b.already_stored, b.quarantined) for b in result.batches])


def test_four_concurrent_ingests_equal_a_sequential_one(tmp_path, s3, s3_uri):
    inputs = _exports(tmp_path / "exports")
    LogStore(s3_uri, timezone=TZ, storage_options=s3.options)  # created once, before the writers race
    ctx = multiprocessing.get_context("spawn")  # delta-rs's runtime does not survive a fork
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_ingest_worker, args=(s3_uri, s3.options, files, barrier, results)) for files in inputs]
    for p in procs:
        p.start()
    batches = [b for _ in procs for b in results.get(timeout=600)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for read, stored, already, quarantined in batches:
        assert read == stored + already + quarantined

    sequential = LogStore(tmp_path / "sequential", timezone=TZ)
    for files in inputs:
        sequential.ingest(files)
    remote = LogStore(s3_uri, create=False, storage_options=s3.options)
    # by hand: postbacks 0–8999 once each, minus every 997th (a bad time), which is quarantined once per
    # input that carries it (a quarantined record is kept with its source)
    bad = sum(1 for i in range(9_000) if i % 997 == 996)
    quarantined = sum(1 for k in range(4) for i in range(k * 2_000, k * 2_000 + 3_000) if i % 997 == 996)
    assert remote.counts() == sequential.counts()
    assert remote.counts()["postbacks"] == 9_000 - bad
    assert remote.counts()["visits"] == 1_700
    assert remote.counts()["quarantine"] == quarantined == 12
    for table in ("visits", "postbacks", "conversions", "quarantine"):
        got = set(remote.scan(table).select("_row_id").collect().to_series().to_list())
        want = set(sequential.scan(table).select("_row_id").collect().to_series().to_list())
        assert got == want, table
    assert sum(b[1] for b in batches) == sum(remote.counts()[t] for t in ("visits", "postbacks", "conversions"))


# ------------------------------------------------------------------ the lease
def test_lease_is_exclusive_and_taken_over_once_expired(s3, s3_uri):
    where = location(s3_uri, s3.options)
    winners = []

    def race(lease: Lease) -> None:
        if lease.try_acquire():
            winners.append(lease.owner)

    leases = [Lease(where, seconds=30) for _ in range(8)]
    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1  # one conditional create wins, seven lose
    assert Lease.read(where)["owner"] == winners[0]
    for lease in leases:
        lease.release()  # the winner frees it; the others hold nothing to free
    assert Lease.read(where)["owner"] is None

    crashed = Lease(where, seconds=8)
    assert crashed.try_acquire()  # then "crashes": it never renews nor releases
    # a live lease is not taken...
    other = Lease(where, seconds=6)
    assert not other.try_acquire()
    # ...an expired one is
    began = time.monotonic()
    other.acquire(timeout=60)
    assert time.monotonic() - began > 1
    assert Lease.read(where)["owner"] == other.owner
    with pytest.raises(LeaseLostError):
        crashed.renew()
    crashed.release()  # a writer whose lease was taken over frees nothing
    assert Lease.read(where)["owner"] == other.owner
    time.sleep(7)  # longer than the lease: the renewing thread keeps it
    assert Lease.read(where)["owner"] == other.owner
    assert not Lease(where, seconds=3).try_acquire()
    other.release()
    assert Lease.read(where)["owner"] is None


def test_a_store_lock_held_by_a_dead_writer_is_taken_over(s3, s3_uri, monkeypatch):
    monkeypatch.setenv("CFANALYTICS_LEASE_SECONDS", "2")
    store = LogStore(s3_uri, timezone="UTC", storage_options=s3.options)
    dead = Lease(store.location)
    assert dead.try_acquire()  # and never renewed nor released: its process is gone
    store.set_column_map({"Click": "click_id"})  # waits for the expiry, then takes the lease
    assert LogStore(s3_uri, create=False, storage_options=s3.options).column_map == {"click": "click_id"}
    assert Lease.read(store.location)["owner"] is None


def test_metadata_writes_are_conditional(s3, s3_uri):
    store = LogStore(s3_uri, timezone="UTC", storage_options=s3.options)
    other = LogStore(s3_uri, create=False, storage_options=s3.options)
    store.set_privacy(mask_ips=False)
    other.set_column_map({"Click": "click_id"})  # read again under the lease: keeps the other change
    fresh = LogStore(s3_uri, create=False, storage_options=s3.options)
    assert (fresh.mask_ips, fresh.column_map) == (False, {"click": "click_id"})
    stale = fresh._meta_tag
    store.set_privacy(mask_ips=True)
    from cfanalytics.storage import PreconditionFailedError

    with pytest.raises(PreconditionFailedError):
        fresh.location.write("cfanalytics.json", b"{}", if_match=stale)


# ------------------------------------------------------------------ a killed writer
def _objects(s3, uri: str, prefix: str) -> set[str]:
    return set(location(uri, s3.options).names(prefix))


def test_a_writer_killed_mid_commit_leaves_a_readable_store(tmp_path, s3_env, s3_uri):
    exports = tmp_path / "exports"
    postbacks = postbacks_frame(300_000, bad_every=50_001)
    files = [
        str(write_csv(visits_frame(3), exports / "visits.csv")),
        str(write_csv(postbacks, exports / "postbacks.csv")),
        str(write_csv(conversions_frame([1, 1]), exports / "conversions.csv")),
    ]
    bad = int((postbacks.get_column("Postback Time") == BAD_TIME).sum())
    env = {"CFANALYTICS_LEASE_SECONDS": "3"}
    args = ["ingest", "--store", s3_uri, "--timezone", TZ, "--json", *files]
    assert run_cli("ingest", "--store", s3_uri, "--timezone", TZ, files[0], **env).returncode == 0
    before = _objects(s3_env, s3_uri, "tables/postbacks/")
    proc = subprocess.Popen(
        cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(**env)
    )
    while proc.poll() is None:  # the postbacks' data files are going up: their commit is next
        if any(n.endswith(".parquet") for n in _objects(s3_env, s3_uri, "tables/postbacks/") - before):
            time.sleep(random.uniform(0, 0.3))
            break
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), stderr

    rows = check_store(s3_uri)  # opens and reads; whole batches only; no _row_id twice
    assert rows["postbacks"] in (0, postbacks.height - bad)
    again = run_cli(*args, **env)  # takes the dead writer's lease over once it expired
    assert again.returncode == 0, again.stderr
    rows = check_store(s3_uri)
    assert rows == {"visits": 3, "clicks": 0, "conversions": 2, "postbacks": postbacks.height - bad, "activity": 0,
                    "quarantine": bad}  # fmt: skip


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("fault", ["endpoint", "secret", "bucket", "plain-http"])
def test_a_wrong_endpoint_key_or_bucket_is_one_line_without_secrets(s3, fault):
    env = dict(s3.options)
    uri = f"s3://{s3.bucket}/errors"
    wrong_secret = "wrong-secret-Zq9xP2"
    if fault == "endpoint":
        import socket

        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        expected = "cannot reach the object store"
    elif fault == "secret":
        env["AWS_SECRET_ACCESS_KEY"] = wrong_secret
        expected = "refused the secret key"
    elif fault == "bucket":
        uri = "s3://no-such-bucket-here/store"
        expected = "no such bucket"
    else:
        del env["AWS_ALLOW_HTTP"]
        expected = "set AWS_ALLOW_HTTP=true"
    for command in (["diagnose", "--store", uri], ["ingest", "--store", uri, "--timezone", "UTC", __file__]):
        out = run_cli(*command, **env)
        assert out.returncode != 0
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert expected in lines[0], lines[0]
        assert "Traceback" not in out.stderr
        for secret in (s3.options["AWS_SECRET_ACCESS_KEY"], wrong_secret):
            assert secret not in out.stderr + out.stdout


def test_messages_name_the_store_by_its_uri(s3, s3_uri):
    store = LogStore(s3_uri, timezone="UTC", storage_options=s3.options)
    assert repr(store) == f"LogStore({s3_uri!r}, timezone='UTC')"
    assert s3.options["AWS_SECRET_ACCESS_KEY"] not in repr(store) + store.uri
    frame = pl.DataFrame({"Click ID": ["c1"], "Visit Time": ["2024-05-01 00:00:00"], "Campaign ID": ["camp-1"]})
    result = store.ingest_frame(frame, kind="visits")
    assert result.ok
    assert store.counts()["visits"] == 1


def test_a_writer_whose_lease_was_taken_over_commits_nothing(s3, s3_uri, monkeypatch):
    monkeypatch.setenv("CFANALYTICS_LEASE_SECONDS", "2")
    store = LogStore(s3_uri, timezone="UTC", storage_options=s3.options)
    frame = pl.DataFrame({"Click ID": ["c1"], "Visit Time": ["2024-05-01 00:00:00"], "Campaign ID": ["camp-1"]})
    with store.lock():
        held = store._lease
        assert held is not None
        held._stop.set()  # the writer stalls: no renewal (as a process paused for longer than its lease)
        held._thread.join()
        time.sleep(2.5)
        usurper = Lease(store.location)
        assert usurper.try_acquire()  # the lease expired: another writer takes it
        with pytest.raises(LeaseLostError):
            store.confirm_writer()
    usurper.release()
    assert store.ingest_frame(frame, kind="visits").ok  # a fresh lease: fine again
    assert store.counts()["visits"] == 1


# ------------------------------------------------------------------ the server keeps racing Delta commits
def _racing_appender(uri: str, options: dict[str, str], me: int, rounds: int, barrier) -> None:
    """Append one 10-row batch per round, all writers at once (a commit conflict every round)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    for r in range(rounds):
        DeltaTable(uri, storage_options=options)  # every writer starts from the same version...
        barrier.wait(120)
        rows = pa.table({"writer": [me] * 10, "round": [r] * 10, "n": list(range(10))})
        write_deltalake(uri, rows, mode="append", storage_options=options)  # ...and commits the next one


def test_the_server_keeps_every_acknowledged_commit_of_racing_writers(s3, s3_uri):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    uri = f"{s3_uri}/race"
    schema = pa.schema([("writer", pa.int64()), ("round", pa.int64()), ("n", pa.int64())])
    write_deltalake(uri, schema.empty_table(), storage_options=s3.options)
    ctx = multiprocessing.get_context("spawn")
    barrier, rounds = ctx.Barrier(2), 5
    procs = [ctx.Process(target=_racing_appender, args=(uri, s3.options, me, rounds, barrier)) for me in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
        assert p.exitcode == 0
    table = DeltaTable(uri, storage_options=s3.options)
    assert table.version() == 2 * rounds  # every commit made a version: none overwrote another
    got = pl.from_arrow(table.to_pyarrow_table()).group_by("writer", "round").len().sort("writer", "round")
    assert got.get_column("len").to_list() == [10] * (2 * rounds)
