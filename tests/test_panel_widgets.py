"""The panels' own widgets: charts that need no message after they open, checkbox filters, table search."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

pytest.importorskip("plotly")
pytest.importorskip("anywidget")

import comm
import ipywidgets
import plotly.graph_objects as go

from cfanalytics.panels import _figures
from cfanalytics.panels._figures import PlotlyView, click, figure_widget, show
from cfanalytics.panels._table import Table
from cfanalytics.panels._widgets import MultiChoice


class Recorder:
    """Every widget comm opened (with its opening state) and every message sent on it afterwards."""

    def __init__(self) -> None:
        self.opened: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, list[Any]] = {}

    def create_comm(self, **kwargs: Any) -> Any:
        recorder = self
        state = kwargs.get("data", {}).get("state", {})

        class Comm(comm.base_comm.BaseComm):  # type: ignore[misc]
            def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **_: Any):
                if msg_type == "comm_open":
                    recorder.opened[self.comm_id] = {"state": state, "buffers": buffers}
                else:
                    recorder.sent.setdefault(self.comm_id, []).append((msg_type, data))

        return Comm(**kwargs)


def opened_figure(recorder: Recorder, model_id: str) -> Any:
    """The figure a view opened with (its JSON text travels as a binary buffer of the opening state)."""
    opened = recorder.opened[model_id]
    buffers = opened["buffers"] or []
    assert "figure" not in opened["state"]
    assert len(buffers) == 1
    return json.loads(bytes(buffers[0]))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(comm, "create_comm", rec.create_comm)
    monkeypatch.setattr(_figures, "_library", None)
    return rec


def test_a_chart_view_opens_with_its_whole_figure_and_is_never_sent_a_message(recorder: Recorder) -> None:
    chart = figure_widget(height=300)
    library = _figures.library()
    assert library.comm.comm_id in recorder.opened  # plotly.js, once, in its opening state
    assert recorder.opened[library.comm.comm_id]["buffers"], "plotly.js travels as a binary buffer"
    fig = go.Figure(go.Bar(x=["a", "b"], y=[3, 5], name="errors"))
    show(chart, fig)
    first = chart.widget.children[0]
    assert isinstance(first, PlotlyView)
    first_id = first.model_id
    opening = opened_figure(recorder, first_id)
    assert opening["data"][0]["y"] == [3, 5]
    assert opening["layout"]["height"] == 300

    show(chart, go.Figure(go.Bar(x=["a"], y=[7])))
    second = chart.widget.children[0]
    assert second is not first
    assert first.comm is None
    assert opened_figure(recorder, second.model_id)["data"][0]["y"] == [7]

    def updates(model_id: str) -> list[Any]:
        return [d for kind, d in recorder.sent.get(model_id, []) if kind == "comm_msg" and d.get("method") == "update"]

    assert updates(chart.widget.model_id)  # the box is told its new child (the recorder sees updates)
    assert updates(first_id) == []
    assert updates(second.model_id) == []
    assert chart.renders == 2
    assert _figures.library() is library  # one library per kernel


def test_a_figure_equal_to_the_one_shown_is_not_sent_again(recorder: Recorder) -> None:
    chart = figure_widget(height=300)
    show(chart, go.Figure(go.Bar(x=["a"], y=[3])))
    view = chart.widget.children[0]
    show(chart, go.Figure(go.Bar(x=["a"], y=[3])))
    assert chart.widget.children == (view,)
    assert chart.renders == 1
    assert recorder.sent.get(view.model_id, []) == []
    show(chart, go.Figure(go.Bar(x=["a"], y=[4])))
    assert chart.widget.children[0] is not view
    assert opened_figure(recorder, chart.widget.children[0].model_id)["data"][0]["y"] == [4]
    assert chart.renders == 2


def test_a_click_from_the_browser_reaches_the_handler(recorder: Recorder) -> None:
    chart = figure_widget()
    seen: list[tuple[int, list[int], list[Any]]] = []
    show(chart, go.Figure([go.Bar(x=["a", "b"], y=[1, 2]), go.Bar(x=["a", "b"], y=[3, 4])]),
         on_click=lambda i, p: seen.append((i, list(p.point_inds), list(p.ys))))  # fmt: skip
    view = chart.widget.children[0]
    view._handle_custom_msg({"event": "click", "points": [{"trace": 1, "point": 1}]}, [])
    click(chart, 0, 0)
    view._handle_custom_msg({"event": "click", "points": [{"trace": 9, "point": 0}]}, [])  # no such trace
    assert seen == [(1, [1], [4]), (0, [0], [1])]


def test_multichoice_ticks_searches_and_selects_all() -> None:
    box = MultiChoice("Error kind", [(f"kind {i}", f"k{i}") for i in range(10)])
    assert len(box.checkboxes) == 10
    assert box.value == ()
    box.checkboxes[3].value = True
    box.checkboxes[1].value = True
    assert box.value == ("k1", "k3")
    box.search.value = "kind 7"
    assert [c.layout.display for c in box.checkboxes].count(None) == 1
    box.all_button.click()
    assert box.value == ("k1", "k3", "k7")
    box.none_button.click()
    assert box.value == ()
    assert not any(c.value for c in box.checkboxes)
    box.options = [("kind 7", "k7"), ("new", "k99")]
    assert [c.description for c in box.checkboxes] == ["kind 7", "new"]
    assert isinstance(box, ipywidgets.VBox)


def test_table_search_columns_and_percentages(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "postback_time": [datetime(2026, 1, 1, 15, tzinfo=UTC), datetime(2026, 1, 2, 15, tzinfo=UTC)],
            "error_message": ["Invalid click id", "timeout"],
            "campaign_name": ["Spring", "Autumn"],
            "campaign_id": ["c-1", "c-2"],
            "error_rate": [0.9592, 0.05485],
        }
    )
    table = Table("t", sort="postback_time", timezone="America/New_York", export_dir=tmp_path)
    table.set_frame(frame)
    html = table.html.value
    assert "95.9%" in html
    assert "5.5%" in html
    assert "0.9592" not in html
    assert "(America/New_York)" in html
    assert "2026-01-01 10:00:00" in html
    assert html.index("Spring") < html.index("c-1")  # the id beside its name
    table.search.value = "CLICK"
    assert table.frame.get_column("campaign_id").to_list() == ["c-1"]
    table.search.value = ""
    table.chooser.value = ("postback_time", "campaign_name")
    assert table.frame.columns == ["postback_time", "campaign_name"]
    assert table.frame.height == 2
