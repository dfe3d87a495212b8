"""No secret leaks: every output built from an account full of tokens is scanned for them.

The store keeps raw data (a test checks the tokens are there); every panel, chart,
CLI output, log line, report and export shows them redacted.
"""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest

import cfanalytics as cf
from cfanalytics.cli import main
from tests.helpers import panel_texts, write

META = "EAAGm0PX4ZCpsBAsecretMetaToken1234567890"
CF_KEY = "cfk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
GENERIC = "s3cr3tPostbackToken77"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"
# more shapes: a quoted assignment, a Cookie header, a token-only URL userinfo, an assignment with spaces
QUOTED = "quotedTok3nVal55"
COOKIE = "c00kieSessVal66"
USERINFO = "ghpUserinfoTok77"
SPACED = "spacedKeyVal88"
SIGNATURE = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
SECRETS = (META, CF_KEY, GENERIC, JWT, QUOTED, COOKIE, USERINFO, SPACED, SIGNATURE)
SHAPES = (
    f'access_token="{QUOTED}"',
    f"GET /pb HTTP/1.1\nCookie: session={COOKIE}; theme=dark",
    f"https://{USERINFO}@hooks.example/pb?cid=1",
    f"api_key = {SPACED}",
)
A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secrets")
    store = cf.LogStore(folder / "store", timezone="UTC")
    write(
        folder / "visits.csv",
        "Click ID,Visit Time,Campaign ID,Traffic Source ID,Traffic Source,Referrer\n"
        f"{A},2026-11-20 10:00:00,k1,t1,Meta Ads,https://l.example/?fbclid=x&access_token={META}\n"
        f"{B},2026-11-20 10:05:00,k1,t2,Partner,https://p.example/?api_key={CF_KEY}\n",
    )
    rows = ["Postback ID,Click ID,Postback Time,Is Error,Error Message,Status Code,Postback URL,Custom Conversion (ct)"]
    for i in range(40):
        t = f"2026-11-20 {11 + i // 20:02d}:{i % 20 * 2:02d}:00"
        rows.append(
            f'p{i},{A if i % 2 else B},{t},1,"{{""error"":{{""message"":""Invalid OAuth access token {META}""}}}}",401,'
            f"https://graph.facebook.com/v19.0/1/events?access_token={META}&token={GENERIC},sale"
        )
    for i, shape in enumerate(SHAPES, 40):  # failures whose message carries a secret of another shape
        message = shape.replace('"', '""')
        rows.append(
            f'p{i},{A},2026-11-20 12:{i:02d}:00,1,"{message}",401,'
            f"https://graph.facebook.com/v19.0/1/events?access_token={META},sale"
        )
    write(folder / "postbacks.csv", "\n".join(rows) + "\n")
    write(
        folder / "conversions.csv",
        f"Click ID,Conversion Date,Custom Conversion (ct),Payout\n{A},2026-11-20 10:30:00,sale,5\n",
    )
    write(
        folder / "activity.csv",
        "Date,User,Entity Type,Entity ID,Entity Name,Action,Old Value,New Value\n"
        f'2026-11-20 10:50:00,ana@x.test,Traffic Source,t1,Meta Ads,Updated,"{{""token"":""{GENERIC}""}}",'
        f'"{{""postback_url"":""https://x/?api_key={CF_KEY}&jwt={JWT}""}}"\n',
    )
    write(
        folder / "network.csv",
        f"Sub ID,Transaction ID,Payout,Conversion Time,Note\n{A},tx,5,2026-11-20 10:31:00,Bearer {JWT}\n"
        f'{B},tx2,5,2026-11-20 10:32:00,"{SHAPES[1]}"\n',
    )
    files = [folder / f for f in ("visits.csv", "postbacks.csv", "conversions.csv", "activity.csv")]
    assert store.ingest(files).ok
    return folder, store


def test_the_store_keeps_raw_data(account):
    _, store = account
    urls = store.scan("postbacks").select("postback_url").collect().get_column("postback_url").to_list()
    assert all(META in u for u in urls)
    messages = store.scan("postbacks").select("error_message").collect().to_series().to_list()
    assert [m for m in messages if m in SHAPES] == list(SHAPES)


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_every_shape_is_redacted(shape):
    secret = (QUOTED, COOKIE, USERINFO, SPACED)[shape]
    text = SHAPES[shape]
    assert secret in text
    assert leaks(cf.redact(text) or "") == []
    assert pl.DataFrame({"t": [text]}).select(cf.redaction.redact_expr(pl.col("t"))).item() == cf.redact(text)


def test_cli_outputs_and_log_lines(account, capsys, caplog):
    folder, store = account
    caplog.set_level(logging.DEBUG)
    argv = [
        ["diagnose", "--store", str(store.path)],
        ["diagnose", "--store", str(store.path), "--json"],
        ["reconcile", "--store", str(store.path), str(folder / "network.csv")],
        ["reconcile", "--store", str(store.path), "--json", str(folder / "network.csv")],
        ["batches", "--store", str(store.path), "--json"],
        ["validate", str(folder / "postbacks.csv")],
        ["ingest", "--store", str(store.path), str(folder / "postbacks.csv")],
    ]
    for args in argv:
        assert main(args) == 0, args
        out = capsys.readouterr()
        assert leaks(out.out + out.err) == [], args
    assert leaks(caplog.text) == []
    doc = cf.diagnose.diagnose(store)
    assert doc["postbacks"]["top_signatures"], "the failing postbacks are summarised"
    assert leaks(json.dumps(doc, default=str)) == []


def test_charts(account):
    from cfanalytics import charts

    _, store = account
    d = cf.diagnose
    figures = [
        charts.error_rate_over_time(
            d.postback_errors(store, by=["hour", "traffic_source_id"]),
            changes=store.scan("activity").collect(),
            incidents=d.incidents(store),
        ),
        charts.top_signatures(d.postback_errors(store, by="signature")),
        charts.errors_by_kind(d.postback_errors(store, by="error_kind").drop_nulls("error_kind")),
        charts.gap_classes(d.gaps_by(store)),
    ]
    for fig in figures:
        assert leaks(fig.to_json()) == []


def test_panels_and_exports(account, tmp_path):
    from cfanalytics.panels import activity_log, conversion_gaps, event_logs, export_frame, postback_doctor

    _, store = account
    for opener in (event_logs, postback_doctor, conversion_gaps, activity_log):
        panel = opener(store, export_dir=tmp_path / "exports")
        assert leaks("\n".join(panel_texts(panel))) == [], opener.__name__
    doctor = postback_doctor(store, export_dir=tmp_path / "exports")
    rows = store.scan("postbacks").collect()
    for suffix in ("csv", "xlsx"):
        path = export_frame(rows, tmp_path / f"rows.{suffix}")
        data = path.read_bytes()
        if suffix == "xlsx":
            import zipfile

            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        assert leaks(data.decode("utf-8", "replace")) == []
    assert doctor.figure is not None


def test_report_html(account, tmp_path, capsys):
    from cfanalytics.cli import _kit_wrote

    _, store = account
    out = tmp_path / "report.html"
    assert main(["report", "--store", str(store.path), "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    assert leaks(printed.out + printed.err) == []
    html = out.read_text()
    assert "<div" in html
    assert leaks(html) == []
    assert leaks(out.with_suffix(".json").read_text()) == []
    # the report and its summary are recognised as the kit's own: a later report may replace them
    assert _kit_wrote(out)
    assert _kit_wrote(out.with_suffix(".json"))
    assert json.loads(out.with_suffix(".json").read_text())["period"] == json.loads(printed.out)["period"]


def test_quarantine_display_is_redacted(account, tmp_path):
    _, store = account
    bad = write(
        tmp_path / "bad.csv",
        f"Postback ID,Click ID,Postback Time,Is Error,Postback URL\nq1,{A},,1,https://x/?token={GENERIC}\n",
    )
    result = store.ingest([bad])
    assert result.batches[0].quarantined == 1
    raw = store.quarantine().filter(pl.col("source") == str(bad)).get_column("raw").to_list()[0]
    assert GENERIC in raw  # kept raw in the store
    assert leaks(cf.redact(raw) or "") == []


def test_secrets_in_file_names_and_failures_never_leak(tmp_path, capsys):
    """A presigned export URL saved as a file name, and a token in a failure message."""
    store = tmp_path / "store"
    name = f"postbacks.csv?X-Amz-Credential=AKIA7%2F20261201&X-Amz-Signature={SIGNATURE}"
    signed = write(
        tmp_path / name,
        "Postback ID,Click ID,Postback Time,Is Error,Postback URL\n"
        f"p1,{A},2026-11-20 10:00:00,0,https://x.example/pb\n"
        f"p2,{A},,0,https://x.example/pb\n",  # quarantined: the source is recorded with the record
    )
    missing = tmp_path / f"pb.csv?api_key={CF_KEY}"
    # a failure message that quotes the file's header, which holds tokens
    headers = write(tmp_path / "headers.csv", f'https://{USERINFO}@x.example/,"access_token=""{QUOTED}"""\n1,2\n')
    files = [str(signed), str(missing), str(headers)]
    runs = [
        ["ingest", "--store", str(store), "--timezone", "UTC", *files],
        ["ingest", "--store", str(store), "--json", *files],
        ["validate", *files],
        ["validate", "--json", *files],
        ["batches", "--store", str(store)],
        ["batches", "--store", str(store), "--json"],
    ]
    for argv in runs:
        assert main(argv) in (0, 1), argv
        out = capsys.readouterr()
        assert leaks(out.out + out.err) == [], argv
        assert "X-Amz-Signature=***" in out.out + out.err, argv
    assert out.err == "", "batches prints no failure"
    # nothing written by the kit holds the signature: data files, Delta log, ledger, quarantine, metadata
    for path in store.rglob("*"):
        if path.is_file():
            assert SIGNATURE.encode() not in path.read_bytes(), path
    ledger = cf.LogStore(store).batches()
    shown = str(tmp_path / "postbacks.csv?X-Amz-Credential=***&X-Amz-Signature=***")
    assert set(ledger.get_column("source").to_list()) == {shown}
    assert cf.LogStore(store).quarantine().get_column("source").to_list() == [shown]
