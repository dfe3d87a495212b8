"""Alerts fire once: the reported-incident state, and webhook notices against a server on 127.0.0.1.

The report runs (``cfanalytics report``) work on a copy of the sample account's store; the
incidents a notice must name come from the generator's truth (the faults it injected), not from
the kit's own detection.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cfanalytics.alerts import (
    ALERTS_FILE,
    NotifyError,
    new_incident_ids,
    notify,
    post_webhook,
    read_state,
    record,
)
from cfanalytics.cli import main
from tests.helpers import skip_report_notebook

PERIOD = {"from": "2026-11-17", "to": "2026-11-19", "timezone": "America/New_York"}
INCIDENTS = [
    {
        "incident_id": "inc-a",
        "scope": "traffic_source",
        "id": "ts-1",
        "name": "PropellerAds",
        "postbacks": 105,
        "errors": 105,
        "top_error_kind": "unreplaced_macro",
        "start": "2026-11-17 10:04 EST",
    },
    {
        "incident_id": "inc-b",
        "scope": "integration",
        "id": "int-9",
        "name": "Meta <CAPI> https://graph.facebook.com/v19.0/1/events?access_token=EAAGsecretsecret",
        "postbacks": 98,
        "errors": 94,
        "top_error_kind": "auth",
        "start": "2026-11-18 09:52 EST",
    },
]


class Hook:
    """A webhook on 127.0.0.1 that answers from a script of statuses (then 200), recording each body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        self.script: list[int | str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                step = hook.script.pop(0) if hook.script else 200
                if step == "hang":
                    time.sleep(1.5)
                    return
                hook.bodies.append(body)
                hook.statuses.append(int(step))
                self.send_response(int(step))
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}/…"
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/{SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


FAST = {"backoff": 0.01, "timeout": 0.5}
SECRET = "XXXXsecretXXXX"


def test_new_means_never_reported_before(store):
    assert new_incident_ids(store.path, ["inc-a", "inc-b"]) == ["inc-a", "inc-b"]
    record(store, reported=["inc-a"])
    assert new_incident_ids(store.path, ["inc-a", "inc-b"]) == ["inc-b"]
    record(store, reported=["inc-a", "inc-b"])
    assert new_incident_ids(store.path, ["inc-a", "inc-b"]) == []
    # the first report time is kept
    state = read_state(store.path)
    assert set(state["incidents"]) == {"inc-a", "inc-b"}
    assert all(entry["notified_at"] is None for entry in state["incidents"].values())


def test_each_incident_and_threshold_is_sent_once(store, hook):
    breached = [("error_rate>5%", "error_rate > 5%: 12.0%")]
    first = notify(store, hook.url, INCIDENTS, breached, PERIOD, **FAST)
    assert (first.incidents_sent, first.errors) == (["inc-a", "inc-b"], [])
    assert first.thresholds_sent == ["error_rate>5% @ 2026-11-17..2026-11-19"]
    assert len(hook.bodies) == 3
    again = notify(store, hook.url, INCIDENTS, breached, PERIOD, **FAST)
    assert (again.incidents_sent, again.thresholds_sent, again.errors) == ([], [], [])
    assert len(hook.bodies) == 3
    # a new period breaches again: one more notice
    later = notify(store, hook.url, INCIDENTS, breached, {**PERIOD, "to": "2026-11-20"}, **FAST)
    assert later.thresholds_sent == ["error_rate>5% @ 2026-11-17..2026-11-20"]


def test_notices_are_redacted_and_escaped(store, hook):
    notify(store, hook.url, INCIDENTS, [], PERIOD, **FAST)
    text = json.dumps(hook.bodies)
    assert "EAAGsecretsecret" not in text
    assert "access_token=***" in text
    assert "&lt;CAPI&gt;" in text
    assert "<CAPI>" not in text
    first = hook.bodies[0]
    assert first["text"].startswith("*New incident* · traffic source *PropellerAds* (ts-1): 105 of 105")
    assert first["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": first["text"]}}
    assert first["blocks"][-1]["elements"][0]["text"].endswith("inc-a")


def test_a_failed_notice_stays_due_and_is_sent_next_time(store, hook):
    hook.script = [400, 200]  # inc-a refused, inc-b delivered
    result = notify(store, hook.url, INCIDENTS, [], PERIOD, **FAST)
    assert result.incidents_sent == ["inc-b"]
    assert len(result.errors) == 1
    assert result.errors[0].startswith("notify: http://127.0.0.1:")
    assert "refused the notice (HTTP 400)" in result.errors[0]
    assert SECRET not in result.errors[0]
    retry = notify(store, hook.url, INCIDENTS, [], PERIOD, **FAST)
    assert retry.incidents_sent == ["inc-a"]
    # what the server saw: inc-a (refused), inc-b, then inc-a again; inc-b was not sent twice
    assert [b["blocks"][-1]["elements"][0]["text"][-5:] for b in hook.bodies] == ["inc-a", "inc-b", "inc-a"]


def test_server_errors_are_retried_with_back_off(hook):
    hook.script = [503, 500, 200]
    waits: list[float] = []
    assert post_webhook(hook.url, {"text": "x"}, retries=3, backoff=0.1, sleep=waits.append) == 200
    assert len(waits) == 2
    # 0.1 · 2^attempt · [0.5, 1.5)
    assert 0.05 <= waits[0] <= 0.15
    assert 0.1 <= waits[1] <= 0.3


def test_a_hanging_webhook_times_out_with_one_line(hook):
    hook.script = ["hang", "hang"]
    with pytest.raises(NotifyError) as err:
        post_webhook(hook.url, {"text": "x"}, retries=1, timeout=0.3, sleep=lambda _: None)
    message = str(err.value)
    assert "\n" not in message
    assert "did not take the notice after 2 tries" in message


# ------------------------------------------------------------------------ report runs
FIRST, LAST = date(2026, 11, 18), date(2026, 11, 19)
PERIOD_ARGS = ["--from", FIRST.isoformat(), "--to", LAST.isoformat()]
NOTICE = re.compile(r"^\*New incident\* · (traffic source|integration) \*.+?\* \(([^)]+)\): ")


@pytest.fixture
def own_store(sample, tmp_path) -> str:
    """A copy of the sample account's store (a report writes its alert state into the store)."""
    shutil.copytree(sample.folder / "store", tmp_path / "store")
    return str(tmp_path / "store")


@pytest.fixture
def quick_report(monkeypatch):
    """``report`` without running the notebook: the summary, thresholds, alert state and notices stay real."""
    skip_report_notebook(monkeypatch)


def truth_incidents(sample, first: date, last: date) -> set[tuple[str, str]]:
    """(scope, id) of the incidents the generator injected that overlap [first, last] in the account's zone."""
    zone = ZoneInfo(sample.account.truth["timezone"])

    def day(value: str) -> date:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone).date()

    return {
        (i["scope"].replace("_", " "), i["id"])
        for i in sample.account.truth["incidents"]
        if day(i["start"]) <= last and day(i["end"]) >= first
    }


def noticed(bodies: list[dict]) -> list[tuple[str, str]]:
    """(scope, id) named by each incident notice, in order."""
    return [m.groups() for b in bodies if (m := NOTICE.match(b["text"]))]


def report(store: str, out: Path, *extra: str) -> int:
    return main(["report", "--store", store, *PERIOD_ARGS, "--out", str(out), *extra])


def test_two_scheduled_runs_alert_once(sample, own_store, tmp_path, hook, capsys):
    """The real report twice over the same data: the first exits 3 and notifies each incident, the second
    exits 0 and sends nothing; the webhook's secret path is never shown."""
    expected = truth_incidents(sample, FIRST, LAST)
    assert len(expected) == 3  # the sample's receiver time-out, rate limit and expired token
    argv = ["--fail-on", "new_incidents>=1", "--notify", hook.url, "--json"]
    assert report(own_store, tmp_path / "r1.html", *argv) == 3
    first = capsys.readouterr()
    doc = json.loads(first.out)
    assert doc["current"]["new_incidents"] == 3
    assert set(doc["current"]["new_incident_ids"]) == set(doc["current"]["incident_ids"])
    assert sorted(noticed(hook.bodies)) == sorted(expected)
    thresholds = [b["text"] for b in hook.bodies if b["text"].startswith("*Threshold breached*")]
    assert thresholds == [
        "*Threshold breached* · new_incidents &gt;= 1 (is 3) (2026-11-18 to 2026-11-19, America/New_York)"
    ]
    assert len(hook.bodies) == 4
    assert doc["notify"] == {
        "webhook": hook.origin,
        "incidents_sent": doc["current"]["incident_ids"],
        "thresholds_sent": ["new_incidents>=1 @ 2026-11-18..2026-11-19"],
        "not_sent": 0,
        "errors": [],
    }
    assert (tmp_path / "r1.html").read_text().count("<strong>NEW</strong>") == 3

    assert report(own_store, tmp_path / "r2.html", *argv) == 0
    second = capsys.readouterr()
    again = json.loads(second.out)
    assert (again["current"]["incidents"], again["current"]["new_incidents"]) == (3, 0)
    assert again["breached"] == []
    assert len(hook.bodies) == 4  # nothing sent twice
    assert "<strong>NEW</strong>" not in (tmp_path / "r2.html").read_text()
    shown = first.out + first.err + second.out + second.err
    shown += "".join(p.read_text() for p in tmp_path.glob("r*.*"))
    assert SECRET not in shown
    assert hook.origin in shown


@pytest.mark.usefixtures("quick_report")
def test_a_500_is_retried_and_each_incident_delivered_once(sample, own_store, tmp_path, hook, capsys):
    hook.script = [500]  # the first notice fails once, then goes through
    assert report(own_store, tmp_path / "r.html", "--notify", hook.url) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert "notified: 3 incident(s), 0 threshold(s)" in out.out
    assert hook.statuses == [500, 200, 200, 200]
    assert hook.bodies[0] == hook.bodies[1]  # the same notice, tried again
    delivered = [b for b, status in zip(hook.bodies, hook.statuses, strict=True) if status == 200]
    assert sorted(noticed(delivered)) == sorted(truth_incidents(sample, FIRST, LAST))
    state = read_state(own_store)
    assert all(entry["notified_at"] for entry in state["incidents"].values())


@pytest.mark.usefixtures("quick_report")
def test_a_hanging_webhook_costs_one_line_and_loses_nothing(sample, own_store, tmp_path, hook, capsys):
    """The webhook hangs: one line, exit 1, the report written; the incidents are reported (no longer new)
    but their notices stay due and go out with the next run."""
    hook.script = ["hang", "hang"]
    fast = ["--notify-timeout", "0.3", "--notify-retries", "1"]
    argv = ["--notify", hook.url, *fast, "--fail-on", "new_incidents>=1"]
    assert report(own_store, tmp_path / "r1.html", *argv) == 3  # the breach wins over the failed notice
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert lines[0] == "cfanalytics: threshold breached: new_incidents >= 1 (is 3)"
    assert len(lines) == 2
    assert lines[1].startswith(f"cfanalytics: notify: {hook.origin} did not take the notice after 2 tries (")
    assert lines[1].endswith("); 4 notices not delivered, due again next run")
    assert SECRET not in out.out + out.err
    assert hook.bodies == []
    assert (tmp_path / "r1.html").exists()
    assert new_incident_ids(own_store, json.loads((tmp_path / "r1.json").read_text())["current"]["incident_ids"]) == []
    # the next run: nothing new (so no breach), but the notices still owed are delivered, once
    assert report(own_store, tmp_path / "r2.html", *argv, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["current"]["new_incidents"] == 0
    assert sorted(noticed(hook.bodies)) == sorted(truth_incidents(sample, FIRST, LAST))
    assert doc["notify"]["not_sent"] == 0
    # and the threshold of the first run, breached then and no longer, is not announced late
    assert [b for b in hook.bodies if b["text"].startswith("*Threshold")] == []


@pytest.mark.usefixtures("quick_report")
def test_a_refused_notice_fails_alone_with_exit_1(own_store, tmp_path, hook, capsys):
    hook.script = [404]
    assert report(own_store, tmp_path / "r.html", "--notify", hook.url) == 1
    out = capsys.readouterr()
    assert out.err == (
        f"cfanalytics: notify: {hook.origin} refused the notice (HTTP 404); "
        "1 notice not delivered, due again next run\n"
    )
    assert hook.statuses == [404, 200, 200]
    assert report(own_store, tmp_path / "r.html", "--notify", hook.url) == 0
    assert hook.statuses == [404, 200, 200, 200]
    assert hook.bodies[-1] == hook.bodies[0]


@pytest.mark.usefixtures("quick_report")
def test_the_configured_webhook(own_store, tmp_path, hook, capsys):
    assert main(["config", "--store", own_store, "--notify", hook.url, "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["notify"] == hook.origin
    assert SECRET not in out.out + out.err
    assert stat.S_IMODE((Path(own_store) / ALERTS_FILE).stat().st_mode) == 0o600
    assert main(["config", "--store", own_store]) == 0
    assert f"notify: {hook.origin}\n" in capsys.readouterr().out
    # --no-notify: the incidents are reported, no notice sent (they stay owed)
    assert report(own_store, tmp_path / "r.html", "--no-notify") == 0
    assert hook.bodies == []
    # without --notify the report uses the store's webhook
    assert report(own_store, tmp_path / "r.html") == 0
    assert len(hook.bodies) == 3
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert main(["config", "--store", own_store, "--notify", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notify"] is None
    assert read_state(own_store)["notify"] is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://hooks.example/services/XXXXsecretXXXX", "not a url"])
def test_a_webhook_url_that_is_not_http_is_refused(store, capsys, url):
    for argv in (
        ["config", "--store", str(store.path), "--notify", url],
        ["report", "--store", str(store.path), "--out", "r.html", "--notify", url],
    ):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert out.err.startswith("cfanalytics: --notify: expected an http(s):// webhook URL, not ")
        assert len(out.err.strip().splitlines()) == 1
        assert SECRET not in out.err
    assert not (store.path / ALERTS_FILE).exists()


def test_new_incidents_are_those_never_reported(sample, sample_store):
    """Not "absent from the previous period": an incident of the previous period never reported is new when
    the period covers it, and one reported before is not new even though the previous period lacked it."""
    from cfanalytics.report import summary

    fresh = summary(sample_store, date(2026, 11, 17), date(2026, 11, 19), reported=())
    ids = fresh["current"]["incident_ids"]
    assert len(ids) == len(truth_incidents(sample, date(2026, 11, 17), date(2026, 11, 19)))
    assert fresh["current"]["new_incident_ids"] == ids
    told = summary(sample_store, date(2026, 11, 17), date(2026, 11, 19), reported={ids[0], "inc-elsewhere"})
    assert told["current"]["new_incident_ids"] == ids[1:]
    assert told["current"]["new_incidents"] == len(ids) - 1


@pytest.mark.usefixtures("quick_report")
def test_diagnose_notifies_each_incident_once(sample, own_store, tmp_path, hook, capsys):
    argv = ["diagnose", "--store", own_store, *PERIOD_ARGS, "--notify", hook.url]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "notified: 3 incident(s), 0 threshold(s)" in out.out
    assert sorted(noticed(hook.bodies)) == sorted(truth_incidents(sample, FIRST, LAST))
    assert all(
        b["blocks"][-1]["elements"][0]["text"].startswith("cfanalytics diagnose · 2026-11-18 to 2026-11-19")
        for b in hook.bodies
    )
    assert main([*argv, "--json"]) == 0
    assert len(hook.bodies) == 3
    assert SECRET not in out.out + out.err + capsys.readouterr().out
    # the incidents were told: a report finds none new
    assert report(own_store, tmp_path / "r.html", "--fail-on", "new_incidents>=1") == 0
