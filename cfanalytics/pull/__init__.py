"""Pull event logs and postback status from the ClickFlare API into a store.

``cfanalytics pull`` (and :func:`pull`) asks ClickFlare's public API for one
local day at a time — ``POST /event-logs`` (visits, clicks and conversions)
and ``POST /postback-status/logs`` — and loads every day through the same
readers, normalisation and validation as an export file (the API's PascalCase
spelling, docs/contract.md §2). One day of one endpoint is one *window*, and one window is
one input: its ``_row_id`` ordinals are counted after all its pages, so a
re-pull of the same day stores nothing twice.

What it does about the real world:

- **Fields**: only those public clients of the API are seen asking for
  (:data:`FIELDS`, sources in ``cfanalytics/pull/_vocabulary.py``); the rest of
  the API's vocabulary (:data:`OPTIONAL_FIELDS`, or any other name) is asked
  only on request (``PullOptions.extra_fields``, :func:`configure`), since an
  unknown field is an HTTP 400 for every request.
- **Paging** sorts by the click's time (``sortBy`` is always one of the
  requested fields) and checks that the rows read equal ``totals.counter``,
  that the counter did not move between pages and that no row came twice.
  When one fails (rows arriving mid-pull; offset paging over rows that tie on
  the sort key, answered in another order on each page, skips one row for each
  it repeats) the window is fetched again split in two halves, recursively; a window that fits one
  page is one atomic answer. The API serves no page past the 1 000th: a
  window whose counter needs more is split in halves before paging on.
- **Retries** with exponential back-off and jitter on 429 (``Retry-After`` is
  honoured), 408, 5xx, time-outs, dropped connections and truncated or
  undecodable bodies; a client-side rate limit (default 2 requests/s). 401/403
  (a bad key, or a plan without API access), 404 (a wrong ``--base-url``) and
  any other refusal (a 400 names its reason) stop the pull with one line.
- **Incremental and resumable**: a window is recorded as *finished* in the
  pull ledger only once its end is older than a settle time (6 h for events,
  48 h for postbacks, which arrive late); later runs skip finished windows and
  re-pull the others. A kill at any moment loses at most the window in flight.

The pull ledger is ``pull_state.json`` in the store folder and the pull's
settings ``pull_config.json`` (both written atomically under the store lock);
the ledger cannot be derived from the Delta commits because a day that brings
no new row makes no commit. The Delta commits of a pull name their source
``clickflare-api:/event-logs 2026-11-16 (America/New_York)``, so
``cfanalytics batches`` lists them like files.

The API key comes from ``CLICKFLARE_API_KEY``, or from the store's pull
settings, which name another environment variable or a key file outside the
store (:func:`configure`); it is sent only as the ``api-key`` header and never
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

import dataclasses
import os
import random
import shutil
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cfanalytics.exceptions import UsageError
from cfanalytics.ingest import ingest_raw
from cfanalytics.pull._client import ApiClient
from cfanalytics.pull._ledger import (
    CONFIG_FILE,
    LEDGER_FILE,
    default_start,
    finished_days,
    ledger,
    read_config,
    read_ledger,
    record_window,
    write_config,
)
from cfanalytics.pull._options import (
    API_KEY_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_SETTLE,
    PULL_KINDS,
    STORE_KINDS,
    PullError,
    PullOptions,
    parse_kinds,
    parse_settle,
    utc_text,
)
from cfanalytics.pull._vocabulary import ENDPOINTS, FIELDS, MAX_PAGE, MAX_PAGE_SIZE, OPTIONAL_FIELDS, SORT_BY
from cfanalytics.pull._windows import (
    TEXT_TIME,
    Fetch,
    InconsistentError,
    assemble,
    day_bounds,
    day_window,
    fetch_window,
    split_window,
)
from cfanalytics.readers import open_input
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = [
    "API_KEY_ENV",
    "CONFIG_FILE",
    "DEFAULT_BASE_URL",
    "DEFAULT_SETTLE",
    "ENDPOINTS",
    "FIELDS",
    "LEDGER_FILE",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "OPTIONAL_FIELDS",
    "PULL_KINDS",
    "SORT_BY",
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
            "start": utc_text(self.start),
            "end": utc_text(self.end),
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


def configure(
    store: LogStore,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
    extra_fields: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Save pull settings in the store folder (``pull_config.json``); returns them.

    The key itself is never saved: ``api_key_env`` names an environment variable
    that holds it (one per account, say ``CLICKFLARE_API_KEY_ACME``), and
    ``api_key_file`` a file outside the store holding it. ``extra_fields`` are
    fields asked on top of the defaults, per kind (say
    ``{"events": ["LocationCountry", "OfferID"]}``; :data:`OPTIONAL_FIELDS`
    lists the API's known ones): every later pull of the store asks them.

    >>> import tempfile
    >>> from cfanalytics.store import LogStore
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = LogStore(f"{tmp}/store", timezone="UTC")
    ...     configure(store, extra_fields={"events": ["LocationCountry"]})
    {'extra_fields': {'events': ['LocationCountry']}}
    """
    settings = read_config(store)
    if base_url is not None:
        settings["base_url"] = base_url
    if api_key_env is not None:
        settings["api_key_env"] = api_key_env
    if api_key_file is not None:
        key_file = Path(api_key_file).expanduser().resolve()
        if key_file.is_relative_to(store.path.resolve()):
            raise UsageError(f"{key_file}: keep the API key file outside the store folder")
        settings["api_key_file"] = str(key_file)
    if extra_fields is not None:
        wanted = {kind: list(names) for kind, names in extra_fields.items()}
        PullOptions(extra_fields=wanted).check()
        settings["extra_fields"] = wanted
    write_config(store, settings)
    return settings


def _api_key(store: LogStore, api_key: str | None) -> str:
    """The key: the argument, ``CLICKFLARE_API_KEY``, or what the store's config points to."""
    config = read_config(store)
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
    config = read_config(store)
    base_url = _check_base_url(opt.base_url or config.get("base_url") or DEFAULT_BASE_URL)
    opt = _with_configured_fields(opt, config)
    doc = read_ledger(store)
    now = opt.now()
    today = now.astimezone(tz).date()
    first = start or default_start(doc, pull_kinds)
    if first is None:
        raise UsageError(f"--from is required: {store.uri} has no earlier pull of {', '.join(pull_kinds)}")
    last = end or today
    if first > last and start is not None:
        raise UsageError(f"--from {first} is after --to {last}")
    client = ApiClient(base_url, key, opt)
    result = PullResult(store=store.uri, timezone=tz_name)
    finished = {kind: finished_days(doc, kind) for kind in pull_kinds}
    day = first
    try:
        while day <= last:
            for kind in pull_kinds:
                lo, hi = day_bounds(day, tz)
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
    began = opt.now()
    start, end = day_window(w.day, tz)
    local_now = began.astimezone(ZoneInfo(tz)).replace(tzinfo=None, microsecond=0)
    until = min(w.end, began.replace(microsecond=0))
    end = min(end, local_now.strftime(TEXT_TIME))
    label = f"{w.kind} {w.day}"
    scratch = store.path / "_staging" / f"pull-{os.getpid()}-{random.getrandbits(32):08x}"
    scratch.mkdir(parents=True, exist_ok=True)
    fetch = Fetch(w.kind, label, scratch, bar=_progress_bar(label, opt.progress))
    w.stored = dict.fromkeys(STORE_KINDS[w.kind], 0)
    try:
        try:
            parts = fetch_window(client, fetch, start, end, tz=tz)
        except InconsistentError as exc:
            w.status, w.error = "failed", str(exc)
            return
        finally:
            w.requests, w.splits = fetch.requests, fetch.splits
            if fetch.bar is not None:
                fetch.bar.close()
        spool = scratch / "window.ndjson"
        w.rows = assemble(parts, spool, w.kind)
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
        entry = {
            "status": w.status,
            "start": utc_text(w.start),
            "end": utc_text(w.end),
            "rows": w.rows,
            "pulled_at": utc_text(began),
            "pulled_until": utc_text(until),
            "batches": list(w.batches),
        }
        record_window(store, w.kind, w.day, entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _with_configured_fields(opt: PullOptions, config: Mapping[str, Any]) -> PullOptions:
    """``opt`` asking, on top of its own extra fields, those saved in the store's pull settings."""
    saved = config.get("extra_fields") or {}
    if not isinstance(saved, dict) or not saved:
        return opt
    merged = {kind: [*saved.get(kind, ()), *opt.extra_fields.get(kind, ())] for kind in {*saved, *opt.extra_fields}}
    merged_opt = dataclasses.replace(opt, extra_fields=merged)
    merged_opt.check()
    return merged_opt


def _check_base_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else a ``UsageError`` (with credentials redacted).

    >>> _check_base_url("https://public-api.clickflare.io/api")
    'https://public-api.clickflare.io/api'
    """
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


def window_text(w: WindowResult) -> str:
    """One human line about a window, as ``cfanalytics pull`` prints it.

    >>> from datetime import UTC
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
