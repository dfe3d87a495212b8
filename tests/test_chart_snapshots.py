"""Snapshots of the chart specs: every public figure builder of :mod:`cfanalytics.charts`, on the sample
account and on small hand-made frames, gives the same figure as the one recorded.

A figure is compared as a stable JSON text of its spec: every trace (type, name, x/y values, hover, colours …)
and the layout (titles, axes, annotations, shapes), floats rounded to 6 significant digits, times as ISO text.
The shared look (the layout template :func:`~cfanalytics.charts.apply_theme` sets) is recorded once, in
``theme.json``, not in every figure. The files under ``tests/data/golden/charts/`` were written from the code
before a change; after an intended change of a chart, rewrite them with
``CFANALYTICS_UPDATE_GOLDEN=1 pytest tests/test_chart_snapshots.py`` and review the diff.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

pytest.importorskip("plotly")

from cfanalytics import charts
from cfanalytics.diagnose import attribution_by_day, event_volume
from cfanalytics.diagnose.frames import events
from cfanalytics.filters import LogFilter
from cfanalytics.report import ReportFrames, report_figures
from tests.test_charts import activity_frame, incidents_frame, rates_frame

SNAPSHOTS = Path(__file__).resolve().parent / "data" / "golden" / "charts"
UPDATE = os.environ.get("CFANALYTICS_UPDATE_GOLDEN") == "1"
#: The sample account's range the report snapshots use (as in tests/test_golden.py).
PERIOD = (date(2026, 11, 18), date(2026, 11, 19))
#: Keys that say nothing about the chart: trace ids, and the template (checked once, in ``theme.json``).
VOLATILE = frozenset({"uid", "template"})


def _stable(value: Any) -> Any:
    """``value`` as plain JSON: floats to 6 significant digits, times as ISO text, keys sorted, no volatile keys."""
    if isinstance(value, Mapping):
        return {str(k): _stable(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _stable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"unexpected value in a figure spec: {value!r}")


def _dump(value: Any, indent: str = "") -> str:
    """Indented JSON with one line per list of plain values (short diffs, small files)."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + _dump(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def spec_text(fig: Any) -> str:
    """The stable JSON text of a figure's spec (``fig.to_plotly_json()`` without the volatile keys)."""
    return _dump(_stable(fig.to_plotly_json())) + "\n"


def check(name: str, fig: Any) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = spec_text(fig)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: write it with CFANALYTICS_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name}: the figure differs from its snapshot"


# --------------------------------------------------------------------------- the spec itself
def test_the_spec_keeps_the_chart_and_drops_what_is_volatile():
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[date(2026, 11, 20)], y=[1 / 3], name="n", uid="abc"))
    doc = json.loads(spec_text(charts.apply_theme(fig)))
    assert doc["data"] == [{"name": "n", "type": "bar", "x": ["2026-11-20"], "y": [0.333333]}]
    assert doc["layout"] == {}


def test_the_shared_look():
    import plotly.graph_objects as go

    check("theme", charts.apply_theme(go.Figure()).layout.template)


# --------------------------------------------------------------------------- the sample account
@pytest.fixture(scope="module")
def report_charts(sample_store) -> dict[str, Any]:
    """The report's figures of the sample account's :data:`PERIOD`."""
    where = LogFilter(start=PERIOD[0], end=PERIOD[1], timezone=sample_store.timezone)
    return report_figures(ReportFrames.load(sample_store, where), grace_minutes=30)


@pytest.mark.parametrize(
    "name",
    [
        "error_rate_traffic_source",
        "error_rate_integration",
        "errors_by_kind",
        "status_classes",
        "top_signatures",
        "gap_classes",
        "lags",
        "funnel",
    ],
)
def test_report_charts_of_the_sample_account(report_charts, name):
    check(f"sample_{name}", report_charts[name])


def test_volume_and_attribution_of_the_sample_account(sample_store):
    zone = sample_store.timezone
    where = LogFilter(start=PERIOD[0], end=PERIOD[1], timezone=zone)
    volume = event_volume(events(sample_store, where).collect(), zone)
    check("sample_volume_over_time", charts.volume_over_time(volume, timezone=zone))
    check("sample_attribution_difference", charts.attribution_difference(attribution_by_day(sample_store, where)))


# --------------------------------------------------------------------------- small hand-made frames
# (the error-rate frames are those of tests/test_charts.py: markup and credentials in the data included)
HAND_MADE: dict[str, Callable[[], Any]] = {
    "error_rate_marked": lambda: charts.error_rate_over_time(
        rates_frame(), changes=activity_frame(), incidents=incidents_frame(), timezone="America/New_York"
    ),
    "error_rate_all_postbacks_daily": lambda: charts.error_rate_over_time(
        pl.DataFrame(
            {
                "day": [date(2026, 3, 9), date(2026, 3, 10)],
                "postbacks": [50, 2],
                "errors": [5, 2],
                "error_rate": [0.1, 1.0],
            }
        ),
        by="",
    ),
    "errors_by_kind": lambda: charts.errors_by_kind(
        pl.DataFrame({"error_kind": ["auth", None, "rate_limit", "dns"], "errors": [3, 2, 7, 0]})
    ),
    "errors_by_status_class": lambda: charts.errors_by_status_class(
        pl.DataFrame({"status_class": ["5xx", None, "2xx", "4xx"], "postbacks": [4, 1, 20, 5], "errors": [4, 1, 0, 5]})
    ),
    "errors_by_status_class_errors_only": lambda: charts.errors_by_status_class(
        pl.DataFrame({"status_class": ["4xx", "5xx"], "errors": [5, 1]})
    ),
    "top_signatures": lambda: charts.top_signatures(
        pl.DataFrame(
            {
                "signature": [
                    '{"error":{"message":"Error validating access token: Session has expired","code":<n>}}',
                    "Connection timed out after <n> ms",
                    None,
                ],
                "errors": [9, 4, 1],
                "postbacks": [9, 6, 1],
                "example": ['{"error":{"message":"Error validating access token"}}', "timed out after 3000 ms", None],
            }
        ),
        top=2,
    ),
    "gap_classes": lambda: charts.gap_classes(
        pl.DataFrame(
            {
                "traffic_source_id": ["t1", "t2", "t3"],
                "traffic_source_name": ["Zeropark", "Zeropark", None],
                "posted_ok": [5, 1, 0],
                "posted_failed": [2, 0, 3],
                "not_posted": [1, 4, 0],
                "pending": [0, 0, 1],
            }
        )
    ),
    "lag_histograms": lambda: charts.lag_histograms(
        {
            "visit_to_conversion": pl.DataFrame({"minutes": [-2.0, 1.0, 2.0, 2.5, 30.0, 31.0]}),
            "conversion_to_postback": pl.DataFrame({"seconds": [1.0, 4.0, 10.0, 200.0, 1000.0]}),
        }
    ),
    "lag_histograms_one_side": lambda: charts.lag_histograms(
        {"visit_to_conversion": pl.DataFrame({"minutes": [5.0, 5.0]})}
    ),
    "funnel_by_campaign": lambda: charts.funnel_chart(
        pl.DataFrame(
            {
                "campaign_id": ["c1", "c2", "c1", "c3"],
                "campaign_name": ["US | Keto", "DE | Keto", "US | Keto", None],
                "traffic_source_id": ["t1", "t2", "t1", None],
                "visits": [100, 80, 20, 5],
                "clicks": [40, 10, 5, 1],
                "conversions": [8, 2, 1, 0],
                "postbacks_sent": [8, 0, 1, 0],
                "postbacks_accepted": [6, 0, 1, 0],
            }
        ),
        top=2,
    ),
    "funnel_totals": lambda: charts.funnel_chart(
        pl.DataFrame({"visits": [100, 50], "clicks": [40, 20], "conversions": [8, 3]}), top=0
    ),
    "volume_over_time_daily": lambda: charts.volume_over_time(
        pl.DataFrame(
            {
                "bucket": [date(2026, 11, 20), date(2026, 11, 20), date(2026, 11, 21)],
                "event_type": ["visit", "conversion", "visit"],
                "count": [120, 4, 90],
            }
        )
    ),
    "attribution_difference": lambda: charts.attribution_difference(
        pl.DataFrame(
            {
                "day": [date(2026, 11, 21), date(2026, 11, 20)],
                "by_conversion_date": [10, 7],
                "by_visit_date": [12, 5],
            }
        ),
        timezone="Europe/Berlin",
    ),
    "empty": lambda: charts.errors_by_kind(pl.DataFrame(), title="Nothing <here>"),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_charts_of_hand_made_frames(name):
    check(name, HAND_MADE[name]())
