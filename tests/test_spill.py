"""Kept frames past a size spill to scratch Parquet files: the same rows and answers as held in memory."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

import narwhals.stable.v2 as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics import _spill
from cfanalytics.diagnose import diagnose, frames, incidents
from cfanalytics.diagnose.incidents import history_filter
from cfanalytics.engines import engine_of

PLAN = pl.LazyFrame(
    {
        "n": range(5_000),
        "text": [f"row {i:05d} of a frame read several times" for i in range(5_000)],
        "at": [datetime(2026, 11, 20, tzinfo=UTC)] * 5_000,
        "flag": [i % 3 == 0 for i in range(5_000)],
    }
).with_columns(pl.when(pl.col("n") % 7 == 0).then(pl.col("text")).alias("sometimes"))


def _spills(monkeypatch) -> list[_spill._Spill]:
    """Every spill made from now on, recorded."""
    made: list[_spill._Spill] = []
    init = _spill._Spill.__init__

    def record(self, schema):
        init(self, schema)
        made.append(self)

    monkeypatch.setattr(_spill._Spill, "__init__", record)
    return made


def test_a_small_frame_is_held_in_memory(monkeypatch):
    made = _spills(monkeypatch)
    held = _spill.kept(PLAN)
    assert _spill.spill_folder(held) is None
    assert made == []
    assert_frame_equal(held.collect(), PLAN.collect())


def test_a_frame_past_the_limit_is_spilled_in_parts_and_read_back_the_same(monkeypatch):
    monkeypatch.setattr(_spill, "PART_BYTES", 1)  # a part per batch past the limit
    monkeypatch.setattr(_spill, "BATCH_ROWS", 1_000)
    plan = PLAN.filter(pl.col("n") >= 10)
    spilled = _spill.kept(plan, limit=0)
    folder = _spill.spill_folder(spilled)
    assert folder is not None
    parts = sorted(folder.glob("*.parquet"))
    assert len(parts) > 1
    assert sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in parts) == 4_990
    assert_frame_equal(spilled.collect(), plan.collect())  # rows, order and types
    assert spilled.collect_schema() == plan.collect_schema()
    del spilled
    gc.collect()
    assert not folder.exists()  # removed with the frame


def test_an_empty_frame_keeps_its_schema_either_way():
    empty = PLAN.filter(pl.col("n") < 0)
    for limit in (None, 0):
        got = _spill.kept(empty, limit=limit).collect()
        assert got.height == 0
        assert got.schema == PLAN.collect_schema()


def test_the_limit_is_the_frame_size(monkeypatch):
    size = PLAN.collect().estimated_size()
    assert _spill.spill_folder(_spill.kept(PLAN, limit=size + 1)) is None
    assert _spill.spill_folder(_spill.kept(PLAN, limit=size // 2)) is not None


def _doc(reader) -> str:
    return json.dumps(diagnose(reader), sort_keys=True, default=str)


def test_diagnose_spilling_every_kept_frame_gives_the_same_document(sample_store, monkeypatch):
    in_memory = _doc(sample_store)
    made = _spills(monkeypatch)
    monkeypatch.setattr(_spill, "SPILL_BYTES", 0)
    monkeypatch.setattr(_spill, "PART_BYTES", 1)
    assert _doc(sample_store) == in_memory
    assert len(made) == 4  # the postback rows, the visits, the history, the classified conversions
    assert all(s.parts for s in made)
    gc.collect()
    assert not any(s.folder.exists() for s in made)


@pytest.mark.parametrize("meanings", ["stored", "derived"])
def test_the_history_is_the_enriched_postbacks_but_their_url(sample_store, monkeypatch, meanings):
    if meanings == "derived":  # the rules read the URL of a failing postback
        monkeypatch.setattr(frames, "_has_meanings", lambda reader: False)
    where = cf.LogFilter(start="2026-11-17", end="2026-11-18")
    wide = history_filter(where, sample_store.timezone)
    enriched = frames.postbacks(sample_store, wide).collect()  # every column, read another way
    key = ["postback_id"]
    for kept in (
        frames.diagnosis_frames(sample_store, where, wide).history,
        frames.incident_frames(sample_store, wide)[0],  # attributed without the conversions' visits
    ):
        history = kept.to_native().collect()
        assert "postback_url" not in history.columns
        assert history.filter(pl.col("is_error")).get_column("error_kind").null_count() == 0
        assert history.height > 0
        assert_frame_equal(history.sort(key), enriched.drop(frames.UNREAD_COLUMNS).sort(key))


def test_incidents_spilling_their_history_are_the_same(sample_store, monkeypatch):
    where = cf.LogFilter(start="2026-11-17", end="2026-11-20")
    in_memory = incidents(sample_store, where)
    assert in_memory.height > 0
    made = _spills(monkeypatch)
    monkeypatch.setattr(_spill, "SPILL_BYTES", 0)
    monkeypatch.setattr(_spill, "PART_BYTES", 1)
    assert_frame_equal(incidents(sample_store, where), in_memory)
    assert len(made) == 3  # the postback rows, the visits of those lacking a source, the history


def test_the_kept_visits_are_those_of_the_click_ids_nulls_and_unknown_ids_left_out(sample_store):
    every = sample_store.scan("visits").select("click_id", "traffic_source_id", "visit_time").collect()
    picked = every.get_column("click_id").drop_nulls().unique().sort().head(40).to_list()
    asked = pl.LazyFrame({"click_id": [*picked, *picked[:5], None, "not-a-stored-click"]})
    kept = frames._kept_visits(engine_of(sample_store), nw.from_native(asked)).to_native().collect()
    semi = frames.visits_of(sample_store, asked).collect()  # the semi join the lookup replaces
    key = ["click_id", "_visit_time"]
    assert_frame_equal(kept.sort(key), semi.sort(key))
    # and by hand: the stored visits of the 40 ids, each once
    expected = every.filter(pl.col("click_id").is_in(picked))
    assert sorted(kept.get_column("click_id").to_list()) == sorted(expected.get_column("click_id").to_list())
    assert kept.height == expected.height >= 40
