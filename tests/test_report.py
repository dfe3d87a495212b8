"""The report's figures: computed once from loaded frames, equal to the one-line queries' figures."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

pytest.importorskip("plotly")

import cfanalytics as cf
from cfanalytics import charts
from cfanalytics.report import FIGURES, ReportFrames, report_figures


def _by_queries(store: cf.LogStore, where: cf.LogFilter) -> dict[str, object]:
    """The report's charts built the long way: one store query per chart (as a notebook would)."""
    d = cf.diagnose
    timezone = where.timezone or store.timezone or "UTC"
    found = d.incidents(store, where)
    changes = where.apply(store.scan("activity"), "activity", timezone=timezone).collect().sort("changed_at")
    errors_only = where.replace(errors_only=True)

    def error_rate_figure(scope: str, by: str) -> object:
        rates = d.postback_errors(store, by=["hour", by], where=where)
        return charts.error_rate_over_time(
            rates.filter(pl.col(by).is_not_null()) if scope == "integration" else rates,
            by=by,
            changes=changes,
            incidents=found.filter(pl.col("scope") == scope),
            timezone=timezone,
            title=FIGURES[f"error_rate_{scope}"],
        )

    return {
        "error_rate_traffic_source": error_rate_figure("traffic_source", "traffic_source_id"),
        "error_rate_integration": error_rate_figure("integration", "integration_id"),
        "errors_by_kind": charts.errors_by_kind(
            d.postback_errors(store, by="error_kind", where=errors_only).select("error_kind", "errors"),
            title=FIGURES["errors_by_kind"],
        ),
        "status_classes": charts.errors_by_status_class(
            d.postback_errors(store, by="status_class", where=where), title=FIGURES["status_classes"]
        ),
        "top_signatures": charts.top_signatures(
            d.postback_errors(store, by="signature", where=errors_only), top=10, title=FIGURES["top_signatures"]
        ),
        "gap_classes": charts.gap_classes(
            d.gaps_by(store, "traffic_source_id", where, grace_minutes=30),
            by="traffic_source_id",
            title=FIGURES["gap_classes"],
        ),
        "lags": charts.lag_histograms(d.lags(store, where), title=FIGURES["lags"]),
        "funnel": charts.funnel_chart(
            d.funnel(store, "traffic_source_id", where), by="traffic_source_id", title=FIGURES["funnel"]
        ),
    }


def test_report_figures_equal_the_figures_of_one_query_each(sample_store):
    where = cf.LogFilter(start=date(2026, 11, 17), end=date(2026, 11, 19), timezone="Europe/Paris")
    frames = ReportFrames.load(sample_store, where)
    figures = report_figures(frames, grace_minutes=30)
    assert list(figures) == list(FIGURES)
    expected = _by_queries(sample_store, where)
    for name, figure in figures.items():
        assert figure.to_dict() == expected[name].to_dict(), name
    lines = [t for t in figures["error_rate_traffic_source"].data if t.name != "Changes"]
    assert lines
    assert len(figures["error_rate_traffic_source"].layout.shapes) > 0  # incidents shaded
    assert frames.incidents.equals(cf.diagnose.incidents(sample_store, where))


def test_summary_says_no_data_when_the_previous_period_is_empty():
    from cfanalytics.report import summary_html

    metrics = {"postbacks": 10, "errors": 2, "error_rate": 0.2, "conversions": 4}
    empty = {"postbacks": 0, "errors": 0, "error_rate": None, "conversions": 0}
    period = {
        "period": {"from": "2026-11-18", "to": "2026-11-19", "timezone": "America/New_York"},
        "previous_period": {"from": "2026-11-16", "to": "2026-11-17"},
        "current": metrics,
        "previous": empty,
    }
    html = summary_html(period)
    assert "<th scope='row'>Postbacks sent</th><td>10</td><td>no data</td><td>no data</td>" in html
    assert "+10" not in html
    compared = summary_html({**period, "previous": {**metrics, "postbacks": 4}})
    assert "<th scope='row'>Postbacks sent</th><td>10</td><td>4</td><td>+6</td>" in compared


def test_summary_lists_each_incidents_suspects_and_fix_escaped_and_redacted():
    from datetime import UTC, datetime, timedelta

    from cfanalytics.diagnose.incidents import find_incidents
    from cfanalytics.diagnose.names import Names
    from cfanalytics.report import summary_html

    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    history = pl.DataFrame(
        [
            {
                "postback_id": f"p{h}-{i}",
                "postback_time": t0 + timedelta(hours=h, minutes=2 * i + 1),
                "is_error": i < (20 if h in (24, 25) else 1),
                "error_kind": "unreplaced_macro" if i < (20 if h in (24, 25) else 1) else None,
                "traffic_source_id": "t1",
                "integration_id": None,
                "campaign_id": "c1",
            }
            for h in range(30)
            for i in range(20)
        ],
        schema_overrides={"integration_id": pl.String},
    )
    token = "EAAG" + "x" * 40
    edits = [  # the URL broken 30 min before the first failure, then mended at 25:50
        (
            t0 + timedelta(hours=23, minutes=31),
            "ana@x",
            '{"postback_url": "https://a/?cid={click_id}"}',
            f'{{"postback_url": "https://a/?cid={{clickid}}&access_token={token}"}}',
        ),
        (
            t0 + timedelta(hours=25, minutes=50),
            "ben@x",
            '{"postback_url": "https://a/?cid={clickid}"}',
            '{"postback_url": "https://a/?cid={click_id}"}',
        ),
    ]
    activity = pl.DataFrame(
        {
            "changed_at": [e[0] for e in edits],
            "author": [e[1] for e in edits],
            "entity_type": ["traffic_source"] * 2,
            "entity_id": ["t1"] * 2,
            "entity_name": ["<b>Src</b>"] * 2,
            "action": ["updated"] * 2,
            "old_value": [e[2] for e in edits],
            "new_value": [e[3] for e in edits],
        }
    )
    found = find_incidents(history, activity, Names.empty(), pl.DataFrame())
    assert found.height == 1
    period = {
        "period": {"from": "2026-11-21", "to": "2026-11-21", "timezone": "UTC"},
        "previous_period": {"from": "2026-11-20", "to": "2026-11-20"},
        "current": {"postbacks": 1},
        "previous": {"postbacks": 1},
    }
    html = summary_html(period, found)
    assert "suspected change: 2026-11-20 23:31 UTC ana@x updated traffic source &lt;b&gt;Src&lt;/b&gt;" in html
    assert "resolved by: 2026-11-21 01:50 UTC ben@x updated traffic source &lt;b&gt;Src&lt;/b&gt;" in html
    assert "<li>30 min before: 2026-11-20 23:31 UTC ana@x" in html  # the first failure is at 00:01
    # 1 of 20 failing in 20:00–23:00, then 1 + 20 + 20 of 60 in 23:00–02:00
    assert "after it: error rate 5% → 68%" in html
    assert "tracking change, <b>explains it</b>" in html
    assert token not in html
    assert "<b>Src</b>" not in html
