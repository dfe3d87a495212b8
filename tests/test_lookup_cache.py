"""The journey's fast path (``cfanalytics._lookup``): the same rows as the scan, a cache that never goes stale."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

import cfanalytics._delta as delta_module
from cfanalytics import LogStore, _lookup
from cfanalytics.diagnose.journey import JOURNEY_STEPS, journey
from tests.helpers import click_id, conversions_frame, postbacks_frame, visits_frame, write_csv

N = 2_000
KINDS = [kind for kind, _ in JOURNEY_STEPS]


class Wrapped:
    """Another reader (not a LogStore): the journey scans each table, as it did before the fast path."""

    def __init__(self, store: LogStore) -> None:
        self.store = store

    @property
    def timezone(self) -> str | None:
        return self.store.timezone

    def scan(self, kind: str) -> pl.LazyFrame:
        return self.store.scan(kind)

    def events(self) -> pl.LazyFrame:
        return self.store.events()


def cid(n: int) -> str:
    return str(pl.select(click_id(pl.lit(n, pl.Int64))).item())


def _build(tmp_path: Path, n: int = N) -> LogStore:
    """Visits in two overlapping exports (ids shuffled), conversions and postbacks: several files per date."""
    store = LogStore(tmp_path / "store", timezone="UTC")
    visits = visits_frame(n).sample(fraction=1.0, shuffle=True, seed=3)
    files = [
        write_csv(visits.head(n // 2), tmp_path / "v1.csv"),
        write_csv(visits.tail(n - n // 2 + 100), tmp_path / "v2.csv"),
        write_csv(conversions_frame(list(range(0, n, 5))), tmp_path / "cv.csv"),
        write_csv(postbacks_frame(n // 2), tmp_path / "pb.csv"),
    ]
    for f in files:
        assert store.ingest([f]).ok
    return store


def _rows_by_duckdb(store: LogStore, kind: str, key: str) -> int:
    """Rows of ``kind`` holding click id ``key``: DuckDB over the table's current files (listed by the Delta log)."""
    files = store.file_uris(kind)
    if not files:
        return 0
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    query = f"SELECT count(*) FROM read_parquet([{listed}], union_by_name = true) WHERE click_id = ?"
    row = duckdb.connect().execute(query, [key]).fetchone()
    assert row is not None
    return int(row[0])


def _check(store: LogStore, keys: list[str]) -> None:
    """The fast path is taken and returns exactly the scan's journey; per table, as many rows as DuckDB finds."""
    for key in keys:
        assert all(_lookup.plan(store, kind, key) is not None for kind in KINDS)
        got = journey(store, key)
        assert_frame_equal(got, journey(Wrapped(store), key))  # rows, columns, dtypes and order
        steps = got.get_column("step").to_list()
        for kind, step in JOURNEY_STEPS:
            assert steps.count(step) == _rows_by_duckdb(store, kind, key), (key, kind)


def test_fast_path_equals_the_scan_on_the_sample_store(sample_store):
    _lookup.clear()
    pbs = sample_store.scan("postbacks").select("click_id").unique().sort("click_id").collect()
    keys = pbs.get_column("click_id").gather_every(max(pbs.height // 12, 1)).to_list()
    _check(sample_store, [*keys, "no-such-click"])
    found = journey(sample_store, keys[0])
    assert found.filter(pl.col("step") == "postback").height >= 1
    # every column a table holds, as the scan types it (the helper behind the journey)
    frames = _lookup.click_frames(
        sample_store, keys[0], [(k, list(sample_store.scan(k).collect_schema())) for k in KINDS]
    )
    assert frames is None  # the partition column ``date`` is not in the files: such a request is left to the scan
    cols = [(k, [c for c in sample_store.scan(k).collect_schema() if c != "date"]) for k in KINDS]
    frames = _lookup.click_frames(sample_store, keys[0], cols)
    assert frames is not None
    for (kind, columns), frame in zip(cols, frames, strict=True):
        scanned = sample_store.scan(kind).filter(pl.col("click_id") == keys[0]).select(columns).collect()
        assert_frame_equal(frame, scanned)


def test_an_ingest_is_seen_at_once(tmp_path):
    store = _build(tmp_path)
    key = cid(7)
    before = journey(store, key)
    assert before.get_column("step").to_list().count("click") == 0
    version = _lookup.snapshot(store.table_path("clicks")).version
    clicks = pl.DataFrame({"Click ID": [key], "Click Time": ["2024-05-01 00:10:00"], "Campaign ID": ["camp-3"]})
    assert store.ingest([write_csv(clicks, tmp_path / "c.csv")]).ok
    after = journey(store, key)
    assert after.get_column("step").to_list().count("click") == 1
    assert after.filter(pl.col("step") == "click").get_column("campaign_id").to_list() == ["camp-3"]
    assert _lookup.snapshot(store.table_path("clicks")).version > version
    _check(store, [key, cid(8)])


def test_after_maintain(tmp_path, monkeypatch):
    monkeypatch.setattr(delta_module, "SORT_SLICE_ROWS", 300)  # several click-id ranges per partition
    store = _build(tmp_path)
    keys = [cid(n) for n in (0, 5, 999, N - 1, N + 50)]
    _check(store, keys)
    store.maintain(retention_hours=0)  # the files read before are gone from disk
    _check(store, keys)


def test_a_forgotten_click_is_found_nowhere(tmp_path):
    store = _build(tmp_path)
    key = cid(N + 10)  # a visit only this batch holds
    late = visits_frame(1, start=N + 10)
    batch = store.ingest([write_csv(late, tmp_path / "late.csv")]).batches[0]
    assert batch.rows_stored == 1
    assert journey(store, key).get_column("step").to_list() == ["visit"]  # cached: snapshot and footers
    cached = [p for p, *_ in _lookup._footers]
    assert any(key in _footer_text(p) for p in cached)
    assert store.forget(batch.batch_id).get("visits") == 1
    # forget dropped the table's cached footers at once, before any other lookup
    assert not any(key in _footer_text(p) for p, *_ in _lookup._footers)
    assert journey(store, key).height == 0
    assert _lookup.plan(store, "visits", key) == []
    _check(store, [key, cid(3)])
    # no footer of a file that left the table stays cached (its statistics held the forgotten id)
    live = {str(Path(u)) for k in KINDS for u in store.file_uris(k)}
    mine = {p for p, *_ in _lookup._footers if p.startswith(str(store.path) + "/")}
    assert mine
    assert mine <= live


def _footer_text(path: str) -> str:
    foot = _lookup._footers.get(next(k for k in _lookup._footers if k[0] == path))
    assert foot is not None
    return " ".join(str(v) for v in (*foot.lows, *foot.highs))


def test_a_click_id_in_no_file(tmp_path):
    store = _build(tmp_path)
    for key in ("~beyond every id", "0-before every id", cid(N + 500)):
        assert journey(store, key).height == 0
        _check(store, [key])
    # ids outside every file's range: no file is even looked at
    assert _lookup.plan(store, "visits", "~beyond every id") == []


def test_a_table_with_deletion_vectors_is_scanned(tmp_path):
    store = _build(tmp_path)
    key = cid(10)
    assert _lookup.plan(store, "visits", key)
    # deltalake writes no deletion vectors, but a table whose protocol allows them could hold some
    store.table("visits").alter.set_table_properties({"delta.enableDeletionVectors": "true"})
    assert "deletionVectors" in (store.table("visits").protocol().reader_features or [])
    assert _lookup.plan(store, "visits", key) is None
    assert _lookup.click_frames(store, key, [("visits", ["click_id"])]) is None
    got = journey(store, key)
    assert_frame_equal(got, journey(Wrapped(store), key))
    assert got.get_column("step").to_list().count("visit") == _rows_by_duckdb(store, "visits", key) == 1


def test_other_readers_and_stores_are_scanned(tmp_path):
    store = _build(tmp_path)
    assert _lookup.plan(Wrapped(store), "visits", cid(1)) is None
    pending = LogStore(tmp_path / "later", timezone="UTC", create="on_write")
    assert _lookup.plan(pending, "visits", cid(1)) is None
    assert journey(pending, cid(1)).height == 0


def test_only_the_files_that_can_hold_the_id_are_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(delta_module, "SORT_SLICE_ROWS", 300)
    monkeypatch.setattr(delta_module, "ROW_GROUP_ROWS", 128)
    store = _build(tmp_path)
    store.maintain(retention_hours=0)
    opened: list[str] = []
    real_open = _lookup._open

    def counting(path: str) -> Any:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(_lookup, "_open", counting)
    for n in (3, 1_111, N - 2):
        key = cid(n)
        _lookup.clear()
        opened.clear()
        journey(store, key)
        # independently: each file's click-id range and rows, read whole with Polars
        ranges, holding = set(), set()
        for kind in KINDS:
            for f in store.file_uris(kind):
                ids = pl.read_parquet(f, columns=["click_id"]).get_column("click_id")
                if str(ids.min()) <= key <= str(ids.max()):
                    ranges.add(str(Path(f)))
                if (ids == key).any():
                    holding.add(str(Path(f)))
        assert holding
        assert holding <= ranges
        # footers of the files whose range can hold the id; row groups read only there
        assert set(opened) == ranges, set(opened) ^ ranges
        assert len(opened) <= 2 * len(ranges)
        # warm: footers cached, only the files with a candidate row group are opened again
        opened.clear()
        journey(store, key)
        assert holding <= set(opened) <= ranges
        assert len(opened) == len(set(opened))


def test_a_copied_store_gets_its_own_snapshot(tmp_path):
    store = _build(tmp_path)
    key = cid(4)
    journey(store, key)
    shutil.copytree(store.path, tmp_path / "copy")
    copy = LogStore(tmp_path / "copy", create=False)
    assert_frame_equal(journey(copy, key), journey(store, key))
    assert _lookup.snapshot(copy.table_path("visits")).folder != _lookup.snapshot(store.table_path("visits")).folder
