"""Alerts fire once: the reported-incident state, and webhook notices against a server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cfanalytics.alerts import (
    NotifyError,
    new_incident_ids,
    notify,
    post_webhook,
    read_state,
    record,
)

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
                self.send_response(int(step))
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXXsecretXXXX"
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
    assert "XXXXsecretXXXX" not in result.errors[0]
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
