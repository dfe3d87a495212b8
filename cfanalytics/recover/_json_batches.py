"""The JSON request-body files Meta's Conversions API and TikTok's Events API share.

Both take a conversion as an event named for its ct (each platform with its own
names for the same kinds of events), with a Unix time, the conversion's identity
for de-duplication, the click and visitor fields that were stored, and its value;
both take events in batches of at most :data:`BATCH_SIZE` per request.

>>> event_name("meta", "LEAD", None), event_name("tiktok", "install", None), event_name("tiktok", "x", "Custom")
('Lead', 'Download', 'Custom')
>>> stored({"ip": "1.2.3.4", "user_agent": None}, {"ip": "client_ip_address", "user_agent": "client_user_agent"})
{'client_ip_address': '1.2.3.4'}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import polars as pl

#: Events per request: the documented maximum of Meta's ``data``; TikTok documents no larger one.
BATCH_SIZE: Final = 1000
#: ct → the kind of standard event it stands for (a platform without a name for the ct's kind sends a purchase).
CT_KINDS: Final[dict[str, str]] = {
    "sale": "purchase",
    "purchase": "purchase",
    "deposit": "purchase",
    "lead": "lead",
    "signup": "registration",
    "registration": "registration",
    "install": "install",
}
#: Each platform's standard event per kind of ct, sent when the failed postback names no event.
STANDARD_EVENTS: Final[dict[str, dict[str, str]]] = {
    "meta": {"purchase": "Purchase", "lead": "Lead", "registration": "CompleteRegistration", "install": "Purchase"},
    "tiktok": {
        "purchase": "CompletePayment",
        "lead": "SubmitForm",
        "registration": "CompleteRegistration",
        "install": "Download",
    },
}

Key = TypeVar("Key", bound=Hashable)


def event_name(platform: str, ct: str | None, posted: str | None) -> str:
    """The event the failed postback sent, else the ``platform``'s standard event of the ct's kind, else its
    purchase event."""
    if posted:
        return posted
    return STANDARD_EVENTS[platform][CT_KINDS.get((ct or "").lower(), "purchase")]


def unix_time(when: datetime) -> int:
    """Whole seconds since the epoch."""
    return int(when.astimezone(UTC).timestamp())


def stored(row: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """``{field: row[column]}`` for each ``column → field`` of ``fields`` whose value in ``row`` is set."""
    return {field: row[column] for column, field in fields.items() if row.get(column)}


def value(row: Mapping[str, Any]) -> dict[str, Any]:
    """The conversion's ``value`` (its payout, when known) and ``currency`` (when known)."""
    out: dict[str, Any] = {}
    if row["payout"] is not None:
        out["value"] = float(row["payout"])
    if row["currency"]:
        out["currency"] = row["currency"]
    return out


def batches(
    rows: pl.DataFrame,
    key: Callable[[dict[str, Any]], Key],
    event: Callable[[dict[str, Any]], dict[str, Any]],
    order: Callable[[Key], Any],
) -> list[tuple[Key, list[dict[str, Any]]]]:
    """The events of ``rows`` grouped by ``key`` (groups sorted by ``order`` of their key, rows in their order
    within a group) and cut into batches of at most :data:`BATCH_SIZE`."""
    groups: dict[Key, list[dict[str, Any]]] = {}
    for row in rows.iter_rows(named=True):
        groups.setdefault(key(row), []).append(event(row))
    return [
        (group, events[i : i + BATCH_SIZE])
        for group in sorted(groups, key=order)
        for events in (groups[group],)
        for i in range(0, len(events), BATCH_SIZE)
    ]


def render(bodies: list[dict[str, Any]]) -> str:
    """The file's text: a JSON array of the request bodies."""
    return json.dumps(bodies, indent=1, ensure_ascii=False) + "\n"
