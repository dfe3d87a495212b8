"""Plotly ``FigureWidget`` helpers: one widget per chart, its figure replaced in place on every update.

Figures come from :mod:`cfanalytics.charts` (already redacted and escaped); the
widget keeps its identity, so click handlers and the browser view stay attached.

>>> import plotly.graph_objects as go
>>> fw = figure_widget()
>>> show(fw, go.Figure(go.Bar(x=["a"], y=[3])))
>>> fw.data[0].y
(3,)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

ClickHandler = Callable[[int, Any], None]


def figure_widget(height: int | None = None) -> go.FigureWidget:
    """An empty ``FigureWidget`` (optionally of a fixed height in pixels)."""
    fw = go.FigureWidget()
    if height is not None:
        fw.update_layout(height=height)
    return fw


def show(fw: go.FigureWidget, fig: go.Figure, *, on_click: ClickHandler | None = None) -> None:
    """Replace ``fw``'s traces and layout by ``fig``'s.

    ``on_click(trace_index, points)`` is attached to every new trace (Plotly's
    ``points`` carries ``point_inds``, ``xs``, ``ys``).
    """
    height = fw.layout.height
    with fw.batch_update():
        fw.data = []
    fw.add_traces(list(fig.data))
    layout = fig.layout
    if height is not None and layout.height is None:
        layout.height = height
    fw.layout = layout
    if on_click is not None:
        for index, trace in enumerate(fw.data):
            trace.on_click(_handler(on_click, index))
    _sync_state(fw)


def _sync_state(fw: go.FigureWidget) -> None:
    """Copy the traces and layout into the widget state.

    Plotly syncs them only for a figure displayed on its own; one shown inside a
    box would otherwise start empty in Voila or after a page reload.
    """
    from copy import deepcopy

    fw._widget_data = deepcopy(fw._data)  # plotly has no public way to do this
    fw._widget_layout = deepcopy(fw._layout_obj._props)


def _handler(on_click: ClickHandler, index: int) -> Callable[[Any, Any, Any], None]:
    def handle(_trace: Any, points: Any, _selector: Any) -> None:
        if points is not None and list(points.point_inds):
            on_click(index, points)

    return handle


def click(fw: go.FigureWidget, trace_index: int, point_index: int) -> None:
    """Simulate a click on one point of one trace (what the browser sends), for tests and scripts."""
    from plotly.callbacks import Points

    trace = fw.data[trace_index]
    xs = list(trace.x) if trace.x is not None else []
    ys = list(trace.y) if trace.y is not None else []
    points = Points(
        point_inds=[point_index],
        xs=[xs[point_index]] if point_index < len(xs) else [],
        ys=[ys[point_index]] if point_index < len(ys) else [],
        trace_name=trace.name,
        trace_index=trace_index,
    )
    trace._dispatch_on_click(points, None)
