"""Panels (headless widget state): filters change the charts' numbers without re-reading the store,
journeys, drill-downs, exports, and no unescaped or unredacted data in any widget."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")
pytest.importorskip("anywidget")

import cfanalytics as cf
from cfanalytics.charts import MIN_POSTBACKS
from cfanalytics.diagnose import gaps_by
from cfanalytics.panels import (
    ActivityLogPanel,
    ConversionGapsPanel,
    EventLogsPanel,
    PostbackDoctorPanel,
    activity_log,
    conversion_gaps,
    event_logs,
    export_frame,
    postback_doctor,
)
from cfanalytics.panels._figures import click
from cfanalytics.panels.export import safe_frame
from tests.helpers import panel_texts, write

TOKEN = "EAAGm0PX4ZCpsBAxyz1234567890"
SCRIPT = "<script>alert(1)</script>"
V1, V2, V3, V4 = (
    "6f1c2d3e-0000-4000-8000-000000000001",
    "6f1c2d3e-0000-4000-8000-000000000002",
    "6f1c2d3e-0000-4000-8000-000000000003",
    "6f1c2d3e-0000-4000-8000-000000000004",
)

VISITS = f"""Click ID,Visit Time,Campaign ID,Campaign,Traffic Source ID,Traffic Source,Offer ID,IP,Country,Is Filtered
{V1},2026-03-02 10:00:00,c1,{SCRIPT} Camp,ts1,Meta Ads,o1,203.0.113.77,US,0
{V2},2026-03-02 10:05:00,c1,{SCRIPT} Camp,ts2,Zeropark,o1,198.51.100.9,DE,0
{V3},2026-03-02 11:00:00,c2,Camp B,ts1,Meta Ads,o2,192.0.2.1,US,1
{V4},2026-03-03 09:00:00,c2,Camp B,ts2,Zeropark,o2,192.0.2.2,FR,0
"""
CLICKS = f"""Click ID,Click Time,Campaign ID,CTA
{V1},2026-03-02 10:01:00,c1,1
{V4},2026-03-03 09:01:00,c2,1
"""
CONVERSIONS = f"""Click ID,Conversion Time,Payout,Transaction ID,Custom Conversion (ct)
{V1},2026-03-02 10:20:00,12.5,tx-1,sale
{V2},2026-03-02 10:35:00,3,tx-2,lead
{V4},2026-03-03 09:05:00,7,tx-4,sale
"""
PB_HEADER = (
    "Postback ID,Click ID,Postback Time,Is Error,Error Message,Status Code,Postback URL,"
    "Custom Conversion (ct),Integration ID"
)
FB_URL = f"https://graph.facebook.com/v19.0/1/events?access_token={TOKEN}"
POSTBACKS = f"""{PB_HEADER}
pb1,{V1},2026-03-02 10:30:00,1,"=cmd|' /C calc'!A0",400,{FB_URL},sale,int1
pb2,{V1},2026-03-02 10:31:00,0,,200,{FB_URL},sale,int1
pb3,{V2},2026-03-02 10:40:00,1,{SCRIPT},500,https://zp.example/pb?cid={V2},lead,
pb4,{V4},2026-03-03 09:10:00,0,,200,https://zp.example/pb?cid={V4},sale,
"""
OLD_URL = '"{""postback_url"": ""https://x.example/?token=abc123""}"'
NEW_URL = '"{""postback_url"": ""https://x.example/?token=def456&cid={clickid}""}"'
ACTIVITY = f"""Changed At,Author,Entity Type,Entity ID,Entity Name,Action,Old Value,New Value
2026-03-02 09:00:00,ann@example.com,traffic_source,ts1,Meta Ads,updated,{OLD_URL},{NEW_URL}
2026-03-02 12:00:00,{SCRIPT},campaign,c1,{SCRIPT} Camp,created,,"{{""name"": ""{SCRIPT}""}}"
2026-03-03 08:00:00,bob@example.com,campaign,c2,Camp B,deleted,"{{""name"": ""Camp B""}}",
"""


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def small(tmp_path):
    """A hand-made UTC store: two traffic sources, a filtered visit, failing postbacks, activity."""
    store = cf.LogStore(tmp_path / "store", timezone="UTC")
    files = [
        write(tmp_path / "in" / name, text)
        for name, text in (
            ("visits.csv", VISITS),
            ("clicks.csv", CLICKS),
            ("conversions.csv", CONVERSIONS),
            ("postbacks.csv", POSTBACKS),
            ("activity.csv", ACTIVITY),
        )
    ]
    result = store.ingest(files)
    assert result.ok, result.failures
    return store


@pytest.fixture
def account_store(sample):
    """The sample account (seed 7) with its truth, and its store (read-only, built once per run)."""
    return sample.account, sample.store


# --------------------------------------------------------------------------- export
def test_export_frame_neutralises_formulas_and_redacts(tmp_path):
    url = f"https://graph.facebook.com/v19.0/1/events?access_token={TOKEN}"
    frame = pl.DataFrame(
        {
            "text": ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", url, "plain", None],
            "n": [1, 2, -3, 4, 5, 6, 7, 8, 9],
            "when": [datetime(2026, 3, 2, 10)] * 9,
        }
    ).with_columns(pl.col("when").dt.replace_time_zone("UTC"))
    expected = ["'=cmd|' /C calc'!A0", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx"]
    redacted = "https://graph.facebook.com/v19.0/1/events?access_token=***"

    csv = export_frame(frame, tmp_path / "t.csv")
    back = pl.read_csv(csv, infer_schema=False)
    assert back.get_column("text").to_list()[:6] == expected
    assert back.get_column("text").to_list()[6:8] == [redacted, "plain"]
    assert back.get_column("n").to_list()[2] == "-3"  # numbers are not text: left alone
    assert TOKEN not in csv.read_text()

    from openpyxl import load_workbook

    xlsx = export_frame(frame, tmp_path / "t.xlsx")
    sheet = load_workbook(xlsx).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("text", "n", "when")
    assert [r[0] for r in rows[1:6]] == expected[:5]
    assert rows[6][0] in ("'\rx", "'\nx")  # XML reads a carriage return back as a newline
    assert rows[7][0] == redacted
    assert rows[3][1] == -3
    assert rows[1][2] == datetime(2026, 3, 2, 10)  # UTC wall-clock time
    assert all(sheet.cell(row=r, column=1).data_type == "s" for r in range(2, 9))  # never a formula


def test_export_frame_headers_nested_values_and_bad_suffix(tmp_path):
    frame = pl.DataFrame({"=x": [{"token": "abc123", "a": 1}], "tags": [["=y", "z"]]})
    safe = safe_frame(frame)
    assert safe.columns == ["'=x", "tags"]
    assert safe.item(0, "'=x") == '{"a": 1, "token": "***"}'
    with pytest.raises(cf.UsageError):
        export_frame(frame, tmp_path / "t.json")


# --------------------------------------------------------------------------- event logs
def test_event_logs_filters_in_memory_and_reloads_on_date_change(small, tmp_path):
    panel = event_logs(small, export_dir=tmp_path / "exports")
    assert isinstance(panel, EventLogsPanel)
    assert (panel.filter.start, panel.filter.end) == (date(2026, 2, 25), date(2026, 3, 3))
    assert panel.loads == 1
    reads = panel.store_reads
    # filtered (bot) traffic is excluded by default, and the panel says so
    assert V3 not in panel.table_frame.get_column("click_id").to_list()
    assert panel.hidden_filtered == 1
    assert "excluded" in panel.status.value
    assert panel.table_frame.height == 4 + 2 + 3 - 1

    panel.set_filters(include_filtered=True)
    assert V3 in panel.table_frame.get_column("click_id").to_list()
    panel.set_filters(traffic_sources=["ts2"], event_types=["visit", "conversion"])
    assert set(panel.table_frame.get_column("traffic_source_id").drop_nulls()) == {"ts2"}
    assert sorted(panel.table_frame.get_column("event_type").unique()) == ["conversion", "visit"]
    assert sum(sum(t.y) for t in panel.figure.data) == panel.table_frame.height
    panel.set_filters(traffic_sources=[], event_types=[], click_id="000000000004")
    assert set(panel.table_frame.get_column("click_id")) == {V4}
    assert (panel.loads, panel.store_reads) == (1, reads)  # nothing re-read

    panel.set_filters(click_id=None, start="2026-03-03", end="2026-03-03")
    assert panel.loads == 2
    assert panel.table_frame.get_column("event_time").dt.date().unique().to_list() == [date(2026, 3, 3)]
    labels = dict(panel.filters.widgets["traffic_sources"].options)
    assert labels == {"Zeropark": "ts2"}  # options of the range, labelled by name, id as value


def test_event_logs_table_pages_and_sorts(small, tmp_path):
    panel = event_logs(small, export_dir=tmp_path)
    table = panel.table
    table.page_size = 3
    table.sort("event_time", descending=False)
    times = table.frame.get_column("event_time").to_list()
    assert times == sorted(times)
    assert table.pages == 3
    assert table.page_frame.height == 3
    table.go(2)
    assert table.page_frame.height == panel.table_frame.height - 6
    assert "page 3 of 3" in table.info.value
    table.next_button.click()  # clamped at the last page
    assert table.page == 2
    table.sort("click_id", descending=True)
    ids = table.frame.get_column("click_id").to_list()
    assert ids == sorted(ids, reverse=True)


def test_journey_lists_a_click_in_time_order(small, tmp_path):
    panel = event_logs(small, export_dir=tmp_path)
    reads = panel.store_reads
    panel.table.selector.value = V1  # pick a row
    journey = panel.journey
    assert panel.journey_click == V1
    assert journey.get_column("step").to_list() == ["visit", "click", "conversion", "postback", "postback"]
    times = journey.get_column("time").to_list()
    assert times == sorted(times)
    assert journey.get_column("outcome").to_list() == [None, None, None, "failed", "accepted"]
    assert journey.get_column("status_code").to_list()[-2:] == [400, 200]
    assert panel.journey_table.frame.height == 5
    assert panel.journey_queries == 1
    assert panel.store_reads == reads  # the files that can hold the id are read directly, no table scan
    html = panel.journey_table.html.value
    assert "access_token=***" in html
    assert TOKEN not in html
    assert "203.0.113.0" in html  # IP addresses masked
    assert "203.0.113.77" not in html
    assert panel.loads == 1


# --------------------------------------------------------------------------- postback doctor
def _independent_hourly(store: cf.LogStore, ts: str, tz: str) -> pl.DataFrame:
    """Error rate per local hour of one traffic source: a plain group-by on the stored rows."""
    pb = store.scan("postbacks").select(
        "click_id", "postback_time", "is_error", pl.col("traffic_source_id").alias("own")
    )
    visits = store.scan("visits").select("click_id", pl.col("traffic_source_id").alias("visit_ts"))
    conv = store.scan("conversions").group_by("click_id").agg(pl.col("traffic_source_id").min().alias("conv_ts"))
    return (
        pb.join(visits, on="click_id", how="left")
        .join(conv, on="click_id", how="left")
        .filter(pl.coalesce("own", "visit_ts", "conv_ts") == ts)
        .group_by(pl.col("postback_time").dt.convert_time_zone(tz).dt.truncate("1h").alias("hour"))
        .agg(pl.len().alias("n"), pl.col("is_error").sum().alias("e"))
        .sort("hour")
        .collect()
        .with_columns(
            # the chart leaves the rate of a quieter hour out of its line
            pl.when(pl.col("n") >= MIN_POSTBACKS).then(pl.col("e") / pl.col("n") * 100).alias("rate"),
            pl.col("hour").dt.replace_time_zone(None),
        )
    )


def _rate_traces(panel):
    return [t for t in panel.figure.data if t.type == "scatter" and t.name != "Changes"]


def test_postback_doctor_chart_follows_the_traffic_source_filter(account_store, tmp_path):
    account, store = account_store
    panel = postback_doctor(store, export_dir=tmp_path)
    assert isinstance(panel, PostbackDoctorPanel)
    tz = panel.timezone
    assert tz == account.truth["timezone"]
    options = dict(panel.filters.widgets["traffic_sources"].options)
    names = dict(cf.diagnose.names(store, "traffic_source").iter_rows())
    assert options == {names[i]: i for i in options.values()}  # labelled by name, id as value
    unattributed = panel.postbacks.filter(~pl.col("attributed")).height
    assert len(_rate_traces(panel)) == len(options) + (unattributed > 0) > 1  # + "(no traffic source)"
    loads, reads = panel.loads, panel.store_reads

    for ts in sorted(options.values())[:3]:
        panel.set_filters(traffic_sources=[ts])
        traces = _rate_traces(panel)
        assert [t.name for t in traces] == [names[ts]]
        expected = _independent_hourly(store, ts, tz)
        assert list(traces[0].x) == expected.get_column("hour").to_list()
        assert list(traces[0].y) == pytest.approx(expected.get_column("rate").to_list())
        assert panel.rates.get_column("postbacks").sum() == expected.get_column("n").sum()
        assert set(panel.postbacks.get_column("traffic_source_id")) == {ts}

    panel.set_filters(traffic_sources=[], error_kinds=["auth", "rate_limit"], status_classes=["4xx"])
    assert set(panel.kinds.get_column("error_kind")) <= {"auth", "rate_limit"}
    panel.by.value = "integration_id"
    assert "integration_id" in panel.rates.columns
    assert (panel.loads, panel.store_reads) == (loads, reads)  # every change above came from memory

    panel.set_filters(start="2026-11-18")
    assert panel.loads == loads + 1
    assert panel.postbacks.get_column("postback_time").min() >= datetime.fromisoformat("2026-11-18T00:00:00-05:00")


def test_postback_doctor_marks_incidents_and_changes_and_drills(account_store, tmp_path):
    account, store = account_store
    panel = postback_doctor(store, export_dir=tmp_path)
    assert panel.incidents.height == len(account.truth["incidents"])
    assert panel.incidents_frame.height == panel.incidents.height
    # each incident row names its suspected change, the change that resolved it and its top suspects, as the
    # generator wrote them (the URL edit and its fix; nobody's edit before the expired token, then the reconnect)
    shown = {r["id"]: r for r in panel.incidents_frame.to_dicts()}
    for incident in account.truth["incidents"]:
        row, cause, fix = shown[incident["id"]], incident["suspected_change"], incident["resolved_by"]
        assert row["change_by"] == (cause and cause["author"]), incident["fault"]
        assert row["fix_by"] == (fix and fix["author"]), incident["fault"]
        assert row["top_suspects"].startswith("1. ")
        if cause is None:
            assert row["change"] == "no change explains it"  # the decoy budget raise is listed, not blamed
            assert "daily_budget 200 → 800; does not explain it" in row["top_suspects"]
    # beside each error kind: what to do and whether a re-send later can succeed
    advice = {r["error_kind"]: r for r in panel.kind_table.frame.to_dicts()}
    assert set(advice) == set(panel.kinds.get_column("error_kind").to_list())
    assert (advice["rate_limit"]["retryable"], advice["rate_limit"]["resend_later"]) == (True, "may succeed")
    assert (advice["auth"]["retryable"], advice["auth"]["resend_later"]) == (False, "will fail again")
    assert all(r["action"] for r in advice.values())
    assert len(panel.figure.layout.shapes) == panel.incidents.height  # shaded bands
    changes = [t for t in panel.figure.data if t.name == "Changes"]
    assert changes
    assert len(changes[0].x) == panel.changes.height > 0

    # the rows behind a bar: error kinds, status classes, signatures
    kind = panel.kinds.item(0, "error_kind")
    click(panel.kinds_figure, 0, 0)
    assert panel.drilled[:2] == ("error_kind", kind)
    assert panel.table_frame.height == panel.kinds.item(0, "errors")
    assert set(panel.table_frame.get_column("error_kind")) == {kind}
    click(panel.signatures_figure, 0, 0)
    assert panel.table_frame.height == panel.signatures.item(0, "errors")
    rows = panel.drill("status_class", "5xx")
    assert set(rows.get_column("status_class")) == {"5xx"}

    # a point of the error-rate chart: that group's postbacks of that hour
    trace = _rate_traces(panel)[0]
    point = max(range(len(trace.y)), key=lambda i: trace.customdata[i][2])
    click(panel.figure, 0, point)
    assert panel.table_frame.height == trace.customdata[point][1]
    assert panel.table_frame.filter(pl.col("is_error")).height == trace.customdata[point][2]

    # an incident: its scope's rows during it, all from memory
    incident = panel.incidents.row(0, named=True)
    reads = panel.store_reads
    panel.incident_table.selector.value = incident["incident_id"]
    column = "traffic_source_id" if incident["scope"] == "traffic_source" else "integration_id"
    assert set(panel.table_frame.get_column(column)) == {incident["id"]}
    assert panel.table_frame.height == incident["postbacks"]
    panel.errors_only.value = True
    assert panel.table_frame.height == incident["errors"]
    assert panel.store_reads == reads


class _ScanCountingStore(cf.LogStore):
    """The same store, counting every table scan started on it (whoever starts it)."""

    scans = 0

    def scan(self, kind, *args, **kwargs):
        self.scans += 1
        return super().scan(kind, *args, **kwargs)

    def events(self, *args, **kwargs):
        self.scans += 1
        return super().events(*args, **kwargs)


def _shown(panel) -> dict:
    """Everything the doctor shows: each chart as sent to the browser, the status line, every table, the pickers."""
    from cfanalytics.panels._figures import figure_json

    charts_sent = {
        name: figure_json(getattr(panel, name).figure)
        for name in ("figure", "kinds_figure", "classes_figure", "signatures_figure")
    }
    tables = {name: getattr(panel, name).frame.to_dicts() for name in ("kind_table", "incident_table")}
    # the rows behind: postbacks of the same time may come in either order from a load
    tables["table"] = panel.table.frame.sort("postback_time", "postback_id", nulls_last=True).to_dicts()
    options = {name: list(w.options) for name, w in panel.filters.widgets.items() if hasattr(w, "options")}
    return {
        "charts": charts_sent,
        "tables": tables,
        "status": panel.status.value,
        "note": panel.drill_note.value,
        "drill": list(panel.drill_value.options),
        "options": options,
    }


def test_postback_doctor_filter_changes_read_nothing_and_show_what_a_fresh_panel_shows(account_store, tmp_path):
    _account, sample_store = account_store
    store = _ScanCountingStore(sample_store.path, create=False)
    panel = postback_doctor(store, export_dir=tmp_path)
    sources = sorted(v for _, v in panel.filters.widgets["traffic_sources"].options)
    integrations = sorted(v for _, v in panel.filters.widgets["integrations"].options)
    scans = store.scans
    assert scans > 0
    changes = [
        {"traffic_sources": sources[:1]},
        {"traffic_sources": sources[1:3], "error_kinds": ["auth", "rate_limit", "unreplaced_macro"]},
        {"traffic_sources": [], "error_kinds": [], "integrations": integrations[:1], "status_classes": ["4xx"]},
        {"integrations": [], "status_classes": []},
    ]
    for change in changes:
        panel.set_filters(**change)
        assert store.scans == scans, change  # answered from the frames read at the first load
        fresh = postback_doctor(sample_store, export_dir=tmp_path)
        fresh.set_filters(**_multi_values(panel))
        shown, expected = _shown(panel), _shown(fresh)
        for part in ("charts", "tables", "options"):
            for name in expected[part]:
                assert shown[part][name] == expected[part][name], (change, name)
        assert (shown["status"], shown["note"], shown["drill"]) == (
            expected["status"],
            expected["note"],
            expected["drill"],
        )
    assert panel.loads == 1


def test_postback_doctor_rows_behind_are_made_when_asked(account_store, tmp_path):
    _account, store = account_store
    panel = postback_doctor(store, export_dir=tmp_path)
    assert panel.rows_section.selected_index is None
    assert panel.table.pending
    source = sorted(v for _, v in panel.filters.widgets["traffic_sources"].options)[0]
    panel.set_filters(traffic_sources=[source])
    shown = panel.kinds_figure._shown
    assert isinstance(shown, cf.charts.PlainFigure)
    assert shown._figure is None  # sent as its spec: no go.Figure made for a chart nobody reads in Python
    panel.errors_only.value = True
    assert panel.table.pending
    # the count said while folded is that of the rows the table shows once read
    failing = panel.postbacks.filter(pl.col("is_error"))
    assert (
        panel.drill_note.value == f"<small>{failing.height:,} rows: all postbacks of the selection, errors only</small>"
    )
    assert panel.table_frame.height == failing.height
    assert not panel.table.pending
    assert set(panel.table_frame.get_column("traffic_source_id")) == {source}
    panel.set_filters(traffic_sources=[])
    assert panel.table.pending
    panel.rows_section.selected_index = 0  # unfolded: the page shows the rows
    assert not panel.table.pending
    assert f"of {panel.postbacks.filter(pl.col('is_error')).height:,}" in panel.table.info.value
    panel.rows_section.selected_index = None
    panel.errors_only.value = False
    panel.drill("status_class", "5xx")  # a drill unfolds the section with its rows
    assert panel.rows_section.selected_index == 0
    assert not panel.table.pending
    assert set(panel.table_frame.get_column("status_class")) == {"5xx"}


def _multi_values(panel) -> dict:
    """The panel's multi-select filter values (ids), to set on another panel."""
    return {name: list(w.value) for name, w in panel.filters.widgets.items() if name not in ("start", "end")}


# --------------------------------------------------------------------------- conversion gaps
def test_conversion_gaps_panel_matches_the_truth_and_filters_in_memory(account_store, tmp_path):
    account, store = account_store
    panel = conversion_gaps(store, export_dir=tmp_path)
    assert isinstance(panel, ConversionGapsPanel)
    assert panel.summary == account.truth["gaps"]
    loads, reads = panel.loads, panel.store_reads

    ts = panel.gaps.item(0, "traffic_source_id")
    panel.set_filters(traffic_sources=[ts])
    expected = gaps_by(store, "traffic_source_id", cf.LogFilter(traffic_sources=[ts]))
    assert panel.gaps.drop("traffic_source_name").rows() == expected.drop("traffic_source_name").rows()
    stacks = {t.name: list(t.y) for t in panel.figure.data}
    assert stacks["Not posted"] == [expected.item(0, "not_posted")]

    panel.set_filters(traffic_sources=[])
    panel.by.value = "campaign_id"
    assert "campaign_id" in panel.gaps.columns
    assert panel.gaps.get_column("conversions").sum() == account.truth["gaps"]["conversions"]
    rows = panel.drill("not_posted")
    assert rows.height == account.truth["gaps"]["not_posted"]
    assert set(rows.get_column("gap")) == {"not_posted"}
    click(panel.figure, 1, 0)  # "posted, failed" of the first campaign
    group = panel.gaps.item(0, "campaign_id")
    assert set(panel.table_frame.get_column("gap")) <= {"posted_failed"}
    assert set(panel.table_frame.get_column("campaign_id")) <= {group}
    assert panel.table_frame.height == panel.gaps.item(0, "posted_failed")
    assert (panel.loads, panel.store_reads) == (loads, reads)
    panel.set_filters(end="2026-11-17")
    assert panel.loads == loads + 1


def test_conversion_gaps_reconciles_an_uploaded_export(account_store, tmp_path):
    account, store = account_store
    panel = conversion_gaps(store, export_dir=tmp_path)
    content = account.files["network_export"].read_bytes()
    panel.upload.value = (
        {
            "name": "../network export.csv",
            "type": "text/csv",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime(2026, 11, 20),
        },
    )
    assert panel.reconciles == 1
    truth = account.truth["reconcile"]
    summary = panel.reconciliation.summary
    for key in ("matched", "payout_mismatch", "missing_in_tracker", "missing_in_network"):
        assert summary[key] == truth[key], key
    assert f"matched <b>{truth['matched']:,}</b>" in panel.reconcile_html.value
    statuses = panel.reconcile_table.frame.get_column("status").to_list()
    assert statuses[0] != "matched"  # problems first
    assert statuses[-1] == "matched"
    panel.reconcile_view.value = "missing_in_network"
    assert panel.reconcile_table.frame.height == truth["missing_in_network"]

    bad = b"nothing,useful\n1,2\n"
    panel.upload.value = (
        {
            "name": "bad.csv",
            "type": "text/csv",
            "size": len(bad),
            "content": memoryview(bad),
            "last_modified": datetime(2026, 11, 20),
        },
    )
    assert "Could not reconcile" in panel.reconcile_html.value


# --------------------------------------------------------------------------- activity log
def test_activity_log_filters_timeline_and_diff(small, tmp_path):
    panel = activity_log(small, export_dir=tmp_path)
    assert isinstance(panel, ActivityLogPanel)
    assert panel.changes.height == 3
    assert sorted(t.name for t in panel.figure.data) == ["created", "deleted", "updated"]
    reads = panel.store_reads
    panel.set_filters(actions=["updated"], entity_types=["traffic_source"])
    assert panel.table_frame.get_column("action").to_list() == ["updated"]
    assert [t.name for t in panel.figure.data] == ["updated"]
    panel.set_filters(actions=[], entity_types=[], authors=["bob@example.com"])
    assert panel.table_frame.get_column("author").to_list() == ["bob@example.com"]
    assert (panel.loads, panel.store_reads) == (1, reads)

    panel.set_filters(authors=[])
    row_id = panel.changes.filter(pl.col("action") == "updated").item(0, "_row_id")
    panel.table.selector.value = row_id
    assert panel.change["entity_id"] == "ts1"
    assert panel.diff == [
        ("equal", "{", "{"),
        (
            "replace",
            '  "postback_url": "https://x.example/?token=***"',
            '  "postback_url": "https://x.example/?token=***&cid={clickid}"',
        ),
        ("equal", "}", "}"),
    ]
    assert "token=***" in panel.diff_html
    assert "abc123" not in panel.diff_html
    assert "def456" not in panel.diff_html
    assert "{clickid}" in panel.diff_html
    # a click on the timeline shows that change
    created = next(i for i, t in enumerate(panel.figure.data) if t.name == "created")
    click(panel.figure, created, 0)
    assert panel.change["action"] == "created"
    assert "&lt;script&gt;" in panel.diff_view.value
    assert SCRIPT not in panel.diff_view.value
    panel.set_filters(start="2026-03-03")
    assert panel.loads == 2
    assert panel.changes.height == 1


# --------------------------------------------------------------------------- every panel
@pytest.mark.parametrize("opener", [event_logs, postback_doctor, conversion_gaps, activity_log])
def test_no_raw_script_or_secret_in_any_widget(small, tmp_path, opener):
    panel = opener(small, export_dir=tmp_path)
    if isinstance(panel, EventLogsPanel):
        panel.show_journey(V1)
        panel.set_filters(include_filtered=True)
    if isinstance(panel, ActivityLogPanel):
        for row_id in panel.changes.get_column("_row_id"):
            panel.show_change(row_id)
            assert "<script" not in panel.diff_view.value.lower()
    if isinstance(panel, PostbackDoctorPanel):
        panel.drill("error_kind", "server_error")
        assert panel.table_frame.height == 1
    texts = panel_texts(panel)
    joined = "\n".join(texts)
    assert "<script" not in joined.lower()
    assert TOKEN not in joined
    assert "abc123" not in joined
    if not isinstance(panel, ActivityLogPanel):
        assert "&lt;script&gt;" in joined  # the data is shown, escaped
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_reload_reads_rows_ingested_after_opening(small, tmp_path):
    panel = postback_doctor(small, export_dir=tmp_path)
    assert panel.postbacks.height == 4
    more = f"""{PB_HEADER}
pb5,{V4},2026-03-03 09:20:00,1,Invalid OAuth access token,401,https://zp.example/pb?cid={V4},sale,
"""
    assert small.ingest([write(tmp_path / "more.csv", more)]).ok
    panel.set_filters(traffic_sources=["ts2"])
    assert panel.postbacks.height == 2  # cached: the new row is not read on a filter change
    panel.reload()
    assert panel.loads == 2
    assert panel.postbacks.height == 3
    assert "auth" in panel.kinds.get_column("error_kind").to_list()


def test_panel_export_buttons_write_files_and_show_the_path(small, tmp_path):
    panel = postback_doctor(small, export_dir=tmp_path / "exports")
    panel.table.csv_button.click()
    panel.table.xlsx_button.click()
    csv, xlsx = panel.table.exports
    assert csv.parent == tmp_path / "exports"
    assert csv.suffix == ".csv"
    assert xlsx.suffix == ".xlsx"
    assert str(csv.name) not in panel.table.export_status.value  # the last one (xlsx) is shown
    assert str(xlsx) in panel.table.export_status.value
    back = pl.read_csv(csv, infer_schema=False)
    assert back.height == panel.table_frame.height == 4
    messages = back.get_column("error_message").to_list()
    assert "'=cmd|' /C calc'!A0" in messages
    assert any(u and u.endswith("access_token=***") for u in back.get_column("postback_url").to_list())
    assert TOKEN not in csv.read_text()

    from openpyxl import load_workbook

    sheet = load_workbook(xlsx).active
    values = [str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    assert "'=cmd|' /C calc'!A0" in values
    assert not any(TOKEN in v for v in values)
    assert Path(panel.incident_table.export("csv")).exists()


# --------------------------------------------------------------------------- money at stake, recovery button
def test_conversion_gaps_shows_the_money_at_stake_per_currency(tmp_path):
    from tests.helpers import sql_at_stake
    from tests.test_recover import _hand_made

    store = _hand_made(tmp_path)
    panel = conversion_gaps(store, start="2026-11-01", end="2026-11-30", export_dir=tmp_path / "exports")
    total = panel.at_stake_total.select("currency", "conversions", "posted_failed", "not_posted", "payout").rows()
    assert total == [(*r[:-1], pytest.approx(r[-1])) for r in sql_at_stake(store.path, "total")]
    by_source = sorted(panel.at_stake.drop("traffic_source_name").rows(), key=str)
    assert by_source == [(*r[:-1], pytest.approx(r[-1])) for r in sql_at_stake(store.path, "by_traffic_source")]
    assert "<b>67.00 EUR</b> in 3 conversions" in panel.at_stake_html.value
    assert "<b>40.30 USD</b> in 7 conversions" in panel.at_stake_html.value
    panel.set_filters(traffic_sources=["ts-m"])  # in memory: only Meta's EUR remain
    assert panel.at_stake_total.select("currency", "payout").rows() == [("EUR", 67.0)]
    assert "USD" not in panel.at_stake_html.value


def test_the_recovery_button_writes_what_the_cli_writes(tmp_path):
    import json
    import shutil

    from tests.helpers import run_cli
    from tests.test_recover import _hand_made

    store = _hand_made(tmp_path / "panel")
    twin = tmp_path / "cli" / "store"
    shutil.copytree(store.path, twin)  # the same store before either run (each run adds to its ledger)
    now = "2026-11-20T12:00:00Z"
    cli = run_cli(
        "recover", "--store", str(twin), "--from", "2026-11-01", "--to", "2026-11-30",
        "--now", now, "--out", str(tmp_path / "cli" / "out"),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr

    panel = conversion_gaps(store, start="2026-11-01", end="2026-11-30", export_dir=tmp_path / "exports")
    panel.recovery_now = now
    panel.recover_button.click()
    out = panel.recovery.out
    assert out.parent == store.path.parent / "recovery"  # beside the store, one folder per run
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in (tmp_path / "cli" / "out").iterdir())
    for name in written:
        mine, theirs = (out / name).read_text(), (tmp_path / "cli" / "out" / name).read_text()
        if name == "manifest.json":
            mine, theirs = json.loads(mine), json.loads(theirs)
            assert mine.pop("store") == str(store.path)
            theirs.pop("store")
        assert mine == theirs, name
    # the manifest's counts and payout, shown; 5 recoverable: 38 EUR (Meta), 11 + 1.80 + 10 + 2.50 USD
    shown = panel.recover_html.value
    assert "5 recoverable (38.00 EUR, 25.30 USD)" in shown
    assert "google_ads_offline_conversions.csv: 1 conversion, 11.00 USD" in shown
    assert "outside_window: 2 conversions, 20.00 EUR, 7.00 USD" in shown
    assert "SUPERSECRETTOKEN42" not in shown
    # a second click: a new folder, nothing included twice
    panel.recover_button.click()
    assert panel.recovery.out != out
    assert panel.recovery.manifest["included"] == 0
    assert "already_recovered: 5 conversions" in panel.recover_html.value
    # a folder given by hand that already holds a run: one line, nothing overwritten
    panel.recover_folder.value = str(out)
    panel.recover_button.click()
    assert "Could not write the recovery files" in panel.recover_html.value
    assert "already holds a recovery run" in panel.recover_html.value
