"""Charts in panels: a Plotly figure drawn by a small widget whose whole figure travels when it opens.

Why not Plotly's ``FigureWidget``: it is an anywidget whose front end (the 5 MB
plotly.js bundle) is imported again for every widget, and its traces reach the
browser as messages sent after the widget opens. anywidget gives a widget 2
seconds to load its front end; past that, every later message to the widget is
dropped (``[anywidget] Failed to initialize model.`` in the browser console). On
a busy machine, or with four charts loading at once, the chart stays empty and
never updates again.

Here a chart never depends on a message after it opens:

* plotly.js is sent once per kernel, in the opening state of one hidden
  :class:`PlotlyLibrary` widget, and evaluated once per page;
* a :class:`Chart`'s widget is a plain box; every update puts a new, small
  :class:`PlotlyView` in it whose opening state holds the whole figure (and
  closes the previous one), so nothing the view needs can be lost;
* a click on a point comes back as a message from the browser (that direction
  never waits for the 2 seconds) and calls the chart's ``on_click``.

Figures come from :mod:`cfanalytics.charts` (already redacted and escaped).

>>> import plotly.graph_objects as go
>>> chart = figure_widget(height=300)
>>> show(chart, go.Figure(go.Bar(x=["a"], y=[3])))
>>> chart.data[0].y, chart.layout.height
((3,), 300)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final

import anywidget
import ipywidgets as widgets
import plotly.graph_objects as go
import traitlets

from cfanalytics.charts import PlainFigure

ClickHandler = Callable[[int, Any], None]
#: Plotly's height of a figure that sets none (pixels).
PLOTLY_HEIGHT: Final = 450

#: The page-wide slot where plotly.js, once evaluated, is shared by every chart.
_SLOT_JS: Final = """
function slot() {
  let s = globalThis.__cfanalyticsPlotly;
  if (!s) {
    s = {};
    s.promise = new Promise((resolve, reject) => { s.resolve = resolve; s.reject = reject; });
    globalThis.__cfanalyticsPlotly = s;
  }
  return s;
}
"""

#: Front end of :class:`PlotlyLibrary`: evaluate plotly.js once per page and share it.
_LIBRARY_ESM: Final = (
    _SLOT_JS
    + """export default {
  initialize({ model }) {
    const s = slot();
    if (s.loading) return;
    s.loading = true;
    try {
      const raw = model.get("source");
      const text = typeof raw === "string" ? raw : new TextDecoder().decode(raw);
      const module = { exports: {} };
      new Function("module", "exports", "define", text)(module, module.exports, undefined);
      s.resolve(module.exports);
    } catch (error) {
      s.loading = false;
      s.reject(error);
    }
  },
};
"""
)

#: Front end of :class:`PlotlyView`: draw the figure of the opening state, report clicks.
_VIEW_ESM: Final = (
    _SLOT_JS
    + """export default {
  async render({ model, el }) {
    const raw = model.get("figure");
    const figure = raw ? JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw)) : {};
    const layout = figure.layout || {};
    el.classList.add("cf-chart");
    el.style.width = "100%";
    el.style.flex = "1 1 auto";
    if (layout.height) el.style.minHeight = layout.height + "px";
    const div = document.createElement("div");
    el.appendChild(div);
    let Plotly;
    try {
      Plotly = await slot().promise;
    } catch (error) {
      el.textContent = "The chart library failed to load: " + error;
      return;
    }
    // drawn once attached and laid out (plotly sizes the figure to its container), and never before the next
    // frame and the messages already received (a status line, the end of an update) are handled: shown first
    await new Promise((resolve) => requestAnimationFrame(resolve));
    await new Promise((resolve) => setTimeout(resolve, 0));
    for (let i = 0; i < 120 && !(el.isConnected && el.clientWidth > 0); i++) {
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
    await Plotly.newPlot(div, figure.data || [], layout, { responsive: true, displaylogo: false });
    el.dataset.cfDrawn = "1";
    div.on("plotly_click", (event) => {
      const points = (event.points || []).map((p) => ({
        trace: p.curveNumber,
        point: p.pointNumber !== undefined ? p.pointNumber : p.pointIndex,
      }));
      model.send({ event: "click", points });
    });
    const resize = new ResizeObserver(() => {
      if (div.isConnected && div.clientWidth) Plotly.Plots.resize(div);
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      Plotly.purge(div);
    };
  },
};
"""
)


class PlotlyLibrary(anywidget.AnyWidget):  # type: ignore[misc]
    """Carries plotly.js to the browser once per kernel (never displayed)."""

    _esm = _LIBRARY_ESM
    source = traitlets.Bytes().tag(sync=True)


class PlotlyView(anywidget.AnyWidget):  # type: ignore[misc]
    """One drawing of one figure: its JSON text (UTF-8, a binary buffer of the opening state, parsed once by
    the browser) is part of the widget's opening state."""

    _esm = _VIEW_ESM
    figure = traitlets.Bytes().tag(sync=True)


_library: PlotlyLibrary | None = None


def library() -> PlotlyLibrary:
    """The kernel's :class:`PlotlyLibrary` (opened on first use, again if it was closed)."""
    global _library
    if _library is None or _library.comm is None:
        from plotly.offline import get_plotlyjs

        _library = PlotlyLibrary(source=get_plotlyjs().encode())
    return _library


class ChartBox(widgets.Box):  # type: ignore[misc]
    """The widget of a :class:`Chart` (a box holding its current view)."""

    def __init__(self, chart: Chart, height: int | None) -> None:
        super().__init__(layout=widgets.Layout(width="100%", min_height=f"{height}px" if height else None))
        self.add_class("cf-chart-box")
        self.chart = chart

    def to_plotly_json(self) -> dict[str, Any]:
        """The figure shown, as Plotly JSON."""
        return self.chart.to_plotly_json()


class Chart:
    """A panel chart: ``data`` / ``layout`` of the figure shown, ``widget`` to put in a panel."""

    def __init__(self, height: int | None = None) -> None:
        library()
        self.height = height
        self.widget = ChartBox(self, height)
        self._shown: go.Figure | PlainFigure = go.Figure(layout={"height": height} if height else None)
        self.on_click: ClickHandler | None = None
        #: Figures sent to the browser so far (a figure equal to the one shown is not sent again).
        self.renders = 0
        self._sent: bytes | None = None
        #: One layout shared by the chart's successive views (a new view does not open a layout of its own).
        self._view_layout = widgets.Layout()

    @property
    def figure(self) -> go.Figure:
        """The figure shown (a plain spec shown is made into a ``go.Figure`` here, when first read)."""
        shown = self._shown
        return shown.figure if isinstance(shown, PlainFigure) else shown

    @property
    def data(self) -> tuple[Any, ...]:
        """The traces shown."""
        return self.figure.data

    @property
    def layout(self) -> go.Layout:
        """The layout of the figure shown."""
        return self.figure.layout

    def to_plotly_json(self) -> dict[str, Any]:
        """The figure shown, as Plotly JSON."""
        return self.figure.to_plotly_json()

    def draw(self, fig: go.Figure | PlainFigure, on_click: ClickHandler | None = None) -> None:
        """Show ``fig`` (kept, not copied): a new view carrying the whole figure replaces the previous one
        (unless the figure equals the one shown: then nothing is sent)."""
        if isinstance(fig, PlainFigure):
            if self.height is not None and fig.spec["layout"].get("height") is None:
                fig.spec["layout"]["height"] = self.height
            shown_height = fig.spec["layout"].get("height")
        else:
            if not isinstance(fig, go.Figure):
                fig = go.Figure(fig)
            if self.height is not None and fig.layout.height is None:
                fig.layout.height = self.height
                spec = getattr(fig, "_cf_spec", None)
                if spec is not None:
                    spec["layout"]["height"] = self.height
            shown_height = fig.layout.height
        self._shown = fig
        self.on_click = on_click
        # the box keeps the figure's height while the next view draws: the page does not jump
        height = f"{shown_height or PLOTLY_HEIGHT}px"
        if self.widget.layout.min_height != height:
            self.widget.layout.min_height = height
        spec = figure_text(fig).encode()
        if spec == self._sent and self.widget.children:
            return  # the same figure is shown already: nothing to send, nothing for the browser to draw again
        view = PlotlyView(figure=spec, layout=self._view_layout)
        view.on_msg(self._message)
        old = list(self.widget.children)
        self.widget.children = (view,)
        for widget in old:
            widget.close()
        self._sent = spec
        self.renders += 1

    def _message(self, _view: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "click":
            return
        points = [p for p in content.get("points") or () if isinstance(p, dict)]
        if not points:
            return
        trace = points[0].get("trace")
        indices = [p.get("point") for p in points if p.get("trace") == trace and isinstance(p.get("point"), int)]
        if isinstance(trace, int) and indices:
            self.dispatch_click(trace, indices)

    def dispatch_click(self, trace_index: int, point_indices: list[int]) -> None:
        """Call ``on_click`` as a click on these points of one trace would (Plotly ``Points``)."""
        if self.on_click is None or not 0 <= trace_index < len(self.figure.data):
            return
        from plotly.callbacks import Points

        trace = self.figure.data[trace_index]
        xs = list(trace.x) if getattr(trace, "x", None) is not None else []
        ys = list(trace.y) if getattr(trace, "y", None) is not None else []
        points = Points(
            point_inds=list(point_indices),
            xs=[xs[i] for i in point_indices if i < len(xs)],
            ys=[ys[i] for i in point_indices if i < len(ys)],
            trace_name=trace.name,
            trace_index=trace_index,
        )
        self.on_click(trace_index, points)


def _json_value(value: Any) -> Any:
    """What Plotly's JSON encoder writes for the values figures hold besides JSON's own (times, numpy)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__} in a figure")


def figure_json(fig: go.Figure | PlainFigure) -> dict[str, Any]:
    """``fig`` as the plain JSON object plotly.js draws (:func:`figure_text`, parsed).

    >>> figure_json(go.Figure(go.Scatter(x=[datetime(2026, 11, 20, 10)], y=[1.5])))["data"][0]["x"]
    ['2026-11-20T10:00:00']
    """
    out: dict[str, Any] = json.loads(figure_text(fig))
    return out


def figure_text(fig: go.Figure | PlainFigure) -> str:
    """``fig`` as the JSON text plotly.js draws (what ``fig.to_json()`` gives, without the encoder's second
    pass; a figure holding NaN or infinity takes Plotly's own path, which writes them as null).

    >>> figure_text(go.Figure(go.Bar(x=["a"], y=[float("nan")]))).startswith('{"data":[{"x":["a"],"y":[null]')
    True
    """
    if isinstance(fig, PlainFigure):
        spec = fig.spec
    else:
        spec = getattr(fig, "_cf_spec", None)  # the plain spec a chart of cfanalytics.charts was built from
        if spec is None or spec["layout"].get("height") != fig.layout.height:
            spec = fig.to_plotly_json()
    try:
        return json.dumps(spec, default=_json_value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return (fig.figure if isinstance(fig, PlainFigure) else fig).to_json()


def figure_widget(height: int | None = None) -> Chart:
    """An empty chart (optionally of a fixed height in pixels)."""
    return Chart(height)


def show(chart: Chart, fig: go.Figure | PlainFigure, *, on_click: ClickHandler | None = None) -> None:
    """Show ``fig`` in ``chart``; ``on_click(trace_index, points)`` is called when a point is clicked.

    Plotly's ``points`` carries ``point_inds``, ``xs``, ``ys``.
    """
    chart.draw(fig, on_click)


def click(chart: Chart, trace_index: int, point_index: int) -> None:
    """Simulate a click on one point of one trace (what the browser sends), for tests and scripts."""
    chart._message(None, {"event": "click", "points": [{"trace": trace_index, "point": point_index}]}, None)
