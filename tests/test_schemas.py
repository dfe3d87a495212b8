"""Schemas: pandera models, the generated data dictionary, the light import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from cfanalytics.docs import columns_markdown
from cfanalytics.schemas import KINDS, column_names, pandera_model, polars_schema

ROOT = Path(__file__).resolve().parents[1]


def _valid_postback() -> pl.DataFrame:
    schema = polars_schema("postbacks")
    row = dict.fromkeys(schema)
    row.update(
        _row_id="0" * 32, _batch_id="b", date=date(2026, 11, 20), postback_id="p1", click_id="c",
        postback_time=datetime(2026, 11, 20, tzinfo=UTC), is_error=False, status_code=200,
    )  # fmt: skip
    row.update({name: False for name in schema if name.startswith("flag_")})
    return pl.DataFrame([row], schema=schema)


def test_pandera_model_accepts_a_valid_row_and_rejects_bad_values():
    import pandera.errors

    model = pandera_model("postbacks")
    ok = _valid_postback()
    model.validate(ok)
    with pytest.raises(pandera.errors.SchemaError):
        model.validate(ok.with_columns(pl.lit(999, pl.Int64).alias("status_code")))
    with pytest.raises(pandera.errors.SchemaError):
        model.validate(ok.with_columns(pl.lit(None, pl.String).alias("click_id")))


def test_every_kind_has_required_columns_and_a_model():
    assert column_names("visits", required_only=True) == ["click_id", "visit_time", "campaign_id"]
    assert column_names("activity", required_only=True) == ["changed_at", "author", "entity_type", "action"]
    for kind in KINDS:
        assert pandera_model(kind).name == f"cfanalytics.{kind}"


def test_docs_columns_md_is_current():
    assert (ROOT / "docs" / "columns.md").read_text() == columns_markdown()


def test_import_is_light():
    code = (
        "import sys, cfanalytics\n"
        "names = ('pandera', 'pandas', 'plotly', 'ipywidgets', 'papermill', 'deltalake')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
