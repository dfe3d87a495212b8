"""TikTok Events API events: JSON request bodies for ``/open_api/v1.3/event/track/`` (docs/contract.md §6).

Each batch is ``{"endpoint": …, "body": {"event_source": "web", "event_source_id":
<pixel code>, "data": [event, …]}}``; an event has ``event``, ``event_time`` (Unix
seconds), ``event_id`` (the conversion's identity, for de-duplication),
``user.ttclid`` (the TikTok click id, ``E.C.P.…``), ``user.ip`` / ``user.user_agent``
when stored, and ``properties`` ``value`` / ``currency``, as in TikTok's Events API 2.0
payload (https://ads.tiktok.com/help/article/events-api). Batches hold at most
:data:`BATCH_SIZE` events (the size Meta documents; no larger TikTok limit was found,
so the same cap is kept). The pixel code comes from the failed postback's
``pixel_code`` parameter; the access token goes in a header when posting and is
never written here.

>>> event_name("signup", None), event_name("sale", None)
('CompleteRegistration', 'CompletePayment')
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any, Final

import polars as pl

FILE_NAME: Final = "tiktok_events.json"
BATCH_SIZE: Final = 1000
EVENT_SOURCE: Final = "web"

#: ct → TikTok standard event, when the failed postback does not name its event.
EVENTS: Final[dict[str, str]] = {
    "sale": "CompletePayment",
    "purchase": "CompletePayment",
    "deposit": "CompletePayment",
    "lead": "SubmitForm",
    "signup": "CompleteRegistration",
    "registration": "CompleteRegistration",
    "install": "Download",
}


def event_name(ct: str | None, posted: str | None) -> str:
    """The event name: the one the failed postback sent, else the ct's standard event, else ``CompletePayment``."""
    if posted:
        return posted
    return EVENTS.get((ct or "").lower(), "CompletePayment")


def event(row: dict[str, Any]) -> dict[str, Any]:
    """One Events API event of an included conversion row."""
    user: dict[str, Any] = {"ttclid": row["platform_click_id"]}
    if row.get("ip"):
        user["ip"] = row["ip"]
    if row.get("user_agent"):
        user["user_agent"] = row["user_agent"]
    props: dict[str, Any] = {}
    if row["payout"] is not None:
        props["value"] = float(row["payout"])
    if row["currency"]:
        props["currency"] = row["currency"]
    return {
        "event": event_name(row["ct"], row.get("event")),
        "event_time": int(row["conversion_time"].astimezone(UTC).timestamp()),
        "event_id": row["key"],
        "user": user,
        "properties": props,
    }


def batches(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Request bodies per (endpoint, pixel), at most :data:`BATCH_SIZE` events each."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows.iter_rows(named=True):
        groups.setdefault((row["endpoint"] or "", row["pixel"] or ""), []).append(event(row))
    out: list[dict[str, Any]] = []
    for endpoint, pixel in sorted(groups):
        events = groups[(endpoint, pixel)]
        for i in range(0, len(events), BATCH_SIZE):
            body = {"event_source": EVENT_SOURCE, "event_source_id": pixel or None, "data": events[i : i + BATCH_SIZE]}
            out.append({"endpoint": endpoint or None, "body": body})
    return out


def render(rows: pl.DataFrame) -> str:
    """The file's text: a JSON array of batches."""
    return json.dumps(batches(rows), indent=1, ensure_ascii=False) + "\n"
