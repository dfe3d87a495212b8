"""What every panel shares: a counted reader of the store, cached loads per date range, names, options.

A panel reads the store only to load its base frames for a date range
(:meth:`Panel._load`, through the loaders of :mod:`cfanalytics.diagnose.frames`);
it keeps the frames of the last few ranges and computes every chart and table
from them with the pure functions of :mod:`cfanalytics.diagnose`. ``panel.loads``
counts those loads and ``panel.store_reads`` counts every table scan the panel
started, so a test can prove that changing a traffic source re-reads nothing.

>>> import tempfile, cfanalytics as cf
>>> reader = CountingStore(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))
>>> reader.scan("visits").collect().height, reader.scans
(0, 1)
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar

import polars as pl

from cfanalytics.diagnose.frames import latest_time
from cfanalytics.diagnose.names import Names
from cfanalytics.filters import LogFilter, as_date
from cfanalytics.redaction import safe_text
from cfanalytics.schemas import ENTITIES, KINDS, MAIN_TIME
from cfanalytics.store import LogStore

if TYPE_CHECKING:
    import ipywidgets as widgets

    from cfanalytics.panels._figures import Chart
    from cfanalytics.panels._table import Table
    from cfanalytics.panels._widgets import FilterBar

#: Date ranges whose base frames a panel keeps.
CACHE_SIZE: Final = 4
#: Days shown when no range is given: the last week of data.
DEFAULT_DAYS: Final = 7

Range = tuple[date | None, date | None]


def named_ids(*entities: str) -> tuple[str, ...]:
    """Each entity's name column then its id column: the pair a table shows in one cell, the id under the name.

    >>> named_ids("campaign", "offer")
    ('campaign_name', 'campaign_id', 'offer_name', 'offer_id')
    """
    return tuple(column for entity in entities for column in (f"{entity}_name", f"{entity}_id"))


#: What a panel loads for one date range (its base frames).
Data = TypeVar("Data")


class PanelOptions(TypedDict, total=False):
    """Options every panel takes (``postback_doctor(store, start="2026-11-17", timezone="UTC")``).

    ``start`` / ``end``: the first and last local date shown (default: the last
    :data:`DEFAULT_DAYS` days with data); ``timezone``: the display zone (default: the
    store's); ``export_dir``: where table exports go (default ``./exports``).
    """

    start: date | datetime | str | None
    end: date | datetime | str | None
    timezone: str | None
    export_dir: str | Path | None


class CountingStore:
    """A read-only :class:`~cfanalytics.filters.StoreReader` over a :class:`LogStore` that counts the
    table scans started through it."""

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self.scans = 0

    @property
    def timezone(self) -> str | None:
        """The store's account time zone."""
        return self.store.timezone

    @property
    def direct_store(self) -> LogStore:
        """The store itself, for the click-id lookup (:mod:`cfanalytics._lookup`), which reads only the files and
        row groups that can hold the id: not a table scan, so not counted."""
        return self.store

    @property
    def mask_ips(self) -> bool:
        """Whether IP addresses are masked for display (the store's setting)."""
        return bool(getattr(self.store, "mask_ips", True))

    def scan(self, kind: str) -> pl.LazyFrame:
        """``store.scan(kind)``, counted."""
        self.scans += 1
        return self.store.scan(kind)

    def events(self) -> pl.LazyFrame:
        """``store.events()``, counted as one scan per event kind."""
        self.scans += 3
        return self.store.events()


class Panel(Generic[Data]):
    """Base of the panels: store access, the date-range cache, filters, display.

    Subclasses set :attr:`title`, build their widgets, and implement
    :meth:`_load` (read the store for one date range) and :meth:`_update`
    (recompute frames and charts from the cached data and the current filter).
    """

    title: str = "Panel"
    #: The kinds whose latest time sets the default date range.
    latest_kinds: Sequence[str] = KINDS
    #: The entities whose display names the panel shows (only their columns are read for names).
    named_entities: Sequence[str] = tuple(ENTITIES)
    #: The filter widgets, the top widget and the main table (set by each subclass).
    _filters: FilterBar
    _root: widgets.VBox
    table: Table

    def __init__(
        self,
        store: LogStore,
        *,
        start: date | datetime | str | None = None,
        end: date | datetime | str | None = None,
        timezone: str | None = None,
        export_dir: str | Path | None = None,
    ) -> None:
        self.store = store
        self.reader = CountingStore(store)
        self.timezone: str = timezone or store.timezone or "UTC"
        self.export_dir = Path(export_dir) if export_dir is not None else Path.cwd() / "exports"
        #: Base-frame loads (one per date range not in the cache).
        self.loads = 0
        self._cache: OrderedDict[Range, Data] = OrderedDict()
        self._busy = 0
        from cfanalytics.panels._widgets import Busy

        #: "updating…" beside the status line while the panel works.
        self.busy = Busy()
        self.names = Names.load(self.reader, self.named_entities)
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
            value = latest_time(self.reader, kind, MAIN_TIME[kind])
            if value is not None and (latest is None or value > latest):
                latest = value
        if latest is None:
            return None, None
        last = pl.Series([latest]).dt.convert_time_zone(self.timezone).dt.date().item()
        return last - timedelta(days=DEFAULT_DAYS - 1), last

    def base(self, where: LogFilter | None = None) -> Data:
        """The cached base data of the filter's date range (loaded from the store on a miss)."""
        where = where or self.filter
        key: Range = (as_date(where.start), as_date(where.end))
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
        self.names = Names.load(self.reader, self.named_entities)
        self.refresh()

    def _load(self, where: LogFilter) -> Data:
        """Read this panel's base data for ``where``'s date range (the only store read on refresh)."""
        raise NotImplementedError

    # -------------------------------------------------------------- filters
    @property
    def filters(self) -> FilterBar:
        """The panel's filter widgets."""
        return self._filters

    @property
    def filter(self) -> LogFilter:
        """The filter the widgets currently describe."""
        return self.filters.value()

    def set_filters(self, **values: Any) -> None:
        """Set filter widgets by ``LogFilter`` field name, then update once.

        ``panel.set_filters(traffic_sources=["ts-1"], start="2026-11-17")``
        """
        self.filters.set(**values)

    def in_memory(self, frame: pl.DataFrame, where: LogFilter | None = None) -> pl.DataFrame:
        """``frame`` filtered by every field of the filter except its date range."""
        rest = (where or self.filter).replace(start=None, end=None)
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
    def _new_table(self, name: str, **options: Any) -> Table:
        """A paged table in the panel's display zone, exporting into its ``export_dir``."""
        from cfanalytics.panels._table import Table

        return Table(name, timezone=self.timezone, export_dir=self.export_dir, **options)

    def _assemble(self, *parts: Any) -> None:
        """Lay the panel out (its title, the filter bar, then ``parts``) and start following the filters."""
        import ipywidgets as widgets

        self._root = widgets.VBox([widgets.HTML(f"<h3>{safe_text(self.title)}</h3>"), self._filters.box, *parts])
        self._filters.observe(self._on_filters)

    @property
    def root(self) -> widgets.VBox:
        """The panel's top widget."""
        return self._root

    @property
    def table_frame(self) -> pl.DataFrame:
        """The main table's rows as shown and exported (every page)."""
        return self.table.frame

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.root._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.store.path} {self.filter.start}…{self.filter.end} ({self.timezone})>"


class LogPanel(Panel[pl.DataFrame]):
    """A log screen: filters, a status line, a chart, the table of the rows with a picker of one row's key, and
    below the table the picked row's detail.

    Subclasses describe the table (:attr:`table_name`, :attr:`table_columns`, the time column :attr:`sort` it is
    sorted by, newest first) and its picker (:attr:`key`, :attr:`key_label`), build their detail widgets, then
    call :meth:`_lay_out` with them.
    """

    table_name: str
    table_columns: Sequence[str]
    sort: str
    key: str
    key_label: str
    figure_height: int = 320
    figure: Chart
    status: widgets.HTML

    def _lay_out(
        self,
        *detail: Any,
        on_pick: Callable[[str], object],
        key_format: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        """Build the chart, the status line and the table (a row in the picker labelled by ``key_format``), lay
        them out above ``detail``, send a picked key to ``on_pick`` (as text), then refresh."""
        import ipywidgets as widgets

        from cfanalytics.panels._figures import figure_widget

        self.figure = figure_widget(height=self.figure_height)
        self.status = widgets.HTML()
        self.table = self._new_table(
            self.table_name,
            columns=self.table_columns,
            sort=self.sort,
            key=self.key,
            key_label=self.key_label,
            key_format=key_format,
        )
        self._assemble(widgets.HBox([self.status, self.busy.widget]), self.figure.widget, self.table.widget, *detail)

        def picked(key: Any) -> None:
            if key is not None:
                on_pick(str(key))

        self.table.on_select(picked)
        self.refresh()
