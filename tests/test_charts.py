"""Figure builders: numbers in the traces, names, escaping/redaction, time zones, empty input."""

from __future__ import annotations

import html
import itertools
import os
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

pytest.importorskip("plotly")

from cfanalytics import charts
from cfanalytics.charts import NO_DATA, safe_text

TOKEN = "EAAGm0PX4ZCpsBAxyz1234567890abcdef"
API_KEY = "k3y5ecret99"
XSS = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def assert_clean(fig) -> None:
    """No markup or credential from the data reaches the figure unescaped."""
    text = fig.to_json()
    assert "&quot;" not in text  # shown literally by Plotly
    for raw in ("<script", "\\u003cscript", "<img", "\\u003cimg", TOKEN, API_KEY):
        assert raw not in text, raw


def no_data(fig) -> bool:
    return any(a.text == NO_DATA for a in fig.layout.annotations)


# --------------------------------------------------------------------------- fixtures
def rates_frame() -> pl.DataFrame:
    """postback_errors(store, by=["hour", "traffic_source_id"]) shape, hours in UTC."""
    return pl.DataFrame(
        {
            "hour": [utc(2026, 3, 10, 14), utc(2026, 3, 10, 15), utc(2026, 3, 10, 14), utc(2026, 3, 10, 15)],
            "traffic_source_id": ["ts_meta", "ts_meta", "ts_prop", "ts_prop"],
            "traffic_source_name": ["Meta Ads", "Meta Ads", None, None],
            "postbacks": [40, 8, 10, 3],
            "errors": [2, 8, 5, 0],
        },
        schema_overrides={"postbacks": pl.UInt32},
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))


def activity_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "changed_at": [utc(2026, 3, 10, 14, 30), utc(2026, 3, 10, 13, 5), None],
            "author": ["ana@acme.test", XSS, "ben@acme.test"],
            "entity_type": ["traffic_source", "campaign", "offer"],
            "entity_id": ["ts_meta", "c1", "o1"],
            "entity_name": ["Meta Ads", IMG, "Keto"],
            "action": ["updated", "updated", "deleted"],
            "old_value": [
                '{"postback_url": "https://ts.example/pb?cid={clickid}&api_key=' + API_KEY + '"}',
                '{"name": "old"}',
                None,
            ],
            "new_value": [
                '{"postback_url": "https://ts.example/pb?cid={clickid}&access_token=' + TOKEN + '"}',
                '{"note": "' + XSS + '", "padding": "' + "x" * 300 + '"}',
                None,
            ],
        }
    )


def incidents_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "incident_id": ["inc-1", "inc-2"],
            "scope": ["traffic_source", "integration"],
            "id": ["ts_meta", "int_9"],
            "name": ["Meta Ads", None],
            "start": [utc(2026, 3, 10, 15, 4), utc(2026, 3, 10, 14, 10)],
            "end": [utc(2026, 3, 10, 15, 50), utc(2026, 3, 10, 14, 40)],
            "error_rate_before": [0.05, 0.01],
            "error_rate_during": [1.0, 0.5],
            "postbacks": [8, 10],
            "errors": [8, 5],
            "top_error_kind": ["unreplaced_macro", "auth"],
            "suspected_change": [
                {
                    "changed_at": utc(2026, 3, 10, 14, 30),
                    "author": "ana@acme.test",
                    "entity_type": "traffic_source",
                    "entity_id": "ts_meta",
                    "entity_name": "Meta Ads",
                    "action": "updated",
                },
                None,
            ],
        }
    )


# --------------------------------------------------------------------------- safe_text
def test_safe_text_redacts_then_escapes_and_shortens():
    assert safe_text(XSS) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert safe_text(f"https://x.example/?access_token={TOKEN}&api_key={API_KEY}") == (
        "https://x.example/?access_token=***&amp;api_key=***"
    )
    # quotes as numeric entities: Plotly's text renderer decodes those, not &quot;
    assert safe_text("""it's "quoted" & more""") == "it&#39;s &#34;quoted&#34; &amp; more"
    assert safe_text(None) == ""
    assert safe_text(42) == "42"
    assert safe_text("line one\nline\ttwo") == "line one line two"
    short = safe_text("<" * 50, limit=10)
    assert short == "&lt;" * 9 + "…"  # never a half entity
    # a token cut by the limit is redacted before it is cut
    assert TOKEN[:12] not in safe_text(f"failed: {TOKEN}", limit=20)


# --------------------------------------------------------------------------- error rate over time
def rate_lines(fig) -> list:
    """The error-rate lines (one per group), without the change markers and the volume bars."""
    return [t for t in fig.data if t.type == "scatter" and t.name != "Changes"]


def bars(fig, name: str) -> list:
    return [t for t in fig.data if t.type == "bar" and t.name == name]


def label_texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_error_rate_lines_one_per_group_with_rates_in_percent():
    rates = rates_frame()
    fig = charts.error_rate_over_time(rates, timezone=NY)
    lines = rate_lines(fig)
    assert [t.name for t in lines] == ["Meta Ads", "ts_prop"]  # by errors, name else id
    meta, prop = lines
    assert list(meta.y) == pytest.approx([2 / 40 * 100, 8 / 8 * 100])
    # 0 of 3 is too few postbacks for a rate: left out of the line, still in the bars
    assert list(prop.y) == [pytest.approx(5 / 10 * 100), None]
    assert [row[1:3] for row in meta.customdata] == [[40, 2], [8, 8]]
    assert meta.customdata[0][0] == "ts_meta"  # id on hover
    failed, accepted = bars(fig, charts.FAILED_NAME), bars(fig, charts.ACCEPTED_NAME)
    assert [list(t.y) for t in failed] == [[2, 8], [5, 0]]
    assert [[f + a for f, a in zip(fb.y, ab.y, strict=True)] for fb, ab in zip(failed, accepted, strict=True)] == [
        [40, 8],
        [10, 3],
    ]
    # each group has its own row: its own y axes, one above the other
    rate_axes = [t.yaxis for t in lines]
    assert len(set(rate_axes)) == 2
    domains = [fig.layout[charts._layout_key(a)].domain for a in rate_axes]
    assert domains[0][0] > domains[1][1]  # most errors on top, no overlap
    assert "postbacks" in meta.hovertemplate
    assert fig.layout.yaxis.ticksuffix == "%"
    assert fig.layout.title.text
    # the row title says what the row is and how big it is
    assert any(t.startswith("<b>Meta Ads</b>") and "48 postbacks · 10 failed" in t for t in label_texts(fig))


def test_a_quiet_hour_with_one_failure_is_not_drawn_as_a_spike():
    """1 failed of 1 in a quiet hour: no 100 % point on the line, a one-postback bar on the volume scale."""
    hours = [utc(2026, 3, 10, h) for h in range(6)]
    rates = pl.DataFrame(
        {
            "hour": hours,
            "traffic_source_id": ["ts_meta"] * 6,
            "traffic_source_name": ["Meta Ads"] * 6,
            "postbacks": [40, 38, 1, 42, 36, 40],
            "errors": [1, 0, 1, 40, 35, 0],
        }
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))
    fig = charts.error_rate_over_time(rates, timezone=NY)
    (line,) = rate_lines(fig)
    assert line.y[2] is None  # the quiet hour
    assert line.connectgaps is False  # and no line drawn across it either
    assert max(v for v in line.y if v is not None) == pytest.approx(35 / 36 * 100)  # the real incident
    (failed,) = bars(fig, charts.FAILED_NAME)
    assert failed.y[2] == 1
    count_axis = fig.layout[charts._layout_key(failed.yaxis)]
    assert count_axis.range[1] >= 42  # one scale for every bar: the quiet hour's bar is 1/42 of the tallest
    assert "1 postbacks" not in " ".join(label_texts(fig))
    # the rule is stated on the chart, and can be changed
    assert any("at least 5 postbacks" in t for t in label_texts(fig))
    loose = charts.error_rate_over_time(rates, timezone=NY, min_postbacks=1)
    assert rate_lines(loose)[0].y[2] == pytest.approx(100.0)


def test_error_rate_times_are_shown_in_the_display_zone():
    rates = rates_frame()
    ny = charts.error_rate_over_time(rates, timezone=NY)
    # 2026-03-10 is after the spring-forward: New York is UTC-4
    assert list(ny.data[0].x) == [datetime(2026, 3, 10, 10), datetime(2026, 3, 10, 11)]
    assert ny.layout.xaxis.title.text == f"Hour ({NY})"
    assert [row[3] for row in ny.data[0].customdata] == ["Tue Mar 10 10:00 EDT", "Tue Mar 10 11:00 EDT"]
    default = charts.error_rate_over_time(rates)
    assert list(default.data[0].x) == [datetime(2026, 3, 10, 14), datetime(2026, 3, 10, 15)]
    assert default.layout.xaxis.title.text == "Hour (UTC)"
    assert default.data[0].customdata[0][3] == "Tue Mar 10 14:00 UTC"
    # the diagnostics return local hours: converting them again is a no-op
    local = rates.with_columns(pl.col("hour").dt.convert_time_zone(NY))
    assert list(charts.error_rate_over_time(local, timezone=NY).data[0].x) == list(ny.data[0].x)
    # a winter hour gets the winter abbreviation
    winter = rates.with_columns(pl.col("hour").dt.offset_by("-60d"))
    assert charts.error_rate_over_time(winter, timezone=NY).data[0].customdata[0][3].endswith("EST")


def test_the_x_axis_ends_where_the_data_ends():
    rates = rates_frame()
    late = incidents_frame().with_columns(
        pl.lit(utc(2026, 3, 11, 9)).alias("start"), pl.lit(utc(2026, 3, 12, 9)).alias("end")
    )
    changes = activity_frame().with_columns(pl.lit(utc(2026, 3, 14, 0)).alias("changed_at"))
    fig = charts.error_rate_over_time(rates, changes=changes, incidents=late, timezone=NY)
    first, last = datetime(2026, 3, 10, 10), datetime(2026, 3, 10, 11)  # local hours of the data
    assert list(fig.layout.xaxis.range) == [first - timedelta(minutes=30), last + timedelta(minutes=30)]
    # what lies outside is not labelled on the chart (it would be off the axis)
    assert not any("Incident" in t for t in label_texts(fig))
    daily = rates.with_columns(pl.col("hour").dt.date().alias("day")).drop("hour")
    fig = charts.error_rate_over_time(daily, timezone=NY)
    assert fig.layout.xaxis.range[1] == datetime(2026, 3, 10, 12)  # the last day, to its end
    assert fig.layout.xaxis.title.text == f"Day ({NY})"


def test_error_rate_marks_changes_and_incidents_with_text():
    fig = charts.error_rate_over_time(rates_frame(), changes=activity_frame(), incidents=incidents_frame(), timezone=NY)
    (marks,) = [t for t in fig.data if t.name == "Changes"]
    assert len(marks.x) == 2  # the row without a time cannot be placed
    assert list(marks.x) == [datetime(2026, 3, 10, 9, 5), datetime(2026, 3, 10, 10, 30)]
    texts = label_texts(fig)
    # the traffic source's own change is labelled in its row, saying what changed (also in a PNG: not hover)
    (own,) = [a for a in fig.layout.annotations if a.text == "ana: postback url changed"]
    meta_axis = rate_lines(fig)[0].yaxis
    meta_top = fig.layout[charts._layout_key(meta_axis)].domain[1]
    assert own.x == datetime(2026, 3, 10, 10, 30)
    assert own.y == pytest.approx(meta_top)  # pinned to the top of the Meta Ads row, text above it
    assert own.ay < 0
    # the campaign change of 09:05 is before the first hour shown: kept for hover, not labelled
    placed = sorted(a.text for a in fig.layout.annotations if a.showarrow)
    assert placed == ["Incident · unreplaced_macro · 8/8 failed", "ana: postback url changed", "int_9 · auth"]
    # two bands: the Meta Ads incident in its row, the integration's (no row here) across the chart
    assert len(fig.layout.shapes) == 2
    assert sorted((s.x0, s.x1) for s in fig.layout.shapes) == [
        (datetime(2026, 3, 10, 10, 10), datetime(2026, 3, 10, 10, 40)),
        (datetime(2026, 3, 10, 11, 4), datetime(2026, 3, 10, 11, 50)),
    ]
    assert {s.yref for s in fig.layout.shapes} == {f"{meta_axis} domain", "paper"}
    assert "Incident · unreplaced_macro · 8/8 failed" in texts
    assert "int_9 · auth" in texts
    hovers = " ".join(a.hovertext for a in fig.layout.annotations if a.hovertext)
    assert "Suspected change" in hovers
    assert "No change found" in hovers
    assert "EDT" in hovers  # incident times say their zone
    # hover of the change: author, entity, action, old → new, time with zone; escaped, redacted, shortened
    first, second = marks.customdata
    assert first[0] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert first[1] == "campaign &lt;img src=x onerror=alert(1)&gt;"
    assert len(first[4]) < 160
    assert second[:3] == ["ana@acme.test", "traffic source Meta Ads", "updated"]
    assert second[5] == "Tue Mar 10 10:30 EDT"
    assert "api_key=***" in second[3]
    assert "access_token=***" in second[4]
    assert_clean(fig)


@pytest.mark.parametrize(
    "build",
    [
        lambda: charts.error_rate_over_time(
            rates_frame(), changes=activity_frame(), incidents=incidents_frame(), timezone=NY
        ),
        lambda: charts.errors_by_kind(pl.DataFrame({"error_kind": ["auth", "timeout"], "errors": [5, 2]})),
        lambda: charts.errors_by_status_class(
            pl.DataFrame({"status_class": ["4xx", "2xx"], "postbacks": [5, 20], "errors": [5, 0]})
        ),
        lambda: charts.top_signatures(pl.DataFrame({"signature": [f"Invalid {XSS}", None], "errors": [4, 1]})),
        lambda: charts.errors_by_kind(pl.DataFrame({"error_kind": ["auth"], "errors": [0]})),
    ],
)
def test_charts_built_without_validation_validate_and_read_the_same(build):
    import plotly.graph_objects as go

    fig = build()
    validated = go.Figure(fig.to_plotly_json())  # raises on any property Plotly does not know
    assert validated.to_plotly_json() == fig.to_plotly_json()
    themed = charts.apply_theme(go.Figure())
    assert fig.layout.template.to_plotly_json() == themed.layout.template.to_plotly_json()


def test_labels_close_in_time_are_stacked_not_overlapping():
    rates = rates_frame()
    start = utc(2026, 3, 10, 14)
    changes = pl.DataFrame(
        {
            "changed_at": [start + timedelta(minutes=m) for m in (5, 10, 15)],
            "author": ["ana@acme.test", "ben@acme.test", "mia@acme.test"],
            "entity_type": ["traffic_source"] * 3,
            "entity_id": ["ts_meta"] * 3,
            "entity_name": ["Meta Ads"] * 3,
            "action": ["updated"] * 3,
            "old_value": ['{"default_cost": 0.02}', '{"daily_cap": 10}', '{"status": "on"}'],
            "new_value": ['{"default_cost": 0.025}', '{"daily_cap": 20}', '{"status": "off"}'],
        }
    )
    fig = charts.error_rate_over_time(rates, changes=changes, timezone=NY)
    placed = [a for a in fig.layout.annotations if a.showarrow]
    assert sorted(a.text for a in placed) == [
        "ana: default cost 0.02→0.025",
        "ben: daily cap 10→20",
        "mia: status on→off",
    ]
    assert len({a.ay for a in placed}) == 3  # three lines, one label each
    # spread out, they share one line; on a narrow plot the same labels need more lines
    spread = changes.with_columns(pl.Series("changed_at", [start + timedelta(minutes=m) for m in (0, 30, 60)]))
    wide = charts.error_rate_over_time(rates, changes=spread, timezone=NY)
    narrow = charts.error_rate_over_time(rates, changes=spread, timezone=NY, plot_width=300)
    assert len({a.ay for a in wide.layout.annotations if a.showarrow}) == 1
    assert len({a.ay for a in narrow.layout.annotations if a.showarrow}) > 1
    # the placement itself: labels of width 3 on a 10-wide axis, 3 lines
    labels = [(0.0, 3.0), (0.5, 3.0), (1.0, 3.0), (1.5, 3.0), (9.0, 3.0)]
    spots = charts._place(labels, 3, 10.0)
    lines: dict[int, list[tuple[float, float]]] = {}
    for (x, width), spot in zip(labels, spots, strict=True):
        if spot is not None:
            level, side = spot
            lo, hi = (x, x + width) if side == "left" else (x - width, x)
            assert lo >= 0  # inside the axis
            assert hi <= 10
            lines.setdefault(level, []).append((lo, hi))
    for taken in lines.values():
        taken.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(taken))  # no overlap on a line
    assert spots.count(None) == 1  # four labels within 1.5 of each other: one more than the lines
    assert spots[-1] == (0, "right")  # at the right end, the label ends at its mark


def test_changes_of_other_entities_go_to_a_lane_above_the_rows():
    rates = rates_frame()
    changes = pl.DataFrame(
        {
            "changed_at": [utc(2026, 3, 10, 14, 10), utc(2026, 3, 10, 15, 20)],
            "author": ["mia@acme.test", "ops-bot@acme.test"],
            "entity_type": ["offer", "lander"],
            "entity_id": ["o1", "l1"],
            "entity_name": ["Keto", "Spin Wheel"],
            "action": ["updated", "created"],
            "old_value": ['{"payout": 24.0}', None],
            "new_value": ['{"payout": 26.4}', '{"name": "Spin Wheel"}'],
        }
    )
    fig = charts.error_rate_over_time(rates, changes=changes, timezone=NY)
    placed = {a.text: a for a in fig.layout.annotations if a.showarrow}
    assert set(placed) == {"payout 24→26.4", "lander created"}
    top_row = fig.layout[charts._layout_key(rate_lines(fig)[0].yaxis)].domain[1]
    assert all(a.y > top_row for a in placed.values())  # above every row
    assert "Other<br>changes" in label_texts(fig)
    (marks,) = [t for t in fig.data if t.name == "Changes"]
    assert sorted(marks.y) == [placed["payout 24→26.4"].y] * 2


def test_a_campaign_change_goes_to_its_traffic_source_row_when_the_caller_says_which():
    rates = rates_frame()
    budget = pl.DataFrame(
        {
            "changed_at": [utc(2026, 3, 10, 14, 20)],
            "author": ["ben@acme.test"],
            "entity_type": ["campaign"],
            "entity_id": ["c7"],
            "entity_name": ["US | Meta | Keto"],
            "action": ["updated"],
            "old_value": ['{"daily_budget": 200}'],
            "new_value": ['{"daily_budget": 800}'],
        }
    )
    alone = charts.error_rate_over_time(rates, changes=budget, timezone=NY)
    linked = charts.error_rate_over_time(
        rates, changes=budget.with_columns(pl.lit("ts_meta").alias("traffic_source_id")), timezone=NY
    )
    (lane,) = [a for a in alone.layout.annotations if a.showarrow]
    (row,) = [a for a in linked.layout.annotations if a.showarrow]
    assert lane.text == "daily budget 200→800"  # no link: the lane, named by its field
    assert row.text == "ben: daily budget 200→800"  # linked: in the Meta Ads row, with its author
    meta_top = linked.layout[charts._layout_key(rate_lines(linked)[0].yaxis)].domain[1]
    assert row.y == pytest.approx(meta_top)


def test_incident_labels_win_over_crowding_change_labels():
    rates = rates_frame()
    start = utc(2026, 3, 10, 14)
    changes = pl.DataFrame(
        {
            "changed_at": [start + timedelta(seconds=s) for s in range(0, 1200, 20)],
            "author": ["ana@acme.test"] * 60,
            "entity_type": ["offer"] * 60,
            "entity_id": ["o1"] * 60,
            "action": ["updated"] * 60,
            "old_value": ['{"payout": 1}'] * 60,
            "new_value": ['{"payout": 2}'] * 60,
        }
    )
    incidents = incidents_frame().with_columns(
        pl.lit("int_9").alias("id"),
        pl.lit("integration").alias("scope"),
        pl.Series("start", [utc(2026, 3, 10, 15, 4), utc(2026, 3, 10, 14, 10, 10)]),  # the second amid the changes
    )
    fig = charts.error_rate_over_time(rates, changes=changes, incidents=incidents, timezone=NY)
    texts = [a.text for a in fig.layout.annotations if a.showarrow]
    assert texts.count("int_9 · auth") == 1
    assert "Meta Ads · unreplaced_macro" in texts
    assert 0 < texts.count("payout 1→2") < 60  # crowded: some change labels left out ...
    assert any(f"{60 - texts.count('payout 1→2')} change labels left out" in t for t in label_texts(fig))  # ... said


def test_bars_are_one_bucket_wide_even_for_a_group_with_few_buckets():
    rates = pl.DataFrame(
        {
            "hour": [utc(2026, 3, 10, h) for h in (0, 1, 2, 3, 0, 3)],
            "traffic_source_id": ["a"] * 4 + ["b"] * 2,
            "postbacks": [9, 9, 9, 9, 9, 9],
            "errors": [0, 1, 0, 1, 2, 2],
        }
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))
    fig = charts.error_rate_over_time(rates)
    widths = {t.width for t in fig.data if t.type == "bar"}
    assert widths == {3_600_000 * 0.85}  # an hour, whatever the gaps (one width per trace, not per bar)


def test_one_colour_per_traffic_source_in_every_chart_and_period():
    rates = rates_frame()
    week1 = charts.error_rate_over_time(rates, timezone=NY)
    # another period, where a third source comes first and Meta Ads has fewer errors
    week2_rates = pl.concat(
        [
            rates.with_columns(pl.col("hour").dt.offset_by("7d")),
            rates.head(1).with_columns(
                pl.col("hour").dt.offset_by("7d"),
                pl.lit("ts_new").alias("traffic_source_id"),
                pl.lit("New Source").alias("traffic_source_name"),
                pl.lit(50, dtype=pl.Int64).alias("errors"),
            ),
        ]
    )
    week2 = charts.error_rate_over_time(week2_rates, timezone=NY)
    colours1 = {t.customdata[0][0]: t.line.color for t in rate_lines(week1)}
    colours2 = {t.customdata[0][0]: t.line.color for t in rate_lines(week2)}
    assert rate_lines(week2)[0].name == "New Source"  # the order changed ...
    assert colours2["ts_meta"] == colours1["ts_meta"] == charts.group_color("ts_meta")  # ... the colours did not
    assert colours2["ts_prop"] == colours1["ts_prop"]
    funnel = pl.DataFrame(
        {
            "traffic_source_id": ["ts_prop", "ts_meta"],
            "traffic_source_name": [None, "Meta Ads"],
            "visits": [10, 100],
            "clicks": [5, 40],
            "conversions": [1, 8],
        }
    )
    fig = charts.funnel_chart(funnel, by="traffic_source_id")
    assert {t.name: t.marker.color for t in fig.data} == {
        "Meta Ads": colours1["ts_meta"],
        "ts_prop": colours1["ts_prop"],
    }
    assert all(c in charts.GROUP_PALETTE for c in colours1.values())
    assert charts.group_color(None) == charts.MISSING_COLOR


def test_a_colour_always_means_a_traffic_source():
    funnel = pl.DataFrame(
        {
            "campaign_id": ["c1", "c2", "c3"],
            "campaign_name": ["US | Meta", "CA | Meta", "T1 | Propeller"],
            "traffic_source_id": ["ts_meta", "ts_meta", "ts_prop"],
            "visits": [30, 20, 10],
            "clicks": [3, 2, 1],
        }
    )
    fig = charts.funnel_chart(funnel)  # by campaign: each in its traffic source's colour
    assert [t.marker.color for t in fig.data] == [charts.group_color("ts_meta")] * 2 + [charts.group_color("ts_prop")]
    plain = charts.funnel_chart(funnel.drop("traffic_source_id"))
    assert {t.marker.color for t in plain.data} == {charts.NEUTRAL_COLOR}
    rates = rates_frame().rename({"traffic_source_id": "campaign_id", "traffic_source_name": "campaign_name"})
    by_campaign = charts.error_rate_over_time(rates, by="campaign_id")
    assert {t.line.color for t in rate_lines(by_campaign)} == {charts.NEUTRAL_COLOR}
    assert charts.NEUTRAL_COLOR not in charts.GROUP_PALETTE


def test_group_colour_does_not_depend_on_the_process():
    """Python's own str hash changes per process; the colour must not."""
    import subprocess
    import sys

    code = "from cfanalytics.charts import group_color; print(group_color('5f557203301850c5a38fd547'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert seen == {charts.group_color("5f557203301850c5a38fd547")}


def test_change_summary_names_the_field_and_never_a_secret():
    summary = charts.change_summary
    assert summary({"action": "updated", "old_value": '{"payout": 24.0}', "new_value": '{"payout": 26.4}'}) == (
        "payout 24→26.4"
    )
    assert summary({"action": "deleted", "old_value": '{"name": "x"}', "new_value": None}) == "deleted"
    secret = summary(
        {"action": "updated", "old_value": '{"access_token": "abc"}', "new_value": f'{{"access_token": "{TOKEN}"}}'}
    )
    assert secret == "access token changed"
    url = summary(
        {"action": "updated", "old_value": '{"postback_url": "https://a/?x=1"}', "new_value": '{"postback_url": "b"}'}
    )
    assert url == "postback url changed"
    assert summary({"action": "updated", "old_value": "not json", "new_value": "{}"}) == "updated"
    assert summary({"action": "updated", "old_value": '{"a": 1, "b": 2, "c": 3}', "new_value": "{}"}) == (
        "a, b … changed"
    )


def test_error_rate_names_colliding_and_missing_groups_stay_apart():
    rates = pl.DataFrame(
        {
            "hour": [utc(2026, 1, 1, 0)] * 3,
            "traffic_source_id": ["aaaaaaaa1111", "bbbbbbbb2222", None],
            "traffic_source_name": ["Same", "Same", None],
            "postbacks": [1, 2, 4],
            "errors": [1, 1, 1],
            "error_rate": [1.0, 0.5, 0.25],
        }
    )
    names = {t.name for t in rate_lines(charts.error_rate_over_time(rates))}
    assert names == {"Same (aaaaaaaa…)", "Same (bbbbbbbb…)", "(no traffic source)"}


def test_error_rate_without_group_column_draws_one_line():
    rates = pl.DataFrame(
        {"hour": [utc(2026, 1, 1, 0), utc(2026, 1, 1, 1)], "postbacks": [40, 50], "errors": [10, 0]}
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))
    fig = charts.error_rate_over_time(rates)
    assert [t.name for t in rate_lines(fig)] == ["All postbacks"]
    assert list(fig.data[0].y) == pytest.approx([25.0, 0.0])


def test_hostile_names_and_messages_are_escaped_everywhere():
    rates = rates_frame().with_columns(pl.lit(XSS).alias("traffic_source_name"))
    fig = charts.error_rate_over_time(rates, changes=activity_frame(), incidents=incidents_frame())
    assert fig.data[0].name.startswith("&lt;script&gt;")
    assert_clean(fig)
    sigs = pl.DataFrame(
        {
            "signature": [f"OAuthException {XSS} access_token={TOKEN}", f"{IMG} api_key={API_KEY}"],
            "errors": [3, 2],
            "example": [f"https://graph.example/?access_token={TOKEN}", IMG],
        }
    )
    assert_clean(charts.top_signatures(sigs))
    gaps = pl.DataFrame(
        {
            "traffic_source_id": [XSS],
            "traffic_source_name": [IMG],
            "posted_ok": [1],
            "posted_failed": [0],
            "not_posted": [0],
            "pending": [0],
            "conversions": [1],
        }
    )
    assert_clean(charts.gap_classes(gaps))
    kinds = pl.DataFrame({"error_kind": [XSS], "errors": [1]})
    assert_clean(charts.errors_by_kind(kinds))
    funnel = pl.DataFrame(
        {"campaign_id": [IMG], "campaign_name": [XSS], "visits": [3], "clicks": [2], "conversions": [1]}
    )
    assert_clean(charts.funnel_chart(funnel))
    events = pl.DataFrame({"bucket": [utc(2026, 1, 1)], "event_type": [XSS], "count": [1]})
    assert_clean(charts.volume_over_time(events))
    assert_clean(charts.errors_by_kind(kinds, title=XSS))


# --------------------------------------------------------------------------- bars
def test_errors_by_kind_sorted_largest_first_without_error_free_rows():
    kinds = pl.DataFrame({"error_kind": ["auth", None, "unreplaced_macro", "rate_limit"], "errors": [94, 0, 105, 53]})
    fig = charts.errors_by_kind(kinds)
    (bar,) = fig.data
    assert bar.orientation == "h"
    assert list(bar.y) == ["unreplaced_macro", "auth", "rate_limit"]
    assert list(bar.x) == [105, 94, 53]
    assert fig.layout.yaxis.autorange == "reversed"
    assert [c[0] for c in bar.customdata] == pytest.approx([105 / 252 * 100, 94 / 252 * 100, 53 / 252 * 100])
    assert fig.layout.xaxis.title.text == "Errors (postbacks)"


def test_errors_by_status_class_stacks_to_postbacks_in_class_order():
    classes = pl.DataFrame(
        {
            "status_class": ["4xx", None, "5xx", "2xx", "9xx"],
            "postbacks": [274, 52, 18, 1154, 1],
            "errors": [274, 49, 17, 0, 1],
        }
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))
    fig = charts.errors_by_status_class(classes)
    errors, accepted = fig.data
    assert list(errors.x) == ["2xx", "4xx", "5xx", "none", "9xx"]
    assert list(errors.y) == [0, 274, 17, 49, 1]
    assert [e + a for e, a in zip(errors.y, accepted.y, strict=True)] == [1154, 274, 18, 52, 1]
    assert fig.layout.barmode == "stack"
    assert fig.layout.yaxis.title.text == "Postbacks"


def test_top_signatures_keeps_top_n_and_wraps_long_text():
    long = "Request contains an invalid argument " * 6
    sigs = pl.DataFrame(
        {
            "signature": [*(f"sig {i}" for i in range(12)), long, None],
            "postbacks": [*range(1, 13), 50, 0],
            "errors": [*range(1, 13), 50, 0],
        }
    )
    fig = charts.top_signatures(sigs, top=3)
    (bar,) = fig.data
    assert list(bar.x) == [50, 12, 11]
    ticks = fig.layout.yaxis.ticktext
    assert len(ticks) == 3
    assert "<br>" in ticks[0]
    assert ticks[0].endswith("…")
    assert all(len(line) <= 40 for line in ticks[0].split("<br>"))
    assert ticks[1:] == ("sig 11", "sig 10")


def test_top_signatures_label_json_bodies_by_their_message():
    sigs = pl.DataFrame(
        {
            "signature": [
                '{"error":{"message":"Error validating access token: Session has expired on <time>. The current '
                'time is <time>.","type":"OAuthException","code":<n>,"fbtrace_id":"<id>"}}',
                '{"code":<n>,"message":"Too many requests. Please retry in some time.","request_id":"<id>"}',
                f'{{"error":"invalid_grant","error_description":"token {TOKEN} revoked"}}',
                "Connection timed out after <n> ms",
            ],
            "errors": [94, 53, 7, 46],
        }
    )
    fig = charts.top_signatures(sigs)
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks[0] == "Error validating access token: Session<br>has expired on &lt;time&gt;. The current…"
    assert ticks[1] == "Too many requests. Please retry in<br>some time."
    assert ticks[2] == "Connection timed out after &lt;n&gt; ms"
    assert all("{" not in t and '"' not in t for t in ticks)  # no raw JSON fragments
    assert all(len(html.unescape(line)) <= 38 for t in ticks for line in t.split("<br>"))  # visible characters
    assert all(t.count("<br>") <= 1 for t in ticks)  # two lines at most
    assert fig.layout.yaxis.title.text == "Error message"
    assert "OAuthException" in fig.data[0].customdata[0][0]  # the whole signature on hover
    assert_clean(fig)


def test_gap_classes_stack_sums_to_conversions():
    gaps = pl.DataFrame(
        {
            "traffic_source_id": ["t1", None, "t3"],
            "traffic_source_name": ["NativeX", None, "Meta Ads"],
            "posted_ok": [0, 0, 364],
            "posted_failed": [0, 0, 99],
            "not_posted": [77, 6, 2],
            "pending": [0, 0, 1],
            "conversions": [77, 6, 466],
        }
    )
    fig = charts.gap_classes(gaps)
    assert [t.name for t in fig.data] == ["Posted OK", "Posted, failed", "Not posted", "Pending"]
    assert list(fig.data[0].x) == ["NativeX", "(no traffic source)", "Meta Ads"]
    sums = [sum(t.y[i] for t in fig.data) for i in range(3)]
    assert sums == [77, 6, 466]
    assert fig.layout.barmode == "stack"
    assert fig.layout.yaxis.title.text == "Conversions"


# --------------------------------------------------------------------------- lags, funnel, volume, attribution
def test_lag_histograms_count_every_row_and_use_log_scale_only_when_spread():
    lags = {
        "visit_to_conversion": pl.DataFrame({"click_id": ["a"] * 5, "minutes": [1.0, 2.0, 3.0, 4.0, 5.0]}),
        "conversion_to_postback": pl.DataFrame({"click_id": ["a"] * 4, "seconds": [0.5, 5.0, 50.0, 5000.0]}),
    }
    fig = charts.lag_histograms(lags)
    v2c, c2p = fig.data
    assert sum(v2c.y) == 5
    assert sum(c2p.y) == 4
    assert fig.layout.xaxis.title.text == "Visit → conversion (minutes)"
    assert fig.layout.xaxis2.title.text == "Conversion → postback (seconds, log scale)"
    assert min(c2p.x) > -1  # log10 of the seconds
    assert "1,000 s" in fig.layout.xaxis2.ticktext
    # a non-positive lag (clock skew) keeps the axis linear and is still counted
    skew = {"conversion_to_postback": pl.DataFrame({"seconds": [-30.0, 7.0, 25.0]})}
    fig = charts.lag_histograms(skew)
    assert sum(next(t for t in fig.data if t.type == "bar").y) == 3
    title = fig.layout.xaxis2.title.text
    assert title.startswith("Conversion → postback (seconds)<br>")
    # the negative lag is explained where it is drawn, with its count, and zero is marked
    assert "1 postback below 0" in title
    assert "postback time<br>precedes the recorded conversion time" in title
    assert [(s.type, s.x0) for s in fig.layout.shapes] == [("line", 0)]
    assert no_data(fig)  # the visit → conversion panel says so
    # no negative value, no note
    assert (
        "below 0"
        not in charts.lag_histograms(
            {"conversion_to_postback": pl.DataFrame({"seconds": [1.0, 2.0]})}
        ).layout.xaxis2.title.text
    )


def test_funnel_per_top_group_and_total():
    funnel = pl.DataFrame(
        {
            "campaign_id": ["c1", "c2", "c3"],
            "campaign_name": ["Small", "Big", None],
            "visits": [10, 100, 50],
            "clicks": [5, 40, 20],
            "conversions": [1, 8, 4],
            "postbacks_sent": [1, 8, 4],
            "postbacks_accepted": [1, 6, 4],
        }
    )
    fig = charts.funnel_chart(funnel, top=2)
    assert [t.name for t in fig.data] == ["Big", "c3"]
    assert list(fig.data[0].x) == [100, 40, 8, 8, 6]
    assert list(fig.data[0].y) == ["Visits", "Clicks", "Conversions", "Postbacks sent", "Postbacks accepted"]
    assert fig.data[0].type == "funnel"
    total = charts.funnel_chart(funnel, top=0)
    assert [t.name for t in total.data] == ["All"]
    assert list(total.data[0].x) == [160, 65, 13, 13, 11]


def test_funnel_one_readable_funnel_per_traffic_source_even_without_postbacks():
    funnel = pl.DataFrame(
        {
            "traffic_source_id": ["ts_meta", "ts_native", None, None],
            "traffic_source_name": ["Meta Ads", "NativeX", None, None],
            "visits": [5572, 1400, 0, 0],
            "clicks": [2504, 600, 0, 0],
            "conversions": [465, 77, 6, 0],
            "postbacks_sent": [465, 0, 0, 1],
            "postbacks_accepted": [366, 0, 0, 0],
        }
    )
    fig = charts.funnel_chart(funnel, by="traffic_source_id")
    assert [t.name for t in fig.data] == ["Meta Ads", "NativeX", "(no traffic source)"]  # rows of no id added up
    native = fig.data[1]
    assert list(native.x) == [1400, 600, 77, 0, 0]  # no postback configured: still drawn, its last stages empty
    assert list(native.text) == ["1,400", "600 (43%)", "77 (13%)", "0 (0%)", "0"]
    assert list(fig.data[2].x) == [0, 0, 6, 1, 0]
    # each funnel in its own panel, the counts beside the bars in a readable size
    assert len({(t.xaxis, t.yaxis) for t in fig.data}) == 3
    assert all(t.textposition == "outside" and t.textfont.size >= 12 for t in fig.data)
    assert fig.layout.yaxis.tickfont.size >= 12
    assert {a.text for a in fig.layout.annotations} >= {"Meta Ads", "NativeX"}


def test_volume_stacks_event_types_in_the_display_zone():
    events = pl.DataFrame(
        {
            "bucket": [utc(2026, 11, 20, 5), utc(2026, 11, 20, 5), utc(2026, 11, 20, 6)],
            "event_type": ["visit", "conversion", "visit"],
            "count": [120, 4, 80],
        }
    )
    fig = charts.volume_over_time(events, timezone=NY)
    assert [t.name for t in fig.data] == ["visit", "conversion"]
    assert list(fig.data[0].x) == [datetime(2026, 11, 20, 0), datetime(2026, 11, 20, 1)]
    assert list(fig.data[0].y) == [120, 80]
    assert fig.layout.barmode == "stack"
    assert fig.layout.xaxis.title.text == f"Time ({NY})"
    assert [c[0] for c in fig.data[0].customdata] == ["Fri Nov 20 00:00 EST", "Fri Nov 20 01:00 EST"]
    assert "%{customdata[0]}" in fig.data[0].hovertemplate
    # naive buckets are UTC
    naive = events.with_columns(pl.col("bucket").dt.replace_time_zone(None))
    assert list(charts.volume_over_time(naive, timezone=NY).data[0].x) == list(fig.data[0].x)


def test_attribution_difference_arrays():
    by_day = pl.DataFrame(
        {
            "day": [date(2026, 11, 17), date(2026, 11, 16)],
            "by_conversion_date": [438, 254],
            "by_visit_date": [420, 290],
            "difference": [-18, 36],
        }
    )
    fig = charts.attribution_difference(by_day)
    conv, visit, diff = fig.data
    assert list(conv.x) == [date(2026, 11, 16), date(2026, 11, 17)]
    assert list(conv.y) == [254, 438]
    assert list(visit.y) == [290, 420]
    assert list(diff.y) == [36, -18]
    assert [v - c for v, c in zip(visit.y, conv.y, strict=True)] == list(diff.y)
    assert fig.layout.xaxis2.title.text == "Day"
    assert charts.attribution_difference(by_day, timezone=NY).layout.xaxis2.title.text == f"Day ({NY})"


# --------------------------------------------------------------------------- empty input, theme
def _lags_of(frame: pl.DataFrame):
    return charts.lag_histograms({"visit_to_conversion": frame, "conversion_to_postback": frame})


EMPTY_CALLS = [
    charts.error_rate_over_time,
    charts.errors_by_kind,
    charts.errors_by_status_class,
    charts.top_signatures,
    charts.gap_classes,
    _lags_of,
    charts.funnel_chart,
    charts.volume_over_time,
    charts.attribution_difference,
]


@pytest.mark.parametrize("build", EMPTY_CALLS, ids=lambda f: f.__name__)
def test_empty_frames_give_an_annotated_figure(build):
    fig = build(pl.DataFrame())
    assert no_data(fig)
    assert fig.layout.title.text
    fig.to_json()


def test_empty_frames_with_schema_and_only_error_free_rows():
    rates = rates_frame().clear()
    assert no_data(charts.error_rate_over_time(rates, changes=activity_frame(), incidents=incidents_frame()))
    assert no_data(charts.errors_by_kind(pl.DataFrame({"error_kind": [None], "errors": [0]})))
    assert no_data(charts.top_signatures(pl.DataFrame({"signature": [None], "errors": [0]})))
    assert no_data(charts.lag_histograms({}))


def test_missing_columns_are_reported_by_name():
    with pytest.raises(ValueError, match="errors"):
        charts.errors_by_kind(pl.DataFrame({"error_kind": ["auth"]}))


def test_theme_reads_on_light_and_dark():
    fig = charts.errors_by_kind(pl.DataFrame({"error_kind": ["auth"], "errors": [1]}))
    layout = fig.layout.template.layout
    assert layout.paper_bgcolor == "rgba(0,0,0,0)"
    assert layout.plot_bgcolor == "rgba(0,0,0,0)"
    assert layout.font.color == charts.FONT_COLOR
    assert layout.xaxis.gridcolor.startswith("rgba(128,128,128")
    assert charts.apply_theme(fig) is fig


# --------------------------------------------------------------------------- the sample account
@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    import cfanalytics as cf
    from cfanalytics.sample import generate

    tmp = tmp_path_factory.mktemp("charts_sample")
    account = generate(tmp / "account", seed=7)
    store = cf.LogStore(tmp / "store", timezone=account.truth["timezone"])
    store.ingest([p for role, p in account.files.items() if role != "network_export"])
    return store


def test_every_chart_fits_the_sample_accounts_diagnostics(sample_store):
    import cfanalytics as cf

    store = sample_store
    tz = store.timezone
    d = cf.diagnose
    rates = d.postback_errors(store, by=["hour", "traffic_source_id"])
    activity = store.scan("activity").collect()
    incidents = d.incidents(store)
    fig = charts.error_rate_over_time(rates, changes=activity, incidents=incidents, timezone=tz)
    lines = rate_lines(fig)
    names = set(d.names(store, "traffic_source").get_column("traffic_source_name"))
    assert {t.name for t in lines} <= names | {"(no traffic source)"}
    assert sum(len(t.x) for t in lines) == rates.height
    assert sum(sum(t.y) for t in bars(fig, charts.FAILED_NAME)) == rates.get_column("errors").sum()
    assert len(next(t for t in fig.data if t.name == "Changes").x) == activity.height
    assert len(fig.layout.shapes) == incidents.height > 0
    assert fig.layout.xaxis.title.text == f"Hour ({tz})"
    last = rates.get_column("hour").dt.convert_time_zone(tz).dt.replace_time_zone(None).max()
    assert fig.layout.xaxis.range[1] == last + timedelta(minutes=30)
    # the bands start and end at the incident list's times, in the store's zone
    zone = ZoneInfo(tz)
    bands = sorted((s.x0, s.x1) for s in fig.layout.shapes)
    expected = sorted(
        (r["start"].astimezone(zone).replace(tzinfo=None), r["end"].astimezone(zone).replace(tzinfo=None))
        for r in incidents.iter_rows(named=True)
    )
    assert bands == expected
    texts = label_texts(fig)
    for row in incidents.filter(pl.col("scope") == "traffic_source").iter_rows(named=True):
        assert f"Incident · {row['top_error_kind']} · {row['errors']}/{row['postbacks']} failed" in texts
        change = row["suspected_change"]
        if change is not None and change["entity_type"] == "traffic_source":  # labelled in its row, at its time
            at = change["changed_at"].astimezone(zone).replace(tzinfo=None)
            who = change["author"].split("@")[0]
            assert any(a.x == at and a.text.startswith(f"{who}: ") for a in fig.layout.annotations)
    # one colour per traffic source: the same in two periods and in the funnel
    middle = rates.get_column("hour").sort()[rates.height // 2]
    halves = [rates.filter(pl.col("hour") < middle), rates.filter(pl.col("hour") >= middle)]
    colours = [{t.customdata[0][0]: t.line.color for t in rate_lines(charts.error_rate_over_time(h))} for h in halves]
    shared = set(colours[0]) & set(colours[1])
    assert len(shared) >= 5
    assert all(colours[0][i] == colours[1][i] == charts.group_color(i) for i in shared if i)
    by_source = d.funnel(store, by="traffic_source_id")
    fig_sources = charts.funnel_chart(by_source, by="traffic_source_id")
    funnel_colours = {t.customdata[0][0]: t.marker.color for t in fig_sources.data}
    assert all(funnel_colours[i] == colours[0][i] for i in shared if i)
    # every traffic source has its funnel, those without postbacks too
    assert set(funnel_colours) >= set(by_source.get_column("traffic_source_id").drop_nulls())

    kinds = d.postback_errors(store, by="error_kind")
    fig_kinds = charts.errors_by_kind(kinds)
    assert sum(fig_kinds.data[0].x) == kinds.get_column("errors").sum()

    classes = d.postback_errors(store, by="status_class")
    fig_classes = charts.errors_by_status_class(classes)
    assert sum(sum(t.y) for t in fig_classes.data) == classes.get_column("postbacks").sum()

    sigs = d.postback_errors(store, by="signature")
    fig_sigs = charts.top_signatures(sigs, top=5)
    assert len(fig_sigs.data[0].x) == min(5, sigs.filter(pl.col("errors") > 0).height)

    gaps = d.gaps_by(store)
    fig_gaps = charts.gap_classes(gaps)
    assert sum(sum(t.y) for t in fig_gaps.data) == gaps.get_column("conversions").sum()

    lags = d.lags(store)
    fig_lags = charts.lag_histograms(lags)
    assert sum(fig_lags.data[0].y) == lags["visit_to_conversion"].height
    assert sum(fig_lags.data[1].y) == lags["conversion_to_postback"].height

    funnel = d.funnel(store)
    fig_funnel = charts.funnel_chart(funnel)
    assert len(fig_funnel.data) == min(8, funnel.height)
    assert all(t.name in set(funnel.get_column("campaign_name").drop_nulls()) for t in fig_funnel.data)

    events = (
        pl.concat(
            [
                store.scan(kind).select(pl.col(col).dt.truncate("1h").alias("bucket"), pl.lit(kind).alias("event_type"))
                for kind, col in (
                    ("visits", "visit_time"),
                    ("clicks", "click_time"),
                    ("conversions", "conversion_time"),
                )
            ]
        )
        .group_by("bucket", "event_type")
        .agg(pl.len().alias("count"))
        .collect()
    )
    fig_volume = charts.volume_over_time(events, timezone=tz)
    assert sum(sum(t.y) for t in fig_volume.data) == events.get_column("count").sum()

    by_day = d.attribution_by_day(store)
    fig_days = charts.attribution_difference(by_day)
    assert list(fig_days.data[2].y) == by_day.get_column("difference").to_list()

    for figure in (fig, fig_kinds, fig_classes, fig_sigs, fig_gaps, fig_lags, fig_funnel, fig_volume, fig_days):
        assert figure.layout.title.text
        assert_clean(figure)


def test_plain_figures_are_the_doctor_charts_not_made_yet():
    from cfanalytics.panels._figures import figure_json

    kinds = pl.DataFrame({"error_kind": ["auth", "timeout"], "errors": [5, 2]})
    classes = pl.DataFrame(
        {"status_class": ["2xx", "4xx"], "postbacks": [10, 5], "errors": [0, 5], "error_rate": [0.0, 1.0]}
    )
    signatures = pl.DataFrame({"signature": ["Bad <n>"], "errors": [3], "example": ["Bad 1"]})
    cases = [
        (charts.error_rate_over_time, (rates_frame(),), {"changes": activity_frame(), "incidents": incidents_frame()}),
        (charts.errors_by_kind, (kinds,), {}),
        (charts.errors_by_status_class, (classes,), {}),
        (charts.top_signatures, (signatures,), {}),
        (charts.errors_by_kind, (pl.DataFrame(),), {}),  # the empty figure
    ]
    for build, args, kwargs in cases:
        plain = charts.plain_figure(build, *args, **kwargs)
        made = build(*args, **kwargs)
        assert isinstance(plain, charts.PlainFigure)
        assert plain._figure is None  # no go.Figure made until one is read
        assert figure_json(plain) == figure_json(made)
        assert [t.to_plotly_json() for t in plain.data] == [t.to_plotly_json() for t in made.data]
        assert plain.layout.to_plotly_json() == made.layout.to_plotly_json()
    # a chart not made of plain parts is returned as the figure it is
    gaps = pl.DataFrame({"traffic_source_id": ["t1"], "posted_ok": [3], "posted_failed": [1], "not_posted": [0],
                         "pending": [0]})  # fmt: skip
    assert not isinstance(charts.plain_figure(charts.gap_classes, gaps), charts.PlainFigure)
