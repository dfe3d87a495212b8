"""A stand-in for ClickFlare's public API on loopback, serving a generated sample account.

:class:`FakeClickFlare` runs a real HTTP server (``ThreadingHTTPServer`` on
127.0.0.1, port 0, in a thread) with ``POST /api/event-logs`` and
``POST /api/postback-status/logs``. It serves the very events of the sample
account's export files, in the API's PascalCase spelling, so that a pull and
an ingest of the files hold the same rows:

- event-log items (``EventType`` visit / click / conversion) from ``visits.csv``,
  ``clicks.ndjson.gz`` and ``conversions.json``;
- postback items from ``postbacks.csv`` (with their ``PostbackID``) and
  ``postbacks_api.json`` (without one, as API clients in the wild request them).

Times are answered as local ``YYYY-MM-DD HH:MM:SS`` text in the request's
``timezone``; windows are wall-clock ranges over each item's own time, both
ends inclusive; items are sorted by the requested ``sortBy`` field (items
without it last), then by their place in the files. Records a loader must
quarantine because their time does not parse (or a CSV row is ragged) cannot
be put in a time window and are not served.

It is as strict as the real API is known to be from its public clients (the
vocabulary below is written from them, not from ``cfanalytics.pull``): a field
it does not know is a 400, so is a ``sortBy`` that is not one of the requested
fields or not a sort key in public use, and so is a ``page`` past 1 000 or a
``pageSize`` above 1 000. :meth:`FakeClickFlare.accept` widens the vocabulary
for a test that opts in to fields nobody is seen asking for.

It checks the ``api-key`` header (a wrong key gets a 401 whose body repeats the
key it was sent) and can misbehave on demand: ``429`` (with ``Retry-After``),
``500``, ``502``, ``slow`` (answers after the client's time-out), ``drop``
(closes the connection without an answer), ``truncate`` (half the body under a
full ``Content-Length``) and ``truncate-nolength`` (half the body, then EOF);
:meth:`FakeClickFlare.hide` holds rows back until a chosen request, as data
arriving in the middle of a pull. ``unstable_ties`` orders rows that tie on
``sortBy`` anew for every request, as a database paging by offset under a sort
with ties may.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TEXT_TIME = "%Y-%m-%d %H:%M:%S"
ENDPOINTS = {"/api/event-logs": "events", "/api/postback-status/logs": "postbacks"}
MAX_PAGE_SIZE = 1000
MAX_PAGE = 1000

# Fields seen in public requests or reads of the two logs: eugeneleychenko/shophealthrates
# scripts/clickflare-api.mjs (event-logs and postback-status/logs), G-ier/efflux_be_backup
# services/clickflareService.js and services/clickflareServiceArchive.js (event-logs), and Python
# clients of public-api.clickflare.io (ClickID, EventType, CampaignID, VisitTime, ClickTime).
SEEN_EVENT_FIELDS = frozenset(
    {
        "EventType", "ClickID", "VisitID", "VisitTime", "ClickTime", "ConversionDate", "CampaignID",
        "TrafficSourceID", "FlowID", "ExternalID", "ConnectionIP", "ConnectionReferrer", "DeviceUserAgent",
        "ConversionPayout", "ConversionTransaction", "CustomConversionNumber", "Cost",
        *(f"TrackingField{i}" for i in range(1, 7)),
    }
)  # fmt: skip
SEEN_POSTBACK_FIELDS = frozenset(
    {
        "ClickID", "IsError", "ErrorMessage", "StatusCode", "PostbackUrl", "IntegrationID", "Ct", "Event",
        "CustomConversionIndex", "PostbackTime", "ClickTime",
    }
)  # fmt: skip
# The report endpoint's vocabulary (developers.clickflare.io #/paths/api-report/post, as public
# integration notes list it), in the event logs' PascalCase.
REPORT_FIELDS = frozenset(
    {
        "CampaignID", "OfferID", "LandingID", "AffiliateNetworkID", "TrafficSourceID", "FlowID", "VisitID",
        "ExternalID", "ClickID", "ConnectionIP", "ConnectionReferrer", "ConnectionISP", "ConnectionType",
        "DeviceUserAgent", "DeviceType", "DeviceOS", "DeviceOsVersion", "DeviceBrowser", "DeviceBrowserVersion",
        "DeviceBrand", "DeviceModel", "DeviceMainLanguage", "LocationCountry", "LocationCountryName",
        "LocationRegion", "LocationCity", "PostalCode", "BotScore", "TrafficSourceName", "OfferName",
        "LandingName", "AffiliateNetworkName",
        *(f"TrackingField{i}" for i in range(1, 21)),
        *(f"Param{i}" for i in range(1, 21)),
    }
)  # fmt: skip
VOCABULARY = {
    "events": SEEN_EVENT_FIELDS | REPORT_FIELDS | {"Ct"},
    "postbacks": SEEN_POSTBACK_FIELDS | {"TrafficSourceID", "CampaignID"},
}
#: Sort keys seen in public requests.
SORTABLE = {
    "events": frozenset({"ClickTime", "ConversionDate", "ClickID", "VisitTime"}),
    "postbacks": frozenset({"ClickTime"}),
}
FAULTS = ("429", "500", "502", "slow", "drop", "truncate", "truncate-nolength", "400", "403")

VISIT_FIELDS = {
    "Click ID": "ClickID",
    "Visit Time": "VisitTime",
    "Campaign ID": "CampaignID",
    "Campaign": "CampaignName",
    "Traffic Source ID": "TrafficSourceID",
    "Traffic Source": "TrafficSourceName",
    "Offer ID": "OfferID",
    "Offer": "OfferName",
    "Lander ID": "LandingID",
    "Lander": "LandingName",
    "Affiliate Network ID": "AffiliateNetworkID",
    "Affiliate Network": "AffiliateNetworkName",
    "External ID": "ExternalID",
    "IP": "ConnectionIP",
    "Country": "LocationCountry",
    "City": "LocationCity",
    "Device Type": "DeviceType",
    "OS": "DeviceOS",
    "Browser": "DeviceBrowser",
    "User Agent": "DeviceUserAgent",
    "Referrer": "ConnectionReferrer",
    "Tracking Field 1": "TrackingField1",
    "Tracking Field 2": "TrackingField2",
}
CLICK_FIELDS = {
    "clickID": "ClickID",
    "clickTime": "ClickTime",
    "campaignID": "CampaignID",
    "trafficSourceID": "TrafficSourceID",
    "landerID": "LandingID",
    "offerID": "OfferID",
    "cta": "Cta",
    "locationCountry": "LocationCountry",
    "deviceBrowser": "DeviceBrowser",
    "connectionIP": "ConnectionIP",
}
POSTBACK_FIELDS = {
    "Postback ID": "PostbackID",
    "Click ID": "ClickID",
    "Postback Time": "PostbackTime",
    "Is Error": "IsError",
    "Error Message": "ErrorMessage",
    "Status Code": "StatusCode",
    "Postback URL": "PostbackUrl",
    "Custom Conversion (ct)": "Ct",
    "Integration ID": "IntegrationID",
    "Integration": "IntegrationName",
    "Traffic Source ID": "TrafficSourceID",
    "Campaign ID": "CampaignID",
}
TIME_FIELDS = ("VisitTime", "ClickTime", "ConversionDate", "PostbackTime")


@dataclass
class Item:
    """One served row: its endpoint, its own time (UTC), its place in the files, its fields."""

    endpoint: str
    time: datetime
    seq: int
    fields: dict[str, Any]
    visible: bool = True
    local: dict[str, str] = field(default_factory=dict)  # zone → wall-clock text of ``time``

    def wall_clock(self, tz: ZoneInfo) -> str:
        """``time`` as local text in ``tz`` (cached)."""
        key = str(tz)
        if key not in self.local:
            self.local[key] = self.time.astimezone(tz).strftime(TEXT_TIME)
        return self.local[key]


@dataclass
class Request:
    """What the server saw and did for one request."""

    path: str
    body: dict[str, Any] | None
    status: int
    fault: str | None = None
    counter: int | None = None
    items: int = 0


@dataclass
class FakeClickFlare:
    """The fake API: items, an expected key, injected faults and a request log."""

    items: list[Item]
    api_key: str
    slow_seconds: float = 1.5
    delay: float = 0.0  # seconds before every answer
    gzip: bool = True  # when the client accepts it
    faults: deque[str] = field(default_factory=deque)  # consumed by the next requests
    schedule: dict[int, str] = field(default_factory=dict)  # request number (1-based) → fault
    held: list[tuple[list[Item], Callable[[str, dict[str, Any]], bool] | None]] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)
    vocabulary: dict[str, set[str]] = field(default_factory=lambda: {k: set(v) for k, v in VOCABULARY.items()})
    unstable_ties: bool = False  # rows tying on sortBy come in a new order on every request
    _ties: random.Random = field(default_factory=lambda: random.Random(0))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_sample(cls, folder: str | Path, *, api_key: str, timezone: str, **kw: Any) -> FakeClickFlare:
        """Serve the sample account written to ``folder`` (its exports, in the account's time zone)."""
        return cls(list(_sample_items(Path(folder), ZoneInfo(timezone))), api_key=api_key, **kw)

    # ------------------------------------------------------------------ running
    def start(self) -> FakeClickFlare:
        """Listen on 127.0.0.1 (a free port) in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeClickFlare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    # ------------------------------------------------------------------ scenarios
    def hide(
        self, predicate: Callable[[Item], bool], *, until: Callable[[str, dict[str, Any]], bool] | None = None
    ) -> int:
        """Hold back the items ``predicate`` picks until :meth:`release`, or until a request.

        ``until(kind, body)`` is asked before each valid request is answered; once
        it says yes, the items are served from that request on.
        """
        with self._lock:
            group = [i for i in self.items if predicate(i)]
            for item in group:
                item.visible = False
            self.held.append((group, until))
        return len(group)

    def release(self) -> None:
        """Make every held-back item visible."""
        with self._lock:
            for group, _ in self.held:
                for item in group:
                    item.visible = True
            self.held.clear()

    def accept(self, kind: str, *names: str) -> None:
        """Also accept ``names`` as fields of ``kind`` (a test opting in to fields not seen in public use)."""
        self.vocabulary[kind].update(names)

    def fail(self, *faults: str) -> None:
        """Misbehave on the next ``len(faults)`` requests, one fault each."""
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}")
        self.faults.extend(faults)

    @property
    def served(self) -> int:
        """Requests answered with items (2xx)."""
        return sum(1 for r in self.log if r.status == 200 and r.fault is None)

    # ------------------------------------------------------------------ answering
    def answer(self, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any, str | None]:
        """``(status, headers, JSON document, fault)`` for one request; records it in :attr:`log`."""
        with self._lock:
            number = len(self.log) + 1
            fault = self.schedule.pop(number, None) or (self.faults.popleft() if self.faults else None)
            entry = Request(path, None, 0, fault)
            self.log.append(entry)
            status, extra, doc = self._answer(path, headers, raw, entry)
            entry.status = status
        return status, extra, doc, fault

    def _answer(self, path: str, headers: Any, raw: bytes, entry: Request) -> tuple[int, dict[str, str], Any]:
        kind = ENDPOINTS.get(path)
        if kind is None:
            return 404, {}, {"message": f"Cannot POST {path}"}
        presented = headers.get("api-key")
        if presented != self.api_key:
            return 401, {}, {"message": f"invalid api key {presented!r}"}
        if entry.fault == "403":
            return 403, {}, {"message": "Your plan does not include API access"}
        if entry.fault == "429":
            return 429, {"Retry-After": "2"}, {"message": "Too many requests"}
        if entry.fault in ("500", "502"):
            return int(entry.fault), {}, {"message": "upstream error"}
        if entry.fault == "400":
            return 400, {}, {"message": f"request by key {presented} has an invalid filter"}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, {"message": "body is not JSON"}
        entry.body = body
        problem = _check_body(kind, body, self.vocabulary[kind])
        if problem:
            return 400, {}, {"message": problem}
        for group, until in list(self.held):
            if until is not None and until(kind, body):
                for item in group:
                    item.visible = True
                self.held.remove((group, until))
        tz = ZoneInfo(body["timezone"])
        lo, hi = body["startDate"], body["endDate"]
        chosen = [i for i in self.items if i.endpoint == kind and i.visible and lo <= i.wall_clock(tz) <= hi]
        sort_by = body["sortBy"]
        ties = {i.seq: self._ties.random() for i in chosen} if self.unstable_ties else {i.seq: i.seq for i in chosen}
        chosen.sort(
            key=lambda i: (_sort_value(i.fields.get(sort_by)), ties[i.seq]), reverse=body["orderType"] == "desc"
        )
        size, page = body["pageSize"], body["page"]
        page_items = chosen[(page - 1) * size : page * size]
        metrics = body["metrics"]
        entry.counter, entry.items = len(chosen), len(page_items)
        return 200, {}, {"items": [_render(i, metrics, tz) for i in page_items], "totals": {"counter": len(chosen)}}


# ---------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeClickFlare

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (time-outs, drops) are part of the tests: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def do_POST(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        status, extra, doc, fault = app.answer(self.path, self.headers, raw)
        if app.delay:
            time.sleep(app.delay)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(app.slow_seconds)
        body = json.dumps(doc).encode("utf-8")
        zipped = app.gzip and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if zipped:
            body = gzip.compress(body, mtime=0)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if zipped:
                self.send_header("Content-Encoding", "gzip")
            for k, v in extra.items():
                self.send_header(k, v)
            if fault == "truncate-nolength":
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a time-out): nothing to answer
        self.close_connection = True

    def do_GET(self) -> None:
        self.send_error(405)


def _sort_value(value: Any) -> tuple[int, float, str]:
    """A comparable key: times first (by instant), then other values (as text), missing ones last."""
    if isinstance(value, datetime):
        return (0, value.timestamp(), "")
    if value is None or value == "":
        return (2, 0.0, "")
    return (1, 0.0, str(value))


def _check_body(kind: str, body: Any, vocabulary: set[str]) -> str | None:
    """The request body's first problem, as the API would word it, or None."""
    if not isinstance(body, dict):
        return "body must be an object"
    for name in ("startDate", "endDate"):
        try:
            datetime.strptime(str(body.get(name)), TEXT_TIME)
        except ValueError:
            return f"{name} must be YYYY-MM-DD HH:mm:ss"
    try:
        ZoneInfo(str(body.get("timezone")))
    except (ValueError, KeyError):
        return "unknown timezone"
    metrics = body.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        return "metrics must be a list of field names"
    unknown = [m for m in metrics if m not in vocabulary]
    if unknown:
        return f"unknown metric {unknown[0]}"
    if "ClickID" not in metrics:
        return "metrics must include ClickID"
    if not isinstance(body.get("metricsFilters"), list):
        return "metricsFilters must be a list"
    sort_by = body.get("sortBy")
    if sort_by not in metrics:
        return f"sortBy {sort_by} must be one of the requested metrics"
    if sort_by not in SORTABLE[kind]:
        return f"sortBy {sort_by} is not a sortable field"
    if body.get("orderType") not in ("asc", "desc"):
        return "orderType must be asc or desc"
    size, page = body.get("pageSize"), body.get("page")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
        return f"pageSize must be 1…{MAX_PAGE_SIZE}"
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= MAX_PAGE:
        return f"page must be 1…{MAX_PAGE}"
    if not isinstance(body.get("includeFilteredEvents"), bool):
        return "includeFilteredEvents must be a boolean"
    return None


def _render(item: Item, metrics: Iterable[str], tz: ZoneInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in metrics:
        if name in item.fields:
            v = item.fields[name]
            out[name] = v.astimezone(tz).strftime(TEXT_TIME) if isinstance(v, datetime) else v
    return out


# ---------------------------------------------------------------------- the sample's items
def _instant(value: Any, tz: ZoneInfo) -> datetime | None:
    """A time value of the export files as a UTC instant, or None when it does not parse."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        if "T" in text:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)
        return datetime.strptime(text, TEXT_TIME).replace(tzinfo=tz).astimezone(UTC)
    except ValueError:
        return None


def _api_name(header: str, known: dict[str, str]) -> str:
    """The API's spelling of an export header: the table above, else the header in PascalCase."""
    if header in known:
        return known[header]
    words = header.replace("_", " ").split()
    return "".join(w[:1].upper() + w[1:] for w in words) or header


def _blank(v: Any) -> Any:
    return None if v == "" else v


def _with_times(fields: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    out = dict(fields)
    for name in TIME_FIELDS:
        if name in out:
            t = _instant(out[name], tz)
            if t is not None:
                out[name] = t
    return out


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if None in row or None in row.values():
                continue  # a ragged row: a loader quarantines it, no API would hold it
            yield row


def _sample_items(folder: Path, tz: ZoneInfo) -> Iterator[Item]:
    seq = 0

    def item(endpoint: str, main: str, fields: dict[str, Any]) -> Item | None:
        nonlocal seq
        fields = _with_times(fields, tz)
        t = fields.get(main)
        if not isinstance(t, datetime):
            return None  # its time does not parse: no time window would hold it
        seq += 1
        return Item(endpoint, t, seq, fields)

    made: list[Item | None] = []
    for row in _csv_rows(folder / "visits.csv"):
        fields = {_api_name(k, VISIT_FIELDS): _blank(v) for k, v in row.items()}
        made.append(item("events", "VisitTime", {"EventType": "visit", **fields}))
    with gzip.open(folder / "clicks.ndjson.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                fields = {_api_name(k, CLICK_FIELDS): v for k, v in json.loads(line).items()}
                made.append(item("events", "ClickTime", {"EventType": "click", **fields}))
    for record in json.loads((folder / "conversions.json").read_text("utf-8"))["items"]:
        made.append(item("events", "ConversionDate", dict(record)))
    for row in _csv_rows(folder / "postbacks.csv"):
        fields = {_api_name(k, POSTBACK_FIELDS): _blank(v) for k, v in row.items()}
        made.append(item("postbacks", "PostbackTime", fields))
    for record in json.loads((folder / "postbacks_api.json").read_text("utf-8"))["items"]:
        made.append(item("postbacks", "PostbackTime", dict(record)))
    yield from (i for i in made if i is not None)


@contextmanager
def serving(folder: str | Path, *, api_key: str, timezone: str, **kw: Any) -> Iterator[FakeClickFlare]:
    """``with serving(folder, api_key=…, timezone=…) as api:`` — started, and stopped after."""
    api = FakeClickFlare.from_sample(folder, api_key=api_key, timezone=timezone, **kw)
    with api:
        yield api
