"""Activity log panel: who changed what and when, on a timeline, with an old/new diff of any change.

Filters: entity type, action (created / updated / deleted / other), author,
date range. The timeline plots each change at its time on its entity type's
row, colored by action; pick a change in the table's picker, click a point,
or call :meth:`ActivityLogPanel.show_change` to see its old and new values
side by side (JSON pretty-printed, redacted, escaped).

>>> print(diff_html('{"url": "a"}', '{"url": "<b>"}').count("<tr>"))
4
"""

from __future__ import annotations

import difflib
import html
import json
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, Final, Unpack

import polars as pl

from cfanalytics.charts import COLORWAY, apply_theme
from cfanalytics.diagnose.frames import activity_rows
from cfanalytics.filters import LogFilter
from cfanalytics.panels._base import LogPanel, PanelOptions
from cfanalytics.redaction import redact, safe_text
from cfanalytics.schemas import ACTIONS, ENTITY_TYPES, MAIN_TIME

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from cfanalytics.store import LogStore
ACTION_COLORS: Final = dict(zip(ACTIONS, (COLORWAY[3], COLORWAY[0], COLORWAY[2], COLORWAY[9]), strict=True))
TABLE_COLUMNS: Final = (
    "changed_at",
    "author",
    "entity_type",
    "entity_name",
    "entity_id",
    "action",
    "action_raw",
    "old_value",
    "new_value",
)
_ROW: Final = "padding:1px 8px;vertical-align:top;white-space:pre-wrap;word-break:break-all"
_STYLE: Final = {
    "equal": "",
    "delete": "background:rgba(225,87,89,0.18)",
    "insert": "background:rgba(44,165,141,0.18)",
    "replace": "background:rgba(242,142,43,0.18)",
}


def pretty(value: str | None) -> str:
    """JSON text indented with sorted keys (other text unchanged), redacted; ``None`` → ``""``.

    >>> print(pretty('{"b": 1, "a": {"token": "abc"}}'))
    {
      "a": {
        "token": "***"
      },
      "b": 1
    }
    """
    if value is None:
        return ""
    try:
        parsed = json.loads(value)
    except ValueError:
        text = value
    else:
        text = (
            json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False)
            if isinstance(parsed, dict | list)
            else value
        )
    return redact(text) or ""


def diff_lines(old: str | None, new: str | None) -> list[tuple[str, str | None, str | None]]:
    """Line pairs ``(tag, old_line, new_line)`` of the redacted, pretty-printed values; tag is
    ``equal``, ``replace``, ``delete`` or ``insert`` (difflib opcodes).

    >>> diff_lines("a\\nb", "a\\nc")
    [('equal', 'a', 'a'), ('replace', 'b', 'c')]
    """
    a, b = pretty(old).splitlines(), pretty(new).splitlines()
    out: list[tuple[str, str | None, str | None]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for left, right in zip_longest(a[i1:i2], b[j1:j2]):
            out.append((tag, left, right))
    return out


def diff_html(old: str | None, new: str | None) -> str:
    """A two-column HTML table (old | new) of :func:`diff_lines`, every line escaped."""
    rows = ['<tr><th style="text-align:left">Old value</th><th style="text-align:left">New value</th></tr>']
    for tag, left, right in diff_lines(old, new):
        style = f"{_ROW};{_STYLE[tag]}"
        cells = "".join(f'<td style="{style}">{html.escape(v or "", quote=True)}</td>' for v in (left, right))
        rows.append(f"<tr>{cells}</tr>")
    return (
        '<table style="border-collapse:collapse;font-family:monospace;font-size:12px;width:100%;table-layout:fixed">'
        + "".join(rows)
        + "</table>"
    )


def timeline_figure(changes: pl.DataFrame, *, timezone: str = "UTC") -> go.Figure:
    """Changes over time, one row per entity type, colored by action (hover: who, what)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if changes.height == 0:
        fig.add_annotation(text="No data for this selection", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
        fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False})
        return apply_theme(fig)
    local = changes.with_columns(
        pl.col("changed_at").dt.convert_time_zone(timezone).dt.replace_time_zone(None).alias("_x"),
        pl.col("action").fill_null("other").alias("_action"),
    )
    for action in [a for a in ACTIONS if a in set(local.get_column("_action").to_list())]:
        part = local.filter(pl.col("_action") == action)
        custom = [
            [
                safe_text(r["author"], 60),
                safe_text(r["entity_name"] or r["entity_id"], 60),
                safe_text(r.get("action_raw") or action, 30),
                r["_row_id"],
            ]
            for r in part.iter_rows(named=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=part.get_column("_x").to_list(),
                y=[safe_text(t, 40) for t in part.get_column("entity_type").to_list()],
                mode="markers",
                name=safe_text(action),
                marker={"size": 10, "color": ACTION_COLORS.get(action, COLORWAY[9]), "symbol": "diamond"},
                customdata=custom,
                hovertemplate=(
                    "<b>%{customdata[2]}</b> %{y} %{customdata[1]}<br>by %{customdata[0]}<br>"
                    "%{x|%Y-%m-%d %H:%M:%S} " + safe_text(timezone) + "<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title={"text": "Changes over time", "x": 0.01, "xanchor": "left"},
        xaxis={"title": {"text": f"Time ({safe_text(timezone)})"}},
        yaxis={"title": {"text": "Entity type"}, "type": "category"},
        legend={"title": {"text": "Action"}},
    )
    return apply_theme(fig)


def _change_label(row: dict[str, Any]) -> str:
    when = row["changed_at"].strftime("%Y-%m-%d %H:%M %Z").strip() if row.get("changed_at") else ""
    what = row.get("entity_name") or row.get("entity_id") or ""
    return f"{when} · {row.get('action') or ''} {row.get('entity_type') or ''} {what} · {row.get('author') or ''}"


class ActivityLogPanel(LogPanel):
    """The audit log of edits: filters, a timeline, a paged table, and an old/new diff.

    Attributes
    ----------
    changes / table_frame
        The filtered activity rows (all columns) / the table as shown.
    figure
        The timeline (:class:`~cfanalytics.panels._figures.Chart`): one trace per action.
    change
        The picked change (a row dict), ``diff`` its line pairs and ``diff_html`` the rendered diff.
    """

    title = "Activity log"
    latest_kinds = ("activity",)
    table_name = "activity"
    table_columns = TABLE_COLUMNS
    sort = "changed_at"
    key = "_row_id"
    key_label = "Diff of change"
    figure_height = 360

    def __init__(self, store: LogStore, **options: Unpack[PanelOptions]) -> None:
        super().__init__(store, **options)
        import ipywidgets as widgets

        from cfanalytics.panels._widgets import FilterBar

        self._filters = FilterBar(("start", "end", "entity_types", "actions", "authors"), self._initial)
        self._filters.set_options("entity_types", [(safe_text(t), t) for t in ENTITY_TYPES])
        self._filters.set_options("actions", [(a, a) for a in ACTIONS])
        self.changes = pl.DataFrame()
        self.change: dict[str, Any] | None = None
        self.diff: list[tuple[str, str | None, str | None]] = []
        self.diff_html = ""
        self.diff_title = widgets.HTML("<h4>Old / new</h4>")
        self.diff_view = widgets.HTML("<small>Pick a change to see its old and new values.</small>")
        self._lay_out(self.diff_title, self.diff_view, on_pick=self.show_change, key_format=_change_label)

    # ---------------------------------------------------------------- data
    def _load(self, where: LogFilter) -> pl.DataFrame:
        rows = activity_rows(self.reader, where)
        present = rows.collect_schema().names()
        keep = ["_row_id", *(c for c in TABLE_COLUMNS if c in present)]
        return rows.select(keep).collect().sort(MAIN_TIME["activity"])

    def _update(self) -> None:
        from cfanalytics.panels._figures import show

        where = self.filter
        base = self.base(where)
        authors = sorted(a for a in base.get_column("author").unique().to_list() if a is not None)
        self._filters.set_options("authors", [(safe_text(a, 60), a) for a in authors])
        self.changes = self.in_memory(base, where)
        show(self.figure, timeline_figure(self.changes, timezone=self.timezone), on_click=self._point_clicked)
        self.table.set_frame(self.changes)
        self.status.value = f"<b>{self.changes.height:,}</b> changes"

    # ------------------------------------------------------------------ diff
    def show_change(self, row_id: str) -> dict[str, Any] | None:
        """Show the old/new diff of the change with this ``_row_id`` (from the loaded range)."""
        frame = self.base()
        match = frame.filter(pl.col("_row_id") == row_id)
        if match.height == 0:
            return None
        row = match.row(0, named=True)
        self.change = row
        self.diff = diff_lines(row.get("old_value"), row.get("new_value"))
        self.diff_html = diff_html(row.get("old_value"), row.get("new_value"))
        self.diff_title.value = f"<h4>Old / new: {safe_text(_change_label(_local_row(row, self.timezone)), 200)}</h4>"
        self.diff_view.value = self.diff_html
        return row

    def _point_clicked(self, trace_index: int, points: Any) -> None:
        trace = self.figure.data[trace_index]
        index = next(iter(points.point_inds))
        if trace.customdata is not None and index < len(trace.customdata):
            self.show_change(str(trace.customdata[index][3]))


def _local_row(row: dict[str, Any], timezone: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    when = row.get("changed_at")
    return {**row, "changed_at": when.astimezone(ZoneInfo(timezone)) if when is not None else None}


def activity_log(store: LogStore, **options: Unpack[PanelOptions]) -> ActivityLogPanel:
    """Open the activity log panel on ``store`` (last 7 days of data unless ``start``/``end`` are given)."""
    return ActivityLogPanel(store, **options)
