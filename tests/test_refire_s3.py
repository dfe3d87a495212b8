"""refire on a store on S3 (a SeaweedFS the tests start): the journal under the prefix, a lease as the lock."""

from __future__ import annotations

import json
import time

import pytest

import cfanalytics as cf
from cfanalytics.cli import main
from cfanalytics.exceptions import StoreBusyError
from cfanalytics.lease import Lease
from cfanalytics.refire import LEASE_FILE, LEDGER_FILE, ObjectJournal, journal, read_ledger, refire, run_refire
from tests.test_refire import SECRET, _file, _Server


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def store(s3_env, s3_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("CFANALYTICS_WORK_DIR", str(tmp_path / "work"))
    return cf.LogStore(s3_uri, timezone="UTC")


def _nothing_local(store: cf.LogStore) -> None:
    assert not store.path.exists() or not any(store.path.iterdir())


def _records(store: cf.LogStore) -> list[dict]:
    found = store.read_document(LEDGER_FILE)
    assert found is not None
    return [json.loads(line) for line in found[0].decode().splitlines()]


def test_send_journals_under_the_prefix_and_never_resends_accepted(server, store, tmp_path, capsys):
    f = _file(
        tmp_path, [("ok", server.url("/ok", 1)), ("gone", server.url("/gone", 2)), ("down", server.url("/down", 3))]
    )
    assert isinstance(journal(store), ObjectJournal)
    result = refire(store, f, send=True, rate=50, timeout=2, retries=1, backoff=0.01)
    assert (result.accepted, result.rejected, result.failed) == (1, 1, 1)
    # the journal is a document under the prefix: each request's 'sending' line before its answer
    records = _records(store)
    assert [(r["key"], r["event"]) for r in records] == [
        ("ok", "sending"), ("ok", "answer"),
        ("gone", "sending"), ("gone", "answer"),
        ("down", "sending"), ("down", "answer"), ("down", "sending"), ("down", "answer"),
    ]  # fmt: skip
    assert {k: e["state"] for k, e in read_ledger(store).items()} == {
        "ok": "accepted",
        "gone": "rejected",
        "down": "failed",
    }
    assert read_ledger(store.uri) == read_ledger(store)
    data = store.read_document(LEDGER_FILE)[0]
    assert SECRET.encode() not in data
    assert b"token=***" in data
    # a second run (the command, on the URI) sends nothing accepted again, tries the others again
    assert run_refire(store.uri, str(f), rate=50, timeout=2, retries=0, send=True) == 1
    out = capsys.readouterr().out
    assert "skip (accepted" in out
    assert SECRET not in out
    assert {p: len(t) for p, t in server.hits.items()} == {"/ok": 1, "/gone": 2, "/down": 3}
    assert len(read_ledger(store)["down"]["attempts"]) == 3
    assert SECRET.encode() not in store.read_document(LEDGER_FILE)[0]
    # the lease is free again, and nothing was written in the local working folder
    assert Lease.read(store.location, LEASE_FILE)["owner"] is None
    _nothing_local(store)


def test_a_postback_cut_off_mid_request_is_unknown_and_never_sent_again(server, store, tmp_path):
    f = _file(tmp_path, [("cut", server.url("/ok", 1)), ("fresh", server.url("/ok", 2))])
    # a run killed after announcing the request: the platform may have accepted it
    cut = {"key": "cut", "url": "http://127.0.0.1/ok?token=***", "event": "sending", "at": "2026-11-20T05:00:00Z"}
    store.write_document(LEDGER_FILE, (json.dumps(cut) + "\n").encode(), if_absent=True)
    assert read_ledger(store)["cut"]["state"] == "unknown"
    result = refire(store, f, send=True, rate=50, timeout=2)
    assert (result.unknown, result.accepted) == (1, 1)
    assert len(server.hits["/ok"]) == 1
    assert any(line.startswith("skip (outcome unknown") for line in result.lines)
    assert read_ledger(store)["cut"]["state"] == "unknown"
    assert _records(store)[0] == cut  # the earlier lines are kept
    _nothing_local(store)


def test_a_second_refire_on_the_same_store_is_refused_until_the_lease_is_free(server, store, tmp_path, capsys):
    f = _file(tmp_path, [("ok", server.url("/ok", 1))])
    with Lease(store.location, name=LEASE_FILE, seconds=30).held(timeout=1):  # a refire on another machine
        with pytest.raises(StoreBusyError, match="another refire is running"):
            refire(store, f, send=True, rate=50, timeout=2)
        assert main(["refire", "--store", store.uri, str(f), "--send"]) == StoreBusyError.exit_code
        err = capsys.readouterr().err
        assert "another refire is running" in err
        assert len(err.strip().splitlines()) == 1
    assert dict(server.hits) == {}
    assert store.read_document(LEDGER_FILE) is None
    # a crashed refire's lease expires: the next run takes it over
    dead = {"owner": "elsewhere:1:dead", "expires": time.time() - 1, "seconds": 30}
    tag = store.read_document(LEASE_FILE)[1]
    store.write_document(LEASE_FILE, json.dumps(dead).encode(), if_match=tag)
    assert refire(store, f, send=True, rate=50, timeout=2).accepted == 1
    assert len(server.hits["/ok"]) == 1
    _nothing_local(store)


def test_an_append_that_conflicts_reads_again_and_loses_no_line(store):
    first, other = journal(store), journal(store)
    first.append({"key": "a", "event": "sending", "at": "t1"})
    other.append({"key": "b", "event": "sending", "at": "t2"})  # written meanwhile: first's tag is stale
    first.append({"key": "a", "event": "answer", "state": "accepted", "status": 200, "error": None, "seconds": 0.1})
    assert [(r["key"], r["event"]) for r in _records(store)] == [("a", "sending"), ("b", "sending"), ("a", "answer")]
    assert {k: e["state"] for k, e in read_ledger(store).items()} == {"a": "accepted", "b": "unknown"}


def test_a_run_whose_lease_was_taken_over_stops_before_its_next_request(server, store, tmp_path):
    from cfanalytics.lease import LeaseLostError

    f = _file(tmp_path, [("one", server.url("/ok", 1)), ("two", server.url("/ok", 2))])

    def take_over(line: str) -> None:  # after the first answer, another run takes the (expired) lease over
        found = store.read_document(LEASE_FILE)
        doc = {"owner": "elsewhere:1:new", "expires": time.time() + 30, "seconds": 30}
        store.write_document(LEASE_FILE, json.dumps(doc).encode(), if_match=found[1])

    with pytest.raises(LeaseLostError):
        refire(store, f, send=True, rate=50, timeout=2, echo=take_over)
    assert len(server.hits["/ok"]) == 1
    assert {k: e["state"] for k, e in read_ledger(store).items()} == {"one": "accepted"}
