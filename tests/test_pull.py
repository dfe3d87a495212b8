"""``cfanalytics pull`` against a real HTTP server on loopback (tests/fake_api.py).

The server serves the generated sample account as API pages; after a pull the
store must hold exactly what an ingest of the account's export files holds,
whatever the server does meanwhile (429s, 5xx, time-outs, dropped
connections, truncated bodies, rows arriving mid-pull, a kill -9 of the
pulling process). The API key must never leave the ``api-key`` header.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics.cli import main
from cfanalytics.pull import (
    CONFIG_FILE,
    FIELDS,
    LEDGER_FILE,
    ApiClient,
    PullError,
    PullOptions,
    configure,
    ledger,
    pull,
)
from cfanalytics.sample import generate
from cfanalytics.schemas import column_names, polars_schema
from cfanalytics.store import META_FILE
from tests.fake_api import FakeClickFlare, Item, serving
from tests.helpers import cli, cli_env

KEY = "cfk_live_Q7m2xZ9pL4vT8nR1sW6yB3cD"
KINDS = ("visits", "clicks", "conversions", "postbacks")
FIRST, LAST = date(2026, 11, 16), date(2026, 11, 19)  # the sample's three days, and one for late postbacks
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)  # every window long settled
SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schemas" / "pull.schema.json"
PAGE = 40


class Sleeper:
    """An injectable ``sleep`` that records delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("pull") / "exports", visits=3000, days=3)


@pytest.fixture(scope="module")
def tz(account):
    return account.truth["timezone"]


@pytest.fixture(scope="module")
def files_store(account, tz, tmp_path_factory):
    """The same account loaded from its export files: what every pull must equal."""
    store = cf.LogStore(tmp_path_factory.mktemp("files") / "store", timezone=tz)
    roles = ("visits", "clicks", "conversions", "postbacks", "postbacks_api")
    assert store.ingest([account.files[r] for r in roles]).ok
    return store


@pytest.fixture
def api(account, tz):
    with serving(account.folder, api_key=KEY, timezone=tz) as server:
        server.timezone = tz
        yield server


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    """``CLICKFLARE_API_KEY`` holds the key (a test may change it)."""
    monkeypatch.setenv("CLICKFLARE_API_KEY", KEY)
    return KEY


def everything(api: FakeClickFlare) -> dict[str, list[str]]:
    """Every field the stand-in serves, per kind; the stand-in accepts them from now on.

    A pull asking them all must store what an ingest of the export files stores; the
    fields nobody is seen asking for in public are an opt-in (``extra_fields``).
    """
    out: dict[str, list[str]] = {}
    for kind in ("events", "postbacks"):
        out[kind] = sorted({name for i in api.items if i.endpoint == kind for name in i.fields})
        api.accept(kind, *out[kind])
    return out


def options(api: FakeClickFlare, *, now: datetime = NOW, full: bool = True, **kw) -> PullOptions:
    """Fast options: small pages, no real back-off waits, a high rate limit, a fixed clock.

    ``full`` opts in to every field the stand-in serves, so the store can equal the file ingest.
    """
    kw.setdefault("sleep", Sleeper())
    kw.setdefault("base_url", api.base_url)
    kw.setdefault("page_size", PAGE)
    if full:
        kw.setdefault("extra_fields", everything(api))
    return PullOptions(rate_limit=1000, backoff=0.001, timeout=1.0, now=lambda: now, **kw)


def rows(store: cf.LogStore, kind: str) -> pl.DataFrame:
    cols = [c for c in polars_schema(kind) if c != "_batch_id"]
    return store.scan(kind).select(cols).collect().sort("_row_id")


def assert_same_store(got: cf.LogStore, want: cf.LogStore) -> None:
    """Same ``_row_id``s and the same content per kind (``_batch_id`` aside)."""
    for kind in KINDS:
        a, b = rows(got, kind), rows(want, kind)
        assert a.height == b.height, kind
        assert_frame_equal(a, b)


def local_day(item, tz: str) -> str:
    return item.wall_clock(ZoneInfo(tz))[:10]


def assert_no_key(*texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert KEY not in text
    if folder is not None:
        for path in folder.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------ the pull equals the files
def test_pull_through_faults_and_late_rows_equals_file_ingest(api, tz, files_store, tmp_path, caplog):
    """Faults on many requests and rows arriving mid-pull: the store still equals the file ingest."""
    api.schedule.update(
        {2: "429", 5: "500", 8: "502", 11: "slow", 14: "drop", 17: "truncate", 20: "truncate-nolength", 40: "429"}
    )
    # rows of 2026-11-17 held back until the third page of that day's events: offset paging shifts under the client
    held_events = api.hide(
        lambda i: i.endpoint == "events" and local_day(i, tz) == "2026-11-17" and i.seq % 9 == 0,
        until=lambda kind, body: kind == "events" and body["startDate"].startswith("2026-11-17") and body["page"] == 3,
    )
    held_postbacks = api.hide(
        lambda i: i.endpoint == "postbacks" and local_day(i, tz) == "2026-11-18" and i.seq % 4 == 0,
        until=lambda kind, body: (
            kind == "postbacks" and body["startDate"].startswith("2026-11-18") and body["page"] == 2
        ),
    )
    assert held_events > 50
    assert held_postbacks > 10
    sleeper = Sleeper()
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    caplog.set_level(logging.DEBUG, logger="cfanalytics")
    result = pull(store, FIRST, LAST, api_key=KEY, options=options(api, sleep=sleeper))

    assert result.ok, result.failures
    assert [w.status for w in result.windows] == ["finished"] * 8
    assert_same_store(store, files_store)
    whole_17 = {"startDate": "2026-11-17 00:00:00", "endDate": "2026-11-17 23:59:59"}
    day_17 = {
        r.counter
        for r in api.log
        if r.counter and r.path.endswith("/event-logs") and whole_17.items() <= r.body.items()
    }
    assert len(day_17) == 2, "the counter moved under the client"
    split = {(w.kind, str(w.day)): w.splits for w in result.windows}
    assert split[("events", "2026-11-17")] >= 1, "the counter moved between pages: the window is pulled in halves"
    assert split[("postbacks", "2026-11-18")] >= 1
    moved = {" ".join(m.split()[:2]) for m in caplog.messages if "totals.counter said" in m}
    assert moved == {"events 2026-11-17", "postbacks 2026-11-18"}, "only the days with rows arriving mid-pull"
    # the other splits: the export repeats rows verbatim, and a row coming twice across pages is a split
    assert split[("events", "2026-11-16")] >= 1
    assert any(m.startswith("events 2026-11-16") and "came twice across pages" in m for m in caplog.messages)
    assert result.retries == 8
    assert 2.0 in sleeper.calls, "Retry-After: 2 is honoured"
    assert max(sleeper.calls) <= 2.0
    faults = [r.fault for r in api.log if r.fault]
    assert sorted(faults) == sorted(["429", "500", "502", "slow", "drop", "truncate", "truncate-nolength", "429"])
    assert all(r.body is None or r.body["pageSize"] == PAGE for r in api.log)
    assert {e["status"] for e in ledger(store)} == {"finished"}
    assert result.rows == {k: files_store.counts()[k] for k in KINDS}
    assert "retry" in caplog.text
    assert_no_key(caplog.text, folder=store.path)

    # A second run asks for nothing; a refresh re-pulls every window and stores nothing twice.
    again = pull(store, FIRST, LAST, api_key=KEY, options=options(api))
    assert again.requests == 0
    assert {w.status for w in again.windows} == {"skipped"}
    n, quarantined = len(api.log), store.counts()["quarantine"]
    refresh = pull(store, FIRST, LAST, api_key=KEY, options=options(api, refresh=True))
    assert len(api.log) > n
    assert refresh.rows == dict.fromkeys(KINDS, 0)
    assert store.counts()["quarantine"] == quarantined > 0
    assert sum(w.already_stored for w in refresh.windows) > 0
    assert_same_store(store, files_store)


def test_unsettled_windows_are_pulled_again_until_finished(api, tz, files_store, tmp_path):
    """Windows newer than the settle time stay open; the next run re-pulls them, and only them."""
    late = api.hide(lambda i: local_day(i, tz) == "2026-11-18" and i.seq % 3 == 0)  # arrive after the first run
    assert late > 0
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    first_now = datetime(2026, 11, 19, 9, tzinfo=UTC)  # 04:00 in New York on the 19th
    first = pull(store, FIRST, LAST, api_key=KEY, options=options(api, now=first_now))
    status = {(w.kind, str(w.day)): w.status for w in first.windows}
    assert status == {
        ("events", "2026-11-16"): "finished",
        ("postbacks", "2026-11-16"): "finished",  # its end is 48 h old
        ("events", "2026-11-17"): "finished",
        ("postbacks", "2026-11-17"): "pulled",
        ("events", "2026-11-18"): "pulled",  # ended 4 h ago: within the 6 h settle time
        ("postbacks", "2026-11-18"): "pulled",
        ("events", "2026-11-19"): "pulled",
        ("postbacks", "2026-11-19"): "pulled",
    }
    today = [r for r in api.log if r.body and r.body["startDate"].startswith("2026-11-19")]
    assert today
    assert {r.body["endDate"] for r in today} == {"2026-11-19 04:00:00"}, "the open day ends now"
    assert store.counts()["visits"] < files_store.counts()["visits"]

    api.release()
    api.log.clear()
    second = pull(store, None, LAST, api_key=KEY, options=options(api))  # --from: where the ledger says
    status = {(w.kind, str(w.day)): w.status for w in second.windows}
    assert status == {
        ("events", "2026-11-17"): "skipped",
        ("postbacks", "2026-11-17"): "finished",
        ("events", "2026-11-18"): "finished",
        ("postbacks", "2026-11-18"): "finished",
        ("events", "2026-11-19"): "finished",
        ("postbacks", "2026-11-19"): "finished",
    }
    asked = {(r.path.rsplit("/", 1)[-1], r.body["startDate"][:10]) for r in api.log if r.body}
    assert ("event-logs", "2026-11-17") not in asked
    assert ("event-logs", "2026-11-16") not in asked
    assert second.rows["visits"] > 0
    assert_same_store(store, files_store)
    doc = json.loads((store.path / LEDGER_FILE).read_text())
    assert doc["timezone"] == tz
    assert {e["status"] for e in ledger(store)} == {"finished"}
    assert_no_key(folder=store.path)


# ------------------------------------------------------------------------------ kill -9 and resume
def test_kill_mid_pull_and_rerun_give_the_same_store(account, tz, files_store, tmp_path):
    """SIGKILL the pulling process twice at different points; a re-run completes the same store."""
    store_dir = tmp_path / "store"
    with serving(account.folder, api_key=KEY, timezone=tz, delay=0.01) as api:
        configure(cf.LogStore(store_dir, timezone=tz), extra_fields=everything(api))
        total = sum(1 for i in api.items if i.endpoint == "events") // PAGE + 8
        argv = cli(
            "pull", "--store", str(store_dir), "--from", str(FIRST), "--to", str(LAST), "--timezone", tz,
            "--base-url", api.base_url, "--page-size", str(PAGE), "--rate-limit", "1000", "--backoff", "0.01",
            "--timeout", "10", "--json",
        )  # fmt: skip
        outputs = []
        for share in (0.9, 0.3):  # the first day takes most of the first run: its rows repeat across pages
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(CLICKFLARE_API_KEY=KEY)
            )
            target = len(api.log) + int(total * share)
            deadline = time.monotonic() + 120
            while len(api.log) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL, err
            outputs += [out, err]
        assert ledger(cf.LogStore(store_dir)), "the killed runs finished some windows first"
        env = cli_env(CLICKFLARE_API_KEY=KEY)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert "skipped" in {w["status"] for w in doc["windows"]}
    store = cf.LogStore(store_dir)
    assert_same_store(store, files_store)
    assert_no_key(done.stdout, done.stderr, *outputs, folder=store_dir)


# ------------------------------------------------------------------------------ the command line
def test_cli_json_validates_and_the_key_never_leaks(api, files_store, tmp_path, capsys, caplog):
    tz = api.timezone
    caplog.set_level(logging.DEBUG)
    store_dir = str(tmp_path / "store")
    configure(cf.LogStore(store_dir, timezone=tz), extra_fields=everything(api))
    base = ["pull", "--store", store_dir, "--base-url", api.base_url, "--page-size", "200", "--rate-limit", "1000"]
    api.fail("500", "drop", "400")  # the last one echoes the key in its message
    code = main([*base, "--timezone", tz, "--from", str(FIRST), "--to", str(LAST), "--backoff", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 1, "a 400 stops the pull"
    assert err.count("\n") == 1
    assert "HTTP 400" in err
    assert "***" in err
    assert_no_key(out, err, caplog.text)

    code = main([*base, "--from", str(FIRST), "--to", str(LAST), "--backoff", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    assert {w["status"] for w in doc["windows"]} <= {"finished", "skipped"}
    assert doc["rows"].keys() == set(KINDS)
    assert_same_store(cf.LogStore(store_dir), files_store)

    code = main([*base, "--to", str(LAST)])  # --from resumes after the last finished day: nothing left
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith("nothing to pull")
    code = main([*base, "--from", str(FIRST), "--to", str(LAST)])  # human output
    out, err2 = capsys.readouterr()
    err += err2
    assert code == 0
    assert "skipped" in out
    assert "store:" in out
    assert_no_key(out, err, caplog.text, folder=Path(store_dir))


@pytest.mark.parametrize(
    "case",
    [
        (None, "not-the-key-0000", "", "HTTP 401"),
        ("403", KEY, "", "plan has no API access"),
        (None, KEY, "/v9", "HTTP 404"),
    ],
    ids=["401", "403", "404"],
)
def test_refusals_are_one_clear_line(api, tmp_path, capsys, monkeypatch, case):
    fault, key, suffix, says = case
    monkeypatch.setenv("CLICKFLARE_API_KEY", key)
    if fault:
        api.fail(fault)
    argv = ["pull", "--store", str(tmp_path / "s"), "--timezone", api.timezone, "--from", "2026-11-16"]
    code = main([*argv, "--to", "2026-11-16", "--base-url", api.base_url + suffix, "--backoff", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.count("\n") == 1, err
    assert says in err
    assert len(api.log) == 1, "no retry"
    assert key not in out + err
    assert_no_key(out, err, folder=tmp_path / "s")


def test_usage_errors(api, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CLICKFLARE_API_KEY", raising=False)
    base = ["pull", "--store", str(tmp_path / "s"), "--base-url", api.base_url]
    assert main([*base, "--from", "2026-11-16"]) == 2  # no key
    assert "CLICKFLARE_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("CLICKFLARE_API_KEY", KEY)
    assert main(base) == 2  # a first pull needs --from
    assert "--from is required" in capsys.readouterr().err
    assert main([*base, "--from", "2026-11-16", "--page-size", "1001"]) == 2
    assert main([*base, "--from", "2026-11-16", "--kinds", "activity"]) == 2
    assert main([*base, "--from", "2026-11-16", "--settle", "postbacks=soon"]) == 2
    assert main([*base, "--from", "2026-11-17", "--to", "2026-11-16"]) == 2
    assert main([*base, "--from", "2026-11-16", "--base-url", "ftp://user:pw@host/api"]) == 2
    assert "pw" not in capsys.readouterr().err
    capsys.readouterr()
    assert api.log == []


def test_key_from_the_store_config_is_never_stored(api, tz, tmp_path, monkeypatch):
    monkeypatch.delenv("CLICKFLARE_API_KEY", raising=False)
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    with pytest.raises(cf.UsageError, match="outside the store"):
        configure(store, api_key_file=store.path / "key.txt")
    key_file = tmp_path / "clickflare.key"
    key_file.write_text(KEY + "\n")
    configure(store, base_url=api.base_url, api_key_file=key_file)
    result = pull(store, FIRST, FIRST, kinds="postbacks", options=options(api, base_url=None))
    assert result.ok
    assert result.rows["postbacks"] > 0
    monkeypatch.setenv("ACME_CLICKFLARE_KEY", KEY)
    configure(store, api_key_env="ACME_CLICKFLARE_KEY", api_key_file=tmp_path / "missing.key")
    assert pull(store, FIRST, FIRST, kinds="postbacks", options=options(api, base_url=None, refresh=True)).ok
    assert_no_key(folder=store.path)


# ------------------------------------------------------------------------------ the client alone
def _client(**kw) -> tuple[ApiClient, Sleeper, list[float]]:
    clock = [0.0]
    sleeper = Sleeper()

    def sleep(s: float) -> None:
        sleeper(s)
        clock[0] += s

    opts = PullOptions(sleep=sleep, monotonic=lambda: clock[0], **kw)
    return ApiClient("http://127.0.0.1:9/api", KEY, opts), sleeper, clock


def test_rate_limit_spaces_requests(api):
    client, _, clock = _client(rate_limit=4)
    client.base_url = api.base_url
    body = {
        "startDate": "2026-11-16 00:00:00",
        "endDate": "2026-11-16 00:10:00",
        "timezone": "UTC",
        "metrics": ["ClickID", "ClickTime"],
        "metricsFilters": [],
        "sortBy": "ClickTime",
        "orderType": "asc",
        "page": 1,
        "pageSize": 10,
        "includeFilteredEvents": False,
    }
    for _ in range(9):
        client.post("/postback-status/logs", body)
    assert clock[0] == pytest.approx(2.0)  # 9 requests at 4/s: 8 gaps of 0.25 s


def test_gives_up_after_the_attempts_and_on_long_retry_after(api):
    client, sleeper, _ = _client(max_attempts=3, backoff=1.0, rate_limit=1000, rng=random.Random(1))
    client.base_url = api.base_url
    api.fail("500", "502", "500")
    with pytest.raises(PullError, match=r"after 3 attempts \(HTTP 500\)"):
        client.post("/postback-status/logs", {})
    backoffs = [s for s in sleeper.calls if s > 0.3]
    assert len(backoffs) == 2
    assert 0.5 <= backoffs[0] <= 1.0
    assert 1.0 <= backoffs[1] <= 2.0
    client, _, _ = _client(max_retry_after=1.0)
    client.base_url = api.base_url
    api.fail("429")
    with pytest.raises(PullError, match="asks to wait 2 s"):
        client.post("/postback-status/logs", {})


def test_a_window_that_never_adds_up_fails_alone(api, tz, tmp_path, monkeypatch):
    """A server whose counter never matches its rows: the window fails, the others are stored."""
    original = api._answer

    def lying(path, headers, raw, entry):
        status, extra, doc = original(path, headers, raw, entry)
        if status == 200 and entry.body["startDate"].startswith("2026-11-17") and "event-logs" in path:
            doc["totals"]["counter"] += 1
        return status, extra, doc

    monkeypatch.setattr(api, "_answer", lying)
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    result = pull(store, date(2026, 11, 16), date(2026, 11, 17), api_key=KEY, options=options(api, page_size=1000))
    status = {(w.kind, str(w.day)): w.status for w in result.windows}
    assert status[("events", "2026-11-17")] == "failed"
    assert sum(s == "finished" for s in status.values()) == 3
    assert "never matched totals.counter" in result.failures[0]
    assert "2026-11-17" not in {e["date"] for e in ledger(store) if e["kind"] == "events"}
    assert store.counts()["visits"] > 0


def test_windows_of_a_store_in_another_zone(api, tmp_path):
    """The API is asked in the store's zone; its day windows are that zone's local days."""
    store = cf.LogStore(tmp_path / "store", timezone="Asia/Kolkata")
    result = pull(store, FIRST, FIRST, kinds="events", api_key=KEY, options=options(api))
    (w,) = result.windows
    assert (w.start, w.end) == (datetime(2026, 11, 15, 18, 30, tzinfo=UTC), datetime(2026, 11, 16, 18, 30, tzinfo=UTC))
    assert {r.body["timezone"] for r in api.log if r.body} == {"Asia/Kolkata"}
    visits = store.scan("visits").select(pl.col("visit_time").min().alias("lo"), pl.col("visit_time").max().alias("hi"))
    lo, hi = visits.collect().row(0)
    assert w.start <= lo
    assert hi < w.end
    assert w.end - w.start == timedelta(days=1)


# ------------------------------------------------------------------------------ the real API's limits
#: Each field a default pull may ask, and a public client of the API seen using it (repository, path).
#: Written from those clients, not from cfanalytics.pull: the test holds the pull to them.
_SHOP = "eugeneleychenko/shophealthrates scripts/clickflare-api.mjs"
_EFFLUX = "G-ier/efflux_be_backup services/clickflareService.js"
SEEN_IN_PUBLIC = {
    "events": {
        "EventType": _SHOP,
        "ClickID": _SHOP,
        "ConversionTransaction": _SHOP,
        "ConversionDate": _SHOP,
        "ConversionPayout": _SHOP,
        "CustomConversionNumber": _SHOP,
        "ClickTime": _EFFLUX,
        "VisitTime": _EFFLUX,
        "VisitID": _EFFLUX,
        "ExternalID": _EFFLUX,
        "FlowID": _EFFLUX,
        "TrafficSourceID": _EFFLUX,
        "ConnectionIP": _EFFLUX,
        "ConnectionReferrer": _EFFLUX,
        "DeviceUserAgent": _EFFLUX,
        **{f"TrackingField{i}": _EFFLUX for i in range(1, 7)},
        "CampaignID": "Python scripts calling public-api.clickflare.io (repository unnamed); report campaignID",
        "Ct": f"{_SHOP} (postback-status/logs)",
    },
    "postbacks": dict.fromkeys(
        (
            "ClickID", "IsError", "ErrorMessage", "StatusCode", "PostbackUrl", "IntegrationID", "Ct", "Event",
            "CustomConversionIndex", "PostbackTime", "ClickTime",
        ),
        _SHOP,
    ),
}  # fmt: skip
#: Sort keys public clients send.
SORTS_IN_PUBLIC = {"ClickTime", "ConversionDate", "ClickID"}
#: Canonical columns the default fields feed, per table (by hand from the spellings above).
FED = {
    "visits": ("click_id", "visit_time", "campaign_id", "traffic_source_id", "flow_id", "external_id", "ip",
               "referrer", "user_agent"),
    "clicks": ("click_id", "click_time", "campaign_id", "traffic_source_id", "ip"),
    "conversions": ("click_id", "conversion_time", "visit_time", "campaign_id", "traffic_source_id", "payout",
                    "txid", "ct", "custom_conversion_number"),
    "postbacks": ("click_id", "postback_time", "is_error", "status_code", "error_message", "postback_url", "ct",
                  "custom_conversion_index", "integration_id", "event", "click_time"),
}  # fmt: skip
#: Canonical columns a pull fills without a field for them (derived ids; "not filtered" by default).
DERIVED = {"postback_id", "is_filtered"}


def fed_rows(store: cf.LogStore, kind: str, columns: tuple[str, ...]) -> pl.DataFrame:
    frame = store.scan(kind).select(columns).collect()
    return frame.sort(columns, nulls_last=True)


def test_a_default_pull_asks_only_fields_seen_in_public_use(api, account, tz, files_store, tmp_path):
    """Without opt-in, every field and sort key asked is one a public client uses, and the stand-in
    (strict: an unknown field is a 400) answers every request; the store holds what those fields carry.

    Without ``PostbackID`` a postback's id is derived from its content, so the export's one postback
    whose id repeats with other content (quarantined from the file) is a postback of its own here."""
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    result = pull(store, FIRST, LAST, api_key=KEY, options=options(api, full=False))
    assert result.ok, result.failures
    asked = [r for r in api.log if r.body]
    assert asked
    assert {r.status for r in api.log} == {200}, [(r.status, r.body) for r in api.log if r.status != 200]
    for r in asked:
        kind = "events" if r.path.endswith("/event-logs") else "postbacks"
        assert set(r.body["metrics"]) <= set(SEEN_IN_PUBLIC[kind]), set(r.body["metrics"]) - set(SEEN_IN_PUBLIC[kind])
        assert r.body["sortBy"] in SORTS_IN_PUBLIC
        assert r.body["sortBy"] in r.body["metrics"]
        assert r.body["page"] <= 1000
        assert r.body["pageSize"] <= 1000
    assert {tuple(r.body["metrics"]) for r in asked if r.path.endswith("/event-logs")} == {FIELDS["events"]}
    repeated_id = account.truth["ingest"]["postbacks"]["quarantined_by_reason"]["conflicting_key"]
    assert repeated_id == 1
    for kind, columns in FED.items():
        got, want = fed_rows(store, kind, columns), fed_rows(files_store, kind, columns)
        if kind == "postbacks":
            assert got.height == want.height + repeated_id
            counts = [pl.len().alias("n")]
            both = (
                want.group_by(columns)
                .agg(counts)
                .join(got.group_by(columns).agg(counts), on=columns, how="left", nulls_equal=True)
            )
            assert both.filter(pl.col("n_right").fill_null(0) < pl.col("n")).height == 0, "a file row is missing"
        else:
            assert got.height == want.height, kind
            assert_frame_equal(got, want)
        others = [c for c in column_names(kind) if c not in columns and c not in DERIVED]
        nulls = store.scan(kind).select(pl.col(others).null_count()).collect().row(0)
        assert dict(zip(others, nulls, strict=True)) == dict.fromkeys(others, got.height), kind


def test_opted_in_fields_are_asked_and_stored(api, tz, files_store, tmp_path):
    """configure(extra_fields=...) adds report-vocabulary fields to every later pull of the store."""
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    with pytest.raises(cf.UsageError, match="not an API field name"):
        configure(store, extra_fields={"events": ["Location Country"]})
    configure(store, extra_fields={"events": ["LocationCountry", "OfferID"]})
    result = pull(store, FIRST, FIRST, kinds="events", api_key=KEY, options=options(api, full=False))
    assert result.ok, result.failures
    metrics = {m for r in api.log if r.body for m in r.body["metrics"]}
    assert {"LocationCountry", "OfferID"} <= metrics
    (w,) = result.windows
    day = pl.col("visit_time").is_between(w.start, w.end, closed="left")
    got = store.scan("visits").select("click_id", "country", "offer_id").collect().sort("click_id")
    want = files_store.scan("visits").filter(day).select("click_id", "country", "offer_id").collect()
    assert_frame_equal(got, want.sort("click_id"))
    assert got.get_column("country").null_count() < got.height


def test_a_day_past_the_last_page_is_split_and_loses_nothing(api, tz, files_store, tmp_path):
    """One row per page: a day of more than 1 000 events needs more pages than the API serves, so it is
    split before paging on; no request asks a page past 1 000 and the day's rows all arrive."""
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    result = pull(store, FIRST, FIRST, kinds="events", api_key=KEY, options=options(api, page_size=1))
    assert result.ok, result.failures
    (w,) = result.windows
    first = api.log[0]
    assert first.body["page"] == 1
    assert first.counter > 1000, "the day holds more rows than 1 000 pages of one"
    assert w.splits >= 1
    assert max(r.body["page"] for r in api.log if r.body) <= 1000
    assert {r.status for r in api.log} == {200}
    assert w.rows == first.counter
    for kind, time_col in (("visits", "visit_time"), ("clicks", "click_time"), ("conversions", "conversion_time")):
        day = pl.col(time_col).is_between(w.start, w.end, closed="left")
        cols = [c for c in polars_schema(kind) if c != "_batch_id"]
        got = store.scan(kind).select(cols).collect().sort("_row_id")
        want = files_store.scan(kind).filter(day).select(cols).collect().sort("_row_id")
        assert got.height == want.height > 0, kind
        assert_frame_equal(got, want)


def test_rows_the_api_cannot_page_fail_the_window_in_one_line(tz, tmp_path):
    """Three rows in one second with one row per page and two pages at most: the window is split down to
    that second and then fails alone, saying why."""
    when = datetime(2026, 11, 16, 15, 30, 7, tzinfo=UTC)
    items = [
        Item("events", when, n, {"EventType": "visit", "ClickID": f"c{n}", "VisitTime": when, "CampaignID": "x"})
        for n in range(3)
    ]
    with FakeClickFlare(items, api_key=KEY) as api:
        store = cf.LogStore(tmp_path / "store", timezone=tz)
        opts = options(api, full=False, page_size=1, max_page=2)
        result = pull(store, FIRST, FIRST, kinds="events", api_key=KEY, options=opts)
    (w,) = result.windows
    assert w.status == "failed"
    assert w.error.startswith("3 rows in the one second 2026-11-16 10:30:07: more than the API pages (2 = 2 pages")
    assert "\n" not in w.error
    assert max(r.body["page"] for r in api.log if r.body) <= 2
    assert store.counts()["visits"] == 0


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"metrics": ["ClickID", "ClickTime", "EventTime"]}, "unknown metric EventTime"),
        ({"metrics": ["ClickID", "VisitTime"], "sortBy": "ClickTime"}, "sortBy ClickTime must be one of the requested"),
        ({"page": 1001}, "page must be 1…1000"),
        ({"pageSize": 1001}, "pageSize must be 1…1000"),
    ],
    ids=["unknown-metric", "sort-outside-metrics", "page-1001", "page-size-1001"],
)
def test_the_stand_in_is_as_strict_as_the_api(api, change, says):
    client, _, _ = _client(rate_limit=1000)
    client.base_url = api.base_url
    body = {
        "startDate": "2026-11-16 00:00:00",
        "endDate": "2026-11-16 23:59:59",
        "timezone": "UTC",
        "metrics": ["ClickID", "ClickTime"],
        "metricsFilters": [],
        "sortBy": "ClickTime",
        "orderType": "asc",
        "page": 1,
        "pageSize": 10,
        "includeFilteredEvents": False,
        **change,
    }
    with pytest.raises(PullError, match="HTTP 400") as caught:
        client.post("/event-logs", body)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(api.log) == 1, "a 400 is not retried"


def test_a_refused_field_is_one_clear_line(api, tz, tmp_path, capsys):
    """A field the API does not know (opted in by mistake): the pull stops with one line naming it."""
    store_dir = tmp_path / "store"
    configure(cf.LogStore(store_dir, timezone=tz), extra_fields={"events": ["DeviceScreenSize"]})
    argv = ["pull", "--store", str(store_dir), "--from", str(FIRST), "--to", str(FIRST), "--kinds", "events"]
    code = main([*argv, "--base-url", api.base_url, "--rate-limit", "1000", "--backoff", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.count("\n") == 1, err
    assert "HTTP 400" in err
    assert "unknown metric DeviceScreenSize" in err
    assert_no_key(out, err, folder=store_dir)


def test_rows_reordered_between_pages_are_neither_lost_nor_doubled(api, tz, files_store, tmp_path):
    """Rows tying on the sort key (visits share no click time) come in a new order on every request, so
    offset paging skips some and repeats others with the count intact; the repeats give it away, and the
    window is pulled in halves down to windows of one page. The day equals the file ingest, but for which
    of two visits repeating a click id within one second is kept: the API gives them no order."""
    api.unstable_ties = True
    store = cf.LogStore(tmp_path / "store", timezone=tz)
    result = pull(store, FIRST, FIRST, kinds="events", api_key=KEY, options=options(api))
    assert result.ok, result.failures
    (w,) = result.windows
    assert w.splits >= 10
    conflicting = (
        files_store.scan("quarantine")
        .filter(pl.col("reason") == "conflicting_key")
        .select(pl.col("raw").str.json_path_match("$['Click ID']").alias("click_id"))
        .collect()
        .get_column("click_id")
        .drop_nulls()
        .to_list()
    )
    assert conflicting, "the export repeats a click id with other content"
    for kind, time_col in (("visits", "visit_time"), ("clicks", "click_time"), ("conversions", "conversion_time")):
        day = pl.col(time_col).is_between(w.start, w.end, closed="left")
        cols = [c for c in polars_schema(kind) if c != "_batch_id"]
        got = store.scan(kind).select(cols).collect().sort("_row_id")
        want = files_store.scan(kind).filter(day).select(cols).collect().sort("_row_id")
        assert got.height == want.height > 0, kind
        assert got.get_column("_row_id").to_list() == want.get_column("_row_id").to_list(), kind
        keep = ~pl.col("click_id").is_in(conflicting)
        assert_frame_equal(got.filter(keep), want.filter(keep))


def test_settings_kept_in_the_store_metadata_by_earlier_versions_still_count(api, tz, tmp_path, monkeypatch):
    """Pull settings used to live under ``pull`` in the store's metadata: they are still read, and
    configure() carries them over to ``pull_config.json``."""
    store_dir = tmp_path / "store"
    cf.LogStore(store_dir, timezone=tz)
    meta_path = store_dir / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["pull"] = {"base_url": api.base_url, "api_key_env": "ACME_CLICKFLARE_KEY"}
    meta_path.write_text(json.dumps(meta))
    monkeypatch.delenv("CLICKFLARE_API_KEY")
    monkeypatch.setenv("ACME_CLICKFLARE_KEY", KEY)
    store = cf.LogStore(store_dir)
    result = pull(store, FIRST, FIRST, kinds="postbacks", options=options(api, base_url=None))
    assert result.ok, result.failures
    assert result.rows["postbacks"] > 0
    settings = configure(store, extra_fields={"postbacks": ["CampaignID"]})
    assert settings == {
        "base_url": api.base_url,
        "api_key_env": "ACME_CLICKFLARE_KEY",
        "extra_fields": {"postbacks": ["CampaignID"]},
    }
    assert json.loads((store_dir / CONFIG_FILE).read_text()) == settings
    api.log.clear()
    again = pull(store, FIRST, FIRST, kinds="postbacks", options=options(api, base_url=None, full=False, refresh=True))
    assert again.ok, again.failures
    assert all("CampaignID" in r.body["metrics"] for r in api.log if r.body)
    assert_no_key(folder=store_dir)
