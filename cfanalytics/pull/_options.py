"""Options of a pull, its error type, the kinds it pulls, and the small text helpers it shares.

>>> PullOptions(page_size=500).check()
>>> parse_kinds("clicks")
('events',)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from cfanalytics.exceptions import CfError, UsageError
from cfanalytics.pull._vocabulary import MAX_PAGE, MAX_PAGE_SIZE, SORT_BY, request_fields

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_SETTLE",
    "PULL_KINDS",
    "STORE_KINDS",
    "PullError",
    "PullOptions",
    "one_line",
    "parse_kinds",
    "parse_settle",
    "utc_text",
]

DEFAULT_BASE_URL: Final = "https://public-api.clickflare.io/api"
API_KEY_ENV: Final = "CLICKFLARE_API_KEY"
#: What ``--kinds`` accepts: ``events`` is visits, clicks and conversions (one endpoint).
PULL_KINDS: Final[tuple[str, ...]] = ("events", "postbacks")
#: Store tables each pull kind feeds.
STORE_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "events": ("visits", "clicks", "conversions"),
    "postbacks": ("postbacks",),
}
#: A window counts as finished once its end is this old (postbacks are fired, and logged, late).
DEFAULT_SETTLE: Final[dict[str, timedelta]] = {"events": timedelta(hours=6), "postbacks": timedelta(hours=48)}


class PullError(CfError):
    """The API refused the pull or stayed unreachable; one line, never holding the key."""

    exit_code = 1


@dataclass
class PullOptions:
    """How to talk to the API; every default suits a scheduled job.

    ``sleep``, ``monotonic``, ``now`` and ``rng`` are injectable so tests run
    without waiting and with a chosen wall clock.
    """

    base_url: str | None = None  # None: the store's config, else DEFAULT_BASE_URL
    page_size: int = MAX_PAGE_SIZE
    rate_limit: float = 2.0  # requests per second
    timeout: float = 60.0  # seconds per socket operation
    max_attempts: int = 8  # per request
    backoff: float = 1.0  # first retry delay, doubled each attempt
    backoff_cap: float = 120.0
    max_retry_after: float = 900.0  # a longer Retry-After stops the pull
    settle: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_SETTLE))
    include_filtered: bool = False
    refresh: bool = False  # re-pull finished windows too
    progress: bool = False  # a progress bar per window on a terminal
    max_mismatches: int = 32  # fetches of one day whose rows missed the counter, before the day fails
    #: Fields asked on top of the defaults, per kind (``OPTIONAL_FIELDS`` lists the known ones).
    extra_fields: Mapping[str, Sequence[str]] = field(default_factory=dict)
    sort_by: Mapping[str, str] = field(default_factory=lambda: dict(SORT_BY))  # the sort per kind
    max_page: int = MAX_PAGE  # the API's last page: a window needing more is split before paging
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(tz=UTC))
    rng: random.Random = field(default_factory=random.Random)

    def check(self) -> None:
        """Refuse values the API or the arithmetic cannot take (``UsageError``)."""
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise UsageError(f"--page-size {self.page_size}: must be 1…{MAX_PAGE_SIZE}")
        if not self.rate_limit > 0:
            raise UsageError(f"--rate-limit {self.rate_limit}: must be above 0 requests per second")
        if not self.timeout > 0:
            raise UsageError(f"--timeout {self.timeout}: must be above 0 seconds")
        if self.max_attempts < 1:
            raise UsageError(f"--retries: at least 1 attempt, got {self.max_attempts}")
        if self.max_mismatches < 0:
            raise UsageError(f"max_mismatches: 0 or more, got {self.max_mismatches}")
        if self.backoff < 0:
            raise UsageError(f"--backoff {self.backoff}: must be 0 or more seconds")
        if not 1 <= self.max_page <= MAX_PAGE:
            raise UsageError(f"max_page {self.max_page}: must be 1…{MAX_PAGE}")
        for kind, names in self.extra_fields.items():
            if kind not in PULL_KINDS:
                raise UsageError(f"extra fields for {kind!r}: expected one of {', '.join(PULL_KINDS)}")
            try:
                request_fields(kind, names, self.sort_by.get(kind))
            except ValueError as exc:
                raise UsageError(f"extra fields for {kind}: {exc}") from None
        for kind, settle in self.settle.items():
            if kind not in PULL_KINDS:
                raise UsageError(f"--settle {kind}: expected one of {', '.join(PULL_KINDS)}")
            if settle < timedelta(0):
                raise UsageError(f"--settle {kind}: must be 0 or more hours")


def parse_settle(items: Sequence[str] | None) -> dict[str, timedelta]:
    """``--settle KIND=HOURS`` items over the defaults.

    >>> parse_settle(["postbacks=72"])["postbacks"]
    datetime.timedelta(days=3)
    >>> parse_settle(None)["events"]
    datetime.timedelta(seconds=21600)
    """
    out = dict(DEFAULT_SETTLE)
    for item in items or ():
        kind, sep, hours = item.partition("=")
        kind = kind.strip().lower()
        try:
            value = float(hours)
        except ValueError:
            value = math.nan
        if not sep or kind not in PULL_KINDS or not value >= 0:
            raise UsageError(f"--settle {item!r}: expected events=HOURS or postbacks=HOURS")
        out[kind] = timedelta(hours=value)
    return out


def parse_kinds(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--kinds`` as pull kinds; ``visits``/``clicks``/``conversions`` mean ``events``.

    >>> parse_kinds("postbacks,visits")
    ('events', 'postbacks')
    >>> parse_kinds(None)
    ('events', 'postbacks')
    """
    if text is None:
        return PULL_KINDS
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted: set[str] = set()
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item in ("visits", "clicks", "conversions", "events"):
            wanted.add("events")
        elif item == "postbacks":
            wanted.add("postbacks")
        else:
            raise UsageError(f"--kinds {item!r}: expected events (visits, clicks, conversions) or postbacks")
    if not wanted:
        raise UsageError("--kinds: name at least one of events, postbacks")
    return tuple(k for k in PULL_KINDS if k in wanted)


def utc_text(t: datetime) -> str:
    """``t`` as ``YYYY-MM-DDTHH:MM:SSZ``.

    >>> utc_text(datetime(2026, 11, 16, 5, tzinfo=UTC))
    '2026-11-16T05:00:00Z'
    """
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none).

    >>> one_line(ValueError("bad\\nmore"))
    'bad'
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
