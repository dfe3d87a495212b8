"""The simulated records, and what a correct ingest does with each (its *fate*).

Shared by the simulation that makes them, the writers that export them and the
truth that scores them.

>>> MACRO_RE.search("{clickid}") is not None, UUID_RE.match("not-a-uuid") is None
(True, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from cfanalytics.sample._account import Campaign, Entity, Offer, TrafficSource

__all__ = [
    "ALREADY_STORED",
    "MACRO_RE",
    "STORED",
    "UUID_RE",
    "Activity",
    "Conversion",
    "Fault",
    "Postback",
    "Row",
    "Visit",
]

MACRO_RE: Final = re.compile(r"\{[^}]*\}|\[[A-Za-z_]+\]|%7[Bb].*%7[Dd]")
UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

STORED: Final = "stored"
ALREADY_STORED: Final = "already_stored"


@dataclass(slots=True)
class Visit:
    """A simulated visit (click id, time, campaign and the visitor's details)."""

    click_id: str
    time: datetime
    campaign: Campaign
    source: TrafficSource
    offer: Offer
    lander: Entity
    network: Entity
    external_id: str
    ip: str
    country: str
    city: str
    device: tuple[str, str, str, str]
    referrer: str
    tracking: tuple[str, str]


@dataclass(slots=True)
class Conversion:
    """A conversion as the tracker received it, and its fate at ingest."""

    click_id: str
    time: datetime
    visit: Visit | None
    ct: str
    txid: str
    payout: float | None  # as stored (None when the written value does not parse)
    payout_written: Any
    event_type: str = "Conversion"
    fate: str = STORED
    flags: tuple[str, ...] = ()

    @property
    def source_id(self) -> str | None:
        """Traffic source of the converting visit, if known."""
        return self.visit.source.id if self.visit else None

    @property
    def network_id(self) -> str | None:
        """Affiliate network of the converting visit's offer, if known."""
        return self.visit.network.id if self.visit else None


@dataclass(slots=True)
class Postback:
    """A postback the tracker fired, and its fate at ingest."""

    postback_id: str
    click_id: str
    time: datetime
    is_error: bool
    status: int | None  # as stored (None: no response, or a value that does not parse)
    status_written: str
    message: str
    url: str
    ct: str
    source_id: str  # "" when the postback cannot be tied to a traffic source
    integration_id: str
    campaign_id: str
    event: str
    source_column: bool = True  # the UI row shows its traffic source and campaign
    is_error_written: str | None = None
    fate: str = STORED
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class Activity:
    """One row of the system activity log."""

    time: datetime
    author: str
    entity_type: str  # as exported ("Traffic Source")
    entity_id: str
    entity_name: str
    action: str  # as exported ("Updated")
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(slots=True)
class Fault:
    """A time-boxed postback failure of one traffic source."""

    name: str
    source: TrafficSource
    hour: datetime  # first UTC hour bucket
    begin: datetime  # failures from here…
    end: datetime  # …until here (exclusive)
    fail_share: float
    error_kind: str
    push: tuple[datetime, datetime]  # extra traffic on the source, so every incident hour has volume
    cause: Activity | None = None  # the edit that caused it (None: nobody's edit)
    fix: Activity | None = None  # the edit that ended it (None: it ended by itself)
    decoys: list[Activity] = field(default_factory=list)  # edits just before it that did not cause it

    def active(self, source: TrafficSource, t: datetime) -> bool:
        """True when a postback of ``source`` fired at ``t`` falls in this fault."""
        return source.id == self.source.id and self.begin <= t < self.end


@dataclass(slots=True)
class Row:
    """One record of an output file, with what a correct ingest does with it."""

    values: Any
    order: tuple[datetime, int]
    fate: str = STORED
    flags: tuple[str, ...] = ()
