"""Meta Conversions API events: JSON request bodies for the ``/events`` edge (docs/contract.md §6).

Each batch is ``{"endpoint": …, "body": {"data": [event, …]}}`` with at most
``_json_batches.BATCH_SIZE`` (1000) events, the documented maximum of ``data``
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

>>> from datetime import UTC
>>> fbc("IwAR2F4", datetime(2026, 11, 20, 0, 0, tzinfo=UTC))
'fb.1.1795132800000.IwAR2F4'
>>> event_name("lead", None), event_name("sale", None), event_name("x", "Download")
('Lead', 'Purchase', 'Download')
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Final

import polars as pl

from cfanalytics.recover import _json_batches
from cfanalytics.recover._json_batches import stored, unix_time, value

FILE_NAME: Final = "meta_capi_events.json"
ACTION_SOURCE: Final = "website"

#: Stored column → field of ``user_data``.
USER_FIELDS: Final = {"ip": "client_ip_address", "user_agent": "client_user_agent"}
#: The event name of ``(ct, posted)``: the one the failed postback sent, else the ct's standard event
#: (``_json_batches.STANDARD_EVENTS``), else ``Purchase``.
event_name: Final = partial(_json_batches.event_name, "meta")


def fbc(fbclid: str, seen: datetime) -> str:
    """Meta's formatted click id: ``fb.1.<ms since epoch when the fbclid was seen>.<fbclid>`` (case kept)."""
    return f"fb.1.{int(seen.timestamp() * 1000)}.{fbclid}"


def event(row: dict[str, Any]) -> dict[str, Any]:
    """One Conversions API event of an included conversion row."""
    seen = row["visit_time"] or row["conversion_time"]
    return {
        "event_name": event_name(row["ct"], row.get("event")),
        "event_time": unix_time(row["conversion_time"]),
        "event_id": row["key"],
        "action_source": ACTION_SOURCE,
        "user_data": {"fbc": fbc(row["platform_click_id"], seen), **stored(row, USER_FIELDS)},
        "custom_data": value(row),
    }


def batches(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Request bodies per endpoint, at most ``_json_batches.BATCH_SIZE`` events each, in conversion-time order."""
    groups = _json_batches.batches(rows, lambda r: r["endpoint"], event, order=lambda e: e or "")
    return [{"endpoint": endpoint, "body": {"data": events}} for endpoint, events in groups]


def render(rows: pl.DataFrame) -> str:
    """The file's text: a JSON array of batches."""
    return _json_batches.render(batches(rows))
