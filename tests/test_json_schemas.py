"""CLI --json outputs validate against the JSON Schemas in docs/schemas/ (docs/contract.md §5)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cfanalytics.cli import main
from cfanalytics.sample import generate

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def schema(name: str) -> dict:
    doc = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    import cfanalytics as cf

    folder = tmp_path_factory.mktemp("schemas")
    account = generate(folder / "exports", seed=5, visits=20_000)
    store = cf.LogStore(folder / "store", timezone=account.truth["timezone"])
    assert store.ingest([p for role, p in sorted(account.files.items()) if role != "network_export"]).ok
    return folder, account


def _run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_ingest_diagnose_and_reconcile_json_validate(sample, capsys):
    folder, account = sample
    store = str(folder / "store")
    files = [str(p) for role, p in sorted(account.files.items()) if role != "network_export"]
    code, doc = _run(capsys, "ingest", "--store", store, "--json", *files)  # a re-run: nothing new
    assert code == 0
    jsonschema.validate(doc, schema("ingest"))
    for b in doc["batches"]:
        assert b["rows_read"] == b["rows_stored"] + b["already_stored"] + b["quarantined"]
        assert b["rows_stored"] == 0
    code, doc = _run(capsys, "diagnose", "--store", store, "--json")
    assert code == 0
    jsonschema.validate(doc, schema("diagnose"))
    assert doc["incidents"], "the sample account has incidents"
    code, doc = _run(capsys, "diagnose", "--store", store, "--from", "2026-11-18", "--to", "2026-11-18", "--json")
    jsonschema.validate(doc, schema("diagnose"))
    assert doc["window"] == {"from": "2026-11-18T05:00:00Z", "to": "2026-11-19T05:00:00Z"}  # New York dates
    code, doc = _run(capsys, "reconcile", "--store", store, "--json", str(account.files["network_export"]))
    assert code == 0
    jsonschema.validate(doc, schema("reconcile"))


def test_diagnose_text_rendering(sample, capsys):
    folder, account = sample
    store = str(folder / "store")
    assert main(["diagnose", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "By traffic source:" in out
    assert "suspected change:" in out
    assert "EAAG" not in out  # Meta tokens in postback URLs and messages never shown
    assert main(["reconcile", "--store", store, str(account.files["network_export"])]) == 0
    assert "missing in tracker" in capsys.readouterr().out


def test_diagnose_bad_dates_and_missing_store(tmp_path, capsys):
    assert main(["diagnose", "--store", str(tmp_path / "nope")]) == 1
    assert "not a cfanalytics store" in capsys.readouterr().err
    import cfanalytics as cf

    cf.LogStore(tmp_path / "s", timezone="UTC")
    assert main(["diagnose", "--store", str(tmp_path / "s"), "--from", "yesterday"]) == 2
    assert "--from 'yesterday': expected a date YYYY-MM-DD" in capsys.readouterr().err
