"""Figure builders: numbers in the traces, names, escaping/redaction, time zones, empty input."""

from __future__ import annotations

from datetime import UTC, date, datetime

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
def test_error_rate_lines_one_per_group_with_rates_in_percent():
    rates = rates_frame()
    fig = charts.error_rate_over_time(rates, timezone=NY)
    lines = [t for t in fig.data if t.name != "Changes"]
    assert [t.name for t in lines] == ["Meta Ads", "ts_prop"]  # by errors, name else id
    meta, prop = lines
    assert list(meta.y) == pytest.approx([2 / 40 * 100, 8 / 8 * 100])
    assert list(prop.y) == pytest.approx([5 / 10 * 100, 0 / 3 * 100])
    assert [row[1:] for row in meta.customdata] == [[40, 2], [8, 8]]
    assert meta.customdata[0][0] == "ts_meta"  # id on hover
    assert "Postbacks" in meta.hovertemplate
    assert "Errors" in meta.hovertemplate
    assert fig.layout.yaxis.title.text == "Error rate (%)"
    assert fig.layout.xaxis.title.text == f"Time ({NY})"
    assert fig.layout.title.text


def test_error_rate_times_are_shown_in_the_display_zone():
    rates = rates_frame()
    ny = charts.error_rate_over_time(rates, timezone=NY)
    # 2026-03-10 is after the spring-forward: New York is UTC-4
    assert list(ny.data[0].x) == [datetime(2026, 3, 10, 10), datetime(2026, 3, 10, 11)]
    default = charts.error_rate_over_time(rates)
    assert list(default.data[0].x) == [datetime(2026, 3, 10, 14), datetime(2026, 3, 10, 15)]
    assert default.layout.xaxis.title.text == "Time (UTC)"
    # the diagnostics return local hours: converting them again is a no-op
    local = rates.with_columns(pl.col("hour").dt.convert_time_zone(NY))
    assert list(charts.error_rate_over_time(local, timezone=NY).data[0].x) == list(ny.data[0].x)


def test_error_rate_marks_changes_and_incidents():
    fig = charts.error_rate_over_time(rates_frame(), changes=activity_frame(), incidents=incidents_frame(), timezone=NY)
    (marks,) = [t for t in fig.data if t.name == "Changes"]
    assert len(marks.x) == 2  # the row without a time cannot be placed
    assert list(marks.x) == [datetime(2026, 3, 10, 9, 5), datetime(2026, 3, 10, 10, 30)]
    assert fig.layout.yaxis2.domain == charts.CHANGE_LANE  # a lane above the plot
    assert fig.layout.yaxis.domain[1] < charts.CHANGE_LANE[0]
    assert len(fig.layout.shapes) == 2
    assert sorted((s.x0, s.x1) for s in fig.layout.shapes) == [
        (datetime(2026, 3, 10, 10, 10), datetime(2026, 3, 10, 10, 40)),
        (datetime(2026, 3, 10, 11, 4), datetime(2026, 3, 10, 11, 50)),
    ]
    labels = sorted(a.text for a in fig.layout.annotations)
    assert labels == ["Meta Ads · unreplaced_macro", "int_9 · auth"]
    hovers = " ".join(a.hovertext for a in fig.layout.annotations)
    assert "Suspected change" in hovers
    assert "No change found" in hovers
    # hover of the change: author, entity, action, old → new; escaped, redacted, shortened
    first, second = marks.customdata
    assert first[0] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert first[1] == "campaign &lt;img src=x onerror=alert(1)&gt;"
    assert len(first[4]) < 160
    assert second[:3] == ["ana@acme.test", "traffic source Meta Ads", "updated"]
    assert "api_key=***" in second[3]
    assert "access_token=***" in second[4]
    assert_clean(fig)


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
    names = {t.name for t in charts.error_rate_over_time(rates).data}
    assert names == {"Same (aaaaaaaa…)", "Same (bbbbbbbb…)", "(no traffic source)"}


def test_error_rate_without_group_column_draws_one_line():
    rates = pl.DataFrame(
        {"hour": [utc(2026, 1, 1, 0), utc(2026, 1, 1, 1)], "postbacks": [4, 5], "errors": [1, 0]}
    ).with_columns((pl.col("errors") / pl.col("postbacks")).alias("error_rate"))
    fig = charts.error_rate_over_time(rates)
    assert [t.name for t in fig.data] == ["All postbacks"]
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
    assert fig.layout.xaxis2.title.text == "Conversion → postback (seconds)"
    assert no_data(fig)  # the visit → conversion panel says so


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
    lines = [t for t in fig.data if t.name != "Changes"]
    names = set(d.names(store, "traffic_source").get_column("traffic_source_name"))
    assert {t.name for t in lines} <= names | {"(no traffic source)"}
    assert sum(len(t.x) for t in lines) == rates.height
    assert len(next(t for t in fig.data if t.name == "Changes").x) == activity.height
    assert len(fig.layout.shapes) == incidents.height > 0
    assert fig.layout.xaxis.title.text == f"Time ({tz})"

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
    assert len(fig_funnel.data) == 5
    assert all(t.name in set(funnel.get_column("campaign_name").drop_nulls()) for t in fig_funnel.data)
    charts.funnel_chart(d.funnel(store, by="traffic_source_id"), by="traffic_source_id")

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
