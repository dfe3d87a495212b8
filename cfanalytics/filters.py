"""What to read and from where: :class:`LogFilter` (compiled to Polars expressions) and :class:`StoreReader`.

``LogFilter`` is one filter object for code, widgets and reports. ``StoreReader``
is what every loader reads through: a time zone and lazy scans (a
:class:`~cfanalytics.store.LogStore` is one).

Dates are local dates in the display time zone (default: the store's), both
inclusive; datetimes may be given instead (naive ones are local). Filtered (bot)
traffic is excluded by default, as in ClickFlare's own screens.

>>> from datetime import date
>>> where = LogFilter(start=date(2026, 11, 20), end=date(2026, 11, 20), traffic_sources=["t1"])
>>> [t.isoformat() for t in where.time_bounds("UTC")]
['2026-11-20T00:00:00+00:00', '2026-11-21T00:00:00+00:00']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._portable import one_of
from cfanalytics.exceptions import UsageError
from cfanalytics.schemas import ENTITIES, MAIN_TIME


@runtime_checkable
class StoreReader(Protocol):
    """Read access to a store: its account time zone and one lazy scan per log kind.

    :class:`~cfanalytics.store.LogStore` is a reader; so is any wrapper that counts
    or caches scans. Loaders (:mod:`cfanalytics.diagnose.frames`) take one.

    >>> import tempfile, cfanalytics as cf
    >>> isinstance(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"), StoreReader)
    True
    """

    @property
    def timezone(self) -> str | None:
        """The account time zone (IANA name), if known."""
        ...

    def scan(self, kind: str) -> pl.LazyFrame:
        """The stored rows of one kind (``visits``, ``postbacks`` …)."""
        ...

    def events(self) -> pl.LazyFrame:
        """Visits, clicks and conversions as one event log (``event_time``, ``event_type`` …)."""
        ...


#: LogFilter field → the column it filters (when the frame has it).
_COLUMN_OF: dict[str, str] = {
    **{field: id_column for id_column, _name, field in ENTITIES.values()},
    "countries": "country",
    "device_types": "device_type",
    "status_classes": "status_class",
    "error_kinds": "error_kind",
    "entity_types": "entity_type",
    "actions": "action",
    "authors": "author",
    "event_types": "event_type",
}


@dataclass(frozen=True)
class LogFilter:
    """What to look at. Every field is optional; ``None`` means no restriction.

    Parameters
    ----------
    start, end
        Local dates (inclusive) or datetimes (``end`` exclusive) in the display zone.
    timezone
        Display time zone for ``start``/``end``; default: the store's account zone.
    include_filtered
        Include traffic ClickFlare filtered as bots (excluded by default).
    click_id
        Click-id search: rows whose click id contains this text.
    cts
        Custom conversion types; ``""`` selects conversions/postbacks without a ct.
    errors_only
        Postbacks: only errors.
    """

    start: date | datetime | str | None = None
    end: date | datetime | str | None = None
    timezone: str | None = None
    event_types: Sequence[str] | None = None
    campaigns: Sequence[str] | None = None
    traffic_sources: Sequence[str] | None = None
    offers: Sequence[str] | None = None
    landers: Sequence[str] | None = None
    affiliate_networks: Sequence[str] | None = None
    countries: Sequence[str] | None = None
    device_types: Sequence[str] | None = None
    include_filtered: bool = False
    click_id: str | None = None
    integrations: Sequence[str] | None = None
    cts: Sequence[str] | None = None
    status_classes: Sequence[str] | None = None
    error_kinds: Sequence[str] | None = None
    errors_only: bool = False
    entity_types: Sequence[str] | None = None
    actions: Sequence[str] | None = None
    authors: Sequence[str] | None = None

    def replace(self, **changes: Any) -> LogFilter:
        """A copy with some fields changed (``where.replace(traffic_sources=["t2"])``)."""
        return replace(self, **changes)

    def is_empty(self) -> bool:
        """True when nothing is restricted (filtered traffic still excluded)."""
        return all(getattr(self, f.name) in (None, False) for f in fields(self) if f.name != "timezone")

    # ----------------------------------------------------------------- time
    def time_bounds(self, timezone: str | None) -> tuple[datetime | None, datetime | None]:
        """``[start, end)`` as UTC-aware datetimes (None where open)."""
        zone = ZoneInfo(self.timezone or timezone or "UTC")
        lo, hi = _bound(self.start, zone, is_end=False), _bound(self.end, zone, is_end=True)
        return (lo.astimezone(UTC) if lo else None), (hi.astimezone(UTC) if hi else None)

    def date_bounds(self, timezone: str | None) -> tuple[date | None, date | None]:
        """UTC ``date`` partitions that can hold rows in range (for pruning)."""
        lo, hi = self.time_bounds(timezone)
        lo_d = lo.astimezone(UTC).date() if lo else None
        hi_d = (hi - timedelta(microseconds=1)).astimezone(UTC).date() if hi else None
        return lo_d, hi_d

    def range_conditions(
        self, columns: Sequence[str], time_column: str | None, timezone: str | None
    ) -> list[tuple[str, Callable[[Any], Any]]]:
        """The time range as ``(column, test)`` pairs, a test taking that column's expression (Polars'
        or narwhals'): the ``date`` partitions first (pruning), then the instant of ``time_column``.

        >>> from datetime import date
        >>> [c for c, _ in LogFilter(start=date(2026, 1, 2)).range_conditions(["date", "t"], "t", "UTC")]
        ['date', 't']
        """
        if not time_column or time_column not in columns:
            return []
        lo, hi = self.time_bounds(timezone)
        dlo, dhi = self.date_bounds(timezone)
        out: list[tuple[str, Callable[[Any], Any]]] = []
        if "date" in columns:
            if dlo is not None:
                out.append(("date", lambda c: c >= dlo))
            if dhi is not None:
                out.append(("date", lambda c: c <= dhi))
        if lo is not None:
            out.append((time_column, lambda c: c >= lo))
        if hi is not None:
            out.append((time_column, lambda c: c < hi))
        return out

    # ------------------------------------------------------------ compiling
    def _conditions(self, ns: Any, columns: Sequence[str], time_column: str | None, timezone: str | None) -> list[Any]:
        """The filter's conditions as expressions of ``ns`` (``polars`` or ``narwhals``): one implementation
        for Polars frames and for frames of any engine (:meth:`apply_nw`)."""
        cols = set(columns)
        parts: list[Any] = [
            compare(ns.col(column)) for column, compare in self.range_conditions(columns, time_column, timezone)
        ]
        for name, column in _COLUMN_OF.items():
            values = getattr(self, name)
            if values is not None and column in cols:
                parts.append(_is_in(ns, ns.col(column), _as_list(values, name)))
        if self.cts is not None and "ct" in cols:
            cts = list(_as_list(self.cts, "cts"))
            ct = ns.col("ct")
            no_ct = ct.is_null() | (ct == "")
            parts.append(_is_in(ns, ct, cts) | no_ct if "" in cts else _is_in(ns, ct, cts))
        if not self.include_filtered and "is_filtered" in cols:
            parts.append(~ns.col("is_filtered").fill_null(value=False))
        if self.click_id and "click_id" in cols:
            parts.append(ns.col("click_id").str.contains(self.click_id, literal=True))
        if self.errors_only and "is_error" in cols:
            parts.append(ns.col("is_error"))
        return parts

    def expr(self, columns: Sequence[str], *, time_column: str | None = None, timezone: str | None = None) -> pl.Expr:
        """One boolean expression over a frame with ``columns``; fields naming absent columns are ignored."""
        parts = self._conditions(pl, columns, time_column, timezone)
        return pl.all_horizontal(parts) if parts else pl.lit(True)

    def apply(self, lf: pl.LazyFrame, kind: str | None = None, *, timezone: str | None = None) -> pl.LazyFrame:
        """Filter a lazy frame of ``kind`` (its main time is the range column).

        >>> import polars as pl
        >>> LogFilter(errors_only=True).apply(pl.LazyFrame({"is_error": [True, False]})).collect().height
        1
        """
        names = lf.collect_schema().names()
        return lf.filter(self.expr(names, time_column=_time_column(kind, names), timezone=timezone))

    def apply_nw(self, frame: nw.LazyFrame[Any], kind: str | None = None, *, timezone: str | None = None) -> Any:
        """:meth:`apply` on a narwhals frame of any engine (:mod:`cfanalytics.engines`).

        >>> import narwhals.stable.v2 as nw, polars as pl
        >>> rows = nw.from_native(pl.LazyFrame({"ct": ["", None, "sale"], "n": [1, 2, 3]}))
        >>> LogFilter(cts=[""]).apply_nw(rows).to_native().collect().get_column("n").to_list()
        [1, 2]
        """
        names = frame.collect_schema().names()
        parts = self._conditions(nw, names, _time_column(kind, names), timezone)
        return frame.filter(*parts) if parts else frame


def _is_in(ns: Any, column: Any, values: Sequence[str]) -> Any:
    """``column`` in ``values``: Polars' ``is_in``; on other engines :func:`~cfanalytics._portable.one_of`."""
    return column.is_in(list(values)) if ns is pl else one_of(column, values)


def _time_column(kind: str | None, names: Sequence[str]) -> str | None:
    """The range column of a frame of ``kind`` (its main time; an event log's ``event_time``)."""
    return MAIN_TIME.get(kind or "", None) or ("event_time" if "event_time" in names else None)


def as_date(value: date | datetime | str | None) -> date | None:
    """A date from a date, a datetime (its date) or ISO text (its first 10 characters); ``""`` → ``None``.

    >>> as_date("2026-11-20T10:00"), as_date(""), as_date(datetime(2026, 11, 20, 23, 59))
    (datetime.date(2026, 11, 20), None, datetime.date(2026, 11, 20))
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def display_timezone(where: LogFilter | None, timezone: str | None) -> str:
    """The zone to show times in: the filter's, else ``timezone`` (the store's), else UTC.

    >>> display_timezone(LogFilter(timezone="Europe/Paris"), "UTC"), display_timezone(None, None)
    ('Europe/Paris', 'UTC')
    """
    return (where.timezone if where else None) or timezone or "UTC"


def _as_list(values: Sequence[str] | str, name: str) -> Sequence[str]:
    if isinstance(values, str):
        return [values]
    if not isinstance(values, Sequence):
        raise UsageError(f"LogFilter.{name} must be a list of values")
    return values


def _bound(value: date | datetime | str | None, zone: ZoneInfo, *, is_end: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if ("T" in value or " " in value) else date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"not a date or time: {value!r} (use YYYY-MM-DD)") from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    day = value + timedelta(days=1) if is_end else value
    return datetime.combine(day, time(0), tzinfo=zone)
