"""The command line: --json shapes, exit codes, one-line errors (docs/contract.md §5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cfanalytics.cli import main
from tests.helpers import EXAMPLES, write

A = "aaaaaaaa-0000-4000-8000-000000000001"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cfanalytics", *args], capture_output=True, text=True, check=False)


def test_ingest_json_shape_and_invariant(tmp_path, capsys):
    store = tmp_path / "s"
    files = [str(EXAMPLES / "gaps" / f) for f in ("visits.csv", "conversions.csv", "postbacks.csv")]
    assert main(["ingest", "--store", str(store), "--timezone", "UTC", "--json", *files]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = sorted(
        (b["kind"], b["rows_read"], b["rows_stored"], b["already_stored"], b["quarantined"]) for b in doc["batches"]
    )
    # visits.csv: 2 rows, conversions.csv: 4 (two identical, both kept), postbacks.csv: 3
    assert got == [("conversions", 4, 4, 0, 0), ("postbacks", 3, 3, 0, 0), ("visits", 2, 2, 0, 0)]
    for b in doc["batches"]:
        assert set(b) == {
            "batch_id",
            "source",
            "kind",
            "rows_read",
            "rows_stored",
            "already_stored",
            "quarantined",
            "flagged",
        }
    assert main(["ingest", "--store", str(store), "--json", *files]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [b["already_stored"] for b in again["batches"]] == [2, 4, 3]


def test_text_summary_shows_top_reasons(tmp_path, capsys):
    path = write(
        tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n,2026-11-20 10:00:00,k1\n"
    )
    assert main(["ingest", "--store", str(tmp_path / "s"), "--timezone", "UTC", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path} [visits]: 2 read, 1 stored, 0 already stored, 1 quarantined, 0 flagged" in out
    assert "quarantine: missing_required 1" in out


def test_exit_codes(tmp_path):
    bad = write(tmp_path / "bad.bin", "\x00\x01\x02garbage")
    r = run("ingest", "--store", str(tmp_path / "s"), str(bad))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"cfanalytics: {bad}:")
    assert "Traceback" not in r.stderr
    good = write(tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n")
    assert run("ingest", "--store", str(tmp_path / "s"), "--timezone", "UTC", str(good)).returncode == 0
    r = run("ingest", "--store", str(tmp_path / "s"), "--timezone", "Europe/Berlin", str(good))
    assert r.returncode == 2
    assert "store time zone is UTC, not Europe/Berlin" in r.stderr
    r = run("ingest", "--bogus")
    assert r.returncode == 2
    r = run("--help")
    assert r.returncode == 0
    assert "ingest" in r.stdout


@pytest.mark.parametrize("command", ["demo", "ingest", "validate", "forget", "batches", "maintain"])
def test_every_command_has_help(command):
    r = run(command, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: cfanalytics" in r.stdout


def test_validate_writes_nothing(tmp_path, capsys):
    path = write(
        tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n{A},2026-11-20 10:00:00,k1\n"
    )
    assert main(["validate", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(b["rows_read"], b["rows_stored"], b["already_stored"]) for b in doc["batches"]] == [(2, 1, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.csv"]


def test_forget_and_batches(tmp_path, capsys):
    store = str(tmp_path / "s")
    path = write(tmp_path / "v.csv", f"Click ID,Visit Time,Campaign ID\n{A},2026-11-20 10:00:00,k1\n")
    main(["ingest", "--store", store, "--timezone", "UTC", "--json", str(path)])
    batch = json.loads(capsys.readouterr().out)["batches"][0]["batch_id"]
    assert main(["batches", "--store", store, "--json"]) == 0
    ledger = json.loads(capsys.readouterr().out)["batches"]
    assert [(b["batch_id"], b["rows_stored"], b["sha256"] is not None) for b in ledger] == [(batch, 1, True)]
    assert main(["forget", "--store", store, "--batch", batch, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"batch": batch, "deleted": {"visits": 1}}


# ------------------------------------------------------------------ rough edges
def _store_with_rows(tmp_path) -> str:
    store = str(tmp_path / "s")
    files = [str(EXAMPLES / "gaps" / f) for f in ("visits.csv", "conversions.csv", "postbacks.csv")]
    assert main(["ingest", "--store", store, "--timezone", "UTC", "--json", *files]) == 0
    return store


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cfanalytics: ")
    assert not lines[0].startswith("cfanalytics: cfanalytics"), "one prefix, never doubled"
    assert "Traceback" not in err
    return lines[0]


def test_every_option_of_every_subcommand_has_help():
    from argparse import _HelpAction, _SubParsersAction, _VersionAction

    from cfanalytics.cli import _parser

    parser = _parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, _SubParsersAction)]
    assert set(subparsers.choices) >= {"demo", "ingest", "validate", "forget", "diagnose", "reconcile", "report"}
    missing = []
    for name, sub in subparsers.choices.items():
        assert sub.description or any(c.dest == name and c.help for c in subparsers._choices_actions), name
        for action in sub._actions:
            if isinstance(action, _HelpAction | _VersionAction):
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_report_help_documents_the_json_beside_the_html():
    r = run("report", "--help")
    assert r.returncode == 0
    assert "FILE.json" in r.stdout
    assert "--force" in r.stdout
    assert '"period"' in r.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2026-13-45"], "--from 2026-13-45: no such date (month must be in 1..12)"),
        (["--to", "2026-02-30"], "--to 2026-02-30: no such date (day is out of range for month)"),
        (["--from", "20261120"], "--from '20261120': expected a date YYYY-MM-DD"),
        (["--from", "9999-12-31"], "--from 9999-12-31: outside the dates a log can hold (1970-01-01 to 2199-12-31)"),
        (["--from", "0001-01-01"], "--from 0001-01-01: outside the dates a log can hold (1970-01-01 to 2199-12-31)"),
        (["--from", "2026-11-25", "--to", "2026-11-01"], "--from 2026-11-25 is after --to 2026-11-01"),
    ],
)
def test_dates_are_checked_before_any_work(tmp_path, capsys, argv, message):
    store = _store_with_rows(tmp_path)
    capsys.readouterr()
    for command in (["diagnose"], ["report", "--out", str(tmp_path / "r.html")]):
        assert main([*command, "--store", store, *argv]) == 2
        out = capsys.readouterr()
        assert message in _one_line(out.err)
        assert out.out == ""
    assert not (tmp_path / "r.html").exists()


def test_a_range_without_rows_says_where_the_data_is(tmp_path, capsys):
    store = _store_with_rows(tmp_path)
    capsys.readouterr()
    assert main(["diagnose", "--store", store, "--from", "2025-01-01", "--to", "2025-01-02"]) == 0
    out = capsys.readouterr()
    # the worked example's rows are on 2026-11-20 (UTC), counted by hand
    assert out.out == f"no rows from 2025-01-01 to 2025-01-02 (UTC); {store} holds 2026-11-20 to 2026-11-20\n"
    assert main(["diagnose", "--store", store, "--from", "2027-01-01", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["postbacks"]["total"] == 0
    assert (
        _one_line(out.err) == f"cfanalytics: no rows from 2027-01-01 on (UTC); {store} holds 2026-11-20 to 2026-11-20"
    )


def test_diagnose_without_dates_prints_the_real_period(tmp_path, capsys):
    store = _store_with_rows(tmp_path)
    capsys.readouterr()
    assert main(["diagnose", "--store", store]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "start" not in first
    assert "end" not in first
    assert first == "Postbacks 2026-11-20T00:00:00Z → 2026-11-21T00:00:00Z (UTC)"


def test_a_store_that_is_a_file_and_a_negative_retention(tmp_path, capsys):
    regular = write(tmp_path / "regular", "not a store")
    for argv in (
        ["ingest", "--store", str(regular), str(EXAMPLES / "gaps" / "visits.csv")],
        ["diagnose", "--store", str(regular)],
        ["batches", "--store", str(regular)],
    ):
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"--store {regular}: is a file, not a store folder" in line
    assert regular.read_text() == "not a store"
    store = _store_with_rows(tmp_path)
    capsys.readouterr()
    assert main(["maintain", "--store", store, "--retention-hours", "-1"]) == 2
    assert "--retention-hours -1: negative; give 0 or more hours" in _one_line(capsys.readouterr().err)


def test_usage_errors_have_one_prefix(capsys):
    assert main(["ingest"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (
        "cfanalytics: ingest: the following arguments are required: FILE, --store (see cfanalytics ingest --help)"
    )
    assert main(["nonsense"]) == 2
    assert _one_line(capsys.readouterr().err).startswith("cfanalytics: argument command: invalid choice: 'nonsense'")


@pytest.mark.parametrize(
    "command",
    [
        ["diagnose", "--store", "{store}"],
        ["diagnose", "--store", "{store}", "--json"],
        ["batches", "--store", "{store}"],
        ["config", "--store", "{store}"],
        ["validate", "--json", "{visits}"],
        ["--help"],
    ],
)
def test_a_closed_pipe_ends_quietly(tmp_path, command):
    store = _store_with_rows(tmp_path)
    argv = [a.format(store=store, visits=EXAMPLES / "gaps" / "visits.csv") for a in command]
    # `cfanalytics … | head -c 1`: the reader goes away after one byte
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfanalytics", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.read(1)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert err.decode() == ""
    assert proc.returncode in (0, 141)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(28, "No space left on device", "/store/tables/postbacks/part-1.parquet"), "no space left on device"),
        (
            RuntimeError("polars.exceptions.ComputeError: failed to write: No space left on device (os error 28)"),
            "no space left on device",
        ),
        (
            PermissionError(13, "Permission denied", "/store/cfanalytics.json"),
            "Permission denied (/store/cfanalytics.json)",
        ),
        (RecursionError("maximum recursion depth exceeded"), "input nested too deeply to read"),
        (KeyError("token=abc123\nsecond line"), "KeyError: 'token=***"),
    ],
)
def test_an_unexpected_error_is_one_redacted_line(monkeypatch, capsys, error, expected):
    from cfanalytics import cli

    def boom(args):
        raise error

    monkeypatch.setitem(cli._COMMANDS, "batches", boom)
    monkeypatch.delenv("CFANALYTICS_TRACEBACK", raising=False)
    assert main(["batches", "--store", "x"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert expected in line
    assert line.endswith("(set CFANALYTICS_TRACEBACK=1 to see the traceback)")
    monkeypatch.setenv("CFANALYTICS_TRACEBACK", "1")
    with pytest.raises(type(error)):
        main(["batches", "--store", "x"])


def test_a_polars_compute_error_during_ingest_is_one_line(tmp_path, monkeypatch, capsys):
    import polars as pl

    from cfanalytics import ingest

    def full(*args, **kwargs):
        raise pl.exceptions.ComputeError("failed to write the batch: No space left on device (os error 28)")

    monkeypatch.setattr(ingest, "_commit", full)
    path = EXAMPLES / "gaps" / "visits.csv"
    assert main(["ingest", "--store", str(tmp_path / "s"), "--timezone", "UTC", str(path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("cfanalytics: no space left on device: free some space and run the same command again")


def test_report_never_overwrites_a_file_it_did_not_write(tmp_path, monkeypatch, capsys):
    from cfanalytics import report

    store = _store_with_rows(tmp_path)
    exports = tmp_path / "exports"
    exports.mkdir()
    users = write(exports / "postbacks.json", '[{"Postback ID": "p1"}]')  # an export the user ingested
    calls = []

    def fake_run(store_path, out, **kwargs):
        calls.append(out)
        Path(out).write_text("<html>Postback health report jp-Notebook</html>")
        summary = {"period": {}, "previous_period": {}, "current": {}, "previous": {}, "breached": []}
        Path(out).with_suffix(".json").write_text(json.dumps(summary))
        return report.ReportResult(Path(out), summary, [], [])

    monkeypatch.setattr(report, "run", fake_run)
    capsys.readouterr()
    out = str(exports / "postbacks.html")
    assert main(["report", "--store", store, "--out", out, "--json"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (
        f"cfanalytics: {users} exists and was not written by cfanalytics: not overwritten "
        "(pass --force to replace it, or choose another --out)"
    )
    assert users.read_text() == '[{"Postback ID": "p1"}]'
    assert calls == []
    # a user's HTML page is kept too
    page = write(tmp_path / "page.html", "<html>mine</html>")
    assert main(["report", "--store", store, "--out", str(page)]) == 2
    assert page.read_text() == "<html>mine</html>"
    capsys.readouterr()
    # the kit's own report may be replaced; --force replaces the user's file
    assert main(["report", "--store", store, "--out", str(tmp_path / "r.html"), "--json"]) == 0
    assert main(["report", "--store", store, "--out", str(tmp_path / "r.html"), "--json"]) == 0
    assert main(["report", "--store", store, "--out", out, "--force", "--json"]) == 0
    assert json.loads(users.read_text())["breached"] == []
    assert len(calls) == 3


def test_demo_never_replaces_a_store_or_exports_it_did_not_make(tmp_path, capsys):
    store = tmp_path / "mine" / "store"  # a real store at DIR/store
    files = [str(EXAMPLES / "gaps" / f) for f in ("visits.csv", "postbacks.csv")]
    assert main(["ingest", "--store", str(store), "--timezone", "UTC", "--json", *files]) == 0
    capsys.readouterr()
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "mine").rglob("*"))
    assert main(["demo", "--dir", str(tmp_path / "mine"), "--no-report", "--visits", "50"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (
        f"cfanalytics: {store} exists and is not the demo's: not replaced (pass --force, or choose another --dir)"
    )
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "mine").rglob("*")) == before
    exports = tmp_path / "other" / "exports"
    write(exports / "postbacks.csv", "Postback ID\np1\n")
    assert main(["demo", "--dir", str(tmp_path / "other"), "--no-report", "--visits", "50"]) == 2
    assert _one_line(capsys.readouterr().err).startswith(f"cfanalytics: {exports} exists and is not the demo's")
    assert (exports / "postbacks.csv").read_text() == "Postback ID\np1\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diagnose", "--store", "{store}", "--grace", "nan"], "--grace nan: give 0 or more minutes"),
        (["diagnose", "--store", "{store}", "--grace", "-5"], "--grace -5: give 0 or more minutes"),
        (["maintain", "--store", "{store}", "--retention-hours", "99999999999999"], "more than 876000 hours"),
        (["validate", "--timezone", "Mars/Base", "{visits}"], "unknown time zone 'Mars/Base'"),
        (["ingest", "--store", "{file}/sub", "{visits}"], "--store {file}/sub: {file} is a file, not a folder"),
    ],
)
def test_more_arguments_that_once_gave_tracebacks(tmp_path, capsys, argv, message):
    store = _store_with_rows(tmp_path)
    regular = write(tmp_path / "regular", "x")
    values = {"store": store, "visits": str(EXAMPLES / "gaps" / "visits.csv"), "file": str(regular)}
    capsys.readouterr()
    assert main([a.format(**values) for a in argv]) == 2
    assert message.format(**values) in _one_line(capsys.readouterr().err)


def test_a_library_panic_is_one_line_too(monkeypatch, capsys):
    from cfanalytics import cli

    class PanicException(BaseException):  # what a Rust panic inside a library raises through pyo3
        pass

    def boom(args):
        raise PanicException("TimeDelta::hours out of bounds")

    monkeypatch.setitem(cli._COMMANDS, "batches", boom)
    monkeypatch.delenv("CFANALYTICS_TRACEBACK", raising=False)
    assert main(["batches", "--store", "x"]) == 1
    assert _one_line(capsys.readouterr().err).startswith(
        "cfanalytics: PanicException: TimeDelta::hours out of bounds (set CFANALYTICS_TRACEBACK=1"
    )
