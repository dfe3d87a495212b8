"""TikTok Events API events: JSON request bodies for ``/open_api/v1.3/event/track/`` (docs/contract.md §6).

Each batch is ``{"endpoint": …, "body": {"event_source": "web", "event_source_id":
<pixel code>, "data": [event, …]}}``; an event has ``event``, ``event_time`` (Unix
seconds), ``event_id`` (the conversion's identity, for de-duplication),
``user.ttclid`` (the TikTok click id, ``E.C.P.…``), ``user.ip`` / ``user.user_agent``
when stored, and ``properties`` ``value`` / ``currency``, as in TikTok's Events API 2.0
payload (https://ads.tiktok.com/help/article/events-api). Batches hold at most
1000 events (``_json_batches.BATCH_SIZE``, the size Meta documents; no larger TikTok limit
was found, so the same cap is kept). The pixel code comes from the failed postback's
``pixel_code`` parameter; the access token goes in a header when posting and is
never written here.

>>> event_name("signup", None), event_name("sale", None)
('CompleteRegistration', 'CompletePayment')
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

import polars as pl

from cfanalytics.recover import _json_batches
from cfanalytics.recover._json_batches import stored, unix_time, value

FILE_NAME: Final = "tiktok_events.json"
EVENT_SOURCE: Final = "web"

#: Stored column → field of ``user``.
USER_FIELDS: Final = {"ip": "ip", "user_agent": "user_agent"}
#: The event name of ``(ct, posted)``: the one the failed postback sent, else the ct's standard event
#: (``_json_batches.STANDARD_EVENTS``), else ``CompletePayment``.
event_name: Final = partial(_json_batches.event_name, "tiktok")


def event(row: dict[str, Any]) -> dict[str, Any]:
    """One Events API event of an included conversion row."""
    return {
        "event": event_name(row["ct"], row.get("event")),
        "event_time": unix_time(row["conversion_time"]),
        "event_id": row["key"],
        "user": {"ttclid": row["platform_click_id"], **stored(row, USER_FIELDS)},
        "properties": value(row),
    }


def _endpoint_and_pixel(row: dict[str, Any]) -> tuple[str, str]:
    return row["endpoint"] or "", row["pixel"] or ""


def batches(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Request bodies per (endpoint, pixel), at most ``_json_batches.BATCH_SIZE`` events each."""
    return [
        {
            "endpoint": endpoint or None,
            "body": {"event_source": EVENT_SOURCE, "event_source_id": pixel or None, "data": events},
        }
        for (endpoint, pixel), events in _json_batches.batches(rows, _endpoint_and_pixel, event, order=tuple)
    ]


def render(rows: pl.DataFrame) -> str:
    """The file's text: a JSON array of batches."""
    return _json_batches.render(batches(rows))
