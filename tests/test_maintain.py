"""`maintain`: compaction, checkpoints, vacuum of orphaned files, next to a running ingest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from cfanalytics import LogStore
from tests.helpers import write


def _visits(path: Path, start: int, n: int) -> Path:
    rows = "".join(
        f"{i:08x}-0000-4000-8000-{i:012x},2026-11-{20 + i % 3} 10:{i % 60:02d}:00,k{i % 4}\n"
        for i in range(start, start + n)
    )
    return write(path, "Click ID,Visit Time,Campaign ID\n" + rows)


def _data_files(store: LogStore, kind: str) -> set[str]:
    return {str(p) for p in store.table_path(kind).rglob("*.parquet") if "_delta_log" not in p.parts}


def test_maintain_removes_orphans_and_keeps_every_row(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    for k in range(4):  # several small commits to compact
        assert store.ingest([_visits(tmp_path / f"v{k}.csv", k * 100, 100)]).ok
    before = store.scan("visits").collect().sort("_row_id")
    # what a killed writer leaves: a Parquet file never committed, and a scratch folder
    some = sorted(_data_files(store, "visits"))[0]
    orphan = Path(some).with_name("part-00000-orphan-c000.zstd.parquet")
    shutil.copy(some, orphan)
    old = time.time() - 10 * 24 * 3600
    os.utime(orphan, (old, old))
    scratch = store.path / "_staging" / "999999-deadbeef"
    scratch.mkdir(parents=True)
    os.utime(scratch, (old, old))
    assert str(orphan) in _data_files(store, "visits")
    out = store.maintain(retention_hours=0)
    assert out["visits"]["compacted"] >= 4
    # on disk: exactly the files of the current version (from the Delta log)
    assert _data_files(store, "visits") == {str(Path(u)) for u in store.file_uris("visits")}
    assert not scratch.exists()
    assert store.scan("visits").collect().sort("_row_id").equals(before)
    assert len(store.file_uris("visits")) < 4 * 3  # 4 commits × 3 date partitions, now compacted


def test_maintain_and_an_ingest_at_the_same_time(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    for k in range(3):
        assert store.ingest([_visits(tmp_path / f"v{k}.csv", k * 100, 100)]).ok
    late = _visits(tmp_path / "late.csv", 1000, 5000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmds = [
        [sys.executable, "-m", "cfanalytics", "ingest", "--store", str(store.path), str(late)],
        [sys.executable, "-m", "cfanalytics", "maintain", "--store", str(store.path), "--retention-hours", "0"],
    ]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    clean = LogStore(tmp_path / "clean", timezone="UTC")
    clean.ingest([tmp_path / f"v{k}.csv" for k in range(3)] + [late])
    cols = [c for c in clean.scan("visits").collect_schema().names() if c != "_batch_id"]
    got = store.scan("visits").select(cols).collect().sort("_row_id")
    assert got.equals(clean.scan("visits").select(cols).collect().sort("_row_id"))
    assert got.height == 5300
    # every file on disk is live once maintained again
    store.maintain(retention_hours=0)
    assert _data_files(store, "visits") == {str(Path(u)) for u in store.file_uris("visits")}
    assert store.scan("visits").select(pl.len()).collect().item() == 5300
