"""One local day of one endpoint (a *window*): its bounds, and fetching it page by page.

The API reads ``startDate``/``endDate`` as inclusive wall-clock seconds in the
request's time zone. Paging is by offset (``page``, ``pageSize``) under a sort on
the click's time, and the API serves no page past the 1 000th: a window whose
``totals.counter`` needs more is split in halves before paging on, and a window
whose rows do not add up to its counter is fetched again in halves.

>>> day_window(date(2026, 3, 8), "America/New_York")  # 23 hours long, same wall-clock bounds
('2026-03-08 00:00:00', '2026-03-08 23:59:59')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from cfanalytics.pull._options import PullError, PullOptions
from cfanalytics.pull._vocabulary import ENDPOINTS, SORT_BY, request_fields

if TYPE_CHECKING:
    from cfanalytics.pull._client import ApiClient

__all__ = [
    "Fetch",
    "InconsistentError",
    "assemble",
    "day_bounds",
    "day_window",
    "fetch_window",
    "own_time",
    "split_window",
]

TEXT_TIME: Final = "%Y-%m-%d %H:%M:%S"
#: Windows are never split below this many seconds.
_MIN_SPAN: Final = 1

_log = logging.getLogger("cfanalytics.pull")


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
    a, b = datetime.strptime(start, TEXT_TIME), datetime.strptime(end, TEXT_TIME)
    span = int((b - a).total_seconds())
    if span < _MIN_SPAN:
        return None
    mid = a + timedelta(seconds=span // 2)
    return (start, mid.strftime(TEXT_TIME)), ((mid + timedelta(seconds=1)).strftime(TEXT_TIME), end)


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants of ``day``'s local midnight and the next one (23, 24 or 25 hours apart)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


class InconsistentError(Exception):
    """A day whose rows kept missing its counter, past ``max_mismatches`` fetches."""


@dataclass
class Fetch:
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


def request_body(kind: str, start: str, end: str, *, tz: str, page: int, opt: PullOptions) -> dict[str, Any]:
    """The JSON body asking one page of ``[start, end]`` (``sortBy`` is always among the ``metrics``).

    >>> body = request_body("postbacks", "2026-11-16 00:00:00", "2026-11-16 23:59:59", tz="UTC", page=2,
    ...                     opt=PullOptions(page_size=500))
    >>> body["sortBy"], body["sortBy"] in body["metrics"], body["page"], body["pageSize"]
    ('ClickTime', True, 2, 500)
    """
    sort_by = opt.sort_by.get(kind, SORT_BY[kind])
    return {
        "startDate": start,
        "endDate": end,
        "timezone": tz,
        "metrics": request_fields(kind, opt.extra_fields.get(kind, ()), sort_by),
        "metricsFilters": [],
        "sortBy": sort_by,
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


def fetch_window(client: ApiClient, f: Fetch, start: str, end: str, *, tz: str) -> list[Path]:
    """Fetch ``[start, end]`` into part files, split in halves when it cannot be paged whole.

    A window is split before paging on when its counter needs pages past the
    API's last one (``max_page``), and re-fetched in halves when its rows did not
    match its counter (rows arriving meanwhile) or when a row came twice across
    its pages. Offset paging under a sort with ties (many rows share a click
    time) may answer each page in another order: a row skipped is then a row
    repeated, since the count still matches. A window that fits one page is one
    atomic answer, and so is a one-second window (its repeats may be real).
    """
    opt = client.options
    part = f.folder / f"part-{f.parts:06d}.ndjson"
    f.parts += 1
    counters: set[int] = set()
    seen: set[int] = set()
    repeated = 0
    read = 0
    page = 1
    capacity = opt.page_size * opt.max_page
    with part.open("w", encoding="utf-8") as out:
        while True:
            body = request_body(f.kind, start, end, tz=tz, page=page, opt=opt)
            doc = client.post(ENDPOINTS[f.kind], body, what=f"{f.label} page {page}")
            f.requests += 1
            items, counter = _page(doc, f.label)
            counters.add(counter)
            if counter > capacity:
                break
            repeated += _write_items(out, items, seen)
            read += len(items)
            _advance(f, len(items), counter, read)
            if len(counters) > 1 or not items or read >= counter or len(items) < opt.page_size:
                break
            if page >= opt.max_page:
                break  # the API pages no further; the rows missed will not match the counter
            page += 1
    if max(counters) > capacity:
        return _split_oversized(client, f, part, start, end, tz=tz, counter=max(counters), capacity=capacity)
    if len(counters) == 1 and read == next(iter(counters)):
        halves = split_window(start, end) if repeated and page > 1 else None
        if halves is None:
            f.kept += read
            return [part]
        part.unlink()
        _rewind(f)
        f.splits += 1
        _log.info("%s %s…%s: %d rows came twice across pages; pulling it in halves", f.label, start, end, repeated)
        return [p for s, e in halves for p in fetch_window(client, f, s, e, tz=tz)]
    part.unlink()
    _rewind(f)
    said = "/".join(map(str, sorted(counters)))
    f.mismatches += 1
    if f.mismatches > opt.max_mismatches:
        raise InconsistentError(
            f"rows read never matched totals.counter ({start}…{end}: {read} read, counter {said}; {f.mismatches} tries)"
        )
    halves = split_window(start, end)
    _log.info("%s %s…%s: read %d rows, totals.counter said %s; pulling it again", f.label, start, end, read, said)
    if halves is None:
        return fetch_window(client, f, start, end, tz=tz)
    f.splits += 1
    return [p for s, e in halves for p in fetch_window(client, f, s, e, tz=tz)]


def _split_oversized(
    client: ApiClient, f: Fetch, part: Path, start: str, end: str, *, tz: str, counter: int, capacity: int
) -> list[Path]:
    """Fetch a window holding more rows than the API pages (``capacity``) as two halves."""
    part.unlink()
    _rewind(f)
    halves = split_window(start, end)
    if halves is None:
        raise InconsistentError(
            f"{counter} rows in the one second {start}: more than the API pages ({capacity} = "
            f"{client.options.max_page} pages of {client.options.page_size})"
        )
    f.splits += 1
    _log.info(
        "%s %s…%s: %d rows need more than %d pages; pulling it in halves",
        f.label,
        start,
        end,
        counter,
        client.options.max_page,
    )
    return [p for s, e in halves for p in fetch_window(client, f, s, e, tz=tz)]


def _write_items(out: IO[str], items: list[Any], seen: set[int]) -> int:
    """Write ``items`` as NDJSON lines; returns how many were already in ``seen`` (which gains the others)."""
    repeated = 0
    for item in items:
        line = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        key = hash(line)
        repeated += key in seen
        seen.add(key)
        out.write(line)
        out.write("\n")
    return repeated


def _advance(f: Fetch, n: int, counter: int, read: int) -> None:
    if f.bar is None:
        return
    f.bar.total = max(f.bar.total or 0, f.kept + counter, f.kept + read)
    f.bar.update(n)


def _rewind(f: Fetch) -> None:
    if f.bar is not None:
        f.bar.n = f.kept
        f.bar.refresh()


def assemble(parts: list[Path], target: Path, kind: str) -> int:
    """Concatenate part files into one NDJSON input, each in its rows' own time order; returns its item count.

    The API sorts by the click's time, but a window is split by each row's own
    time (the visit's, click's, conversion's or postback's): ordering each part
    by that time (stably, keeping the API's order for ties) gives a whole day
    and the same day fetched in halves the same input order, so a re-pull
    stores nothing twice and settles a conflicting key the same way. Parts are
    in ascending, disjoint time ranges, so sorting each one sorts the window;
    one part is held in memory at a time.

    A postback window where no item carries a ``PostbackID`` loses that key, so
    ids are derived as for any export without the column (docs/contract.md §2).
    """
    drop_id = kind == "postbacks" and not any(_has_postback_id(p) for p in parts)
    n = 0
    with target.open("w", encoding="utf-8") as out:
        for p in parts:
            with p.open(encoding="utf-8") as src:
                items = [json.loads(line) for line in src]
            items.sort(key=lambda item: own_time(kind, item))
            for item in items:
                n += 1
                if drop_id and isinstance(item, dict):
                    item.pop("PostbackID", None)
                out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
                out.write("\n")
    return n


#: The field holding each row's own time, by event type (``EventType``) or for postbacks.
_OWN_TIME: Final[dict[str, str]] = {"visit": "VisitTime", "click": "ClickTime", "conversion": "ConversionDate"}


def own_time(kind: str, item: Any) -> tuple[int, str]:
    """Sort key of a row by its own time as the API wrote it (rows without one last).

    >>> own_time("events", {"EventType": "click", "ClickTime": "2026-11-16 10:00:00", "VisitTime": "x"})
    (0, '2026-11-16 10:00:00')
    >>> own_time("postbacks", {"ClickID": "a"})
    (1, '')
    """
    if not isinstance(item, dict):
        return (1, "")
    name = "PostbackTime" if kind == "postbacks" else _OWN_TIME.get(str(item.get("EventType") or "").lower(), "")
    value = item.get(name) if name else None
    return (1, "") if value is None or value == "" else (0, str(value))


def _has_postback_id(part: Path) -> bool:
    with part.open(encoding="utf-8") as src:
        for line in src:
            item = json.loads(line)
            if isinstance(item, dict) and str(item.get("PostbackID") or "").strip():
                return True
    return False
