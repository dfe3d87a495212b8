"""Postback doctor panel: which postbacks fail, since when, why, and the rows behind any bar.

Filters: traffic source, integration, ct, status class, error kind, date range.
Shows the hourly error rate per traffic source (or integration, campaign, ct)
with activity changes marked and incidents shaded, errors by kind and by HTTP
status class, the top error signatures, the incidents, and the postback rows
behind any group: pick it in the "Rows behind" dropdowns, click a bar or a
point, pick an incident, or call :meth:`PostbackDoctorPanel.drill`.

The enriched postbacks, incidents and activity of a date range are read once
and kept; other filters and groupings are computed in memory.

>>> from cfanalytics.panels import postback_doctor
>>> panel = postback_doctor(store)                             # doctest: +SKIP
>>> panel.set_filters(traffic_sources=["ts-meta"])              # doctest: +SKIP
>>> [t.y for t in panel.figure.data]                           # doctest: +SKIP
>>> panel.drill("error_kind", "auth").height                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Unpack
from zoneinfo import ZoneInfo

import polars as pl

from cfanalytics import charts
from cfanalytics.diagnose.error_kinds import ERROR_KINDS, STATUS_CLASSES, kind_actions
from cfanalytics.diagnose.error_rates import top_signatures
from cfanalytics.diagnose.frames import activity, campaign_links, postbacks
from cfanalytics.diagnose.incidents import find_incidents, history_filter, scope_changes, scope_incidents
from cfanalytics.diagnose.rate_cube import cube_rates, cube_total, rate_cube
from cfanalytics.filters import LogFilter
from cfanalytics.panels._base import Panel, PanelOptions
from cfanalytics.redaction import safe_text

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: Groupings of the error-rate chart.
CHART_GROUPS: Final[dict[str, str]] = {
    "traffic_source_id": "Traffic source",
    "integration_id": "Integration",
    "campaign_id": "Campaign",
    "ct": "Conversion type (ct)",
}
#: Dimensions the "rows behind" picker can select on.
DRILL_GROUPS: Final[dict[str, str]] = {
    **CHART_GROUPS,
    "status_class": "Status class",
    "error_kind": "Error kind",
    "signature": "Error signature",
}
#: The rows table's columns: what diagnoses a postback first, each id under its name.
ROW_COLUMNS: Final = (
    "postback_time",
    "status_code",
    "error_message",
    "postback_url",
    "ct",
    "traffic_source_name",
    "traffic_source_id",
    "integration_name",
    "integration_id",
    "campaign_name",
    "campaign_id",
    "error_kind",
    "status_class",
    "is_error",
    "click_id",
    "postback_id",
)
INCIDENT_COLUMNS: Final = (
    "start",
    "end",
    "name",
    "id",
    "scope",
    "top_error_kind",
    "error_rate_before",
    "error_rate_during",
    "postbacks",
    "errors",
    "scope_state",
    "open",
    "change_at",
    "change_by",
    "change",
    "fix_at",
    "fix_by",
    "fix",
    "top_suspects",
    "incident_id",
)
#: The error kinds table: each kind with what to do and whether a re-send later can succeed.
KIND_COLUMNS: Final = ("error_kind", "errors", "retryable", "resend_later", "action", "fix_owner")
#: Suspects named per incident in its row (the JSON and ``incidents`` hold them all).
SHOWN_SUSPECTS: Final = 3
TOP_SIGNATURES: Final = 10
#: The "rows behind" picker's value for a missing group value.
MISSING: Final = ("missing",)


@dataclass(frozen=True)
class DoctorData:
    """What the panel reads for one date range."""

    postbacks: pl.DataFrame
    incidents: pl.DataFrame
    activity: pl.DataFrame
    #: :func:`~cfanalytics.diagnose.rate_cube.rate_cube` of the postbacks: what every chart, the status line
    #: and the filter options are counted from.
    cube: pl.DataFrame
    #: The failing postbacks (the top signatures are read from them).
    errors: pl.DataFrame


class PostbackDoctorPanel(Panel[DoctorData]):
    """Postback error rates, kinds, signatures, incidents, and the rows behind them.

    Attributes
    ----------
    postbacks
        The filtered, enriched postbacks (``traffic_source_id``, ``error_kind``, ``signature`` …), filtered when
        first read after a change (charts and totals are counted from the date range's cube).
    rates
        ``error_rates(by=["hour", by])`` with names, behind :attr:`figure` (hours in the display zone).
    kinds, classes, signatures
        Errors by kind (with each kind's ``action``, ``retryable`` and ``fix_owner``), postbacks by status
        class, the top signatures (with an example message).
    changes, incidents
        Activity rows marked on the chart and incidents shaded on it (those of the groups shown).
    rows_frame / table_frame
        The postback rows behind the chosen group (all filtered rows when none is chosen). The section
        "Rows behind" starts folded: its table is made when it is opened, a row is drilled into, or it is read.
    figure, kinds_figure, classes_figure, signatures_figure
        The charts (:class:`~cfanalytics.panels._figures.Chart`); traces' ``y`` are readable from ``figure.data``.
    """

    title = "Postback doctor"
    latest_kinds = ("postbacks",)
    named_entities = ("traffic_source", "integration", "campaign")

    def __init__(self, store: LogStore, *, by: str = "traffic_source_id", **options: Unpack[PanelOptions]) -> None:
        super().__init__(store, **options)
        import ipywidgets as widgets

        from cfanalytics.panels._figures import figure_widget
        from cfanalytics.panels._widgets import FilterBar

        if by not in CHART_GROUPS:
            raise ValueError(f"by must be one of {', '.join(CHART_GROUPS)}")
        self._filters = FilterBar(
            ("start", "end", "traffic_sources", "integrations", "cts", "status_classes", "error_kinds"), self._initial
        )
        self._filters.set_options("status_classes", [(c, c) for c in STATUS_CLASSES])
        self._filters.set_options("error_kinds", [(k, k) for k in ERROR_KINDS])
        self.by = widgets.Dropdown(description="Chart by", options=[(v, k) for k, v in CHART_GROUPS.items()], value=by)
        empty = pl.DataFrame()
        self._rows: tuple[LogFilter, DoctorData, pl.DataFrame] | None = None
        self._where = LogFilter()
        self._data: DoctorData | None = None
        self._cube = empty
        self._rows_frame: pl.DataFrame | None = empty
        self.rates = empty
        self.kinds = empty
        self.classes = empty
        self.signatures = empty
        self.changes = empty
        self.incidents = empty
        self.drilled: tuple[str | None, Any, tuple[datetime, datetime] | None] = (None, None, None)
        self.figure = figure_widget(height=420)
        self.kinds_figure = figure_widget(height=320)
        self.classes_figure = figure_widget(height=320)
        self.signatures_figure = figure_widget()
        self.status = widgets.HTML()
        self.kind_table = self._new_table(
            "error_kinds",
            columns=KIND_COLUMNS,
            sort="errors",
            page_size=10,
            empty="No failing postbacks for this selection.",
        )
        self.incident_table = self._new_table(
            "incidents",
            columns=INCIDENT_COLUMNS,
            sort="start",
            descending=False,
            key="incident_id",
            key_label="Rows of incident",
            page_size=20,
            empty="No incidents for this selection.",
        )
        self.drill_by = widgets.Dropdown(
            description="Rows behind",
            options=[("all postbacks of the selection", None), *((v, k) for k, v in DRILL_GROUPS.items())],
            value=None,
            style={"description_width": "initial"},
        )
        self.drill_by.layout.width = "auto"
        self.drill_value = widgets.Dropdown(options=[("—", None)], value=None, layout=widgets.Layout(width="420px"))
        self.errors_only = widgets.Checkbox(value=False, description="Errors only", indent=False)
        self.drill_note = widgets.HTML()
        self.table = self._new_table(
            "postbacks",
            columns=ROW_COLUMNS,
            sort="postback_time",
        )
        self.rows_section = widgets.Accordion(
            [
                widgets.VBox(
                    [
                        widgets.HBox([self.drill_by, self.drill_value, self.errors_only]),
                        self.drill_note,
                        self.table.widget,
                    ]
                )
            ],
            titles=("Rows behind",),
            selected_index=None,
        )
        self._assemble(
            widgets.HBox([self.by, self.status, self.busy.widget]),
            self.figure.widget,
            self.kinds_figure.widget,
            widgets.HTML("<h4>What to do, by error kind</h4>"),
            self.kind_table.widget,
            self.classes_figure.widget,
            self.signatures_figure.widget,
            widgets.HTML("<h4>Incidents</h4>"),
            self.incident_table.widget,
            self.rows_section,
        )
        self.by.observe(lambda _c: self.refresh(), names="value")
        self.drill_by.observe(self._drill_by_changed, names="value")
        self.drill_value.observe(self._drill_value_changed, names="value")
        self.errors_only.observe(lambda _c: self._show_rows(), names="value")
        self.rows_section.observe(self._section_toggled, names="selected_index")
        self.incident_table.on_select(self._incident_picked)
        self.refresh()

    # ----------------------------------------------------------- structure
    @property
    def incidents_frame(self) -> pl.DataFrame:
        """The incidents table as shown."""
        return self.incident_table.frame

    # ---------------------------------------------------------------- data
    def _load(self, where: LogFilter) -> DoctorData:
        # One read of the postbacks: the incidents' history (the range and the baseline days
        # before it), of which the range is the panel's postbacks.
        history = postbacks(self.reader, history_filter(where, self.timezone)).collect()
        rows = where.apply(history.lazy(), "postbacks", timezone=self.timezone).collect()
        rows = self.names.add(rows, "traffic_source_id", "integration_id", "campaign_id")
        cube = rate_cube(rows, self.timezone)
        errors = rows.filter(pl.col("is_error"))
        changes = activity(self.reader)
        links = campaign_links(self.reader)  # read only when there are incidents
        found = find_incidents(history, changes, self.names, links, where.time_bounds(self.timezone))
        shown = where.apply(changes.lazy(), "activity", timezone=self.timezone).collect()
        return DoctorData(rows, found, shown, cube, errors)

    @property
    def postbacks(self) -> pl.DataFrame:
        """The filtered, enriched postbacks (filtered when first read after a change)."""
        data, where = self._data, self._where
        if data is None:
            return pl.DataFrame()
        if self._rows is None or self._rows[0] != where or self._rows[1] is not data:
            self._rows = (where, data, self.in_memory(data.postbacks, where))
        return self._rows[2]

    @property
    def rows_frame(self) -> pl.DataFrame:
        """The postback rows behind the chosen group, as the rows table shows them (made when first read)."""
        if self._rows_frame is None:
            self._rows_frame, _what = self._behind()
        return self._rows_frame

    @property
    def rows_open(self) -> bool:
        """Whether the section "Rows behind" is unfolded."""
        return bool(self.rows_section.selected_index == 0)

    def _update(self) -> None:
        from cfanalytics.panels._figures import show
        from cfanalytics.panels._widgets import option_pairs

        where = self.filter
        data = self.base(where)
        if data is not self._data:
            loaded = data.cube
            for field, id_column in (("traffic_sources", "traffic_source_id"), ("integrations", "integration_id")):
                self._filters.set_options(
                    field, option_pairs(loaded.get_column(id_column).unique().to_list(), self.names.lookup(id_column))
                )
            cts = loaded.get_column("ct").unique().to_list()
            self._filters.set_options(
                "cts", [(safe_text(c) if c else "(no ct)", c or "") for c in sorted({c or "" for c in cts})]
            )
            where = self.filter
        self._where, self._data = where, data
        rest = where.replace(start=None, end=None)
        cube = data.cube.filter(rest.expr(data.cube.columns, timezone=self.timezone))
        self._cube = cube
        failing = cube.filter(pl.col("is_error"))
        errors = data.errors.filter(rest.expr(data.errors.columns, timezone=self.timezone))
        by = self.by.value
        self.rates = self.names.add(cube_rates(cube, ["hour", by]), "hour", by)
        self.kinds = _with_actions(cube_rates(failing, ["error_kind"]))
        self.classes = cube_rates(cube, ["status_class"])
        self.signatures = top_signatures(errors, TOP_SIGNATURES)
        self.changes = scope_changes(data.activity, cube)
        self.incidents = scope_incidents(data.incidents, failing)

        self.kind_table.set_frame(self.kinds)
        self.incident_table.set_frame(_incident_rows(self.incidents))
        n, e = cube_total(cube)
        rate = f"{e / n:.1%}" if n else "n/a"
        unattributed, _ = cube_total(cube.filter(~pl.col("attributed")))
        self.status.value = (
            f"<b>{n:,}</b> postbacks · <b>{e:,}</b> errors ({rate}) · {unattributed:,} with no traffic source found"
        )
        plain = charts.plain_figure  # the specs only: the panel's figures are made when read
        figures = (
            plain(
                charts.error_rate_over_time,
                self.rates,
                by=by,
                changes=self.changes,
                incidents=self.incidents,
                timezone=self.timezone,
                plot_width=550,  # the plot is about this wide in a JupyterLab cell: labels stacked to fit it
            ),
            plain(charts.errors_by_kind, self.kinds),
            plain(charts.errors_by_status_class, self.classes),
            plain(charts.top_signatures, self.signatures, top=TOP_SIGNATURES),
        )
        column, value, window = self.drilled
        self._drill_options(column)
        if column is not None and value is not None and not self._has(column, value):
            value = window = None
        self._apply_drill(column, value, window)
        # the charts last, sent one after the other with nothing computed between: their views reach the page
        # with the end of the update and draw once the page has shown the totals
        show(self.figure, figures[0], on_click=self._rate_clicked)
        show(self.kinds_figure, figures[1], on_click=self._kind_clicked)
        show(self.classes_figure, figures[2], on_click=self._class_clicked)
        show(self.signatures_figure, figures[3], on_click=self._signature_clicked)

    # ------------------------------------------------------------- drilling
    def drill(
        self,
        column: str | None,
        value: Any = None,
        *,
        hour: datetime | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> pl.DataFrame:
        """Show the postback rows whose ``column`` equals ``value`` (``None``: all rows; see :data:`DRILL_GROUPS`).

        ``hour`` (a local wall-clock hour in the display zone, or an aware time) or
        ``window`` (aware ``[start, end]``) narrows to a time span. Returns :attr:`rows_frame`.
        """
        if column is not None and column not in DRILL_GROUPS:
            raise ValueError(f"cannot drill by {column!r}; use one of {', '.join(DRILL_GROUPS)}")
        if hour is not None:
            start = hour if hour.tzinfo else hour.replace(tzinfo=ZoneInfo(self.timezone))
            window = (start, start + timedelta(hours=1) - timedelta(microseconds=1))
        with self._updating():
            self.rows_section.selected_index = 0  # the rows asked for are shown
            self._drill_options(column)
            self._apply_drill(column, value, window)
        return self.rows_frame

    def _has(self, column: str, value: Any) -> bool:
        values = self.postbacks.get_column(column) if column in self.postbacks.columns else pl.Series([])
        return bool(values.is_null().any()) if value is MISSING or value is None else bool((values == value).any())

    def _drill_options(self, column: str | None) -> None:
        options: list[tuple[str, Any]] = [("—", None)]
        if column is not None and column in self.postbacks.columns:
            counts = (
                self.postbacks.group_by(column)
                .agg(pl.len().alias("n"), pl.col("is_error").sum().alias("e"))
                .sort(["e", "n"], descending=True, nulls_last=True)
            )
            lookup = self.names.lookup(column)
            for value, n, e in counts.iter_rows():
                text = (lookup.get(value) or value) if value is not None else "(none)"
                options.append((f"{safe_text(text, 80)} — {e:,} errors / {n:,}", MISSING if value is None else value))
        with self._updating():
            if self.drill_by.value != column:
                self.drill_by.value = column
            if list(self.drill_value.options) != options:
                self.drill_value.options = options

    def _apply_drill(self, column: str | None, value: Any, window: tuple[datetime, datetime] | None) -> None:
        with self._updating():
            self.drill_value.value = value if value in [v for _, v in self.drill_value.options] else None
        self.drilled = (column, self.drill_value.value, window)
        self._show_rows()

    def _section_toggled(self, _change: dict[str, Any]) -> None:
        if self.rows_open:
            with self._updating() as ok:
                if ok:  # a drill unfolding the section shows its own rows
                    self.table.show_pending()

    def _show_rows(self) -> None:
        column, value, window = self.drilled
        if (column is None or value is None) and window is None and not self.rows_open:
            # folded, nothing drilled: the count comes from the cube; the table is made when read or unfolded
            n, e = cube_total(self._cube)
            what = "all postbacks of the selection" + (", errors only" if self.errors_only.value else "")
            self._rows_frame = None
            self.table.set_frame_later(lambda: self.rows_frame)
            self.drill_note.value = f"<small>{e if self.errors_only.value else n:,} rows: {what}</small>"
            return
        rows, what = self._behind()
        self._rows_frame = rows
        self.table.set_frame(rows)
        self.drill_note.value = f"<small>{rows.height:,} rows: {what}</small>"

    def _behind(self) -> tuple[pl.DataFrame, str]:
        """The rows behind the drilled group (and window, errors only) and what they are, in words."""
        column, value, window = self.drilled
        rows = self.postbacks
        what = "all postbacks of the selection"
        if column is not None and value is not None:
            cond = pl.col(column).is_null() if value is MISSING else pl.col(column) == value
            rows = rows.filter(cond)
            shown = (self.names.lookup(column).get(value) or value) if value is not MISSING else "(none)"
            what = f"{safe_text(DRILL_GROUPS[column].lower())} {safe_text(shown, 100)}"
        if window is not None:
            lo_utc, hi_utc = (t.astimezone(UTC) for t in window)
            rows = rows.filter(pl.col("postback_time").is_between(lo_utc, hi_utc, closed="both"))
            lo = window[0].astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")
            hi = window[1].astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")
            what += f", {lo} – {hi} ({safe_text(self.timezone)})"
        if self.errors_only.value:
            rows = rows.filter(pl.col("is_error"))
            what += ", errors only"
        return rows, what

    def _drill_by_changed(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        self.drill(change["new"])

    def _drill_value_changed(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        self.drill(self.drill_by.value, change["new"])

    # --------------------------------------------------------------- clicks
    def _rate_clicked(self, trace_index: int, points: Any) -> None:
        trace = self.figure.data[trace_index]
        if trace.customdata is None or trace.name == "Changes":
            return
        index = next(iter(points.point_inds))
        escaped = trace.customdata[index][0]
        by = self.by.value
        ids = {safe_text(i, 60): i for i in self.rates.get_column(by).to_list()} if by in self.rates.columns else {}
        value = ids.get(escaped, MISSING) if escaped else MISSING
        hour = trace.x[index]
        self.drill(by, value, hour=hour if isinstance(hour, datetime) else None)

    def _kind_clicked(self, _trace_index: int, points: Any) -> None:
        labels = {safe_text(k, 40): k for k in self.kinds.get_column("error_kind").to_list() if k is not None}
        label = next(iter(points.ys))
        if label in labels:
            self.drill("error_kind", labels[label])

    def _class_clicked(self, _trace_index: int, points: Any) -> None:
        label = next(iter(points.xs))
        if label in STATUS_CLASSES:
            self.drill("status_class", label)

    def _signature_clicked(self, _trace_index: int, points: Any) -> None:
        index = next(iter(points.point_inds))
        shown = self.signatures.filter(pl.col("errors") > 0)
        if index < shown.height:
            value = shown.item(index, "signature")
            self.drill("signature", MISSING if value is None else value)

    def _incident_picked(self, incident_id: Any) -> None:
        if incident_id is None:
            return
        match = self.incidents.filter(pl.col("incident_id") == incident_id)
        if match.height:
            row = match.row(0, named=True)
            column = "traffic_source_id" if row["scope"] == "traffic_source" else "integration_id"
            self.drill(column, row["id"], window=(row["start"], row["end"]))


def _with_actions(kinds: pl.DataFrame) -> pl.DataFrame:
    """Errors per kind with each kind's ``action``, ``retryable``, ``fix_owner`` (``kind_actions``) and
    ``resend_later`` in words, errors descending."""
    if kinds.height == 0 or "error_kind" not in kinds.columns:
        return kinds
    words = pl.when(pl.col("retryable")).then(pl.lit("may succeed")).otherwise(pl.lit("will fail again"))
    return (
        kinds.join(kind_actions(), on="error_kind", how="left")
        .with_columns(pl.when(pl.col("retryable").is_not_null()).then(words).alias("resend_later"))
        .sort(["errors", "error_kind"], descending=[True, False], nulls_last=True)
    )


def _what(change: dict[str, Any] | None) -> str | None:
    if change is None:
        return None
    entity = change["entity_name"] or change["entity_id"] or ""
    return " ".join(str(p) for p in (change["action"], (change["entity_type"] or "").replace("_", " "), entity) if p)


def _suspect_text(s: dict[str, Any]) -> str:
    fields = ", ".join(
        f"{f['field']} {f['old'] if f['old'] is not None else '∅'} → {f['new'] if f['new'] is not None else '∅'}"
        for f in s["fields"]
    )
    verdict = "explains it" if s["explains"] else "does not explain it"
    who = (s["author"] or "").split("@")[0]
    return f"{s['rank']}. {who} {_what(s)}, {s['minutes_before']:g} min before ({fields}; {verdict})"


def _incident_rows(found: pl.DataFrame) -> pl.DataFrame:
    """Incidents with the suspected change, the change that resolved it and the top suspects flattened into
    readable columns (the panel only formats what ``find_incidents`` returned)."""
    if found.height == 0 or "suspected_change" not in found.columns:
        return found
    rows = found.to_dicts()
    change, fix = [r["suspected_change"] for r in rows], [r.get("resolved_by") for r in rows]
    suspects = [r.get("suspects") or [] for r in rows]
    return found.with_columns(
        pl.Series("change_at", [c and c["changed_at"] for c in change], dtype=found.schema["start"]),
        pl.Series("change_by", [c and c["author"] for c in change], dtype=pl.String),
        pl.Series(
            "change",
            [
                _what(c) or ("no change explains it" if s else "no change found")
                for c, s in zip(change, suspects, strict=True)
            ],
            dtype=pl.String,
        ),
        pl.Series("fix_at", [f and f["changed_at"] for f in fix], dtype=found.schema["start"]),
        pl.Series("fix_by", [f and f["author"] for f in fix], dtype=pl.String),
        pl.Series("fix", [_what(f) for f in fix], dtype=pl.String),
        pl.Series(
            "top_suspects",
            [" | ".join(_suspect_text(x) for x in s[:SHOWN_SUSPECTS]) or None for s in suspects],
            dtype=pl.String,
        ),
    )


def postback_doctor(
    store: LogStore, *, by: str = "traffic_source_id", **options: Unpack[PanelOptions]
) -> PostbackDoctorPanel:
    """Open the postback doctor on ``store`` (last 7 days of data unless ``start``/``end`` are given)."""
    return PostbackDoctorPanel(store, by=by, **options)
