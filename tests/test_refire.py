"""refire against a loopback HTTP server that answers 200, 4xx, 5xx and hangs."""

from __future__ import annotations

import itertools
import json
import stat
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import cfanalytics as cf
from cfanalytics.exceptions import InputError
from cfanalytics.refire import LEDGER_FILE, read_ledger, refire, run_refire

SECRET = "SUPERSECRETTOKEN42"
HANG_SECONDS = 1.5  # the server holds a hanging request this long at most, then closes it


class _Server:
    """A loopback server on 127.0.0.1: ``/ok`` 200, ``/gone`` 404, ``/down`` 503, ``/hang`` no answer."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.queries: list[str] = []
        hits, queries = self.hits, self.queries

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                hits[path].append(time.monotonic())
                queries.append(query)
                if path == "/hang":
                    time.sleep(HANG_SECONDS)
                    return
                code = {"/ok": 200, "/gone": 404, "/down": 503, "/busy": 429}.get(path, 400)
                self.send_response(code)
                if path == "/busy":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, n: int) -> str:
        return f"{self.base}{path}?cid=v{n}&payout=1.50&token={SECRET}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def store(tmp_path):
    return cf.LogStore(tmp_path / "store", timezone="UTC")


def _file(tmp_path: Path, urls: list[tuple[str, str]]) -> Path:
    path = tmp_path / "s2s_postbacks.jsonl"
    path.write_text("".join(json.dumps({"key": k, "url": u}) + "\n" for k, u in urls))
    return path


def test_dry_run_sends_nothing_and_prints_redacted(server, store, tmp_path, capsys):
    f = _file(tmp_path, [("k1", server.url("/ok", 1)), ("k2", server.url("/down", 2))])
    assert run_refire(str(store.path), str(f)) == 0
    out = capsys.readouterr().out
    assert out.count("would send: GET ") == 2
    assert SECRET not in out
    assert "token=***" in out
    assert dict(server.hits) == {}
    assert not (store.path / LEDGER_FILE).exists()


def test_send_records_answers_retries_with_backoff_and_never_resends_accepted(server, store, tmp_path, capsys):
    f = _file(
        tmp_path,
        [
            ("ok", server.url("/ok", 1)),
            ("gone", server.url("/gone", 2)),
            ("down", server.url("/down", 3)),
            ("hang", server.url("/hang", 4)),
        ],
    )
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    lines: list[str] = []
    started = time.monotonic()
    result = refire(store, f, send=True, rate=50, timeout=0.3, retries=2, backoff=0.04, echo=lines.append, sleep=sleep)
    assert time.monotonic() - started < 10
    assert (result.accepted, result.rejected, result.failed, result.skipped) == (1, 1, 2, 0)
    # 200 once; 404 not retried; 503 and the hang: 1 + 2 retries each
    assert {p: len(t) for p, t in server.hits.items()} == {"/ok": 1, "/gone": 1, "/down": 3, "/hang": 3}
    assert result.attempts == 8
    # back-off between the 503's attempts: 0.04 then 0.08 s, the second half of each random
    backoffs = [s for s in sleeps if s >= 0.02]
    assert 0.02 <= backoffs[0] <= 0.04
    assert 0.04 <= backoffs[1] <= 0.08
    gaps = [b - a for a, b in zip(server.hits["/down"], server.hits["/down"][1:], strict=False)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.04
    ledger = read_ledger(store.path)
    assert {k: e["state"] for k, e in ledger.items()} == {
        "ok": "accepted",
        "gone": "rejected",
        "down": "failed",
        "hang": "failed",
    }
    assert [a["status"] for a in ledger["ok"]["attempts"]] == [200]
    assert [a["status"] for a in ledger["gone"]["attempts"]] == [404]
    assert [a["status"] for a in ledger["down"]["attempts"]] == [503, 503, 503]
    assert all(a["status"] is None and "timed out" in a["error"] for a in ledger["hang"]["attempts"])
    # a second run never fires the accepted postback again; the others are tried again
    again = refire(store, f, send=True, rate=50, timeout=0.3, retries=0, backoff=0.01)
    assert again.skipped == 1
    assert len(server.hits["/ok"]) == 1
    assert len(server.hits["/down"]) == 4
    assert len(read_ledger(store.path)["down"]["attempts"]) == 4
    assert stat.S_IMODE((store.path / LEDGER_FILE).stat().st_mode) == 0o600
    # no secret anywhere
    for text in ("\n".join(lines), "\n".join(again.lines), (store.path / LEDGER_FILE).read_text()):
        assert SECRET not in text
    assert "token=***" in lines[0]


def test_retry_after_is_honoured(server, store, tmp_path):
    f = _file(tmp_path, [("busy", server.url("/busy", 1))])
    result = refire(store, f, send=True, rate=50, timeout=2, retries=1, backoff=0.01)
    assert result.failed == 1
    t = server.hits["/busy"]
    assert len(t) == 2
    assert t[1] - t[0] >= 0.95  # Retry-After: 1, not the 0.01 s back-off


def test_rate_limit_spaces_requests(server, store, tmp_path):
    f = _file(tmp_path, [(f"k{n}", server.url("/ok", n)) for n in range(3)])
    result = refire(store, f, send=True, rate=5, timeout=2)
    assert result.accepted == 3
    t = server.hits["/ok"]
    # 1 / 5 s apart when sent; arrival times jitter with the machine's load, so the bounds leave slack (an
    # unlimited sender's requests arrive about a millisecond apart)
    assert min(b - a for a, b in itertools.pairwise(t)) >= 0.1
    assert t[-1] - t[0] >= 0.3


def test_cli_json_exit_code_and_redaction(server, store, tmp_path):
    from tests.helpers import run_cli

    f = _file(tmp_path, [("ok", server.url("/ok", 1)), ("gone", server.url("/gone", 2))])
    done = run_cli("refire", "--store", str(store.path), str(f), "--send", "--rate", "20", "--json")
    assert done.returncode == 1, done.stderr  # one postback rejected
    doc = json.loads(done.stdout)
    assert (doc["accepted"], doc["rejected"]) == (1, 1)
    assert SECRET not in done.stdout + done.stderr
    dry = run_cli("refire", "--store", str(store.path), str(f))
    assert dry.returncode == 0
    assert "skip (accepted" in dry.stdout
    assert "would send" in dry.stdout
    assert SECRET not in dry.stdout


def test_a_postback_cut_off_mid_request_is_never_sent_again(server, store, tmp_path):
    f = _file(tmp_path, [("cut", server.url("/ok", 1)), ("fresh", server.url("/ok", 2))])
    # a run killed after announcing the request: the platform may have accepted it; and a torn last line
    (store.path / LEDGER_FILE).write_text(
        json.dumps({"key": "cut", "url": "https://…", "event": "sending", "at": "2026-11-20T05:00:00Z"})
        + '\n{"key": "fresh", "event": "send'
    )
    result = refire(store, f, send=True, rate=50, timeout=1)
    assert (result.unknown, result.accepted) == (1, 1)
    assert len(server.hits["/ok"]) == 1
    assert read_ledger(store.path)["cut"]["state"] == "unknown"
    assert any(line.startswith("skip (outcome unknown") for line in result.lines)


def test_recover_then_refire_fires_the_real_url_with_the_macro_filled(server, store, tmp_path):
    import polars as pl

    from cfanalytics.recover import recover

    click = "00000000-0000-4000-8000-000000000001"
    template = f"{server.base}/ok?visitor_id={{clickid}}&payout={{payout}}&token={SECRET}"
    rows = {
        "visits": {"Click ID": click, "Visit Time": "2026-11-19 05:00", "Campaign ID": "c1",
                   "Traffic Source ID": "ts1", "External ID": "vis1"},
        "conversions": {"Click ID": click, "Conversion Time": "2026-11-19 05:05", "Payout": "2.5",
                        "Custom Conversion (ct)": "lead", "Traffic Source ID": "ts1"},
        "postbacks": {"Postback ID": "pb1", "Click ID": click, "Postback Time": "2026-11-19 05:06", "Is Error": "1",
                      "Error Message": "Invalid click id", "Status Code": "400", "Postback URL": template,
                      "Custom Conversion (ct)": "lead", "Traffic Source ID": "ts1"},
    }  # fmt: skip
    for kind, row in rows.items():
        assert store.ingest_frame(pl.DataFrame([row]), kind=kind, name=kind).ok
    out = tmp_path / "recovery"
    recover(store, now="2026-11-20T00:00:00Z", out=out)
    result = refire(store, out / "s2s_postbacks.jsonl", send=True, rate=50, timeout=2)
    assert result.accepted == 1
    # the server got the real URL: macros filled from the stored click, the token intact
    assert server.queries == [f"visitor_id=vis1&payout=2.50&token={SECRET}"]
    assert all(SECRET not in line for line in result.lines)


def test_bad_file_is_a_one_line_error(store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k1", "url": "https://ts.example/pb?token=' + SECRET + '"}\n{"url": 5\n')
    with pytest.raises(InputError, match=r"bad\.jsonl: line 2: expected a JSON object") as exc:
        refire(store, bad)
    assert SECRET not in str(exc.value)
    ftp = tmp_path / "ftp.txt"
    ftp.write_text(f"ftp://ts.example/pb?token={SECRET}\n")
    with pytest.raises(InputError, match="not an http") as exc:
        refire(store, ftp)
    assert SECRET not in str(exc.value)


def test_a_second_refire_on_the_same_folder_is_refused(server, store, tmp_path):
    from cfanalytics.exceptions import StoreBusyError
    from cfanalytics.lease import file_lock
    from cfanalytics.refire import LOCK_FILE, FileJournal, journal

    f = _file(tmp_path, [("ok", server.url("/ok", 1))])
    assert isinstance(journal(store), FileJournal)
    with file_lock(store.path / LOCK_FILE), pytest.raises(StoreBusyError, match="another refire is running"):
        refire(store, f, send=True, rate=50, timeout=2)
    assert dict(server.hits) == {}
    assert refire(store, f, send=True, rate=50, timeout=2).accepted == 1
    assert read_ledger(store) == read_ledger(store.path)
    assert read_ledger(store)["ok"]["state"] == "accepted"
