"""A paged, sortable, searchable HTML table widget with a column chooser, a row picker and CSV / Excel export.

Cells are rendered by us, on the kernel side: every value passes
:func:`~cfanalytics.charts.safe_text` (redacted, shortened, HTML-escaped), times
are shown in the display zone, which every time column's header names, and
rates (columns named ``*rate*``) as percentages. A name column and its id
(``campaign_name`` / ``campaign_id``) share one cell, the id small under the
name. Long texts are cut to the cell's width, the whole text in its tooltip, so
the table fits a 1280 px window. The search box keeps the rows whose shown text
contains the words typed; "Columns" shows or hides columns. Sorting is chosen
with a column dropdown and a direction toggle; 50 rows a page. The export buttons
write every row of the table (all pages, the shown columns, the search applied)
to a file under the panel's export folder and show its path.

Why not a JavaScript grid (itables' ``ITable``, ipydatagrid): ``ITable`` is an
anywidget, so its rows would reach the browser as messages after it opens, the
path that left charts empty on busy machines; ipydatagrid has had no release
since 2024. Paging here also keeps the browser light whatever the row count.

>>> import polars as pl
>>> render_html(pl.DataFrame({"msg": ["<script>alert(1)</script>"]}))[:60]
'<table style="border-collapse:collapse;font-size:12px;width:'
>>> "<script>" in render_html(pl.DataFrame({"msg": ["<script>alert(1)</script>"]}))
False
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import ipywidgets as widgets
import polars as pl

from cfanalytics.charts import safe_text
from cfanalytics.panels.export import export_frame

PAGE_SIZE: Final = 50
CELL_LIMIT: Final = 160
_CELL: Final = "padding:2px 8px;border-bottom:1px solid rgba(128,128,128,0.25);text-align:left;vertical-align:top"
_HEAD: Final = _CELL + ";position:sticky;top:0;background:var(--jp-layout-color1, rgba(128,128,128,0.12))"
#: Widest cell (longer text is cut with an ellipsis; the tooltip holds all of it).
_CLIP: Final = "max-width:240px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap"
_ID: Final = "display:block;font-size:10px;opacity:0.65;max-width:200px;overflow:hidden;text-overflow:ellipsis"
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def is_rate(column: str) -> bool:
    """True for a column of fractions shown as percentages (``error_rate_before`` …)."""
    return "rate" in column


def _percent(value: Any) -> str:
    return "" if value is None else f"{float(value):.1%}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime(_TIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return safe_text(json.dumps(value, default=str, ensure_ascii=False), CELL_LIMIT)
    return safe_text(value, CELL_LIMIT)


def local_times(frame: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """Zoned datetime columns converted to ``timezone`` (for display)."""
    zoned = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    return frame.with_columns(pl.col(n).dt.convert_time_zone(timezone) for n in zoned) if zoned else frame


def display_columns(columns: list[str]) -> list[tuple[str, str | None]]:
    """``(column, id column shown under it or None)``: a ``*_name`` column takes its ``*_id`` column.

    >>> display_columns(["time", "campaign_name", "campaign_id", "landing_id"])
    [('time', None), ('campaign_name', 'campaign_id'), ('landing_id', None)]
    """
    out: list[tuple[str, str | None]] = []
    for column in columns:
        if _partner(column, "_id", "_name") in columns:
            continue  # shown under its name
        ident = _partner(column, "_name", "_id")
        out.append((column, ident if ident in columns else None))
    return out


def _partner(column: str, suffix: str, other: str) -> str | None:
    """``campaign_id`` → ``campaign_name`` (``suffix="_id"``, ``other="_name"``); ``id`` → ``name``."""
    if column == suffix[1:]:
        return other[1:]
    return column.removesuffix(suffix) + other if column.endswith(suffix) else None


def _header(column: str, ident: str | None, dtype: pl.DataType, timezone: str) -> str:
    text = column.removesuffix("_name") if ident and column != "name" else column
    text = safe_text(text.replace("_", " "), 60)
    if isinstance(dtype, pl.Datetime):
        text += f' <small style="opacity:0.7">({safe_text(timezone)})</small>'
    elif is_rate(column):
        text += " %"
    return text


def excel_times(frame: pl.DataFrame, timezone: str, *, text: bool) -> pl.DataFrame:
    """Zoned times as wall-clock times in ``timezone``, the zone in the column name, for spreadsheets.

    ``text``: as ``YYYY-MM-DD HH:MM:SS`` strings (what Excel reads from a CSV as a date
    and time); otherwise naive datetimes (an ``.xlsx`` stores them as dates).

    >>> from datetime import datetime, UTC
    >>> t = pl.DataFrame({"t": [datetime(2026, 11, 17, 21, 8, 42, tzinfo=UTC)]})
    >>> excel_times(t, "America/New_York", text=True).row(0, named=True)
    {'t (America/New_York)': '2026-11-17 16:08:42'}
    """
    zoned = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone]
    if not zoned:
        return frame
    local = [pl.col(n).dt.convert_time_zone(timezone).dt.replace_time_zone(None) for n in zoned]
    if text:
        local = [e.dt.strftime(_TIME_FORMAT) for e in local]
    return frame.with_columns(e.alias(n) for e, n in zip(local, zoned, strict=True)).rename(
        {n: f"{n} ({timezone})" for n in zoned}
    )


def render_html(frame: pl.DataFrame, *, timezone: str = "UTC", empty: str = "No rows.") -> str:
    """An HTML ``<table>`` of ``frame``: headers and cells escaped, times in ``timezone``, rates in %."""
    if frame.width == 0 or frame.height == 0:
        return f"<p><i>{safe_text(empty)}</i></p>"
    frame = local_times(frame, timezone)
    layout = display_columns(frame.columns)
    schema = frame.schema
    head = "".join(f'<th style="{_HEAD}">{_header(c, i, schema[c], timezone)}</th>' for c, i in layout)
    rows = []
    for row in frame.iter_rows(named=True):
        cells = []
        for column, ident in layout:
            text = _percent(row[column]) if is_rate(column) and schema[column].is_numeric() else _cell(row[column])
            title = text
            if ident is not None and row[ident] is not None:
                id_text = _cell(row[ident])
                title = f"{text} ({id_text})" if text else id_text
                text = f'{text or "—"}<span style="{_ID}">{id_text}</span>'
            cells.append(f'<td style="{_CELL}"><div style="{_CLIP}" title="{title}">{text}</div></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table style="border-collapse:collapse;font-size:12px;width:max-content">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


class Table:
    """A table widget over a DataFrame: search, column chooser, paging, sorting, a row picker, export buttons.

    Parameters
    ----------
    name
        File-name stem of exports (``postbacks`` → ``postbacks-20261120-101500.csv``).
    columns
        Columns to show, in order (those absent from a frame are skipped); ``None`` = all.
    sort, descending
        Initial sort column and direction (``sort=None``: the frame's own order, "(as loaded)").
    key
        Column whose values the row picker lists (the current page's rows; it need not be
        shown); ``None`` = no picker.
    key_format
        Label of a row in the picker (``row dict → text``, escaped here); default: the key.
    export_dir
        Folder the export buttons write to (created when needed).
    """

    def __init__(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        sort: str | None = None,
        descending: bool = True,
        key: str | None = None,
        key_label: str = "Row",
        key_format: Callable[[dict[str, Any]], str] | None = None,
        page_size: int = PAGE_SIZE,
        timezone: str = "UTC",
        export_dir: Path,
        empty: str = "No rows for this selection.",
    ) -> None:
        self.name = name
        self.columns = list(columns) if columns is not None else None
        self.key = key
        self.key_format = key_format
        self.page_size = page_size
        self.timezone = timezone
        self.export_dir = export_dir
        self.empty = empty
        self.page = 0
        self.exports: list[Path] = []
        self._visible: list[str] = []
        self._data = pl.DataFrame()
        self._frame = pl.DataFrame()
        self._sorted = pl.DataFrame()
        self._pending: Callable[[], pl.DataFrame] | None = None
        self._select_callbacks: list[Callable[[Any], None]] = []
        self._quiet = False

        self.sort_by = widgets.Dropdown(description="Sort by", options=[], layout=widgets.Layout(width="260px"))
        self.direction = widgets.ToggleButtons(
            options=[("↓ desc", True), ("↑ asc", False)], value=descending, style={"button_width": "70px"}
        )
        self.prev_button = widgets.Button(description="‹ Prev", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="Next ›", layout=widgets.Layout(width="80px"))
        self.info = widgets.HTML()
        self.html = widgets.HTML(layout=widgets.Layout(overflow="auto", max_height="520px"))
        self.csv_button = widgets.Button(description="CSV", icon="download", layout=widgets.Layout(width="90px"))
        self.xlsx_button = widgets.Button(description="Excel", icon="download", layout=widgets.Layout(width="90px"))
        self.export_status = widgets.HTML()
        self.selector = widgets.Dropdown(
            description=safe_text(key_label),
            options=[("—", None)],
            value=None,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="520px"),
        )
        self.search = widgets.Text(
            placeholder="search rows…", continuous_update=True, layout=widgets.Layout(width="220px")
        )
        from cfanalytics.panels._widgets import MultiChoice

        self.columns_button = widgets.ToggleButton(
            value=False, description="Columns", icon="columns", layout=widgets.Layout(width="100px")
        )
        self.chooser = MultiChoice("Columns shown")
        self.chooser.layout.display = "none"
        self._all_columns: list[str] = []
        self._initial_sort = sort
        self._sort_chosen = False

        self.sort_by.observe(lambda _c: self._sort_changed(), names="value")
        self.direction.observe(lambda _c: self._sort_changed(), names="value")
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.csv_button.on_click(lambda _b: self._export_clicked("csv"))
        self.xlsx_button.on_click(lambda _b: self._export_clicked("xlsx"))
        self.selector.observe(self._selected, names="value")
        self.search.observe(lambda _c: self._search_changed(), names="value")
        self.columns_button.observe(self._toggle_chooser, names="value")
        self.chooser.observe(lambda _c: self._columns_chosen(), names="value")

        controls = [self.search, self.columns_button, self.sort_by, self.direction, self.prev_button, self.next_button]
        exports = [widgets.HTML("<small>Export all rows:</small>"), self.csv_button, self.xlsx_button]
        rows: list[widgets.Widget] = [
            widgets.HBox(controls, layout=widgets.Layout(flex_flow="row wrap")),
            self.chooser,
            self.info,
            self.html,
        ]
        if key is not None:
            rows.append(self.selector)
        rows.append(widgets.HBox([*exports, self.export_status]))
        self.widget = widgets.VBox(rows)

    # ------------------------------------------------------------------ data
    def set_frame(self, frame: pl.DataFrame) -> None:
        """Show ``frame`` (searched, sorted by the chosen column), from its first page."""
        self._pending = None
        available = [c for c in self.columns if c in frame.columns] if self.columns is not None else list(frame.columns)
        if available != self._all_columns:
            chosen = [c for c in self.chooser.value if c in available]
            self._all_columns = available
            self._quiet = True
            try:
                self.chooser.options = [(safe_text(c.replace("_", " "), 60), c) for c in available]
                self.chooser.value = tuple(chosen)
            finally:
                self._quiet = False
        self._frame = frame
        self._select_columns()

    def set_frame_later(self, make: Callable[[], pl.DataFrame]) -> None:
        """Show the frame ``make()`` returns, made when the table is next read or drawn (:meth:`show_pending`):
        a table out of sight costs nothing until then."""
        self._pending = make

    @property
    def pending(self) -> bool:
        """Whether a frame given to :meth:`set_frame_later` is not made yet (the page shows the one before)."""
        return self._pending is not None

    def show_pending(self) -> None:
        """Make and show the frame given to :meth:`set_frame_later`, if any."""
        if self._pending is not None:
            self.set_frame(self._pending())

    def _select_columns(self) -> None:
        self.show_pending()
        frame = self._frame
        chosen = set(self.chooser.value)
        visible = [c for c in self._all_columns if not chosen or c in chosen]
        self._visible = visible
        hidden = [self.key] if self.key is not None and self.key in frame.columns and self.key not in visible else []
        self._data = frame.select([*visible, *hidden])
        options = [("(as loaded)", None), *((safe_text(c, 60), c) for c in visible)]
        self._quiet = True
        try:
            if list(self.sort_by.options) != options:
                current = self.sort_by.value if self._sort_chosen else self._initial_sort
                self.sort_by.options = options
                self.sort_by.value = current if current in visible else None
        finally:
            self._quiet = False
        self.page = 0
        self._resort(force=True)

    def _columns_chosen(self) -> None:
        if not self._quiet:
            self._select_columns()

    def _toggle_chooser(self, change: dict[str, Any]) -> None:
        self.chooser.layout.display = None if change["new"] else "none"

    def _search_changed(self) -> None:
        self.show_pending()
        self.page = 0
        self._resort(force=True)

    def _searched(self, data: pl.DataFrame) -> pl.DataFrame:
        """The rows whose shown text contains every word of the search box (case-insensitive)."""
        words = self.search.value.lower().split()
        if not words or data.height == 0:
            return data
        shown = local_times(data.select(self._visible), self.timezone)
        text = pl.concat_str(
            [
                pl.col(c).cast(pl.String) if not dtype.is_nested() else pl.col(c).cast(pl.String, strict=False)
                for c, dtype in shown.schema.items()
            ],
            separator=" ",
            ignore_nulls=True,
        ).str.to_lowercase()
        mask = shown.select(pl.all_horizontal(text.str.contains(w, literal=True) for w in words)).to_series()
        return data.filter(mask)

    @property
    def frame(self) -> pl.DataFrame:
        """Every row of the table (search applied), sorted as shown (what the export buttons write)."""
        self.show_pending()
        return self._sorted.select(self._visible)

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        self.show_pending()
        return max(1, -(-self._sorted.height // self.page_size))

    @property
    def page_frame(self) -> pl.DataFrame:
        """The rows of the current page."""
        return self._page_rows().select(self._visible)

    def _page_rows(self) -> pl.DataFrame:
        self.show_pending()
        return self._sorted.slice(self.page * self.page_size, self.page_size)

    def sort(self, column: str, *, descending: bool = True) -> None:
        """Sort by ``column`` (must be shown)."""
        self._quiet = True
        try:
            self.sort_by.value = column
            self.direction.value = descending
        finally:
            self._quiet = False
        self._sort_chosen = True
        self._resort(force=True)

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped)."""
        self.page = min(max(page, 0), self.pages - 1)
        self._render()

    def _sort_changed(self) -> None:
        if not self._quiet:
            self._sort_chosen = True
            self._resort()

    def _resort(self, *, force: bool = False) -> None:
        if self._quiet and not force:
            return
        if self._pending is not None:
            self.show_pending()  # sorts the new frame
            return
        column = self.sort_by.value
        data = self._searched(self._data)
        sortable = column is not None and column in data.columns and not data.schema[column].is_nested()
        if sortable and data.height:  # nested values (structs, lists) keep the loaded order
            data = data.sort(column, descending=bool(self.direction.value), nulls_last=True, maintain_order=True)
        self._sorted = data
        self.page = min(self.page, self.pages - 1)
        self._render()

    def _render(self) -> None:
        page = self.page_frame
        self.html.value = render_html(page, timezone=self.timezone, empty=self.empty)
        total = self._sorted.height
        first = self.page * self.page_size + 1 if total else 0
        last = self.page * self.page_size + page.height
        self.info.value = f"<small>rows {first:,}–{last:,} of {total:,} · page {self.page + 1} of {self.pages}</small>"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1
        if self.key is not None:
            rows = local_times(self._page_rows(), self.timezone)
            labels: dict[Any, str] = {}
            if self.key in rows.columns:
                for row in rows.iter_rows(named=True):
                    k = row[self.key]
                    if k is not None and k not in labels:
                        labels[k] = safe_text(self.key_format(row) if self.key_format else k, 100)
            seen = list(labels)
            options = [("—", None), *((labels[k], k) for k in seen)]
            current = self.selector.value
            self._quiet = True
            try:
                self.selector.options = options
                self.selector.value = current if current in seen else None
            finally:
                self._quiet = False

    # ------------------------------------------------------------- selection
    def on_select(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(key_value)`` when a row is picked (``None`` when cleared)."""
        self._select_callbacks.append(callback)

    def _selected(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        for callback in self._select_callbacks:
            callback(change["new"])

    # ---------------------------------------------------------------- export
    def export(self, fmt: str = "csv", path: str | Path | None = None) -> Path:
        """Write every row of the table (redacted, formula-safe) to ``path`` or a new file; return it."""
        if path is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = self.export_dir / f"{self.name}-{stamp}.{fmt}"
            n = 1
            while path.exists():
                n += 1
                path = self.export_dir / f"{self.name}-{stamp}-{n}.{fmt}"
        written = export_frame(excel_times(self.frame, self.timezone, text=Path(path).suffix.lower() == ".csv"), path)
        self.exports.append(written)
        return written

    def _export_clicked(self, fmt: str) -> None:
        try:
            path = self.export(fmt)
        except Exception as exc:  # shown in the panel, never raised into the widget loop
            self.export_status.value = f"<small>Export failed: {safe_text(exc, 200)}</small>"
            return
        self.export_status.value = (
            f"<small>Saved {self.frame.height:,} rows to <code>{safe_text(path, 300)}</code></small>"
        )
