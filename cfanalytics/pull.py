"""Pull event logs and postback status from the ClickFlare API into a store.

``cfanalytics pull`` (and :func:`pull`) asks ClickFlare's public API for one
local day at a time — ``POST /event-logs`` (visits, clicks and conversions)
and ``POST /postback-status/logs`` — and loads every day through the same
readers, normalisation and validation as an export file (the API's PascalCase
spelling, docs/contract.md §2). One day of one endpoint is one *window*, and one window is
one input: its ``_row_id`` ordinals are counted after all its pages, so a
re-pull of the same day stores nothing twice.

What it does about the real world:

- **Paging** uses a stable sort (the event's time, ascending) and checks that
  the rows read equal ``totals.counter`` and that the counter did not move
  between pages. When they differ (rows arriving mid-pull; offset paging
  that skipped or repeated a row) the window is fetched again split in two
  halves, recursively; a window that fits one page is one atomic answer.
- **Retries** with exponential back-off and jitter on 429 (``Retry-After`` is
  honoured), 408, 5xx, time-outs, dropped connections and truncated or
  undecodable bodies; a client-side rate limit (default 2 requests/s). 401/403
  (a bad key, or a plan without API access) and 404 (a wrong ``--base-url``)
  stop the pull with one line.
- **Incremental and resumable**: a window is recorded as *finished* in the
  pull ledger only once its end is older than a settle time (6 h for events,
  48 h for postbacks, which arrive late); later runs skip finished windows and
  re-pull the others. A kill at any moment loses at most the window in flight.

The pull ledger is ``pull_state.json`` in the store folder (written atomically
under the store lock); it cannot be derived from the Delta commits because a
day that brings no new row makes no commit. The Delta commits of a pull name
their source ``clickflare-api:/event-logs 2026-11-16 (America/New_York)``, so
``cfanalytics batches`` lists them like files.

The API key comes from ``CLICKFLARE_API_KEY``, or from the store's config,
which names another environment variable or a key file outside the store
(:func:`configure`); it is sent only as the ``api-key`` header and never
printed, logged or written anywhere.

>>> day_window(date(2026, 11, 16), "America/New_York")
('2026-11-16 00:00:00', '2026-11-16 23:59:59')
>>> split_window("2026-11-16 00:00:00", "2026-11-16 23:59:59")
(('2026-11-16 00:00:00', '2026-11-16 11:59:59'), ('2026-11-16 12:00:00', '2026-11-16 23:59:59'))
>>> from cfanalytics.pull import pull  # doctest: +SKIP
>>> pull(store, date(2026, 11, 16), date(2026, 11, 19)).rows  # doctest: +SKIP
{'visits': 20003, 'clicks': 9012, 'conversions': 1702, 'postbacks': 1551}
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import json
import logging
import math
import os
import random
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from cfanalytics.exceptions import CfError, UsageError
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_SETTLE",
    "ENDPOINTS",
    "LEDGER_FILE",
    "PULL_KINDS",
    "ApiClient",
    "PullError",
    "PullOptions",
    "PullResult",
    "WindowResult",
    "configure",
    "day_window",
    "ledger",
    "parse_kinds",
    "parse_settle",
    "pull",
    "split_window",
    "window_text",
]

DEFAULT_BASE_URL: Final = "https://public-api.clickflare.io/api"
API_KEY_ENV: Final = "CLICKFLARE_API_KEY"
LEDGER_FILE: Final = "pull_state.json"
LEDGER_FORMAT: Final = 1
MAX_PAGE_SIZE: Final = 1000
#: What ``--kinds`` accepts: ``events`` is visits, clicks and conversions (one endpoint).
PULL_KINDS: Final[tuple[str, ...]] = ("events", "postbacks")
ENDPOINTS: Final[dict[str, str]] = {"events": "/event-logs", "postbacks": "/postback-status/logs"}
#: Store tables each pull kind feeds.
STORE_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "events": ("visits", "clicks", "conversions"),
    "postbacks": ("postbacks",),
}
#: A window counts as finished once its end is this old (postbacks are fired, and logged, late).
DEFAULT_SETTLE: Final[dict[str, timedelta]] = {"events": timedelta(hours=6), "postbacks": timedelta(hours=48)}
#: The stable sort of each endpoint: the event's own time, ascending.
SORT_BY: Final[dict[str, str]] = {"events": "EventTime", "postbacks": "PostbackTime"}
_TEXT_TIME: Final = "%Y-%m-%d %H:%M:%S"
_VISIT_FIELDS: Final[tuple[str, ...]] = (
    "CampaignID", "CampaignName", "TrafficSourceID", "TrafficSourceName", "OfferID", "OfferName",
    "LanderID", "LanderName", "FlowID", "AffiliateNetworkID", "AffiliateNetworkName", "ExternalID",
    "IP", "Country", "Region", "City", "ISP", "ConnectionType", "DeviceType", "OS", "OSVersion",
    "Browser", "BrowserVersion", "DeviceBrand", "DeviceModel", "Language", "UserAgent", "Referrer",
    "BotScore", "IsFiltered",
    *(f"TrackingField{i}" for i in range(1, 11)),
)  # fmt: skip
#: Fields requested from each endpoint (PascalCase, as the API spells them).
METRICS: Final[dict[str, tuple[str, ...]]] = {
    "events": (
        "EventType", "ClickID", "VisitTime", "ClickTime", "ConversionDate", *_VISIT_FIELDS, "Cta",
        "ConversionPayout", "Currency", "ConversionTransaction", "Ct", "CustomConversionNumber", "Status",
    ),
    "postbacks": (
        "PostbackID", "ClickID", "PostbackTime", "IsError", "StatusCode", "ErrorMessage", "PostbackUrl", "Ct",
        "CustomConversionIndex", "IntegrationID", "IntegrationName", "Event", "ClickTime", "TrafficSourceID",
        "TrafficSourceName", "CampaignID", "CampaignName",
    ),
}  # fmt: skip
#: Windows are never split below this many seconds.
_MIN_SPAN: Final = 1

_log = logging.getLogger(__name__)


class PullError(CfError):
    """The API refused the pull or stayed unreachable; one line, never holding the key."""

    exit_code = 1


# ----------------------------------------------------------------------------- options
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
    metrics: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(METRICS))  # fields asked per kind
    sort_by: Mapping[str, str] = field(default_factory=lambda: dict(SORT_BY))  # the stable sort per kind
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
        for kind, settle in self.settle.items():
            if kind not in PULL_KINDS:
                raise UsageError(f"--settle {kind}: expected one of {', '.join(PULL_KINDS)}")
            if settle < timedelta(0):
                raise UsageError(f"--settle {kind}: must be 0 or more hours")


# ----------------------------------------------------------------------------- results
@dataclass
class WindowResult:
    """One local day of one endpoint: what was read, stored, and its ledger status.

    ``status``: ``finished`` (settled, recorded; later runs skip it), ``pulled``
    (newer than the settle time; the next run pulls it again), ``skipped``
    (finished by an earlier run) or ``failed``.
    """

    kind: str
    day: date
    start: datetime  # UTC, local midnight
    end: datetime  # UTC, the next local midnight (exclusive)
    status: str = "pulled"
    rows: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    already_stored: int = 0
    quarantined: int = 0
    requests: int = 0
    splits: int = 0
    batches: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The window's entry of ``cfanalytics pull --json``."""
        return {
            "kind": self.kind,
            "date": self.day.isoformat(),
            "start": _z(self.start),
            "end": _z(self.end),
            "rows": self.rows,
            "status": self.status,
            "stored": dict(self.stored),
            "already_stored": self.already_stored,
            "quarantined": self.quarantined,
            "requests": self.requests,
            "splits": self.splits,
            "error": self.error,
        }


@dataclass
class PullResult:
    """What a pull did: its windows, new rows per table, and the requests it took."""

    store: str
    timezone: str
    windows: list[WindowResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    @property
    def ok(self) -> bool:
        """True when no window failed."""
        return not self.failures

    @property
    def failures(self) -> list[str]:
        """One line per failed window."""
        return [f"{w.kind} {w.day}: {w.error}" for w in self.windows if w.status == "failed"]

    @property
    def rows(self) -> dict[str, int]:
        """New rows stored per table, over all windows."""
        kinds = [k for w in self.windows for k in STORE_KINDS[w.kind]]
        out = dict.fromkeys(dict.fromkeys(kinds), 0)
        for w in self.windows:
            for k, n in w.stored.items():
                out[k] = out.get(k, 0) + n
        return out

    def to_json(self) -> dict[str, Any]:
        """The document of ``cfanalytics pull --json`` (``docs/schemas/pull.schema.json``)."""
        return {
            "store": self.store,
            "timezone": self.timezone,
            "windows": [w.to_json() for w in self.windows],
            "rows": self.rows,
            "already_stored": sum(w.already_stored for w in self.windows),
            "quarantined": sum(w.quarantined for w in self.windows),
            "requests": self.requests,
            "retries": self.retries,
            "failures": self.failures,
        }


# ----------------------------------------------------------------------------- windows
def day_window(day: date, timezone: str) -> tuple[str, str]:
    """The API's ``startDate``/``endDate`` of a local day (both inclusive, to the second).

    >>> day_window(date(2026, 3, 8), "America/New_York")  # 23 hours long, same wall-clock bounds
    ('2026-03-08 00:00:00', '2026-03-08 23:59:59')
    """
    ZoneInfo(timezone)
    return f"{day.isoformat()} 00:00:00", f"{day.isoformat()} 23:59:59"


def split_window(start: str, end: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """Halve an inclusive wall-clock window ``[start, end]``; None when it is one second.

    Splitting works on local wall-clock seconds, as the API reads the bounds.

    >>> split_window("2026-11-16 10:00:00", "2026-11-16 10:00:01")
    (('2026-11-16 10:00:00', '2026-11-16 10:00:00'), ('2026-11-16 10:00:01', '2026-11-16 10:00:01'))
    >>> split_window("2026-11-16 10:00:00", "2026-11-16 10:00:00") is None
    True
    """
    a, b = datetime.strptime(start, _TEXT_TIME), datetime.strptime(end, _TEXT_TIME)
    span = int((b - a).total_seconds())
    if span < _MIN_SPAN:
        return None
    mid = a + timedelta(seconds=span // 2)
    return (start, mid.strftime(_TEXT_TIME)), ((mid + timedelta(seconds=1)).strftime(_TEXT_TIME), end)


def _day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


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


# ----------------------------------------------------------------------------- ledger
def ledger(store: LogStore) -> list[dict[str, Any]]:
    """The pull ledger: one entry per (kind, local day) pulled, oldest first.

    Each entry has ``kind``, ``date``, ``status`` (``finished`` or ``pulled``),
    ``start``/``end`` (UTC), ``rows``, ``pulled_at`` and ``batches``.
    """
    state = _read_ledger(store)
    out = []
    for kind, days in sorted(state["windows"].items()):
        for day, entry in sorted(days.items()):
            out.append({"kind": kind, "date": day, **entry})
    return sorted(out, key=lambda e: (e["date"], e["kind"]))


def _ledger_path(store: LogStore) -> Path:
    return store.path / LEDGER_FILE


def _read_ledger(store: LogStore) -> dict[str, Any]:
    """The ledger document; an absent file, or one kept in another time zone, reads as empty."""
    empty: dict[str, Any] = {"format": LEDGER_FORMAT, "timezone": store.timezone, "windows": {}}
    try:
        doc = json.loads(_ledger_path(store).read_text("utf-8"))
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        raise PullError(f"{_ledger_path(store)}: unreadable pull ledger ({_one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT or doc.get("timezone") != store.timezone:
        return empty  # another zone's days are other windows: pull them again (nothing is stored twice)
    doc.setdefault("windows", {})
    return doc


def _record(store: LogStore, w: WindowResult, pulled_at: datetime, until: datetime) -> None:
    """Record one window in the ledger, atomically, under the store lock."""
    with store.lock():
        doc = _read_ledger(store)
        days = doc["windows"].setdefault(w.kind, {})
        days[w.day.isoformat()] = {
            "status": w.status,
            "start": _z(w.start),
            "end": _z(w.end),
            "rows": w.rows,
            "pulled_at": _z(pulled_at),
            "pulled_until": _z(until),
            "batches": list(w.batches),
        }
        path = _ledger_path(store)
        tmp = path.with_name(f".{LEDGER_FILE}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _finished_days(doc: Mapping[str, Any], kind: str) -> set[str]:
    return {d for d, e in doc["windows"].get(kind, {}).items() if e.get("status") == "finished"}


def _default_start(doc: Mapping[str, Any], kinds: Sequence[str]) -> date | None:
    """Without ``--from``: the earliest unfinished day in the ledger, else the day after the last finished."""
    starts: list[date] = []
    for kind in kinds:
        days = doc["windows"].get(kind, {})
        if not days:
            return None
        unfinished = sorted(d for d, e in days.items() if e.get("status") != "finished")
        if unfinished:
            starts.append(date.fromisoformat(unfinished[0]))
        else:
            starts.append(date.fromisoformat(max(days)) + timedelta(days=1))
    return min(starts) if starts else None


# ----------------------------------------------------------------------------- config and key
def configure(
    store: LogStore,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Save pull settings in the store's config (``cfanalytics.json``, key ``pull``).

    The key itself is never saved: ``api_key_env`` names an environment variable
    that holds it (one per account, say ``CLICKFLARE_API_KEY_ACME``), and
    ``api_key_file`` a file outside the store holding it. Returns the settings.
    """
    settings = dict(store.metadata.get("pull") or {})
    if base_url is not None:
        settings["base_url"] = base_url
    if api_key_env is not None:
        settings["api_key_env"] = api_key_env
    if api_key_file is not None:
        key_file = Path(api_key_file).expanduser().resolve()
        if key_file.is_relative_to(store.path.resolve()):
            raise UsageError(f"{key_file}: keep the API key file outside the store folder")
        settings["api_key_file"] = str(key_file)
    with store.lock():
        store._update_meta(pull=settings)
    return settings


def _api_key(store: LogStore, api_key: str | None) -> str:
    """The key: the argument, ``CLICKFLARE_API_KEY``, or what the store's config points to."""
    config = store.metadata.get("pull") or {}
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key and config.get("api_key_env"):
        key = os.environ.get(str(config["api_key_env"]))
    if not key and config.get("api_key_file"):
        try:
            key = Path(str(config["api_key_file"])).expanduser().read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the API key file named in the store's config ({exc.strerror})") from None
    key = (key or "").strip()
    if not key:
        raise UsageError(
            f"no ClickFlare API key: set {API_KEY_ENV} (or name a variable or key file with cfanalytics.pull.configure)"
        )
    if not (key.isascii() and key.isprintable()):
        raise UsageError("the ClickFlare API key holds a line break or a non-ASCII character; check how it was set")
    return key


# ----------------------------------------------------------------------------- HTTP client
class _TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiClient:
    """A small JSON-over-HTTPS client of the ClickFlare API (standard library only).

    Sends ``api-key`` on every request, keeps to ``rate_limit`` requests per
    second, and retries transient failures with exponential back-off and jitter.
    Every message it produces has the key replaced by ``***`` and goes through
    :func:`cfanalytics.redaction`.
    """

    def __init__(self, base_url: str, api_key: str, options: PullOptions) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.options = options
        self.requests = 0
        self.retries = 0
        self._next_slot = 0.0
        self._opener = urllib.request.build_opener()
        from cfanalytics import __version__

        self._agent = f"cfanalytics/{__version__}"

    # -- public
    def post(self, path: str, body: Mapping[str, Any], *, what: str = "") -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the decoded JSON object, after retries."""
        url = self.base_url + path
        payload = json.dumps(body).encode("utf-8")
        opt = self.options
        label = what or path
        for attempt in range(1, opt.max_attempts + 1):
            self._throttle()
            self.requests += 1
            try:
                return self._once(url, path, payload)
            except _TransientError as exc:
                problem, retry_after = self.scrub(str(exc)), exc.retry_after
            if attempt == opt.max_attempts:
                raise PullError(f"{label}: ClickFlare API still failing after {attempt} attempts ({problem})")
            delay = self._delay(attempt, retry_after, label, problem)
            self.retries += 1
            _log.warning("%s: %s; retry %d of %d in %.1f s", label, problem, attempt, opt.max_attempts - 1, delay)
            opt.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def scrub(self, text: str) -> str:
        """``text`` without the key (and with every other credential redacted), on one line."""
        if self._key:
            text = text.replace(self._key, "***")
        return " ".join((redact(text) or "").split())

    # -- internals
    def _throttle(self) -> None:
        interval = 1.0 / self.options.rate_limit
        now = self.options.monotonic()
        if now < self._next_slot:
            self.options.sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + interval

    def _delay(self, attempt: int, retry_after: float | None, label: str, problem: str) -> float:
        opt = self.options
        base = min(opt.backoff_cap, opt.backoff * 2 ** (attempt - 1))
        delay = base * (0.5 + opt.rng.random() / 2)
        if retry_after is not None:
            if retry_after > opt.max_retry_after:
                raise PullError(f"{label}: {problem}; the API asks to wait {retry_after:.0f} s, try again later")
            delay = max(delay, retry_after)
        return delay

    def _once(self, url: str, path: str, payload: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=payload,
            method="POST",
            headers={
                "api-key": self._key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
                "User-Agent": self._agent,
            },
        )
        try:
            with self._opener.open(request, timeout=self.options.timeout) as resp:
                status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                status, headers = exc.code, exc.headers
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise PullError(f"{self.scrub(self.base_url)}: TLS certificate not trusted ({reason.reason})") from None
            raise _TransientError(_transport_problem(exc)) from None
        if not 200 <= status < 300:
            self._refuse(status, headers, body, path)
        return _decode(headers, body)

    def _refuse(self, status: int, headers: Any, body: bytes, path: str) -> None:
        """Raise for a non-2xx answer: transient ones to retry, the others as one line."""
        if status == 429:
            raise _TransientError("HTTP 429 too many requests", _retry_after(headers, self.options.now()))
        if status == 408 or status >= 500:
            raise _TransientError(f"HTTP {status}", _retry_after(headers, self.options.now()))
        where = self.scrub(self.base_url + path)
        if status == 401:
            raise PullError(f"ClickFlare API refused the API key (HTTP 401 on {where}): check {API_KEY_ENV}")
        if status == 403:
            raise PullError(
                f"ClickFlare API denied access (HTTP 403 on {where}): "
                "the API key is not valid for this account, or its plan has no API access"
            )
        if status == 404:
            raise PullError(f"ClickFlare API has no {where} (HTTP 404): check --base-url")
        detail = self.scrub(_server_message(_unzipped(headers, body)))
        said = f": {detail}" if detail else ""
        raise PullError(f"ClickFlare API rejected the request (HTTP {status} on {where}){said}")


def _transport_problem(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, http.client.IncompleteRead):
        return "truncated body"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, http.client.RemoteDisconnected | ConnectionError):
        return "connection dropped"
    return f"network error: {_one_line(reason) if isinstance(reason, BaseException) else reason}"


def _gzipped(headers: Any) -> bool:
    return headers is not None and (headers.get("Content-Encoding") or "").strip().lower() == "gzip"


def _unzipped(headers: Any, body: bytes) -> bytes:
    """An error answer's body, decompressed when it can be (else as it came)."""
    if _gzipped(headers):
        with contextlib.suppress(EOFError, OSError, zlib.error):
            return gzip.decompress(body)
    return body


def _decode(headers: Any, body: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a truncated or undecodable body is transient."""
    try:
        if _gzipped(headers):
            body = gzip.decompress(body)
        doc = json.loads(body.decode("utf-8"))
    except (EOFError, OSError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise _TransientError(f"truncated or invalid response body ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise PullError('ClickFlare API answered with JSON that is not {"items": [...], "totals": {...}}')
    return doc


def _retry_after(headers: Any, now: datetime) -> float | None:
    """Seconds asked by ``Retry-After`` (delta-seconds or an HTTP date), if any.

    >>> _retry_after({"Retry-After": "3"}, datetime(2026, 11, 16, tzinfo=UTC))
    3.0
    >>> _retry_after({"Retry-After": "Mon, 16 Nov 2026 00:00:30 GMT"}, datetime(2026, 11, 16, tzinfo=UTC))
    30.0
    """
    value = (headers.get("Retry-After") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _server_message(body: bytes) -> str:
    text = body[:2000].decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        doc = json.loads(text)
        if isinstance(doc, dict):
            for key in ("message", "error", "detail", "errors"):
                if doc.get(key):
                    text = doc[key] if isinstance(doc[key], str) else json.dumps(doc[key])
                    break
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]


# ----------------------------------------------------------------------------- fetching one window
class _InconsistentError(Exception):
    """A day whose rows kept missing its counter, past ``max_mismatches`` fetches."""


@dataclass
class _Fetch:
    """State of one day window being fetched: its scratch folder, counts and progress bar."""

    kind: str
    label: str
    folder: Path
    bar: Any = None
    parts: int = 0
    requests: int = 0
    splits: int = 0
    mismatches: int = 0
    kept: int = 0


def _body(kind: str, start: str, end: str, *, tz: str, page: int, opt: PullOptions) -> dict[str, Any]:
    return {
        "startDate": start,
        "endDate": end,
        "timezone": tz,
        "metrics": list(opt.metrics.get(kind, METRICS[kind])),
        "metricsFilters": [],
        "sortBy": opt.sort_by.get(kind, SORT_BY[kind]),
        "orderType": "asc",
        "page": page,
        "pageSize": opt.page_size,
        "includeFilteredEvents": opt.include_filtered,
    }


def _page(doc: Mapping[str, Any], label: str) -> tuple[list[Any], int]:
    items, totals = doc.get("items"), doc.get("totals")
    counter = totals.get("counter") if isinstance(totals, dict) else None
    if not isinstance(items, list) or isinstance(counter, bool) or not isinstance(counter, int):
        raise PullError(f'{label}: ClickFlare API answered without "items" and "totals": {{"counter": N}}')
    return items, counter


def _fetch_window(client: ApiClient, f: _Fetch, start: str, end: str, *, tz: str) -> list[Path]:
    """Fetch ``[start, end]`` into part files; split it when its rows do not match its counter."""
    opt = client.options
    part = f.folder / f"part-{f.parts:06d}.ndjson"
    f.parts += 1
    counters: set[int] = set()
    read = 0
    page = 1
    with part.open("w", encoding="utf-8") as out:
        while True:
            doc = client.post(
                ENDPOINTS[f.kind], _body(f.kind, start, end, tz=tz, page=page, opt=opt), what=f"{f.label} page {page}"
            )
            f.requests += 1
            items, counter = _page(doc, f.label)
            counters.add(counter)
            _write_items(out, items)
            read += len(items)
            _advance(f, len(items), counter, read)
            if len(counters) > 1 or not items or read >= counter or len(items) < opt.page_size:
                break
            page += 1
    if len(counters) == 1 and read == next(iter(counters)):
        f.kept += read
        return [part]
    part.unlink()
    _rewind(f)
    said = "/".join(map(str, sorted(counters)))
    f.mismatches += 1
    if f.mismatches > opt.max_mismatches:
        raise _InconsistentError(
            f"rows read never matched totals.counter ({start}…{end}: {read} read, counter {said}; {f.mismatches} tries)"
        )
    halves = split_window(start, end)
    _log.info("%s %s…%s: read %d rows, totals.counter said %s; pulling it again", f.label, start, end, read, said)
    if halves is None:
        return _fetch_window(client, f, start, end, tz=tz)
    f.splits += 1
    return [p for s, e in halves for p in _fetch_window(client, f, s, e, tz=tz)]


def _write_items(out: IO[str], items: list[Any]) -> None:
    for item in items:
        out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")


def _advance(f: _Fetch, n: int, counter: int, read: int) -> None:
    if f.bar is None:
        return
    f.bar.total = max(f.bar.total or 0, f.kept + counter, f.kept + read)
    f.bar.update(n)


def _rewind(f: _Fetch) -> None:
    if f.bar is not None:
        f.bar.n = f.kept
        f.bar.refresh()


def _assemble(parts: list[Path], target: Path, kind: str) -> int:
    """Concatenate part files into one NDJSON input; returns its item count.

    A postback window where no item carries a ``PostbackID`` loses that key, so
    ids are derived as for any export without the column (docs/contract.md §2).
    """
    drop_id = kind == "postbacks" and not any(_has_postback_id(p) for p in parts)
    n = 0
    with target.open("w", encoding="utf-8") as out:
        for p in parts:
            with p.open(encoding="utf-8") as src:
                for line in src:
                    n += 1
                    if drop_id:
                        item = json.loads(line)
                        if isinstance(item, dict):
                            item.pop("PostbackID", None)
                        line = json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"  # noqa: PLW2901
                    out.write(line)
    return n


def _has_postback_id(part: Path) -> bool:
    with part.open(encoding="utf-8") as src:
        for line in src:
            item = json.loads(line)
            if isinstance(item, dict) and str(item.get("PostbackID") or "").strip():
                return True
    return False


# ----------------------------------------------------------------------------- the pull
def pull(
    store: LogStore,
    start: date | None = None,
    end: date | None = None,
    *,
    kinds: Sequence[str] | str | None = None,
    api_key: str | None = None,
    timezone: str | None = None,
    options: PullOptions | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> PullResult:
    """Pull the local days ``start``…``end`` (both inclusive) of ``kinds`` into ``store``.

    ``start`` defaults to where the ledger says the last pull stopped (the
    earliest unfinished day) and ``end`` to today, both in the store's time
    zone. Finished windows are skipped unless ``options.refresh``. Raises
    :class:`PullError` when the API refuses the key or stays unreachable
    (windows done before stay done); a window whose rows never add up is
    reported as ``failed`` and the others go on. ``on_window`` is called with
    each window as it ends.
    """
    opt = options or PullOptions()
    opt.check()
    pull_kinds = parse_kinds(kinds)
    tz_name = store.ensure_timezone(timezone)
    tz = ZoneInfo(tz_name)
    key = _api_key(store, api_key)
    config = store.metadata.get("pull") or {}
    base_url = _check_base_url(opt.base_url or config.get("base_url") or DEFAULT_BASE_URL)
    doc = _read_ledger(store)
    now = opt.now()
    today = now.astimezone(tz).date()
    first = start or _default_start(doc, pull_kinds)
    if first is None:
        raise UsageError(f"--from is required: {store.path} has no earlier pull of {', '.join(pull_kinds)}")
    last = end or today
    if first > last and start is not None:
        raise UsageError(f"--from {first} is after --to {last}")
    client = ApiClient(base_url, key, opt)
    result = PullResult(store=str(store.path), timezone=tz_name)
    finished = {kind: _finished_days(doc, kind) for kind in pull_kinds}
    day = first
    try:
        while day <= last:
            for kind in pull_kinds:
                lo, hi = _day_bounds(day, tz)
                if lo > now:
                    continue
                w = WindowResult(kind, day, lo, hi)
                result.windows.append(w)
                if day.isoformat() in finished[kind] and not opt.refresh:
                    w.status = "skipped"
                    w.rows = int(doc["windows"][kind][day.isoformat()].get("rows") or 0)
                else:
                    _pull_window(store, client, w, tz=tz_name, opt=opt)
                if on_window is not None:
                    on_window(w)
            day += timedelta(days=1)
    finally:
        result.requests, result.retries = client.requests, client.retries
    return result


def _pull_window(store: LogStore, client: ApiClient, w: WindowResult, *, tz: str, opt: PullOptions) -> None:
    """Fetch one day window, ingest it as one input, record it in the ledger."""
    from cfanalytics.ingest import ingest_raw
    from cfanalytics.readers import open_input

    began = opt.now()
    start, end = day_window(w.day, tz)
    local_now = began.astimezone(ZoneInfo(tz)).replace(tzinfo=None, microsecond=0)
    until = min(w.end, began.replace(microsecond=0))
    end = min(end, local_now.strftime(_TEXT_TIME))
    label = f"{w.kind} {w.day}"
    scratch = store.path / "_staging" / f"pull-{os.getpid()}-{random.getrandbits(32):08x}"
    scratch.mkdir(parents=True, exist_ok=True)
    fetch = _Fetch(w.kind, label, scratch, bar=_progress_bar(label, opt.progress))
    w.stored = dict.fromkeys(STORE_KINDS[w.kind], 0)
    try:
        try:
            parts = _fetch_window(client, fetch, start, end, tz=tz)
        except _InconsistentError as exc:
            w.status, w.error = "failed", str(exc)
            return
        finally:
            w.requests, w.splits = fetch.requests, fetch.splits
            if fetch.bar is not None:
                fetch.bar.close()
        spool = scratch / "window.ndjson"
        w.rows = _assemble(parts, spool, w.kind)
        if w.rows:
            raw = open_input(spool)
            raw.name = f"clickflare-api:{ENDPOINTS[w.kind]} {w.day} ({tz})"
            res = ingest_raw(store, [raw], kind="postbacks" if w.kind == "postbacks" else None, timezone=tz)
            if res.failures:
                w.status, w.error = "failed", client.scrub("; ".join(res.failures))
                return
            for b in res.batches:
                if b.kind in STORE_KINDS[w.kind]:
                    w.stored[b.kind] = w.stored.get(b.kind, 0) + b.rows_stored
                w.already_stored += b.already_stored
                w.quarantined += b.quarantined
                w.batches.append(b.batch_id)
        settle = opt.settle.get(w.kind, DEFAULT_SETTLE[w.kind])
        w.status = "finished" if began >= w.end + settle else "pulled"
        _record(store, w, began, until)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_base_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else a ``UsageError`` (with credentials redacted).

    >>> _check_base_url("https://public-api.clickflare.io/api")
    'https://public-api.clickflare.io/api'
    """
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--base-url {redact(url)!r}: expected an http(s) URL such as {DEFAULT_BASE_URL}")
    return url


def _progress_bar(label: str, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc=label, total=0, unit=" rows", unit_scale=True, leave=False, file=sys.stderr)


# ----------------------------------------------------------------------------- helpers
def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def window_text(w: WindowResult) -> str:
    """One human line about a window, as ``cfanalytics pull`` prints it.

    >>> w = WindowResult("events", date(2026, 11, 16), datetime(2026, 11, 16, 5, tzinfo=UTC),
    ...                  datetime(2026, 11, 17, 5, tzinfo=UTC), status="finished", rows=12,
    ...                  stored={"visits": 7, "clicks": 4, "conversions": 1})
    >>> window_text(w)[:72]
    'events     2026-11-16        12 rows: 12 stored (visits 7, clicks 4, con'
    """
    if w.status == "skipped":
        return f"{w.kind:<10} {w.day}  finished earlier ({w.rows} rows), skipped"
    if w.status == "failed":
        return f"{w.kind:<10} {w.day}  failed: {w.error}"
    parts = ", ".join(f"{k} {n}" for k, n in w.stored.items())
    stored = sum(w.stored.values())
    split = f", split {w.splits}×" if w.splits else ""
    note = "finished" if w.status == "finished" else "not settled yet: pulled again next run"
    return (
        f"{w.kind:<10} {w.day} {w.rows:>9} rows: {stored} stored ({parts}), {w.already_stored} already stored, "
        f"{w.quarantined} quarantined{split} — {note}"
    )
