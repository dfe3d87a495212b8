"""Meta Conversions API events: JSON request bodies for the ``/events`` edge (docs/contract.md §6).

Each batch is ``{"endpoint": …, "body": {"data": [event, …]}}`` with at most
:data:`BATCH_SIZE` events, the documented maximum of ``data``
(https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api).
An event has ``event_name``, ``event_time`` (Unix seconds, at most 7 days old when
sent: https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/),
``event_id`` (the conversion's identity, so Meta de-duplicates a conversion sent
twice), ``action_source`` ``website``, ``user_data`` and ``custom_data``
(``value``, ``currency``). ``user_data.fbc`` is built from the fbclid as Meta documents
it: ``fb.1.<creation time in ms>.<fbclid>``, the creation time being when the click
was seen (the visit) —
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc/ .
The endpoint is the failed postback's URL without its query (the access token is
never written); the token is added when the batch is posted.

>>> fbc("IwAR2F4", datetime(2026, 11, 20, 0, 0, tzinfo=UTC))
'fb.1.1795132800000.IwAR2F4'
>>> event_name("lead", None), event_name("sale", None), event_name("x", "Download")
('Lead', 'Purchase', 'Download')
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

FILE_NAME: Final = "meta_capi_events.json"
BATCH_SIZE: Final = 1000
ACTION_SOURCE: Final = "website"

#: ct → Meta standard event, when the failed postback does not name its event.
EVENTS: Final[dict[str, str]] = {
    "sale": "Purchase",
    "purchase": "Purchase",
    "deposit": "Purchase",
    "lead": "Lead",
    "signup": "CompleteRegistration",
    "registration": "CompleteRegistration",
    "install": "Purchase",
}


def event_name(ct: str | None, posted: str | None) -> str:
    """The event name: the one the failed postback sent, else the ct's standard event, else ``Purchase``."""
    if posted:
        return posted
    return EVENTS.get((ct or "").lower(), "Purchase")


def fbc(fbclid: str, seen: datetime) -> str:
    """Meta's formatted click id: ``fb.1.<ms since epoch when the fbclid was seen>.<fbclid>`` (case kept)."""
    return f"fb.1.{int(seen.timestamp() * 1000)}.{fbclid}"


def event(row: dict[str, Any]) -> dict[str, Any]:
    """One Conversions API event of an included conversion row."""
    seen = row["visit_time"] or row["conversion_time"]
    user: dict[str, Any] = {"fbc": fbc(row["platform_click_id"], seen)}
    if row.get("ip"):
        user["client_ip_address"] = row["ip"]
    if row.get("user_agent"):
        user["client_user_agent"] = row["user_agent"]
    custom: dict[str, Any] = {}
    if row["payout"] is not None:
        custom["value"] = float(row["payout"])
    if row["currency"]:
        custom["currency"] = row["currency"]
    return {
        "event_name": event_name(row["ct"], row.get("event")),
        "event_time": int(row["conversion_time"].astimezone(UTC).timestamp()),
        "event_id": row["key"],
        "action_source": ACTION_SOURCE,
        "user_data": user,
        "custom_data": custom,
    }


def batches(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Request bodies per endpoint, at most :data:`BATCH_SIZE` events each, in conversion-time order."""
    out: list[dict[str, Any]] = []
    by_endpoint: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows.iter_rows(named=True):
        by_endpoint.setdefault(row["endpoint"], []).append(event(row))
    for endpoint in sorted(by_endpoint, key=lambda e: e or ""):
        events = by_endpoint[endpoint]
        for i in range(0, len(events), BATCH_SIZE):
            out.append({"endpoint": endpoint, "body": {"data": events[i : i + BATCH_SIZE]}})
    return out


def render(rows: pl.DataFrame) -> str:
    """The file's text: a JSON array of batches."""
    return json.dumps(batches(rows), indent=1, ensure_ascii=False) + "\n"
