"""The command line: --json shapes, exit codes, one-line errors (docs/contract.md §5)."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert main(["ingest", "--store", str(tmp_path / "s"), str(path)]) == 0
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
    assert run("ingest", "--store", str(tmp_path / "s"), str(good)).returncode == 0  # records UTC
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
    main(["ingest", "--store", store, "--json", str(path)])
    batch = json.loads(capsys.readouterr().out)["batches"][0]["batch_id"]
    assert main(["batches", "--store", store, "--json"]) == 0
    ledger = json.loads(capsys.readouterr().out)["batches"]
    assert [(b["batch_id"], b["rows_stored"], b["sha256"] is not None) for b in ledger] == [(batch, 1, True)]
    assert main(["forget", "--store", store, "--batch", batch, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"batch": batch, "deleted": {"visits": 1}}
