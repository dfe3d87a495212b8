"""Figure builders: the diagnostics' DataFrames in, ``plotly.graph_objects.Figure`` out.

A chart never computes a diagnosis: every function takes the frames that
:mod:`cfanalytics.diagnose` returns (or the stored activity rows) and only
arranges them for display. Conventions shared by every figure:

- **Names, not ids.** Groups are labelled by their ``*_name`` column, falling
  back to the id; the id is shown on hover. Two groups sharing one name get a
  short id suffix.
- **Every data string passes** :func:`safe_text` — :func:`~cfanalytics.redaction.redact`,
  shortened, then HTML-escaped — because Plotly renders trace names, tick labels,
  annotations and hover text as HTML-like markup. ``<script>`` in a name shows
  as text, and a token in a URL shows as ``***``.
- **Times** are converted from their stored zone (UTC, or the zone the frame
  carries) to the display zone and plotted as local wall-clock times; the axis
  title names the zone, e.g. ``Hour (America/New_York)``, and hover texts carry
  the zone's abbreviation (``Tue Nov 17 10:00 EST``), so a chart agrees with an
  incident list printed in the same zone.
- **One colour per traffic source** (or integration): :func:`group_color`, a
  stable hash of the id into :data:`GROUP_PALETTE`, the same in every chart and
  every period.
- **Empty input** gives a figure with a centred "No data for this selection"
  annotation, never an exception.
- **Look** (:func:`apply_theme`): transparent paper and plot backgrounds,
  mid-grey text and translucent grey grid lines, and a palette of
  mid-luminance colours, so a figure reads on JupyterLab's light and dark
  themes alike. No global renderer or template is registered.

>>> import polars as pl
>>> fig = errors_by_kind(pl.DataFrame({"error_kind": ["auth", "rate_limit"], "errors": [3, 7]}))
>>> fig.data[0].y, fig.data[0].x
(('rate_limit', 'auth'), (7, 3))
>>> errors_by_kind(pl.DataFrame()).layout.annotations[0].text
'No data for this selection'
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import re
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from cfanalytics.redaction import escape_text as _escape
from cfanalytics.redaction import plain_text as _plain
from cfanalytics.redaction import safe_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "NO_DATA",
    "PlainFigure",
    "apply_theme",
    "attribution_difference",
    "change_summary",
    "error_rate_over_time",
    "errors_by_kind",
    "errors_by_status_class",
    "funnel_chart",
    "gap_classes",
    "group_color",
    "lag_histograms",
    "plain_figure",
    "safe_text",
    "short_message",
    "top_signatures",
    "volume_over_time",
]

#: Text of the annotation an empty figure carries.
NO_DATA: Final = "No data for this selection"

# --------------------------------------------------------------------------- look
#: Mid-grey: about 4.3:1 contrast on white and on JupyterLab's dark background (#111).
FONT_COLOR: Final = "#7a7a7a"
GRID_COLOR: Final = "rgba(128,128,128,0.22)"
LINE_COLOR: Final = "rgba(128,128,128,0.45)"
TRANSPARENT: Final = "rgba(0,0,0,0)"
ERROR_COLOR: Final = "#e15759"
OK_COLOR: Final = "#2ca58d"
MISSING_COLOR: Final = "#8c8c8c"
#: Mid-luminance qualitative palette, legible on light and dark backgrounds.
COLORWAY: Final = (
    "#4c8bf5",
    "#f28e2b",
    ERROR_COLOR,
    OK_COLOR,
    "#b07aa1",
    "#9c755f",
    "#d4a017",
    "#17becf",
    "#ff6f91",
    MISSING_COLOR,
)
INCIDENT_FILL: Final = "rgba(225,87,89,0.14)"
INCIDENT_LINE: Final = "rgba(225,87,89,0.6)"
CHANGE_COLOR: Final = "#a0a0a0"
#: Colour of each conversion gap class.
GAP_COLORS: Final[dict[str, str]] = {
    "posted_ok": OK_COLOR,
    "posted_failed": ERROR_COLOR,
    "not_posted": "#f28e2b",
    "pending": "#8c8c8c",
}
GAP_LABELS: Final[dict[str, str]] = {
    "posted_ok": "Posted OK",
    "posted_failed": "Posted, failed",
    "not_posted": "Not posted",
    "pending": "Pending",
}
STATUS_ORDER: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
FUNNEL_STAGES: Final[dict[str, str]] = {
    "visits": "Visits",
    "clicks": "Clicks",
    "conversions": "Conversions",
    "postbacks_sent": "Postbacks sent",
    "postbacks_accepted": "Postbacks accepted",
}
_TIME_COLUMNS: Final = ("hour", "day", "bucket")
#: Colours of traffic sources and integrations (:func:`group_color`): :data:`COLORWAY` without the red
#: of failures and the grey of rows without an id, and two more of the same luminance.
GROUP_PALETTE: Final = (*(c for c in COLORWAY if c not in (ERROR_COLOR, MISSING_COLOR)), "#7f7fdf", "#6b9e3a")
#: Groupings drawn in their own colour; any other grouping (campaign, ct) is drawn in
#: :data:`NEUTRAL_COLOR`, so that a colour always means one traffic source (or integration).
COLOURED_BY: Final = ("traffic_source_id", "integration_id")
NEUTRAL_COLOR: Final = "#5f7d95"
#: Fewest postbacks in one bucket for its error rate to be drawn; quieter buckets show only as bars.
MIN_POSTBACKS: Final = 5
FAILED_NAME: Final = "Failed postbacks"
ACCEPTED_NAME: Final = "Accepted postbacks"
FAILED_BAR: Final = "rgba(225,87,89,0.75)"
ACCEPTED_BAR: Final = "rgba(128,128,128,0.28)"
# Small multiples of the error-rate chart, in pixels: one row is a title line, its label lines and the plot.
_ROW_PX: Final = 100
_TITLE_PX: Final = 20
_LEVEL_PX: Final = 15
_GAP_PX: Final = 14
_LANE_PX: Final = 16
_TOP_PX: Final = 100
_BOTTOM_PX: Final = 60
#: Plot width assumed when stacking labels (the report's 1100 px less the margins, with room to spare).
PLOT_WIDTH: Final = 900
#: Width of a label character at font size 10, in pixels.
_CHAR_PX: Final = 6.0
_MAX_LEVELS: Final = 4
_MAX_LANE_LEVELS: Final = 6
#: Note on a lag histogram with negative values (``{n}`` of them).
NEGATIVE_LAG: Final[dict[str, str]] = {
    "minutes": (
        "{n} conversion{s} below 0: a negative lag means the conversion time<br>"
        "precedes the recorded visit time (clock skew between systems)"
    ),
    "seconds": (
        "{n} postback{s} below 0: a negative lag means the postback time<br>"
        "precedes the recorded conversion time (clock skew between systems)"
    ),
}
#: JSON fields whose string value is the readable part of an error body.
_MESSAGE_FIELD: Final = re.compile(
    r'"(?:message|error_message|error_description|error_user_msg|detail|description|msg|reason)"\s*:\s*"((?:[^"\\]|\\.)+)"'
)


def _go() -> Any:
    """``plotly.graph_objects``, imported on first use (plotly is an optional extra)."""
    import plotly.graph_objects as go

    return go


#: Set by :func:`plain_figure`: figures built from plain parts stay plain specs.
_PLAIN: ContextVar[bool] = ContextVar("_PLAIN", default=False)


class PlainFigure:
    """A chart's plain spec (``data``, ``layout``), made into a ``go.Figure`` only when read (:attr:`figure`).

    Making a ``go.Figure`` copies every trace (a chart of a week of hours per group: tens of
    milliseconds); a panel that only sends the spec to the browser skips it.

    >>> fig = plain_figure(errors_by_status_class, pl.DataFrame({"status_class": ["4xx"], "postbacks": [3],
    ...     "errors": [3], "error_rate": [1.0]}))
    >>> isinstance(fig, PlainFigure), fig.spec["data"][0]["type"], fig.data[0].type
    (True, 'bar', 'bar')
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._figure: go.Figure | None = None

    @property
    def figure(self) -> go.Figure:
        """The ``go.Figure`` of the spec (made on first use, unvalidated, as :class:`_Parts` builds it)."""
        if self._figure is None:
            self._figure = _go().Figure(data=self.spec["data"], layout=self.spec["layout"], _validate=False)
            self._figure._cf_spec = self.spec
        return self._figure

    @property
    def data(self) -> tuple[Any, ...]:
        """The figure's traces."""
        return tuple(self.figure.data)

    @property
    def layout(self) -> Any:
        """The figure's layout."""
        return self.figure.layout


def plain_figure(build: Callable[..., go.Figure], /, *args: Any, **kwargs: Any) -> go.Figure | PlainFigure:
    """``build(*args, **kwargs)`` (a chart function of this module), as a :class:`PlainFigure` when the chart
    is built from plain parts (the postback doctor's), else the ``go.Figure`` it returns."""
    token = _PLAIN.set(True)
    try:
        return build(*args, **kwargs)
    finally:
        _PLAIN.reset(token)


# --------------------------------------------------------------------------- text
def _wrapped(value: object, width: int = 48, limit: int = 120) -> str:
    """:func:`safe_text` broken into lines of at most ``width`` characters joined by ``<br>``."""
    lines = textwrap.wrap(_plain(value, limit), width=width, break_long_words=True, break_on_hyphens=False)
    return "<br>".join(_escape(line) for line in lines)


def _title(title: str | None, default: str) -> dict[str, Any]:
    text = safe_text(title, limit=200) if title is not None else default
    return {"text": text, "x": 0.01, "xanchor": "left"}


def _entity_words(id_col: str) -> str:
    return id_col.removesuffix("_id").replace("_", " ")


def _name_col(id_col: str) -> str:
    return id_col.removesuffix("_id") + "_name"


def _escaped(values: Sequence[str | None], limit: int) -> list[str]:
    """``safe_text(value, limit)`` of each value, each distinct value escaped once.

    >>> _escaped(["<b>", None, "<b>"], 60)
    ['&lt;b&gt;', '', '&lt;b&gt;']
    """
    shown = {v: safe_text(v, limit) for v in set(values)}
    return [shown[v] for v in values]


def _labels(frame: pl.DataFrame, id_col: str) -> list[str]:
    """Display label per row: the escaped name, else the id; a short id suffix where names repeat."""
    ids = frame.get_column(id_col).to_list() if id_col in frame.columns else [None] * frame.height
    name_col = _name_col(id_col)
    names = frame.get_column(name_col).to_list() if name_col in frame.columns else [None] * frame.height
    missing = f"(no {_entity_words(id_col)})"
    shown = {  # each distinct (id, name) escaped once (a frame of hourly rows repeats them)
        (i, n): safe_text(n, 60) if n else (safe_text(i, 60) if i is not None else missing)
        for i, n in set(zip(ids, names, strict=True))
    }
    base = [shown[(i, n)] for i, n in zip(ids, names, strict=True)]
    distinct: dict[str, set[object]] = {}
    for label, i in zip(base, ids, strict=True):
        distinct.setdefault(label, set()).add(i)
    return [
        f"{label} ({safe_text(str(i)[:8], 8)}…)" if len(distinct[label]) > 1 and i is not None else label
        for label, i in zip(base, ids, strict=True)
    ]


# --------------------------------------------------------------------------- time
def _time_column(frame: pl.DataFrame) -> str | None:
    return next((c for c in _TIME_COLUMNS if c in frame.columns), None)


def _local(series: pl.Series, timezone: str | None) -> tuple[list[Any], str]:
    """Values as naive wall-clock times in the display zone, and that zone's name.

    Aware columns are converted from their own zone; naive ones are taken as UTC.
    ``timezone=None`` keeps an aware column's zone. Dates are returned unchanged.
    """
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        zone = dtype.time_zone
        if zone is None:
            series = series.dt.replace_time_zone("UTC")
            zone = "UTC"
        target = timezone or zone
        return series.dt.convert_time_zone(target).dt.replace_time_zone(None).to_list(), target
    return series.to_list(), timezone or "UTC"


# --------------------------------------------------------------------------- figures
def apply_theme(fig: go.Figure) -> go.Figure:
    """Give ``fig`` the shared look and return it.

    Transparent paper and plot backgrounds, mid-grey fonts (about 4.3:1 contrast
    on both white and JupyterLab's dark ``#111``), translucent grey grid and axis
    lines, the :data:`COLORWAY` palette, and closest-point hover. The settings are
    written as the figure's own layout template (nothing global is changed), so
    they read the same under JupyterLab's light and dark themes.

    >>> import plotly.graph_objects as go
    >>> apply_theme(go.Figure()).layout.template.layout.paper_bgcolor
    'rgba(0,0,0,0)'
    """
    fig.update_layout(template=_go().layout.Template(layout=_theme_layout()))
    return fig


@functools.cache
def _theme_layout() -> dict[str, Any]:
    """The layout of :func:`apply_theme`'s template (read-only: copy before changing it)."""
    axis = {
        "gridcolor": GRID_COLOR,
        "linecolor": LINE_COLOR,
        "zerolinecolor": LINE_COLOR,
        "tickcolor": LINE_COLOR,
        "showline": True,
        "automargin": True,
        "title": {"standoff": 8},
    }
    return {
        "paper_bgcolor": TRANSPARENT,
        "plot_bgcolor": TRANSPARENT,
        "font": {"color": FONT_COLOR, "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
        "colorway": list(COLORWAY),
        "xaxis": axis,
        "yaxis": copy.deepcopy(axis),
        "legend": {"bgcolor": TRANSPARENT},
        "hovermode": "closest",
        "hoverlabel": {"namelength": -1},
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
    }


def _empty(title: dict[str, Any]) -> go.Figure:
    """A figure with only a title and the centred :data:`NO_DATA` note."""
    fig = _Parts()
    fig.add_annotation(
        text=NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16, "color": FONT_COLOR}
    )
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return fig.build()


def _is_empty(frame: pl.DataFrame | None) -> bool:
    return frame is None or frame.height == 0


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {', '.join(missing)}; got {', '.join(frame.columns) or 'none'}")


def _drawable(frame: pl.DataFrame | None, columns: Iterable[str], what: str) -> bool:
    """False when there is nothing to draw (no frame, no rows); a frame without one of ``columns`` is an error."""
    if frame is None or frame.height == 0:
        return False
    _require(frame, columns, what)
    return True


def _present(frame: pl.DataFrame, wanted: Collection[str], what: str) -> list[str]:
    """The columns of ``wanted`` that ``frame`` has, in that order; an error when it has none of them."""
    present = [c for c in wanted if c in frame.columns]
    if not present:
        _require(frame, wanted, what)
    return present


def _bar_spec(
    x: Sequence[Any], y: Sequence[Any], *, name: str, hover: str, color: str | None = None, **more: Any
) -> dict[str, Any]:
    """The dict of a bar trace named ``name``, in ``color`` (default: the next of the palette), with hover
    template ``hover`` (for :class:`_Parts`)."""
    if color is not None:
        more.setdefault("marker", {"color": color})
    return {"type": "bar", "x": x, "y": y, "name": name, "hovertemplate": hover, **more}


def _bar(x: Sequence[Any], y: Sequence[Any], *, name: str, hover: str, color: str | None = None, **more: Any) -> go.Bar:
    """A bar trace named ``name``, in ``color`` (default: the next of the palette), with hover template ``hover``."""
    return _go().Bar(_bar_spec(x, y, name=name, hover=hover, color=color, **more))


def _column(frame: pl.DataFrame, name: str) -> list[Any]:
    return frame.get_column(name).to_list() if name in frame.columns else [None] * frame.height


def _unset_none(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without its ``None`` properties, in nested objects too (Plotly leaves a property set to ``None``
    unset; data arrays keep their ``None`` values).

    >>> _unset_none({"text": "a", "hovertext": None, "font": {"color": None, "size": 3}, "y": [1, None]})
    {'text': 'a', 'font': {'size': 3}, 'y': [1, None]}
    """
    return {k: _unset_none(v) if isinstance(v, dict) else v for k, v in spec.items() if v is not None}


class _Parts:
    """A figure's traces (dicts), annotations, shapes and layout, collected with ``go.Figure``'s method names and
    built into one themed figure at the end.

    Plotly validates every property it is given, and ``add_annotation`` validates every annotation again
    each time: a chart of a dozen groups took over a second to build. The parts here are plain dicts written
    by this module, so the figure is built without validation (``tests/test_charts.py`` checks that each such
    chart validates and reads the same as a validated one).

    >>> parts = _Parts()
    >>> parts.add_annotation(text="a", x=0, y=0)
    >>> parts.update_layout(height=300)
    >>> fig = parts.build()
    >>> fig.layout.annotations[0].text, fig.layout.height
    ('a', 300)
    """

    def __init__(self) -> None:
        self.data: list[Any] = []
        self.annotations: list[dict[str, Any]] = []
        self.shapes: list[dict[str, Any]] = []
        self.layout: dict[str, Any] = {}

    def add_trace(self, trace: dict[str, Any]) -> None:
        """Add a trace (its dict, with ``type``)."""
        self.data.append(_unset_none(trace))

    def add_annotation(self, **annotation: Any) -> None:
        """Add an annotation (``go.Figure.add_annotation``'s keywords)."""
        self.annotations.append(_unset_none(annotation))

    def add_shape(self, **shape: Any) -> None:
        """Add a shape (``go.Figure.add_shape``'s keywords)."""
        self.shapes.append(_unset_none(shape))

    def update_layout(self, **layout: Any) -> None:
        """Set layout properties (top-level keys; later calls replace earlier ones)."""
        self.layout.update(_unset_none(layout))

    def build(self) -> go.Figure:
        """The figure, with :func:`apply_theme`'s look."""
        layout = dict(self.layout)
        if self.annotations:
            layout["annotations"] = self.annotations
        if self.shapes:
            layout["shapes"] = self.shapes
        layout["template"] = {"layout": copy.deepcopy(_theme_layout())}
        if _PLAIN.get():
            plain: Any = PlainFigure({"data": self.data, "layout": layout})
            return plain  # read as a figure (data, layout) by whoever asked for a plain one
        fig = _go().Figure(data=self.data, layout=layout, _validate=False)
        # the plain spec it was built from (plotly keeps copies): a panel sends it without copying the figure back
        fig._cf_spec = {"data": self.data, "layout": layout}
        return fig


def error_rate_over_time(
    rates: pl.DataFrame,
    *,
    by: str = "traffic_source_id",
    changes: pl.DataFrame | None = None,
    incidents: pl.DataFrame | None = None,
    timezone: str = "UTC",
    title: str | None = None,
    min_postbacks: int = MIN_POSTBACKS,
    plot_width: int = PLOT_WIDTH,
) -> go.Figure:
    """Hourly error rate per group as small multiples, with volume, changes and incidents marked.

    ``rates`` is ``postback_errors(store, by=["hour", by])`` (``day`` works too);
    without a ``by`` column one row "All postbacks" is drawn. Each group gets a
    row (most errors first), in the group's colour (:func:`group_color`) when the
    groups are traffic sources or integrations, else in one neutral colour:

    - **bars** (right axis): postbacks per bucket, the failed part in red, so a
      quiet hour with one failure reads as one failed postback, not as an incident;
    - **line** (left axis): the error rate of the buckets with at least
      ``min_postbacks`` postbacks; quieter buckets are left out of the line
      (their rate is in the bars' hover).

    ``changes`` are activity rows: a diamond with a short text label saying what
    changed (``ana: postback url changed``), in the row of the group it touched
    (``entity_id`` equal to the group's id, or a ``by`` column on the change
    naming the group), otherwise in a lane at the top. ``incidents`` is the
    :func:`~cfanalytics.diagnose.incidents` frame: a shaded band in its group's row
    from ``start`` to ``end`` with a label (top error kind, failed of postbacks).
    Labels are stacked in lines so that they do not overlap when the plot is at
    least ``plot_width`` pixels wide (a label that finds no room is left out, and
    the chart says how many). The figure's height follows the number of rows.
    Times are wall-clock times
    in ``timezone`` (axis title ``Hour (zone)``, hover with the zone's
    abbreviation); the x axis ends where the data ends.

    >>> from datetime import datetime
    >>> rates = pl.DataFrame({
    ...     "hour": [datetime(2026, 11, 20, 15), datetime(2026, 11, 20, 16)],
    ...     "traffic_source_id": ["t1", "t1"], "traffic_source_name": ["Meta Ads", "Meta Ads"],
    ...     "postbacks": [10, 1], "errors": [1, 1], "error_rate": [0.1, 1.0],
    ... }).with_columns(pl.col("hour").dt.replace_time_zone("UTC"))
    >>> fig = error_rate_over_time(rates, timezone="America/New_York")
    >>> line = fig.data[0]
    >>> line.name, line.y, line.x[0], fig.layout.xaxis.title.text
    ('Meta Ads', (10.0, None), datetime.datetime(2026, 11, 20, 10, 0), 'Hour (America/New_York)')
    >>> line.customdata[1][3]
    'Fri Nov 20 11:00 EST'
    """
    heading = _title(title, f"Postback error rate by {_entity_words(by)}" if by else "Postback error rate")
    time_col = _time_column(rates) if rates is not None else None
    if time_col is None or not _drawable(rates, ["postbacks", "errors", "error_rate"], "error_rate_over_time"):
        return _empty(heading)
    times = rates.get_column(time_col)
    local, zone = _local(times, timezone)
    xs = [_as_datetime(x) for x in local]
    has_groups = by in rates.columns
    raw_ids = [None if g is None else str(g) for g in _column(rates, by)] if has_groups else [None] * rates.height
    frame = rates.with_columns(
        pl.Series("_x", xs, dtype=pl.Datetime("us")),
        pl.Series("_label", _labels(rates, by) if has_groups else ["All postbacks"] * rates.height, dtype=pl.String),
        pl.Series("_gid", _escaped(raw_ids, 60), dtype=pl.String),
        pl.Series("_raw", raw_ids, dtype=pl.String),
        pl.Series("_when", _zone_times(times, zone, daily=time_col == "day"), dtype=pl.String),
        pl.col("postbacks").fill_null(0).cast(pl.Int64),
        pl.col("errors").fill_null(0).cast(pl.Int64),
    )
    groups = (
        frame.group_by("_label")
        .agg(pl.col("_raw").first(), pl.col("errors").sum().alias("_e"), pl.col("postbacks").sum().alias("_n"))
        .sort(["_e", "_label"], descending=[True, False])
    )
    step = _step(xs, daily=time_col == "day")
    x_lo, x_hi = min(xs) - step / 2, max(xs) + step / 2
    span = max((x_hi - x_lo).total_seconds(), 1.0)
    row_of = {raw: n for n, raw in enumerate(groups.get_column("_raw").to_list()) if raw is not None}
    n_rows = groups.height
    marks = _change_marks(changes, zone, by, row_of) if changes is not None and "changed_at" in changes.columns else []
    bands = _incident_marks(incidents, zone, by, row_of) if incidents is not None else []

    # labels: placed in lines per row (or the top lane) so that none overlaps another
    items: dict[int | None, list[dict[str, Any]]] = {}
    for mark in [*bands, *marks]:
        if mark["x"] is None or not x_lo <= mark["x"] <= x_hi:
            continue
        start = (mark["x"] - x_lo).total_seconds()
        width = (len(mark["plain"]) * _CHAR_PX + 14) * span / max(plot_width, 100)
        items.setdefault(mark["row"], []).append({**mark, "at": start, "width": width})
    levels: dict[int | None, int] = {}
    crowded = 0
    for key, placed in list(items.items()):
        # incidents first: a change label gives way to an incident's, never the reverse
        placed.sort(key=lambda m: (m["color"] != ERROR_COLOR, m["at"]))
        spots = _place(
            [(m["at"], m["width"]) for m in placed], _MAX_LEVELS if key is not None else _MAX_LANE_LEVELS, span
        )
        for mark, spot in zip(placed, spots, strict=True):
            mark["level"], mark["anchor"] = spot if spot is not None else (None, None)
        crowded += spots.count(None)
        items[key] = [m for m in placed if m["level"] is not None]
        levels[key] = max((m["level"] for m in items[key]), default=-1) + 1
    lane_marks = any(m["row"] is None for m in marks) or any(b["row"] is None for b in bands)
    lane_px = (levels.get(None, 0) * _LEVEL_PX + _LANE_PX) if lane_marks else 0
    rows_px = [_TITLE_PX + levels.get(n, 0) * _LEVEL_PX + _ROW_PX + _GAP_PX for n in range(n_rows)]
    inner = lane_px + sum(rows_px)
    height = _TOP_PX + inner + _BOTTOM_PX

    def paper(px_from_top: float) -> float:
        return 1.0 - px_from_top / inner

    fig = _Parts()  # collected, then built once: adding parts one by one validates every list again
    layout: dict[str, Any] = {}
    vmax = max(int(frame.get_column("postbacks").max() or 0), 1)
    plots: list[tuple[float, float]] = []
    top = lane_px
    for n, group in enumerate(groups.iter_rows(named=True)):
        rate_axis, count_axis = _axis_id(2 * n + 1), _axis_id(2 * n + 2)
        plot_top = top + _TITLE_PX + levels.get(n, 0) * _LEVEL_PX
        domain = [paper(plot_top + _ROW_PX), paper(plot_top)]
        plots.append((domain[0], domain[1]))
        part = frame.filter(pl.col("_label") == group["_label"]).sort("_x")
        color = group_color(group["_raw"]) if has_groups and by in COLOURED_BY else NEUTRAL_COLOR
        custom = [list(r) for r in part.select("_gid", "postbacks", "errors", "_when").iter_rows()]
        rate = [
            r * 100 if r is not None and p >= max(min_postbacks, 1) else None
            for p, r in zip(
                part.get_column("postbacks").to_list(), part.get_column("error_rate").to_list(), strict=True
            )
        ]
        x = part.get_column("_x").to_list()
        id_line = f"{safe_text(_entity_words(by).capitalize())}: %{{customdata[0]}}<br>" if has_groups else ""
        fig.add_trace(
            {
                "type": "scatter",
                "x": x,
                "y": rate,
                "customdata": custom,
                "name": group["_label"],
                "legendgroup": group["_label"],
                "showlegend": False,
                "mode": "lines+markers",
                "connectgaps": False,
                "line": {"color": color, "width": 2},
                "marker": {"size": 5, "color": color},
                "xaxis": "x",
                "yaxis": rate_axis,
                "hovertemplate": (
                    f"<b>%{{fullData.name}}</b><br>{id_line}%{{customdata[3]}}<br>Error rate: %{{y:.1f}}% "
                    "(%{customdata[2]:,} of %{customdata[1]:,} postbacks)<extra></extra>"
                ),
            }
        )
        bar_hover = (
            f"<b>{group['_label']}</b><br>{id_line}%{{customdata[3]}}<br>Failed: %{{customdata[2]:,}} of "
            "%{customdata[1]:,} postbacks<extra></extra>"
        )
        for name, values, bar_color in (
            (FAILED_NAME, part.get_column("errors").to_list(), FAILED_BAR),
            (ACCEPTED_NAME, (part.get_column("postbacks") - part.get_column("errors")).to_list(), ACCEPTED_BAR),
        ):
            fig.add_trace(
                _bar_spec(
                    x,
                    values,
                    name=name,
                    hover=bar_hover,
                    customdata=custom,
                    legendgroup=name,
                    showlegend=n == 0,
                    marker={"color": bar_color, "line": {"width": 0}},
                    width=step.total_seconds() * 1000 * 0.85,  # one bucket wide, however few bars
                    xaxis="x",
                    yaxis=count_axis,
                )
            )
        totals = f"{group['_n']:,} postback{'' if group['_n'] == 1 else 's'} · {group['_e']:,} failed" + (
            f" ({group['_e'] / group['_n']:.1%})" if group["_n"] else ""
        )
        fig.add_annotation(
            text=f"<b>{group['_label']}</b>  <span style='color:{FONT_COLOR}'>{totals}</span>",
            font={"color": color, "size": 13},
            x=0,
            xref="paper",
            y=paper(top),
            yref="paper",
            xanchor="left",
            yanchor="top",
            showarrow=False,
        )
        layout[_layout_key(rate_axis)] = {
            "domain": domain,
            "anchor": "x",
            "range": [0, 108],
            "tickvals": [0, 50, 100],
            "ticksuffix": "%",
            "title": {"text": "Error rate", "font": {"size": 11}},
            "fixedrange": True,
        }
        layout[_layout_key(count_axis)] = {
            "overlaying": rate_axis,
            "anchor": "x",
            "side": "right",
            "range": [0, vmax * 1.08],
            "tickmode": "auto",
            "nticks": 3,
            "showgrid": False,
            "title": {"text": "Postbacks", "font": {"size": 11}},
            "fixedrange": True,
        }
        top += rows_px[n]

    # the overlay axis: y in paper units, for the diamonds of the changes
    overlay = _axis_id(2 * n_rows + 1)
    layout[_layout_key(overlay)] = {
        "domain": [0, 1],
        "range": [0, 1],
        "anchor": "x",
        "visible": False,
        "fixedrange": True,
    }
    lane_y = paper(lane_px - _LANE_PX / 2)
    if lane_marks:
        fig.add_annotation(
            text="Other<br>changes",
            x=0,
            xref="paper",
            xanchor="right",
            xshift=-6,
            y=lane_y,
            yref="paper",
            yanchor="middle",
            align="right",
            showarrow=False,
            font={"size": 10, "color": FONT_COLOR},
        )

    def row_top(row: int | None) -> float:
        return lane_y if row is None else plots[row][1]

    if marks:
        fig.add_trace(
            {
                "type": "scatter",
                "x": [m["x"] for m in marks],
                "y": [row_top(m["row"]) for m in marks],
                "xaxis": "x",
                "yaxis": overlay,
                "mode": "markers",
                "name": "Changes",
                "cliponaxis": False,
                "marker": {
                    "symbol": "diamond",
                    "size": 10,
                    "color": CHANGE_COLOR,
                    "line": {"width": 1, "color": "#555"},
                },
                "customdata": [m["custom"] for m in marks],
                "hovertemplate": (
                    "<b>%{customdata[2]}</b> %{customdata[1]}<br>by %{customdata[0]}<br>%{customdata[5]}<br>"
                    "%{customdata[3]} → %{customdata[4]}<extra>Change</extra>"
                ),
            }
        )
    for band in bands:
        if band["x"] is None:
            continue
        row = band["row"]
        fig.add_shape(
            type="rect",
            xref="x",
            yref=f"{_axis_id(2 * row + 1)} domain" if row is not None else "paper",
            x0=band["x"],
            x1=band["end"],
            y0=0 if row is not None else plots[-1][0],
            y1=1 if row is not None else plots[0][1],
            layer="below",
            fillcolor=INCIDENT_FILL,
            line={"width": 1, "color": INCIDENT_LINE},
        )
    for key, placed in items.items():
        # the highest line first, so that a lower label is drawn over the leader line of a higher one
        for mark in sorted(placed, key=lambda m: -m["level"]):
            lift = _LEVEL_PX * mark["level"] + (1 if key is not None else _LANE_PX / 2)
            fig.add_annotation(
                text=mark["text"],
                hovertext=mark.get("hover"),
                x=mark["x"],
                xref="x",
                y=row_top(key),
                yref="paper",
                ax=0,
                ay=-lift - 2,
                xanchor=mark["anchor"],
                yanchor="bottom",
                showarrow=True,
                arrowhead=0,
                arrowwidth=0.8,
                arrowcolor=LINE_COLOR,
                standoff=0,
                font={"size": 10, "color": mark["color"]},
            )
    bottom = _axis_id(2 * n_rows - 1)
    axis_title = {"hour": "Hour", "day": "Day"}.get(time_col, "Time")
    fig.update_layout(
        title={**heading, "yref": "container", "y": 1 - 8 / height, "yanchor": "top"},
        height=height,
        margin={"t": _TOP_PX, "b": _BOTTOM_PX, "l": 70, "r": 70},
        barmode="stack",
        bargap=0.15,
        hovermode="closest",
        xaxis={
            "anchor": bottom,
            "domain": [0, 1],
            "range": [x_lo, x_hi],
            "type": "date",
            "title": {"text": f"{axis_title} ({safe_text(zone)})"},
        },
        showlegend=False,
        **layout,
    )
    fig.add_annotation(
        text=(
            f"Line: error rate of the {'days' if time_col == 'day' else 'hours'} with at least {min_postbacks} "
            "postbacks (left axis). Bars: postbacks (right axis), red = failed.<br>◆ a change (hover for details),"
            " shaded = an incident."
            + (f" {crowded} change label{'' if crowded == 1 else 's'} left out where changes crowd." if crowded else "")
        ),
        x=0,
        xref="paper",
        y=1 + (_TOP_PX - 42) / inner,
        yref="paper",
        xanchor="left",
        yanchor="top",
        align="left",
        showarrow=False,
        font={"size": 11, "color": FONT_COLOR},
    )
    return fig.build()


def group_color(group_id: object) -> str:
    """The colour of one traffic source (or integration), the same in every chart and every period.

    A stable hash of the id (BLAKE2b, not Python's per-process ``hash``) picks
    one of :data:`GROUP_PALETTE`; rows without an id are grey.

    >>> group_color("5f557203301850c5a38fd547") == group_color("5f557203301850c5a38fd547")
    True
    >>> group_color(None)
    '#8c8c8c'
    """
    if group_id is None:
        return MISSING_COLOR
    digest = hashlib.blake2b(str(group_id).encode(), digest_size=8).digest()
    return GROUP_PALETTE[int.from_bytes(digest, "big") % len(GROUP_PALETTE)]


def _axis_id(n: int) -> str:
    return "y" if n == 1 else f"y{n}"


def _layout_key(axis: str) -> str:
    return "yaxis" + axis[1:]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise TypeError(f"expected a date or datetime, got {value!r}")


def _step(xs: Sequence[datetime], *, daily: bool) -> timedelta:
    """Width of one bucket: a day, else the smallest gap between buckets (an hour when there is one bucket)."""
    if daily:
        return timedelta(days=1)
    ordered = sorted(set(xs))
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return min(gaps) if gaps else timedelta(hours=1)


def _place(labels: Sequence[tuple[float, float]], most: int, span: float) -> list[tuple[int, str] | None]:
    """Line and side of each label ``(x, width)`` (in order of priority) so that no two overlap; ``None``: no room.

    A label starts at its ``x`` ("left") or ends there ("right"), within ``[0, span]``;
    it takes the lowest of ``most`` lines where one of the two fits.

    >>> _place([(0, 5), (1, 3), (4, 3), (9, 4), (9.5, 4)], 2, 10)
    [(0, 'left'), (1, 'left'), (1, 'left'), (0, 'right'), None]
    """
    taken: list[list[tuple[float, float]]] = [[] for _ in range(most)]
    out: list[tuple[int, str] | None] = []
    for x, width in labels:
        sides = [("left", x, x + width), ("right", x - width, x)]
        fitting = [side for side in sides if side[1] >= 0 and side[2] <= span] or sides[:1]
        spot = next(
            (
                (level, side, lo, hi)
                for level in range(most)
                for side, lo, hi in fitting
                if all(hi <= a or lo >= b for a, b in taken[level])
            ),
            None,
        )
        if spot is None:
            out.append(None)
            continue
        level, side, lo, hi = spot
        taken[level].append((lo, hi))
        out.append((level, side))
    return out


def _zone_times(series: pl.Series, zone: str, *, daily: bool = False) -> list[str]:
    """Each time as ``Tue Nov 17 10:00 EST`` in ``zone`` (dates as ``Tue Nov 17``)."""
    if not isinstance(series.dtype, pl.Datetime):
        return [v.strftime("%a %b %d") if v is not None else "" for v in series.to_list()]
    if series.dtype.time_zone is None:
        series = series.dt.replace_time_zone("UTC")
    fmt = "%a %b %d" if daily else "%a %b %d %H:%M %Z"
    return [v.strftime(fmt) if v is not None else "" for v in series.dt.convert_time_zone(zone).to_list()]


_SECRET_KEY = re.compile(r"token|secret|password|passwd|key|auth|signature", re.IGNORECASE)


def change_summary(row: Mapping[str, Any]) -> str:
    """What one activity row changed, in a few words (not escaped): ``postback url changed``, ``payout 24→26.4``.

    Only the fields whose value differs are named; a credential, a URL or a long
    value is never shown, only that it changed.

    >>> change_summary({"action": "updated", "old_value": '{"daily_budget": 200}',
    ...                 "new_value": '{"daily_budget": 800}'})
    'daily budget 200→800'
    >>> change_summary({"action": "updated", "old_value": '{"access_token": "EAAG1"}',
    ...                 "new_value": '{"access_token": "EAAG2"}'})
    'access token changed'
    >>> change_summary({"action": "created", "old_value": None, "new_value": '{"name": "x"}'})
    'created'
    """
    action = str(row.get("action") or "changed")
    old, new = _json_object(row.get("old_value")), _json_object(row.get("new_value"))
    if action != "updated" or old is None or new is None:
        return action
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    if not keys:
        return action
    names = [str(k).replace("_", " ") for k in keys]
    if len(keys) > 1:
        return ", ".join(names[:2]) + (" …" if len(keys) > 2 else "") + " changed"
    key = keys[0]
    before, after = old.get(key), new.get(key)
    short = all(
        v is None or (isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 12))
        for v in (before, after)
    )
    if _SECRET_KEY.search(str(key)) or not short or "://" in f"{before}{after}":
        return f"{names[0]} changed"
    return f"{names[0]} {_scalar(before)}→{_scalar(after)}"


def _json_object(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _scalar(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _change_marks(changes: pl.DataFrame, zone: str, by: str, row_of: Mapping[str, int]) -> list[dict[str, Any]]:
    """One mark per dated activity row: where it goes (its group's row, or ``None``: the lane), label, hover."""
    rows = changes.filter(pl.col("changed_at").is_not_null()).sort("changed_at")
    if not rows.height:
        return []
    times = rows.get_column("changed_at")
    xs, _ = _local(times, zone)
    whens = _zone_times(times, zone)
    entity = by.removesuffix("_id")
    marks = []
    for row, x, when in zip(rows.iter_rows(named=True), xs, whens, strict=True):
        owner = row.get(by)
        if owner is None and row.get("entity_type") == entity:
            owner = row.get("entity_id")
        group = row_of.get(str(owner)) if owner is not None else None
        kind = (row.get("entity_type") or "").replace("_", " ")
        name = row.get("entity_name") or row.get("entity_id")
        who = str(row.get("author") or "").split("@")[0]
        what = change_summary(row)
        # in the lane, an edit is named by its field ("payout 24→26.4"), a creation or deletion by its kind
        other = what if row.get("action") == "updated" and what != "updated" else f"{kind} {what}"
        plain = _plain(f"{who}: {what}" if group is not None else other, 36)
        marks.append(
            {
                "row": group,
                "x": x,
                "plain": plain,
                "text": _escape(plain),
                "color": FONT_COLOR,
                "hover": None,
                "custom": [
                    safe_text(row.get("author"), 60),
                    f"{safe_text(kind, 30)} {safe_text(name, 60)}".strip(),
                    safe_text(row.get("action"), 30),
                    safe_text(row.get("old_value"), 80) or "—",
                    safe_text(row.get("new_value"), 80) or "—",
                    when,
                ],
            }
        )
    return marks


def _incident_marks(incidents: pl.DataFrame, zone: str, by: str, row_of: Mapping[str, int]) -> list[dict[str, Any]]:
    """One mark per incident: its group's row (``None``: every row), band start/end, label and hover."""
    if not incidents.height or not {"start", "end"} <= set(incidents.columns):
        return []
    rows = incidents.sort("start")
    starts, _ = _local(rows.get_column("start"), zone)
    ends, _ = _local(rows.get_column("end"), zone)
    start_text = _zone_times(rows.get_column("start"), zone)
    end_text = _zone_times(rows.get_column("end"), zone)
    entity = by.removesuffix("_id")
    marks = []
    for row, start, end, t0, t1 in zip(rows.iter_rows(named=True), starts, ends, start_text, end_text, strict=True):
        ident = row.get("id")
        same_scope = row.get("scope") in (None, entity)
        group = row_of.get(str(ident)) if ident is not None and same_scope else None
        name = _plain(row.get("name") or ident, 40) or "(unnamed)"
        kind = _plain(row.get("top_error_kind"), 30)
        counts = f"{row['errors']:,}/{row['postbacks']:,} failed" if row.get("postbacks") else ""
        if group is not None:
            plain = " · ".join(p for p in ("Incident", kind, counts) if p)
        else:
            plain = " · ".join(p for p in (name, kind) if p)
        marks.append(
            {
                "row": group,
                "x": start,
                "end": end or start,
                "plain": plain,
                "text": _escape(plain),
                "color": ERROR_COLOR,
                "hover": _incident_hover(row, t0, t1 or t0),
            }
        )
    return marks


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def _incident_hover(row: Mapping[str, Any], start: str, end: str) -> str:
    scope = safe_text((row.get("scope") or "").replace("_", " "), 30)
    lines = [
        f"<b>Incident</b> {safe_text(row.get('incident_id'), 40)} ({scope})",
        f"{safe_text(row.get('name') or row.get('id'), 60)}",
        f"{start} → {end}",
        f"Error rate {_pct(row.get('error_rate_before'))} → {_pct(row.get('error_rate_during'))}",
    ]
    if row.get("postbacks") is not None:
        lines.append(f"Errors {safe_text(row.get('errors'))} of {safe_text(row.get('postbacks'))} postbacks")
    change = row.get("suspected_change")
    if change:
        what = change.get("entity_name") or change.get("entity_id")
        lines.append(
            f"Suspected change: {safe_text(change.get('action'), 20)} {safe_text(change.get('entity_type'), 30)} "
            f"{safe_text(what, 60)} by {safe_text(change.get('author'), 60)}"
        )
    else:
        lines.append("No change found")
    return "<br>".join(lines)


def errors_by_kind(kinds: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Errors per error kind as horizontal bars, largest on top.

    ``kinds`` has ``error_kind`` and ``errors`` (``postback_errors(store, by="error_kind")``
    or the ``by_error_kind`` list); rows without errors are left out.

    >>> fig = errors_by_kind(pl.DataFrame({"error_kind": ["auth", None], "errors": [5, 0]}))
    >>> fig.data[0].y, fig.data[0].x
    (('auth',), (5,))
    """
    heading = _title(title, "Postback errors by kind")
    if not _drawable(kinds, ["error_kind", "errors"], "errors_by_kind"):
        return _empty(heading)
    rows = kinds.filter(pl.col("errors").fill_null(0) > 0).sort(["errors", "error_kind"], descending=[True, False])
    if not rows.height:
        return _empty(heading)
    total = int(rows.get_column("errors").sum())
    labels = [safe_text(k, 40) if k is not None else "(unknown)" for k in rows.get_column("error_kind").to_list()]
    errors = rows.get_column("errors").to_list()
    hover = "%{y}<br>Errors: %{x:,}<br>Share of errors: %{customdata[0]:.1f}%<extra></extra>"
    share = [[e / total * 100] for e in errors]
    fig = _Parts()
    fig.add_trace(
        _bar_spec(errors, labels, name="Errors", hover=hover, color=ERROR_COLOR, customdata=share, orientation="h")
    )
    fig.update_layout(
        title=heading,
        xaxis={"title": {"text": "Errors (postbacks)"}, "rangemode": "tozero"},
        yaxis={"title": {"text": "Error kind"}, "autorange": "reversed", "type": "category"},
        showlegend=False,
    )
    return fig.build()


def errors_by_status_class(classes: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Postbacks per HTTP status class (1xx … 5xx, none), stacked: errors and accepted.

    ``classes`` is ``postback_errors(store, by="status_class")``; without a
    ``postbacks`` column only the errors are drawn.

    >>> fig = errors_by_status_class(pl.DataFrame(
    ...     {"status_class": ["4xx", "2xx"], "postbacks": [5, 20], "errors": [5, 0], "error_rate": [1.0, 0.0]}))
    >>> [(t.name, t.x, t.y) for t in fig.data]
    [('Errors', ('2xx', '4xx'), (0, 5)), ('Accepted', ('2xx', '4xx'), (20, 0))]
    """
    heading = _title(title, "Postbacks by HTTP status class")
    if not _drawable(classes, ["status_class", "errors"], "errors_by_status_class"):
        return _empty(heading)
    order = {c: i for i, c in enumerate(STATUS_ORDER)}
    rows = (
        classes.with_columns(pl.col("status_class").cast(pl.String).fill_null("none"))
        .with_columns(
            pl.col("status_class").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")
        )
        .sort(["_o", "status_class"])
    )
    labels = [safe_text(c, 20) for c in rows.get_column("status_class").to_list()]
    errors = [int(e or 0) for e in rows.get_column("errors").to_list()]
    has_total = "postbacks" in rows.columns
    totals = [int(p or 0) for p in rows.get_column("postbacks").to_list()] if has_total else errors
    rates = [(e / p * 100) if p else None for e, p in zip(errors, totals, strict=True)]
    custom = [[p, r] for p, r in zip(totals, rates, strict=True)]
    hover = (
        "Status %{x}<br>%{fullData.name}: %{y:,}<br>Postbacks: %{customdata[0]:,}<br>Error rate: %{customdata[1]:.1f}%"
        "<extra></extra>"
    )
    fig = _Parts()
    fig.add_trace(_bar_spec(labels, errors, name="Errors", hover=hover, color=ERROR_COLOR, customdata=custom))
    if has_total:
        accepted = [p - e for p, e in zip(totals, errors, strict=True)]
        fig.add_trace(_bar_spec(labels, accepted, name="Accepted", hover=hover, color=OK_COLOR, customdata=custom))
    fig.update_layout(
        title=heading,
        barmode="stack",
        xaxis={"title": {"text": "HTTP status class"}, "type": "category"},
        yaxis={"title": {"text": "Postbacks"}, "rangemode": "tozero"},
    )
    return fig.build()


def top_signatures(signatures: pl.DataFrame, *, top: int = 10, title: str | None = None) -> go.Figure:
    """The ``top`` error signatures by errors, as horizontal bars with short, wrapped, redacted labels.

    ``signatures`` is ``postback_errors(store, by="signature")`` (or the
    ``top_signatures`` list, whose ``example`` column is shown on hover). A label
    is the readable part of the signature (:func:`short_message`: the message of
    a JSON error body), at most two lines of 38 characters; the hover shows the
    whole signature.

    >>> fig = top_signatures(pl.DataFrame({"signature": ["Invalid <n> for api_key=abc", None],
    ...                                    "errors": [4, 0]}))
    >>> fig.data[0].x, fig.layout.yaxis.ticktext
    ((4,), ('Invalid &lt;n&gt; for api_key=***',))
    """
    heading = _title(title, f"Top {top} error signatures")
    if not _drawable(signatures, ["signature", "errors"], "top_signatures"):
        return _empty(heading)
    rows = (
        signatures.filter(pl.col("errors").fill_null(0) > 0)
        .sort(["errors", "signature"], descending=[True, False], nulls_last=True)
        .head(max(top, 0))
    )
    if not rows.height:
        return _empty(heading)
    sigs = [s if s else "(no message)" for s in rows.get_column("signature").to_list()]
    errors = rows.get_column("errors").to_list()
    examples = _column(rows, "example")
    postbacks = _column(rows, "postbacks")
    custom = [
        [_wrapped(s, 60, 300), _wrapped(x, 60, 200) if x else "—", p if p is not None else e]
        for s, x, p, e in zip(sigs, examples, postbacks, errors, strict=True)
    ]
    # shortened at a word boundary, after redaction
    labels = [_wrapped(textwrap.shorten(_plain(short_message(s), 0), 76, placeholder="…"), 38, 0) for s in sigs]
    positions = list(range(rows.height))
    hover = (
        "%{customdata[0]}<br>Errors: %{x:,}"
        + ("<br>Example: %{customdata[1]}" if "example" in rows.columns else "")
        + "<extra></extra>"
    )
    fig = _Parts()
    fig.add_trace(
        _bar_spec(errors, positions, name="Errors", hover=hover, color=ERROR_COLOR, customdata=custom, orientation="h")
    )
    fig.update_layout(
        title=heading,
        showlegend=False,
        xaxis={"title": {"text": "Errors (postbacks)"}, "rangemode": "tozero"},
        yaxis={
            "title": {"text": "Error message"},
            "tickmode": "array",
            "tickvals": positions,
            "ticktext": labels,
            "tickfont": {"size": 12},
            "autorange": "reversed",
        },
        height=max(320, 100 + 46 * rows.height),
    )
    return fig.build()


def short_message(signature: object) -> str:
    """The readable part of an error signature: the message of a JSON error body, else the text itself.

    Not escaped (pass it through :func:`safe_text` to display it).

    >>> short_message('{"error":{"message":"Error validating access token","type":"OAuthException","code":<n>}}')
    'Error validating access token'
    >>> short_message("Connection timed out after <n> ms")
    'Connection timed out after <n> ms'
    """
    text = "" if signature is None else str(signature)
    found = _MESSAGE_FIELD.search(text)
    if found is None:
        return text
    try:
        return json.loads(f'"{found.group(1)}"')
    except ValueError:
        return found.group(1)


def gap_classes(gaps: pl.DataFrame, *, by: str = "traffic_source_id", title: str | None = None) -> go.Figure:
    """Conversions per group stacked by gap class: posted OK, posted but failed, not posted, pending.

    ``gaps`` is ``gaps_by(store, by)``; each bar's stack sums to the group's conversions.

    >>> fig = gap_classes(pl.DataFrame({"traffic_source_id": ["t1"], "traffic_source_name": ["Zeropark"],
    ...     "posted_ok": [5], "posted_failed": [2], "not_posted": [1], "pending": [0], "conversions": [8]}))
    >>> [(t.name, t.y) for t in fig.data]
    [('Posted OK', (5,)), ('Posted, failed', (2,)), ('Not posted', (1,)), ('Pending', (0,))]
    """
    heading = _title(title, f"Conversion gaps by {_entity_words(by)}")
    if _is_empty(gaps):
        return _empty(heading)
    present = _present(gaps, GAP_COLORS, "gap_classes")
    labels = _labels(gaps, by)
    ids = [safe_text(i, 60) for i in _column(gaps, by)]
    totals = (
        gaps.get_column("conversions").to_list()
        if "conversions" in gaps.columns
        else gaps.select(pl.sum_horizontal(present)).to_series().to_list()
    )
    hover = (
        "%{x}<br>ID: %{customdata[0]}<br>%{fullData.name}: %{y:,} of %{customdata[1]:,} conversions "
        "(%{customdata[2]:.1f}%)<extra></extra>"
    )
    fig = _go().Figure()
    for cls in present:
        values = [int(v or 0) for v in gaps.get_column(cls).to_list()]
        custom = [[i, t, (v / t * 100) if t else None] for i, t, v in zip(ids, totals, values, strict=True)]
        fig.add_trace(_bar(labels, values, name=GAP_LABELS[cls], hover=hover, color=GAP_COLORS[cls], customdata=custom))
    fig.update_layout(
        title=heading,
        barmode="stack",
        xaxis={"title": {"text": safe_text(_entity_words(by).capitalize())}, "type": "category"},
        yaxis={"title": {"text": "Conversions"}, "rangemode": "tozero"},
        legend={"traceorder": "normal"},
    )
    return apply_theme(fig)


def _histogram(
    values: Sequence[float], *, log: bool, bins: int = 30
) -> tuple[list[float], list[int], list[list[float]]]:
    """Bin centres (log10 of the value when ``log``), counts, and each bin's [low, high] in value units."""
    series = pl.Series("v", values, dtype=pl.Float64).drop_nulls().drop_nans()
    if log:
        series = series.filter(series > 0).log10()
    if series.is_empty():
        return [], [], []
    lo, hi = float(series.min()), float(series.max())
    k = max(1, min(bins, math.ceil(math.sqrt(series.len()))))
    width = (hi - lo) / k if hi > lo else 1.0
    if hi == lo:
        lo -= 0.5
        k = 1
    idx = ((series - lo) / width).floor().clip(0, k - 1).cast(pl.Int64)
    counts = idx.value_counts().sort("v")
    by_bin = dict(counts.iter_rows())
    centres, ys, ranges = [], [], []
    for b in range(k):
        low, high = lo + b * width, lo + (b + 1) * width
        centres.append((low + high) / 2)
        ys.append(int(by_bin.get(b, 0)))
        ranges.append([10**low, 10**high] if log else [low, high])
    return centres, ys, ranges


def _spread(values: Sequence[float]) -> bool:
    """True when every value is positive and the largest is at least 100 × the smallest."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return bool(clean) and min(clean) > 0 and max(clean) / min(clean) >= 100


def _decade_label(power: int, unit: str) -> str:
    value = 10.0**power
    text = f"{value:,.0f}" if power >= 0 else f"{value:g}"
    return f"{text} {unit}"


def lag_histograms(lags: Mapping[str, pl.DataFrame], *, title: str | None = None) -> go.Figure:
    """Two histograms: visit → conversion (minutes) and conversion → postback (seconds).

    ``lags`` is :func:`~cfanalytics.diagnose.lags`. A panel whose values are all
    positive and span at least two orders of magnitude is drawn on a log scale
    (bins of equal width in log10, ticks at powers of ten); otherwise linear.
    Negative lags get a dotted line at zero and a note saying what they mean: the
    later event was recorded with an earlier time (the clocks of the two systems
    differ), not that the order of events was reversed.

    >>> fig = lag_histograms({"visit_to_conversion": pl.DataFrame({"minutes": [1.0, 2.0, 2.5]}),
    ...                       "conversion_to_postback": pl.DataFrame({"seconds": [1.0, 10.0, 1000.0]})})
    >>> sum(fig.data[0].y), sum(fig.data[1].y), fig.layout.xaxis2.title.text
    (3, 3, 'Conversion → postback (seconds, log scale)')
    """
    heading = _title(title, "Conversion and postback lags")
    panels = (
        ("visit_to_conversion", "minutes", "Visit → conversion", "min"),
        ("conversion_to_postback", "seconds", "Conversion → postback", "s"),
    )
    data: list[list[float]] = []
    for key, column, _, _ in panels:
        frame = lags.get(key) if lags else None
        data.append(
            frame.get_column(column).drop_nulls().to_list() if frame is not None and column in frame.columns else []
        )
    if not any(data):
        return _empty(heading)
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=[p[2] for p in panels], horizontal_spacing=0.12)
    for n, ((_, column, label, unit), values) in enumerate(zip(panels, data, strict=True), start=1):
        axis = "" if n == 1 else str(n)
        if not values:
            fig.add_annotation(
                text=NO_DATA, xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.5, showarrow=False
            )
            fig.update_xaxes(visible=False, row=1, col=n)
            fig.update_yaxes(visible=False, row=1, col=n)
            continue
        log = _spread(values)
        centres, counts, ranges = _histogram(values, log=log)
        hover = f"%{{customdata[0]:.3g}}–%{{customdata[1]:.3g}} {unit}<br>Conversions: %{{y:,}}<extra></extra>"
        width = [(centres[1] - centres[0]) if len(centres) > 1 else 0.8] * len(centres)
        fig.add_trace(
            _bar(centres, counts, name=label, hover=hover, color=COLORWAY[n - 1], customdata=ranges, width=width),
            row=1,
            col=n,
        )
        fig.update_traces(showlegend=False, row=1, col=n)
        xaxis: dict[str, Any] = {"title": {"text": f"{label} ({column}{', log scale' if log else ''})"}}
        if log:
            low, high = math.floor(min(centres)), math.ceil(max(centres))
            ticks = list(range(low, high + 1))
            xaxis.update(tickmode="array", tickvals=ticks, ticktext=[_decade_label(t, unit) for t in ticks])
        fig.update_xaxes(row=1, col=n, **xaxis)
        fig.update_yaxes(title={"text": "Conversions"}, rangemode="tozero", row=1, col=n)
        negative = sum(1 for v in values if v < 0)
        if negative:
            # below the axis title, where it can never cover a bar
            fig.add_vline(x=0, line={"width": 1, "dash": "dot", "color": FONT_COLOR}, row=1, col=n)
            note = NEGATIVE_LAG[column].format(n=negative, s="" if negative == 1 else "s")
            fig.update_xaxes(
                title={"text": f"{xaxis['title']['text']}<br><span style='font-size:11px'>{note}</span>"},
                row=1,
                col=n,
            )
    fig.update_layout(title=heading, bargap=0.05)
    return apply_theme(fig)


def funnel_chart(funnel: pl.DataFrame, *, by: str = "campaign_id", top: int = 8, title: str | None = None) -> go.Figure:
    """Visits → clicks → conversions → postbacks sent → postbacks accepted: one small funnel per group.

    ``funnel`` is :func:`~cfanalytics.diagnose.funnel`. The ``top`` groups by
    visits each get their own funnel (rows of the same ``by`` id are added up),
    in the colour of its traffic source (:func:`group_color`: of ``by`` when it is a
    traffic source or integration, else of a ``traffic_source_id`` column, else a
    neutral colour), with every stage's count and its
    share of the previous stage written beside the bar in a readable size. A
    group with conversions but no postback sent shows an empty last stage, not a
    missing funnel. ``top=0``, or a frame without the ``by`` column, draws one
    funnel of the column totals.

    >>> fig = funnel_chart(pl.DataFrame({"campaign_id": ["c1"], "campaign_name": ["US | Keto"], "visits": [100],
    ...     "clicks": [40], "conversions": [8], "postbacks_sent": [8], "postbacks_accepted": [6]}))
    >>> fig.data[0].name, fig.data[0].x, fig.data[0].textfont.size
    ('US | Keto', (100, 40, 8, 8, 6), 12)
    """
    heading = _title(title, f"Funnel by {_entity_words(by)}")
    if _is_empty(funnel):
        return _empty(heading)
    stages = _present(funnel, FUNNEL_STAGES, "funnel_chart")
    go_ = _go()
    from plotly.subplots import make_subplots

    stage_labels = [FUNNEL_STAGES[s] for s in stages]
    if top > 0 and by in funnel.columns:
        name_col = _name_col(by)
        keys = [by, name_col] if name_col in funnel.columns else [by]
        source = by if by in COLOURED_BY else "traffic_source_id"
        carried = [pl.col(source).drop_nulls().first().alias("_source")] if source in funnel.columns else []
        rows = funnel.group_by(keys).agg(*(pl.col(s).fill_null(0).sum() for s in stages), *carried)
        rows = rows.sort([stages[0], by], descending=[True, False], nulls_last=True).head(top)
        rows = rows.with_columns(pl.Series("_label", _labels(rows, by), dtype=pl.String))
        groups = [
            (
                r["_label"],
                r[by],
                [int(r[s] or 0) for s in stages],
                group_color(r["_source"]) if "_source" in r else NEUTRAL_COLOR,
            )
            for r in rows.iter_rows(named=True)
        ]
    else:
        sums = funnel.select(pl.col(s).fill_null(0).sum() for s in stages).row(0)
        groups = [("All", None, [int(v) for v in sums], NEUTRAL_COLOR)]
    cols = min(3, len(groups))
    n_rows = math.ceil(len(groups) / cols)
    fig = make_subplots(
        rows=n_rows,
        cols=cols,
        shared_yaxes=True,
        subplot_titles=[label for label, _, _, _ in groups],
        horizontal_spacing=0.04,
        vertical_spacing=min(0.12, 0.5 / n_rows),
    )
    for n, (label, gid, values, colour) in enumerate(groups):
        previous = [None, *values[:-1]]
        text = [
            f"{v:,}" if p is None else f"{v:,} ({v / p:.0%})" if p else f"{v:,}"
            for v, p in zip(values, previous, strict=True)
        ]
        fig.add_trace(
            go_.Funnel(
                y=stage_labels,
                x=values,
                name=label,
                text=text,
                textinfo="text",
                textposition="outside",
                textfont={"size": 12},
                cliponaxis=False,
                marker={"color": colour},
                connector={"fillcolor": GRID_COLOR, "line": {"width": 0}},
                customdata=[[safe_text(gid, 60)]] * len(values),
                showlegend=False,
                hovertemplate=(
                    "%{y}: %{x:,}<br>%{percentInitial:.1%} of the first stage, %{percentPrevious:.1%} of the previous"
                    + ("<br>ID: %{customdata[0]}" if gid is not None else "")
                    + "<extra>%{fullData.name}</extra>"
                ),
            ),
            row=n // cols + 1,
            col=n % cols + 1,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(tickfont={"size": 12}, showline=False)
    fig.update_annotations(font={"size": 13})
    fig.update_layout(title=heading, height=110 + 210 * n_rows, margin={"r": 40})
    return apply_theme(fig)


def volume_over_time(events: pl.DataFrame, *, timezone: str | None = None, title: str | None = None) -> go.Figure:
    """Event counts per time bucket, stacked by event type.

    ``events`` has ``bucket`` (datetime, or date), ``event_type`` and ``count``.
    Buckets are shown in ``timezone`` (default: the column's own zone; naive = UTC).

    >>> from datetime import datetime
    >>> ev = pl.DataFrame({"bucket": [datetime(2026, 11, 20, 5)] * 2, "event_type": ["visit", "conversion"],
    ...                    "count": [120, 4]}).with_columns(pl.col("bucket").dt.replace_time_zone("UTC"))
    >>> fig = volume_over_time(ev, timezone="Europe/Berlin")
    >>> [(t.name, t.y) for t in fig.data], fig.data[0].x[0].hour
    ([('visit', (120,)), ('conversion', (4,))], 6)
    """
    heading = _title(title, "Event volume over time")
    if not _drawable(events, ["bucket", "event_type", "count"], "volume_over_time"):
        return _empty(heading)
    buckets = events.get_column("bucket")
    xs, zone = _local(buckets, timezone)
    is_date = isinstance(events.schema["bucket"], pl.Date)
    frame = events.with_columns(
        pl.Series("_x", xs), pl.Series("_when", _zone_times(buckets, zone, daily=is_date), dtype=pl.String)
    )
    totals = (
        frame.group_by("event_type")
        .agg(pl.col("count").sum().alias("_n"))
        .sort(["_n", "event_type"], descending=[True, False], nulls_last=True)
    )
    fig = _go().Figure()
    for event_type in totals.get_column("event_type").to_list():
        part = frame.filter(pl.col("event_type").eq_missing(event_type)).sort("_x")
        fig.add_trace(
            _bar(
                part.get_column("_x").to_list(),
                part.get_column("count").to_list(),
                name=safe_text(event_type, 40) or "(unknown)",
                hover="%{customdata[0]}<br>%{fullData.name}: %{y:,}<extra></extra>",
                customdata=[[w] for w in part.get_column("_when").to_list()],
            )
        )
    fig.update_layout(
        title=heading,
        barmode="stack",
        xaxis={"title": {"text": "Day" if is_date else f"Time ({safe_text(zone)})"}},
        yaxis={"title": {"text": "Events"}, "rangemode": "tozero"},
    )
    return apply_theme(fig)


def attribution_difference(by_day: pl.DataFrame, *, timezone: str | None = None, title: str | None = None) -> go.Figure:
    """Conversions per local day counted by conversion date vs by visit date, and their difference.

    ``by_day`` is :func:`~cfanalytics.diagnose.attribution_by_day` (``day``,
    ``by_conversion_date``, ``by_visit_date``, ``difference``). Top: the two
    counts side by side; bottom: the difference (visit date − conversion date).
    ``timezone``, the zone the days were cut in, is named in the axis title.

    >>> from datetime import date
    >>> fig = attribution_difference(pl.DataFrame({"day": [date(2026, 11, 20)], "by_conversion_date": [10],
    ...                                            "by_visit_date": [12], "difference": [2]}))
    >>> [(t.name, t.y) for t in fig.data]
    [('By conversion date', (10,)), ('By visit date', (12,)), ('Difference', (2,))]
    """
    heading = _title(title, "Conversions by conversion date vs visit date")
    if not _drawable(by_day, ["day", "by_conversion_date", "by_visit_date"], "attribution_difference"):
        return _empty(heading)
    from plotly.subplots import make_subplots

    rows = by_day.sort("day")
    days = rows.get_column("day").to_list()
    conv = rows.get_column("by_conversion_date").to_list()
    visit = rows.get_column("by_visit_date").to_list()
    diff = (
        rows.get_column("difference").to_list()
        if "difference" in rows.columns
        else [(v or 0) - (c or 0) for v, c in zip(visit, conv, strict=True)]
    )
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08)
    # (values, name, colour, what the hover calls them, the number's format, row)
    panels = (
        (conv, "By conversion date", COLORWAY[0], "By conversion date", ",", 1),
        (visit, "By visit date", COLORWAY[1], "By visit date", ",", 1),
        (diff, "Difference", COLORWAY[4], "Visit date − conversion date", "+,", 2),
    )
    for values, name, color, what, fmt, row in panels:
        hover = f"%{{x|%Y-%m-%d}}<br>{what}: %{{y:{fmt}}}<extra></extra>"
        fig.add_trace(_bar(days, values, name=name, hover=hover, color=color), row=row, col=1)
    fig.update_traces(showlegend=False, row=2, col=1)
    fig.update_layout(title=heading, barmode="group")
    fig.update_yaxes(title={"text": "Conversions"}, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title={"text": "Difference (conversions)"}, row=2, col=1)
    fig.update_xaxes(tickformat="%a %b %d", dtick=86_400_000)
    fig.update_xaxes(title={"text": f"Day ({safe_text(timezone)})" if timezone else "Day"}, row=2, col=1)
    return apply_theme(fig)
