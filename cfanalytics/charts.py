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
  title names the zone, e.g. ``Time (America/New_York)``.
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

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from cfanalytics.redaction import escape_text as _escape
from cfanalytics.redaction import plain_text as _plain
from cfanalytics.redaction import safe_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "NO_DATA",
    "apply_theme",
    "attribution_difference",
    "error_rate_over_time",
    "errors_by_kind",
    "errors_by_status_class",
    "funnel_chart",
    "gap_classes",
    "lag_histograms",
    "safe_text",
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
#: Mid-luminance qualitative palette, legible on light and dark backgrounds.
COLORWAY: Final = (
    "#4c8bf5",
    "#f28e2b",
    "#e15759",
    "#2ca58d",
    "#b07aa1",
    "#9c755f",
    "#d4a017",
    "#17becf",
    "#ff6f91",
    "#8c8c8c",
)
ERROR_COLOR: Final = "#e15759"
OK_COLOR: Final = "#2ca58d"
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
#: Vertical band (paper units) of the activity-change markers above the error-rate plot.
CHANGE_LANE: Final = (0.9, 1.0)
_HOVER_TIME: Final = "%Y-%m-%d %H:%M"


def _go() -> Any:
    """``plotly.graph_objects``, imported on first use (plotly is an optional extra)."""
    import plotly.graph_objects as go

    return go


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


def _labels(frame: pl.DataFrame, id_col: str) -> list[str]:
    """Display label per row: the escaped name, else the id; a short id suffix where names repeat."""
    ids = frame.get_column(id_col).to_list() if id_col in frame.columns else [None] * frame.height
    name_col = _name_col(id_col)
    names = frame.get_column(name_col).to_list() if name_col in frame.columns else [None] * frame.height
    missing = f"(no {_entity_words(id_col)})"
    base = [
        safe_text(n, 60) if n else (safe_text(i, 60) if i is not None else missing)
        for i, n in zip(ids, names, strict=True)
    ]
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


def _local_value(value: datetime | None, timezone: str) -> datetime | None:
    if value is None:
        return None
    return _local(pl.Series([value]), timezone)[0][0]


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
    go_ = _go()
    axis = {
        "gridcolor": GRID_COLOR,
        "linecolor": LINE_COLOR,
        "zerolinecolor": LINE_COLOR,
        "tickcolor": LINE_COLOR,
        "showline": True,
        "automargin": True,
        "title": {"standoff": 8},
    }
    template = go_.layout.Template(
        layout={
            "paper_bgcolor": TRANSPARENT,
            "plot_bgcolor": TRANSPARENT,
            "font": {"color": FONT_COLOR, "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
            "colorway": list(COLORWAY),
            "xaxis": axis,
            "yaxis": axis,
            "legend": {"bgcolor": TRANSPARENT},
            "hovermode": "closest",
            "hoverlabel": {"namelength": -1},
            "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        }
    )
    fig.update_layout(template=template)
    return fig


def _empty(title: dict[str, Any]) -> go.Figure:
    """A figure with only a title and the centred :data:`NO_DATA` note."""
    go_ = _go()
    fig = go_.Figure()
    fig.add_annotation(
        text=NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16, "color": FONT_COLOR}
    )
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return apply_theme(fig)


def _is_empty(frame: pl.DataFrame | None) -> bool:
    return frame is None or frame.height == 0


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {', '.join(missing)}; got {', '.join(frame.columns) or 'none'}")


def _column(frame: pl.DataFrame, name: str) -> list[Any]:
    return frame.get_column(name).to_list() if name in frame.columns else [None] * frame.height


def error_rate_over_time(
    rates: pl.DataFrame,
    *,
    by: str = "traffic_source_id",
    changes: pl.DataFrame | None = None,
    incidents: pl.DataFrame | None = None,
    timezone: str = "UTC",
    title: str | None = None,
) -> go.Figure:
    """Error rate (%) over time, one line per group, with activity changes and incidents marked.

    ``rates`` is ``postback_errors(store, by=["hour", by])`` (``day`` works too);
    without a ``by`` column one line "All postbacks" is drawn. ``changes`` are
    activity rows: a diamond per change in a lane above the plot (hover: author,
    entity, action, old → new). ``incidents`` is the
    :func:`~cfanalytics.diagnose.incidents` frame: a shaded band from ``start`` to
    ``end`` labelled with the scope's name and top error kind. Times are shown in
    ``timezone``; pass the changes and incidents of the window you want marked.

    >>> from datetime import datetime
    >>> rates = pl.DataFrame({
    ...     "hour": [datetime(2026, 11, 20, 15), datetime(2026, 11, 20, 16)],
    ...     "traffic_source_id": ["t1", "t1"], "traffic_source_name": ["Meta Ads", "Meta Ads"],
    ...     "postbacks": [10, 4], "errors": [1, 4], "error_rate": [0.1, 1.0],
    ... }).with_columns(pl.col("hour").dt.replace_time_zone("UTC"))
    >>> fig = error_rate_over_time(rates, timezone="America/New_York")
    >>> fig.data[0].name, fig.data[0].y, fig.data[0].x[0]
    ('Meta Ads', (10.0, 100.0), datetime.datetime(2026, 11, 20, 10, 0))
    """
    heading = _title(title, f"Postback error rate by {_entity_words(by)}" if by else "Postback error rate")
    time_col = _time_column(rates) if rates is not None else None
    if _is_empty(rates) or time_col is None:
        return _empty(heading)
    _require(rates, ["postbacks", "errors", "error_rate"], "error_rate_over_time")
    go_ = _go()
    fig = go_.Figure()
    xs, zone = _local(rates.get_column(time_col), timezone)
    frame = rates.with_columns(pl.Series("_x", xs), pl.Series("_label", _labels(rates, by)))
    group_ids = _column(frame, by) if by in frame.columns else [None] * frame.height
    frame = frame.with_columns(pl.Series("_gid", [safe_text(g, 60) for g in group_ids], dtype=pl.String))
    has_groups = by in rates.columns
    totals = (
        frame.group_by("_label")
        .agg(pl.col("errors").sum().alias("_e"))
        .sort(["_e", "_label"], descending=[True, False])
    )
    for label in totals.get_column("_label").to_list():
        part = frame.filter(pl.col("_label") == label).sort("_x")
        y = [None if r is None else r * 100 for r in part.get_column("error_rate").to_list()]
        custom = [list(row) for row in part.select("_gid", "postbacks", "errors").iter_rows()]
        id_line = f"{safe_text(_entity_words(by).capitalize())}: %{{customdata[0]}}<br>" if has_groups else ""
        fig.add_trace(
            go_.Scatter(
                x=part.get_column("_x").to_list(),
                y=y,
                customdata=custom,
                name=label if has_groups else "All postbacks",
                mode="lines+markers",
                marker={"size": 5},
                hovertemplate=(
                    f"{id_line}Time: %{{x|{_HOVER_TIME}}}<br>Error rate: %{{y:.1f}}%<br>"
                    "Postbacks: %{customdata[1]:,}<br>Errors: %{customdata[2]:,}<extra>%{fullData.name}</extra>"
                ),
            )
        )
    lane = changes is not None and "changed_at" in changes.columns and _add_changes(fig, changes, zone)
    plot_top = CHANGE_LANE[0] - 0.03 if lane else 1.0
    if incidents is not None and incidents.height and {"start", "end"} <= set(incidents.columns):
        _add_incidents(fig, incidents, zone, top=plot_top)
    fig.update_layout(
        title=heading,
        xaxis={"title": {"text": f"Time ({safe_text(zone)})" if time_col != "day" else "Day"}},
        yaxis={
            "title": {"text": "Error rate (%)"},
            "rangemode": "tozero",
            "ticksuffix": "%",
            "domain": [0.0, plot_top],
        },
        legend={"title": {"text": safe_text(_entity_words(by).capitalize())}} if has_groups else {},
    )
    return apply_theme(fig)


def _add_changes(fig: go.Figure, changes: pl.DataFrame, zone: str) -> bool:
    """Activity rows as diamonds in a lane above the plot (hover: the edit); False when none has a time."""
    go_ = _go()
    rows = changes.filter(pl.col("changed_at").is_not_null()).sort("changed_at")
    if not rows.height:
        return False
    xs, _ = _local(rows.get_column("changed_at"), zone)
    custom = []
    for row in rows.iter_rows(named=True):
        entity = row.get("entity_name") or row.get("entity_id")
        kind = (row.get("entity_type") or "").replace("_", " ")
        custom.append(
            [
                safe_text(row.get("author"), 60),
                f"{safe_text(kind, 30)} {safe_text(entity, 60)}".strip(),
                safe_text(row.get("action"), 30),
                safe_text(row.get("old_value"), 80) or "—",
                safe_text(row.get("new_value"), 80) or "—",
            ]
        )
    fig.add_trace(
        go_.Scatter(
            x=xs,
            y=[0.5] * len(xs),
            yaxis="y2",
            mode="markers",
            name="Changes",
            marker={"symbol": "diamond", "size": 10, "color": CHANGE_COLOR, "line": {"width": 1, "color": FONT_COLOR}},
            customdata=custom,
            hovertemplate=(
                f"<b>%{{customdata[2]}}</b> %{{customdata[1]}}<br>by %{{customdata[0]}}<br>%{{x|{_HOVER_TIME}}}<br>"
                "%{customdata[3]} → %{customdata[4]}<extra>Change</extra>"
            ),
        )
    )
    fig.update_layout(
        yaxis2={"domain": list(CHANGE_LANE), "anchor": "x", "range": [0, 1], "visible": False, "fixedrange": True}
    )
    return True


def _add_incidents(fig: go.Figure, incidents: pl.DataFrame, zone: str, *, top: float = 1.0) -> None:
    """A shaded band per incident with a label (name · top error kind, below ``top`` in paper units)
    whose hover tells the details."""
    for n, row in enumerate(incidents.sort("start").iter_rows(named=True)):
        start, end = _local_value(row["start"], zone), _local_value(row["end"], zone)
        if start is None:
            continue
        end = end or start
        name = safe_text(row.get("name") or row.get("id"), 40) or "(unnamed)"
        kind = safe_text(row.get("top_error_kind"), 30)
        label = f"{name} · {kind}" if kind else name
        fig.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=start,
            x1=end,
            y0=0,
            y1=1,
            layer="below",
            fillcolor=INCIDENT_FILL,
            line={"width": 1, "color": INCIDENT_LINE},
        )
        fig.add_annotation(
            text=label,
            x=start,
            xref="x",
            y=top - 0.07 * (n % 3),
            yref="paper",
            xanchor="left",
            yanchor="top",
            showarrow=False,
            font={"size": 11, "color": ERROR_COLOR},
            hovertext=_incident_hover(row, start, end),
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def _incident_hover(row: Mapping[str, Any], start: datetime, end: datetime) -> str:
    scope = safe_text((row.get("scope") or "").replace("_", " "), 30)
    lines = [
        f"<b>Incident</b> {safe_text(row.get('incident_id'), 40)} ({scope})",
        f"{safe_text(row.get('name') or row.get('id'), 60)}",
        f"{start:{_HOVER_TIME}} → {end:{_HOVER_TIME}}",
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
    if _is_empty(kinds):
        return _empty(heading)
    _require(kinds, ["error_kind", "errors"], "errors_by_kind")
    rows = kinds.filter(pl.col("errors").fill_null(0) > 0).sort(["errors", "error_kind"], descending=[True, False])
    if not rows.height:
        return _empty(heading)
    go_ = _go()
    total = int(rows.get_column("errors").sum())
    labels = [safe_text(k, 40) if k is not None else "(unknown)" for k in rows.get_column("error_kind").to_list()]
    errors = rows.get_column("errors").to_list()
    fig = go_.Figure(
        go_.Bar(
            x=errors,
            y=labels,
            orientation="h",
            marker={"color": ERROR_COLOR},
            customdata=[[e / total * 100] for e in errors],
            hovertemplate="%{y}<br>Errors: %{x:,}<br>Share of errors: %{customdata[0]:.1f}%<extra></extra>",
            name="Errors",
        )
    )
    fig.update_layout(
        title=heading,
        xaxis={"title": {"text": "Errors (postbacks)"}, "rangemode": "tozero"},
        yaxis={"title": {"text": "Error kind"}, "autorange": "reversed", "type": "category"},
        showlegend=False,
    )
    return apply_theme(fig)


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
    if _is_empty(classes):
        return _empty(heading)
    _require(classes, ["status_class", "errors"], "errors_by_status_class")
    go_ = _go()
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
    )
    fig = go_.Figure(
        go_.Bar(
            x=labels,
            y=errors,
            name="Errors",
            marker={"color": ERROR_COLOR},
            customdata=custom,
            hovertemplate=hover + "<extra></extra>",
        )
    )
    if has_total:
        fig.add_trace(
            go_.Bar(
                x=labels,
                y=[p - e for p, e in zip(totals, errors, strict=True)],
                name="Accepted",
                marker={"color": OK_COLOR},
                customdata=custom,
                hovertemplate=hover + "<extra></extra>",
            )
        )
    fig.update_layout(
        title=heading,
        barmode="stack",
        xaxis={"title": {"text": "HTTP status class"}, "type": "category"},
        yaxis={"title": {"text": "Postbacks"}, "rangemode": "tozero"},
    )
    return apply_theme(fig)


def top_signatures(signatures: pl.DataFrame, *, top: int = 10, title: str | None = None) -> go.Figure:
    """The ``top`` error signatures by errors, as horizontal bars with wrapped, redacted labels.

    ``signatures`` is ``postback_errors(store, by="signature")`` (or the
    ``top_signatures`` list, whose ``example`` column is shown on hover). Labels
    are shortened and wrapped; the hover shows more of the text.

    >>> fig = top_signatures(pl.DataFrame({"signature": ["Invalid <n> for api_key=abc", None],
    ...                                    "errors": [4, 0]}))
    >>> fig.data[0].x, fig.layout.yaxis.ticktext
    ((4,), ('Invalid &lt;n&gt; for api_key=***',))
    """
    heading = _title(title, f"Top {top} error signatures")
    if _is_empty(signatures):
        return _empty(heading)
    _require(signatures, ["signature", "errors"], "top_signatures")
    rows = (
        signatures.filter(pl.col("errors").fill_null(0) > 0)
        .sort(["errors", "signature"], descending=[True, False], nulls_last=True)
        .head(max(top, 0))
    )
    if not rows.height:
        return _empty(heading)
    go_ = _go()
    sigs = [s if s else "(no message)" for s in rows.get_column("signature").to_list()]
    errors = rows.get_column("errors").to_list()
    examples = _column(rows, "example")
    postbacks = _column(rows, "postbacks")
    custom = [
        [_wrapped(s, 60, 300), _wrapped(x, 60, 200) if x else "—", p if p is not None else e]
        for s, x, p, e in zip(sigs, examples, postbacks, errors, strict=True)
    ]
    positions = list(range(rows.height))
    fig = go_.Figure(
        go_.Bar(
            x=errors,
            y=positions,
            orientation="h",
            marker={"color": ERROR_COLOR},
            customdata=custom,
            name="Errors",
            hovertemplate=(
                "%{customdata[0]}<br>Errors: %{x:,}"
                + ("<br>Example: %{customdata[1]}" if "example" in rows.columns else "")
                + "<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title=heading,
        showlegend=False,
        xaxis={"title": {"text": "Errors (postbacks)"}, "rangemode": "tozero"},
        yaxis={
            "title": {"text": "Error signature"},
            "tickmode": "array",
            "tickvals": positions,
            "ticktext": [_wrapped(s, 40, 80) for s in sigs],
            "autorange": "reversed",
        },
        height=max(320, 90 + 48 * rows.height),
    )
    return apply_theme(fig)


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
    present = [c for c in GAP_COLORS if c in gaps.columns]
    if not present:
        _require(gaps, GAP_COLORS, "gap_classes")
    go_ = _go()
    labels = _labels(gaps, by)
    ids = [safe_text(i, 60) for i in _column(gaps, by)]
    totals = (
        gaps.get_column("conversions").to_list()
        if "conversions" in gaps.columns
        else gaps.select(pl.sum_horizontal(present)).to_series().to_list()
    )
    fig = go_.Figure()
    for cls in present:
        values = [int(v or 0) for v in gaps.get_column(cls).to_list()]
        custom = [[i, t, (v / t * 100) if t else None] for i, t, v in zip(ids, totals, values, strict=True)]
        fig.add_trace(
            go_.Bar(
                x=labels,
                y=values,
                name=GAP_LABELS[cls],
                marker={"color": GAP_COLORS[cls]},
                customdata=custom,
                hovertemplate=(
                    "%{x}<br>ID: %{customdata[0]}<br>%{fullData.name}: %{y:,} of %{customdata[1]:,} conversions "
                    "(%{customdata[2]:.1f}%)<extra></extra>"
                ),
            )
        )
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
    go_ = _go()
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
        fig.add_trace(
            go_.Bar(
                x=centres,
                y=counts,
                customdata=ranges,
                name=label,
                marker={"color": COLORWAY[n - 1]},
                width=[(centres[1] - centres[0]) if len(centres) > 1 else 0.8] * len(centres),
                hovertemplate=(
                    f"%{{customdata[0]:.3g}}–%{{customdata[1]:.3g}} {unit}<br>Conversions: %{{y:,}}<extra></extra>"
                ),
                showlegend=False,
            ),
            row=1,
            col=n,
        )
        xaxis: dict[str, Any] = {"title": {"text": f"{label} ({column}{', log scale' if log else ''})"}}
        if log:
            low, high = math.floor(min(centres)), math.ceil(max(centres))
            ticks = list(range(low, high + 1))
            xaxis.update(tickmode="array", tickvals=ticks, ticktext=[_decade_label(t, unit) for t in ticks])
        fig.update_xaxes(row=1, col=n, **xaxis)
        fig.update_yaxes(title={"text": "Conversions"}, rangemode="tozero", row=1, col=n)
    fig.update_layout(title=heading, bargap=0.05)
    return apply_theme(fig)


def funnel_chart(funnel: pl.DataFrame, *, by: str = "campaign_id", top: int = 5, title: str | None = None) -> go.Figure:
    """Visits → clicks → conversions → postbacks sent → postbacks accepted, as a Plotly funnel.

    ``funnel`` is :func:`~cfanalytics.diagnose.funnel`. The ``top`` groups by
    visits are stacked within each stage (one trace per group, so the stage's
    width is their sum); ``top=0``, or a frame without the ``by`` column, draws
    one funnel of the column totals.

    >>> fig = funnel_chart(pl.DataFrame({"campaign_id": ["c1"], "campaign_name": ["US | Keto"], "visits": [100],
    ...     "clicks": [40], "conversions": [8], "postbacks_sent": [8], "postbacks_accepted": [6]}))
    >>> fig.data[0].name, fig.data[0].x
    ('US | Keto', (100, 40, 8, 8, 6))
    """
    heading = _title(title, f"Funnel by {_entity_words(by)}")
    if _is_empty(funnel):
        return _empty(heading)
    stages = [c for c in FUNNEL_STAGES if c in funnel.columns]
    if not stages:
        _require(funnel, FUNNEL_STAGES, "funnel_chart")
    go_ = _go()
    stage_labels = [FUNNEL_STAGES[s] for s in stages]
    if top > 0 and by in funnel.columns:
        rows = funnel.with_columns(pl.Series("_label", _labels(funnel, by)))
        if "visits" in rows.columns:
            rows = rows.sort("visits", descending=True, nulls_last=True, maintain_order=True)
        rows = rows.head(top)
        groups = [
            (r["_label"], safe_text(r[by], 60), [int(r[s] or 0) for s in stages]) for r in rows.iter_rows(named=True)
        ]
    else:
        sums = funnel.select(pl.col(s).fill_null(0).sum() for s in stages).row(0)
        groups = [("All", "", [int(v) for v in sums])]
    fig = go_.Figure()
    for label, gid, values in groups:
        fig.add_trace(
            go_.Funnel(
                y=stage_labels,
                x=values,
                name=label,
                textinfo="value",
                textposition="inside",
                connector={"fillcolor": GRID_COLOR, "line": {"width": 0}},
                customdata=[[gid]] * len(values),
                hovertemplate=(
                    "%{y}: %{x:,}<br>%{percentInitial:.1%} of the first stage, %{percentPrevious:.1%} of the previous"
                    + ("<br>ID: %{customdata[0]}" if gid else "")
                    + "<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_layout(
        title=heading,
        funnelmode="stack",
        xaxis={"title": {"text": "Count"}},
        yaxis={"title": {"text": "Stage"}},
        legend={"title": {"text": safe_text(_entity_words(by).capitalize())}},
    )
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
    if _is_empty(events):
        return _empty(heading)
    _require(events, ["bucket", "event_type", "count"], "volume_over_time")
    go_ = _go()
    xs, zone = _local(events.get_column("bucket"), timezone)
    frame = events.with_columns(pl.Series("_x", xs))
    totals = (
        frame.group_by("event_type")
        .agg(pl.col("count").sum().alias("_n"))
        .sort(["_n", "event_type"], descending=[True, False], nulls_last=True)
    )
    fig = go_.Figure()
    for event_type in totals.get_column("event_type").to_list():
        part = frame.filter(pl.col("event_type").eq_missing(event_type)).sort("_x")
        fig.add_trace(
            go_.Bar(
                x=part.get_column("_x").to_list(),
                y=part.get_column("count").to_list(),
                name=safe_text(event_type, 40) or "(unknown)",
                hovertemplate=f"%{{x|{_HOVER_TIME}}}<br>%{{fullData.name}}: %{{y:,}}<extra></extra>",
            )
        )
    is_date = isinstance(events.schema["bucket"], pl.Date)
    fig.update_layout(
        title=heading,
        barmode="stack",
        xaxis={"title": {"text": "Day" if is_date else f"Time ({safe_text(zone)})"}},
        yaxis={"title": {"text": "Events"}, "rangemode": "tozero"},
    )
    return apply_theme(fig)


def attribution_difference(by_day: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Conversions per local day counted by conversion date vs by visit date, and their difference.

    ``by_day`` is :func:`~cfanalytics.diagnose.attribution_by_day` (``day``,
    ``by_conversion_date``, ``by_visit_date``, ``difference``). Top: the two
    counts side by side; bottom: the difference (visit date − conversion date).

    >>> from datetime import date
    >>> fig = attribution_difference(pl.DataFrame({"day": [date(2026, 11, 20)], "by_conversion_date": [10],
    ...                                            "by_visit_date": [12], "difference": [2]}))
    >>> [(t.name, t.y) for t in fig.data]
    [('By conversion date', (10,)), ('By visit date', (12,)), ('Difference', (2,))]
    """
    heading = _title(title, "Conversions by conversion date vs visit date")
    if _is_empty(by_day):
        return _empty(heading)
    _require(by_day, ["day", "by_conversion_date", "by_visit_date"], "attribution_difference")
    go_ = _go()
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
    day_hover = "%{x|%Y-%m-%d}"
    fig.add_trace(
        go_.Bar(
            x=days,
            y=conv,
            name="By conversion date",
            marker={"color": COLORWAY[0]},
            hovertemplate=f"{day_hover}<br>By conversion date: %{{y:,}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go_.Bar(
            x=days,
            y=visit,
            name="By visit date",
            marker={"color": COLORWAY[1]},
            hovertemplate=f"{day_hover}<br>By visit date: %{{y:,}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go_.Bar(
            x=days,
            y=diff,
            name="Difference",
            marker={"color": COLORWAY[4]},
            hovertemplate=f"{day_hover}<br>Visit date − conversion date: %{{y:+,}}<extra></extra>",
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    fig.update_layout(title=heading, barmode="group")
    fig.update_yaxes(title={"text": "Conversions"}, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title={"text": "Difference (conversions)"}, row=2, col=1)
    fig.update_xaxes(tickformat="%a %b %d", dtick=86_400_000)
    fig.update_xaxes(title={"text": "Day"}, row=2, col=1)
    return apply_theme(fig)
