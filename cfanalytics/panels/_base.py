"""What every panel shares: a counted view of the store, cached loads per date range, display names.

A panel reads the store only to load its base frame for a date range
(:meth:`Panel._load`); it keeps the frames of the last few ranges, and applies
every other filter to the cached frame in memory. ``panel.loads`` counts those
loads and ``panel.store_reads`` counts every table scan the panel started, so a
test can prove that changing a traffic source re-reads nothing.

>>> import tempfile, cfanalytics as cf
>>> reader = CountingStore(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))
>>> reader.scan("visits").collect().height, reader.scans
(0, 1)
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from cfanalytics.diagnose.frames import ENTITIES, names, with_names
from cfanalytics.filters import LogFilter
from cfanalytics.schemas import KINDS, MAIN_TIME
from cfanalytics.store import LogStore

#: Date ranges whose base frames a panel keeps.
CACHE_SIZE: Final = 4
#: Days shown when no range is given: the last week of data.
DEFAULT_DAYS: Final = 7

Range = tuple[date | None, date | None]


class CountingStore:
    """A read-only view of a :class:`LogStore` that counts the table scans started through it.

    Diagnostics accept it wherever they take a store (they only call ``scan``,
    ``events`` and read ``timezone``).
    """

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self.scans = 0

    @property
    def timezone(self) -> str | None:
        """The store's account time zone."""
        return self.store.timezone

    def scan(self, kind: str) -> pl.LazyFrame:
        """``store.scan(kind)``, counted."""
        self.scans += 1
        return self.store.scan(kind)

    def events(self) -> pl.LazyFrame:
        """``store.events()``, counted as one scan per event kind."""
        self.scans += 3
        return self.store.events()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class NameBook:
    """Display names of every entity, read once; a store stand-in for :func:`with_names`.

    ``scan("activity")`` serves the names from memory and every other kind is
    empty, so name lookups after the first never touch the store.
    """

    def __init__(self, reader: CountingStore | LogStore) -> None:
        self.timezone = reader.timezone
        parts = [
            names(reader, key).select(  # type: ignore[arg-type]
                pl.lit(entity_type).alias("entity_type"),
                pl.col(id_col).alias("entity_id"),
                pl.col(name_col).alias("entity_name"),
            )
            for key, (id_col, name_col, entity_type) in ENTITIES.items()
        ]
        self._names = pl.concat(parts).with_columns(
            pl.lit(datetime(1970, 1, 1, tzinfo=UTC), pl.Datetime("us", "UTC")).alias("changed_at")
        )
        self._lookup: dict[str, dict[str, str]] = {}
        for id_col, _name_col, entity_type in ENTITIES.values():
            rows = self._names.filter(pl.col("entity_type") == entity_type)
            self._lookup[id_col] = dict(zip(rows["entity_id"].to_list(), rows["entity_name"].to_list(), strict=True))

    def scan(self, kind: str) -> pl.LazyFrame:
        """Names as activity rows; other kinds empty (only their main time column)."""
        if kind == "activity":
            return self._names.lazy()
        return pl.LazyFrame(schema={MAIN_TIME[kind]: pl.Datetime("us", "UTC")})

    def lookup(self, id_col: str) -> dict[str, str]:
        """``id → name`` for an id column (``traffic_source_id`` …); empty for others."""
        return self._lookup.get(id_col, {})

    def add_names(self, frame: pl.DataFrame, *id_columns: str) -> pl.DataFrame:
        """``frame`` with the name column beside each id column present (latest names)."""
        present = [c for c in id_columns if c in frame.columns]
        return with_names(frame, self, *present) if present else frame  # type: ignore[arg-type]


class Panel:
    """Base of the panels: store access, the date-range cache, filters, display.

    Subclasses set :attr:`title`, build their widgets, and implement
    :meth:`_load` (read the store for one date range) and :meth:`_update`
    (recompute frames and charts from the cached data and the current filter).
    """

    title: str = "Panel"
    #: The kinds whose latest time sets the default date range.
    latest_kinds: Sequence[str] = KINDS

    def __init__(
        self,
        store: LogStore,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
        timezone: str | None = None,
        export_dir: str | Path | None = None,
    ) -> None:
        self.store = store
        self.reader = CountingStore(store)
        self.timezone: str = timezone or store.timezone or "UTC"
        self.export_dir = Path(export_dir) if export_dir is not None else Path.cwd() / "exports"
        #: Base-frame loads (one per date range not in the cache).
        self.loads = 0
        self._cache: OrderedDict[Range, Any] = OrderedDict()
        self._busy = 0
        from cfanalytics.panels._widgets import Busy

        #: "updating…" beside the status line while the panel works.
        self.busy = Busy()
        self.names = NameBook(self.reader)
        if start is None and end is None:
            start, end = self._default_range()
        self._initial = LogFilter(start=start, end=end, timezone=self.timezone)

    # ---------------------------------------------------------------- store
    @property
    def store_reads(self) -> int:
        """Table scans this panel started so far (loads, name lookups, journeys …)."""
        return self.reader.scans

    def _default_range(self) -> Range:
        """The last :data:`DEFAULT_DAYS` local days up to the newest row (open when the store is empty)."""
        latest: datetime | None = None
        for kind in self.latest_kinds:
            value = self.reader.scan(kind).select(pl.col(MAIN_TIME[kind]).max()).collect().item()
            if value is not None and (latest is None or value > latest):
                latest = value
        if latest is None:
            return None, None
        last = pl.Series([latest]).dt.convert_time_zone(self.timezone).dt.date().item()
        return last - timedelta(days=DEFAULT_DAYS - 1), last

    def base(self, flt: LogFilter | None = None) -> Any:
        """The cached base data of the filter's date range (loaded from the store on a miss)."""
        flt = flt or self.filter
        key: Range = (_day(flt.start), _day(flt.end))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = self._load(LogFilter(start=key[0], end=key[1], timezone=self.timezone))
        self.loads += 1
        self._cache[key] = data
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return data

    def reload(self) -> None:
        """Forget every cached range and the display names, then read the store again (after an ingest)."""
        self._cache.clear()
        self.names = NameBook(self.reader)
        self.refresh()

    def _load(self, flt: LogFilter) -> Any:
        """Read this panel's base data for ``flt``'s date range (the only store read on refresh)."""
        raise NotImplementedError

    # -------------------------------------------------------------- filters
    @property
    def filters(self) -> Any:
        """The panel's :class:`~cfanalytics.panels._widgets.FilterBar`."""
        raise NotImplementedError

    @property
    def filter(self) -> LogFilter:
        """The filter the widgets currently describe."""
        return self.filters.value()

    def set_filters(self, **values: Any) -> None:
        """Set filter widgets by ``LogFilter`` field name, then update once.

        ``panel.set_filters(traffic_sources=["ts-1"], start="2026-11-17")``
        """
        self.filters.set(**values)

    def in_memory(self, frame: pl.DataFrame, flt: LogFilter | None = None) -> pl.DataFrame:
        """``frame`` filtered by every field of the filter except its date range."""
        rest = (flt or self.filter).replace(start=None, end=None)
        return frame.filter(rest.expr(frame.columns, timezone=self.timezone))

    def _on_filters(self, changed: frozenset[str]) -> None:
        del changed
        self.refresh()

    @contextlib.contextmanager
    def _updating(self) -> Iterator[bool]:
        """Yields False when an update is already running (changes made by the panel itself)."""
        if self._busy:
            yield False
            return
        self._busy += 1
        try:
            with self.busy.working():
                yield True
        finally:
            self._busy -= 1

    def refresh(self) -> None:
        """Recompute every frame and chart from the current filters (loads only a new date range)."""
        with self._updating() as ok:
            if ok:
                self._update()

    def _update(self) -> None:
        raise NotImplementedError

    # -------------------------------------------------------------- display
    @property
    def root(self) -> Any:
        """The panel's top widget."""
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.root._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.store.path} {self.filter.start}…{self.filter.end} ({self.timezone})>"


def _day(value: date | datetime | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
