"""Golden files: the sample account's diagnosis, its text rendering and the report summary stay byte-identical.

The files under ``tests/data/golden/`` were written from the code before a change and prove
that a refactor keeps behavior. After an intended change of output, rewrite them with
``CFANALYTICS_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from cfanalytics.cli import main
from cfanalytics.diagnose import diagnose, incidents
from cfanalytics.filters import LogFilter
from cfanalytics.report import summary, summary_html
from cfanalytics.text import diagnosis_text

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
UPDATE = os.environ.get("CFANALYTICS_UPDATE_GOLDEN") == "1"


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("diagnose_sample.json", []),
        ("diagnose_sample_window.json", ["--from", "2026-11-17", "--to", "2026-11-18", "--grace", "30"]),
    ],
)
def test_diagnose_json_of_the_sample_account_is_unchanged(sample, capsys, name, args):
    assert main(["diagnose", "--store", str(sample.folder / "store"), "--json", *args]) == 0
    _check(name, capsys.readouterr().out)


def test_diagnosis_text_is_unchanged(sample_store):
    doc = diagnose(sample_store, LogFilter(start=date(2026, 11, 17), end=date(2026, 11, 18)), grace_minutes=30)
    _check("diagnosis_sample.txt", diagnosis_text(doc) + "\n")


def test_report_summary_is_unchanged(sample_store):
    period = summary(sample_store, date(2026, 11, 18), date(2026, 11, 19))
    where = LogFilter(start=date(2026, 11, 18), end=date(2026, 11, 19), timezone=sample_store.timezone)
    _check("report_summary.json", json.dumps(period, indent=2, default=str) + "\n")
    _check("report_summary.html", summary_html(period, incidents(sample_store, where)) + "\n")
