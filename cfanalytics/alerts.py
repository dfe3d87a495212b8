"""Alerts that fire once: which incidents were already reported, and Slack-compatible webhook notices.

A scheduled ``cfanalytics report`` runs every hour over a period that still holds
yesterday's incidents. ``new_incidents`` must therefore mean "never reported
before", not "absent from the previous period", or the same incident alerts every
hour for a week. The store keeps what was reported in ``alerts.json`` (written
atomically under the store's writer lock, readable by its owner only):

- ``incidents``: ``incident_id`` → when it was first reported, and when a notice
  about it was delivered (``null`` until one is);
- ``thresholds``: a breached ``--fail-on`` rule of one period → when its notice was
  delivered;
- ``notify``: the webhook URL set with ``cfanalytics config --notify`` (a secret:
  messages show its origin only, :func:`webhook_origin`).

An incident counts as reported once a report that lists it was written (the
HTML and its JSON summary); :func:`record` marks it then. A notice is owed for
an incident of the period until one was delivered, so a notice that failed is
sent by the next run, and one that was delivered (recorded as soon as the
webhook took it) is never sent again. Two reports of one store started at the
same moment may each send a notice the other is sending: schedule one at a time.

A notice is a POST of ``{"text": …, "blocks": […]}`` to an incoming-webhook URL
(Slack's format; Mattermost, Rocket.Chat, Discord's ``/slack`` endpoint and
Microsoft Teams workflows accept it too), retried with exponential back-off on
time-outs, 429 and 5xx. A notice that could not be delivered stays due, so the
next run sends it; nothing else is lost. Every string in a notice is redacted and
escaped for Slack's mrkdwn.

>>> print(incident_text({"scope": "traffic_source", "name": "Propeller", "id": "ts-1", "errors": 9,
...                      "postbacks": 10, "top_error_kind": "auth", "start": "11-17 10:04"}))
*New incident* · traffic source *Propeller* (ts-1): 9 of 10 postbacks failed (90.0 %), mostly auth, since 11-17 10:04
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from cfanalytics.exceptions import CfError, UsageError
from cfanalytics.redaction import redact
from cfanalytics.storage import Location, location

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: The state file in the store folder.
ALERTS_FILE: Final = "alerts.json"
ALERTS_VERSION: Final = 1
#: HTTP answers worth another try (and time-outs / dropped connections).
RETRY_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Slack's limit on the text of one section block.
SECTION_LIMIT: Final = 3000


class NotifyError(CfError):
    """A webhook notice could not be delivered (after its retries).

    ``refused``: the webhook answered and said no (a 4xx other than 408/425/429) — that
    notice alone failed; otherwise the webhook was unreachable, timed out or kept failing.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


# ------------------------------------------------------------------------------------------ state
def _empty() -> dict[str, Any]:
    return {"version": ALERTS_VERSION, "incidents": {}, "thresholds": {}, "notify": None}


def read_state(store_path: str | os.PathLike[str] | Location) -> dict[str, Any]:
    """The alert state of a store (empty when nothing was reported yet).

    >>> import tempfile
    >>> read_state(tempfile.mkdtemp())["incidents"]
    {}
    """
    if isinstance(store_path, Location):
        where = store_path
    else:  # a store named by its folder or URI: one line for an unreachable one
        where = location(store_path)
        where.check()
    path = where.child(ALERTS_FILE)
    found = where.read(ALERTS_FILE)  # a store on object storage keeps it under its prefix
    if found is None:
        return _empty()
    try:
        state = json.loads(found[0].decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise CfError(
            f"{path}: unreadable alert state ({exc.__class__.__name__}); move it away to start afresh"
        ) from None
    if not isinstance(state, dict) or state.get("version") != ALERTS_VERSION:
        raise CfError(f"{path}: unknown alert state format; move it away to start afresh")
    state.setdefault("incidents", {})
    state.setdefault("thresholds", {})
    state.setdefault("notify", None)
    return state


def _write_state(store_path: Path | Location, state: Mapping[str, Any], tag: str | None = None) -> None:
    """Replace ``alerts.json`` atomically; owner-only (it may hold the webhook URL).

    On object storage: an object under the store's prefix, written only if its version is still
    ``tag`` (the one seen before reading it; None: only if there is none yet).
    """
    if isinstance(store_path, Location) and store_path.remote:
        data = (json.dumps(state, indent=1, sort_keys=True) + "\n").encode()
        store_path.write(ALERTS_FILE, data, if_match=tag, if_absent=tag is None)
        return
    target = Path(store_path.uri if isinstance(store_path, Location) else store_path) / ALERTS_FILE
    tmp = target.with_name(f".{ALERTS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(state, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_incident_ids(store_path: str | os.PathLike[str] | Location, incident_ids: Iterable[str]) -> list[str]:
    """The ids among ``incident_ids`` never reported before (in their order).

    >>> import tempfile
    >>> new_incident_ids(tempfile.mkdtemp(), ["a", "b"])
    ['a', 'b']
    """
    known = read_state(store_path)["incidents"]
    return [i for i in incident_ids if i not in known]


def threshold_key(rule: str, period: Mapping[str, Any]) -> str:
    """One breached rule of one period: the unit a threshold notice is sent once for.

    >>> threshold_key("error_rate > 5%", {"from": "2026-11-17", "to": "2026-11-19"})
    'error_rate > 5% @ 2026-11-17..2026-11-19'
    """
    return f"{rule} @ {period.get('from')}..{period.get('to')}"


def record(
    store: LogStore,
    *,
    reported: Iterable[str] = (),
    notified: Iterable[str] = (),
    thresholds_notified: Iterable[str] = (),
) -> dict[str, Any]:
    """Record incidents as reported / notified and threshold notices as delivered, under the store's lock."""
    with store.lock():
        tag = store.location.read_tag(ALERTS_FILE) if store.remote else None
        state = read_state(store.location)
        now = _now()
        for incident_id in reported:
            state["incidents"].setdefault(incident_id, {"reported_at": now, "notified_at": None})
        for incident_id in notified:
            entry = state["incidents"].setdefault(incident_id, {"reported_at": now, "notified_at": None})
            entry["notified_at"] = now
        for key in thresholds_notified:
            state["thresholds"][key] = now
        _write_state(store.location, state, tag)
    return state


def check_webhook(url: str) -> str:
    """``url`` if it can be an incoming webhook (``http(s)://host/…``); else a :class:`UsageError` that
    shows no more of it than its origin.

    >>> check_webhook("ftp://example.com/x")
    Traceback (most recent call last):
    ...
    cfanalytics.exceptions.UsageError: --notify: expected an http(s):// webhook URL, not ftp://example.com/…
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--notify: expected an http(s):// webhook URL, not {webhook_origin(url)}")
    return url.strip()


def configured_webhook(store_path: str | os.PathLike[str] | Location) -> str | None:
    """The webhook URL saved with :func:`set_webhook` (None when there is none).

    >>> import tempfile
    >>> print(configured_webhook(tempfile.mkdtemp()))
    None
    """
    url = read_state(store_path).get("notify")
    return str(url) if url else None


def set_webhook(store: LogStore, url: str | None) -> None:
    """Save the webhook later reports notify (``None`` removes it), under the store's lock."""
    url = check_webhook(url) if url else None
    with store.lock():
        tag = store.location.read_tag(ALERTS_FILE) if store.remote else None
        state = read_state(store.location)
        state["notify"] = url
        _write_state(store.location, state, tag)


def due_incidents(state: Mapping[str, Any], incident_ids: Iterable[str]) -> list[str]:
    """Incidents a notice is still owed for: never reported, or reported but never delivered.

    >>> due_incidents({"incidents": {"a": {"notified_at": "x"}, "b": {"notified_at": None}}}, ["a", "b", "c"])
    ['b', 'c']
    """
    known = state["incidents"]
    return [i for i in incident_ids if i not in known or not known[i].get("notified_at")]


# ---------------------------------------------------------------------------------------- notices
def _mrkdwn(text: Any) -> str:
    """Redacted text safe in Slack mrkdwn (``&``, ``<`` and ``>`` escaped as Slack asks)."""
    out = redact(str(text)) or ""
    return out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def incident_text(incident: Mapping[str, Any]) -> str:
    """One line about one incident (``start`` already formatted in the zone the reader works in)."""
    scope = str(incident.get("scope", "")).replace("_", " ")
    name, ident = incident.get("name"), incident.get("id")
    who = f"*{_mrkdwn(name)}* ({_mrkdwn(ident)})" if name and name != ident else f"*{_mrkdwn(ident)}*"
    errors, postbacks = int(incident.get("errors") or 0), int(incident.get("postbacks") or 0)
    rate = f" ({errors / postbacks:.1%})".replace("%", " %") if postbacks else ""
    kind = incident.get("top_error_kind")
    mostly = f", mostly {_mrkdwn(kind)}" if kind else ""
    since = f", since {_mrkdwn(incident['start'])}" if incident.get("start") else ""
    return f"*New incident* · {scope} {who}: {errors} of {postbacks} postbacks failed{rate}{mostly}{since}"


def incident_notices(rows: Iterable[Mapping[str, Any]], timezone: str) -> list[dict[str, Any]]:
    """Incidents (rows of ``find_incidents`` or ``diagnose --json``) with ``start`` as a wall-clock time of
    ``timezone`` that names its zone, as :func:`incident_text` shows it.

    >>> incident_notices([{"incident_id": "i", "start": "2026-11-17T15:04:10Z"}], "America/New_York")
    [{'incident_id': 'i', 'start': '2026-11-17 10:04 EST'}]
    """
    out = []
    for row in rows:
        start = row.get("start")
        if isinstance(start, str):
            start = datetime.fromisoformat(start.replace("Z", "+00:00"))
        shown = start.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z") if start else None
        out.append({**row, "start": shown})
    return out


def threshold_text(rule_breach: str, period: Mapping[str, Any]) -> str:
    """One line about a breached ``--fail-on`` rule.

    >>> threshold_text("error_rate > 5%: 7.2%", {"from": "2026-11-17", "to": "2026-11-19", "timezone": "UTC"})
    '*Threshold breached* · error_rate &gt; 5%: 7.2% (2026-11-17 to 2026-11-19, UTC)'
    """
    zone = f", {period['timezone']}" if period.get("timezone") else ""
    return f"*Threshold breached* · {_mrkdwn(rule_breach)} ({period.get('from')} to {period.get('to')}{zone})"


def payload(lines: Sequence[str], *, footer: str | None = None) -> dict[str, Any]:
    """An incoming-webhook body: ``text`` (the fallback every client shows) plus one section block per line."""
    lines = [line if len(line) <= SECTION_LIMIT else line[: SECTION_LIMIT - 1] + "…" for line in lines]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]
    if footer:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(footer)}]})
    return {"text": "\n".join(lines), "blocks": blocks}


def post_webhook(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``body`` as JSON to ``url``; retry time-outs, 429 and 5xx with back-off; the final HTTP status.

    Raises :class:`NotifyError` with one redacted line when it cannot deliver.
    """
    data = json.dumps(body).encode("utf-8")
    shown = webhook_origin(url)
    last = "no answer"
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
        retry_after: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in RETRY_STATUS:
                raise NotifyError(f"notify: {shown} refused the notice ({last})", refused=True) from None
            header = exc.headers.get("Retry-After") if exc.headers else None
            retry_after = float(header) if header and header.strip().isdigit() else None
        except (TimeoutError, OSError) as exc:
            last = redact(str(getattr(exc, "reason", exc)) or exc.__class__.__name__) or exc.__class__.__name__
        if attempt < retries:
            sleep(min(retry_after if retry_after is not None else backoff * 2**attempt * (0.5 + random.random()), 60))
    tries = "1 try" if retries == 0 else f"{retries + 1} tries"
    raise NotifyError(f"notify: {shown} did not take the notice after {tries} ({last})")


def webhook_origin(url: str) -> str:
    """What messages show of a webhook URL: its origin only (the path of an incoming webhook is its secret).

    >>> webhook_origin("https://hooks.slack.com/services/T0/B0/abcdef")
    'https://hooks.slack.com/…'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "the webhook"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…" if parts.scheme else "the webhook"


@dataclass
class NotifyResult:
    """What a :func:`notify` run delivered, and what stays due."""

    incidents_sent: list[str] = field(default_factory=list)
    thresholds_sent: list[str] = field(default_factory=list)
    #: One line per failed delivery (redacted; the webhook shown by its origin only).
    errors: list[str] = field(default_factory=list)
    #: Notices due but not delivered (failed, or not tried after the webhook stopped answering).
    not_sent: int = 0

    def error_line(self) -> str | None:
        """One line about what failed and stays due (None when everything due was delivered).

        >>> NotifyResult(errors=["notify: https://hooks.slack.com/… refused the notice (HTTP 404)"],
        ...              not_sent=3).error_line()
        'notify: https://hooks.slack.com/… refused the notice (HTTP 404); 3 notices not delivered, due again next run'
        """
        if not self.errors:
            return None
        plural = "notice" if self.not_sent == 1 else "notices"
        return f"{self.errors[0]}; {self.not_sent} {plural} not delivered, due again next run"

    def to_json(self, url: str) -> dict[str, Any]:
        """The result for ``--json`` (the webhook by its origin only)."""
        return {
            "webhook": webhook_origin(url),
            "incidents_sent": self.incidents_sent,
            "thresholds_sent": self.thresholds_sent,
            "not_sent": self.not_sent,
            "errors": self.errors,
        }


def notify(
    store: LogStore,
    url: str,
    incidents: Sequence[Mapping[str, Any]],
    breached: Sequence[tuple[str, str]],
    period: Mapping[str, Any],
    *,
    footer: str = "cfanalytics report",
    **post: Any,
) -> NotifyResult:
    """Send each incident and each breached rule that is still due, once; record each delivery at once.

    ``incidents`` carry ``incident_id`` and the fields :func:`incident_text` shows; ``breached`` holds
    ``(rule, message)`` pairs. A delivery the webhook refused (4xx) fails alone; once the webhook is
    unreachable or keeps failing, the rest is not tried. What was not delivered stays due (counted in
    ``not_sent``, the failures in ``errors``); ``post`` goes to :func:`post_webhook`.
    """
    state = read_state(store.location)
    result = NotifyResult()
    footer = f"{footer} · {period.get('from')} to {period.get('to')}"
    due = set(due_incidents(state, [str(i["incident_id"]) for i in incidents]))
    notices: list[tuple[str, str, dict[str, Any]]] = [
        ("incident", str(i["incident_id"]), payload([incident_text(i)], footer=f"{footer} · {i['incident_id']}"))
        for i in incidents
        if str(i["incident_id"]) in due
    ]
    notices += [
        ("threshold", threshold_key(rule, period), payload([threshold_text(message, period)], footer=footer))
        for rule, message in breached
        if threshold_key(rule, period) not in state["thresholds"]
    ]
    for n, (what, key, body) in enumerate(notices):
        try:
            post_webhook(url, body, **post)
        except NotifyError as exc:
            result.errors.append(str(exc))
            result.not_sent += 1
            if not exc.refused:  # unreachable or failing: the rest waits for the next run
                result.not_sent += len(notices) - n - 1
                break
            continue
        if what == "incident":
            record(store, notified=[key])
            result.incidents_sent.append(key)
        else:
            record(store, thresholds_notified=[key])
            result.thresholds_sent.append(key)
    return result


__all__ = [
    "ALERTS_FILE",
    "NotifyError",
    "NotifyResult",
    "check_webhook",
    "configured_webhook",
    "due_incidents",
    "incident_notices",
    "incident_text",
    "new_incident_ids",
    "notify",
    "payload",
    "post_webhook",
    "read_state",
    "record",
    "set_webhook",
    "threshold_key",
    "threshold_text",
    "webhook_origin",
]
