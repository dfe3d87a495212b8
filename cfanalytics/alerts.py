"""Alerts that fire once: which incidents were already reported, and Slack-compatible webhook notices.

A scheduled ``cfanalytics report`` runs every hour over a period that still holds
yesterday's incidents. ``new_incidents`` must therefore mean "never reported
before", not "absent from the previous period", or the same incident alerts every
hour for a week. The store keeps what was reported in ``alerts.json`` (written
atomically under the store's writer lock):

- ``incidents``: ``incident_id`` → when it was first reported, and when a notice
  about it was delivered (``null`` until one is);
- ``thresholds``: a breached ``--fail-on`` rule of one period → when its notice was
  delivered.

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

from cfanalytics.exceptions import CfError
from cfanalytics.redaction import redact
from cfanalytics.storage import LocalLocation, Location

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: The state file in the store folder.
ALERTS_FILE: Final = "alerts.json"
ALERTS_VERSION: Final = 1
#: HTTP answers worth another try (and time-outs / dropped connections).
RETRY_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


class NotifyError(CfError):
    """A webhook notice could not be delivered (after its retries)."""


# ------------------------------------------------------------------------------------------ state
def _empty() -> dict[str, Any]:
    return {"version": ALERTS_VERSION, "incidents": {}, "thresholds": {}}


def read_state(store_path: str | os.PathLike[str] | Location) -> dict[str, Any]:
    """The alert state of a store (empty when nothing was reported yet).

    >>> import tempfile
    >>> read_state(tempfile.mkdtemp())["incidents"]
    {}
    """
    where = store_path if isinstance(store_path, Location) else LocalLocation(Path(store_path))
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
    return state


def _write_state(store_path: Path | Location, state: Mapping[str, Any], tag: str | None = None) -> None:
    if isinstance(store_path, Location) and store_path.remote:  # only if unchanged since read (``tag``)
        data = json.dumps(state, indent=1, sort_keys=True).encode()
        store_path.write(ALERTS_FILE, data, if_match=tag, if_absent=tag is None)
        return
    target = Path(store_path.uri if isinstance(store_path, Location) else store_path) / ALERTS_FILE
    tmp = target.with_name(f".{ALERTS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_incident_ids(store_path: str | os.PathLike[str], incident_ids: Iterable[str]) -> list[str]:
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


def threshold_text(rule_breach: str, period: Mapping[str, Any]) -> str:
    """One line about a breached ``--fail-on`` rule.

    >>> threshold_text("error_rate > 5%: 7.2%", {"from": "2026-11-17", "to": "2026-11-19", "timezone": "UTC"})
    '*Threshold breached* · error_rate &gt; 5%: 7.2% (2026-11-17 to 2026-11-19, UTC)'
    """
    zone = f", {period['timezone']}" if period.get("timezone") else ""
    return f"*Threshold breached* · {_mrkdwn(rule_breach)} ({period.get('from')} to {period.get('to')}{zone})"


def payload(lines: Sequence[str], *, footer: str | None = None) -> dict[str, Any]:
    """An incoming-webhook body: ``text`` (the fallback every client shows) plus one section block per line."""
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
                raise NotifyError(f"notify: {shown} refused the notice ({last})") from None
            header = exc.headers.get("Retry-After") if exc.headers else None
            retry_after = float(header) if header and header.strip().isdigit() else None
        except (TimeoutError, OSError) as exc:
            last = redact(str(getattr(exc, "reason", exc)) or exc.__class__.__name__) or exc.__class__.__name__
        if attempt < retries:
            sleep(min(retry_after if retry_after is not None else backoff * 2**attempt * (0.5 + random.random()), 60))
    raise NotifyError(f"notify: {shown} did not take the notice after {retries + 1} tries ({last})")


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
    errors: list[str] = field(default_factory=list)


def notify(
    store: LogStore,
    url: str,
    incidents: Sequence[Mapping[str, Any]],
    breached: Sequence[tuple[str, str]],
    period: Mapping[str, Any],
    **post: Any,
) -> NotifyResult:
    """Send each incident and each breached rule that is still due, once; record what was delivered.

    ``incidents`` carry ``incident_id`` and the fields :func:`incident_text` shows; ``breached`` holds
    ``(rule, message)`` pairs. A failed delivery is reported in ``errors`` (one line each) and stays due.
    """
    state = read_state(store.location)
    result = NotifyResult()
    footer = f"cfanalytics report · {period.get('from')} to {period.get('to')}"
    due = set(due_incidents(state, [str(i["incident_id"]) for i in incidents]))
    for incident in incidents:
        incident_id = str(incident["incident_id"])
        if incident_id not in due:
            continue
        try:
            post_webhook(url, payload([incident_text(incident)], footer=f"{footer} · {incident_id}"), **post)
        except NotifyError as exc:
            result.errors.append(str(exc))
            continue
        result.incidents_sent.append(incident_id)
    for rule, message in breached:
        key = threshold_key(rule, period)
        if key in state["thresholds"]:
            continue
        try:
            post_webhook(url, payload([threshold_text(message, period)], footer=footer), **post)
        except NotifyError as exc:
            result.errors.append(str(exc))
            continue
        result.thresholds_sent.append(key)
    if result.incidents_sent or result.thresholds_sent:
        record(store, notified=result.incidents_sent, thresholds_notified=result.thresholds_sent)
    return result


__all__ = [
    "ALERTS_FILE",
    "NotifyError",
    "NotifyResult",
    "due_incidents",
    "incident_text",
    "new_incident_ids",
    "notify",
    "payload",
    "post_webhook",
    "read_state",
    "record",
    "threshold_key",
    "threshold_text",
    "webhook_origin",
]
