"""Click-id lookup: ``maintain`` lays the tables out by click id, the journey reads only what it needs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import cfanalytics._delta as delta_module
from cfanalytics import LogStore, _lookup
from cfanalytics.diagnose.journey import JOURNEY_COLUMNS, click_rows, journey
from cfanalytics.panels.event_logs import EventLogsPanel
from tests.helpers import click_id, conversions_frame, postbacks_frame, visits_frame, write_csv

N = 3_000
TABLES = ("visits", "clicks", "conversions", "postbacks", "activity", "quarantine")


def _visits_frame(n: int, *, start: int = 0) -> pl.DataFrame:
    """``n`` visits over two days (unlike ``helpers.visits_frame``, whose first 5,000 fall on one day)."""
    return visits_frame(n, start=start).with_columns(
        (pl.datetime(2024, 5, 1) + pl.duration(seconds=pl.int_range(start, start + n) * 97 % 172_800))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
        .alias("Visit Time")
    )


def _clicks_frame(ids: list[int]) -> pl.DataFrame:
    frame = pl.DataFrame({"i": ids}, schema={"i": pl.Int64})
    i = pl.col("i")
    return frame.select(
        click_id(i).alias("Click ID"),
        (pl.datetime(2024, 5, 1) + pl.duration(seconds=i * 97 % 172_800 + 30))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
        .alias("Click Time"),
        ("camp-" + (i % 4).cast(pl.String)).alias("Campaign ID"),
    )


def _build(tmp_path: Path) -> LogStore:
    """Two overlapping visit exports (ids in random order), clicks, conversions and postbacks."""
    store = LogStore(tmp_path / "store", timezone="UTC")
    visits = _visits_frame(N).sample(fraction=1.0, shuffle=True, seed=3)
    half = N // 2
    files = [
        write_csv(visits.head(half), tmp_path / "v1.csv"),
        write_csv(visits.tail(N - half), tmp_path / "v2.csv"),
        write_csv(_clicks_frame(list(range(0, N, 2))).sample(fraction=1.0, shuffle=True, seed=4), tmp_path / "c.csv"),
        write_csv(
            conversions_frame(list(range(0, N, 5))).sample(fraction=1.0, shuffle=True, seed=6), tmp_path / "cv.csv"
        ),
        write_csv(postbacks_frame(N // 2).sample(fraction=1.0, shuffle=True, seed=5), tmp_path / "pb.csv"),
    ]
    for f in files:  # one commit each: several files per date partition, overlapping click-id ranges
        result = store.ingest([f])
        assert result.ok, result.failures
    return store


def _content(store: LogStore) -> dict[str, pl.DataFrame]:
    return {t: store.scan(t).collect().sort("_row_id") for t in TABLES}


def _files(store: LogStore, kind: str) -> list[str]:
    return [str(u).removeprefix("file://") for u in store.file_uris(kind)]


def _groups(path: str) -> list[tuple[int, str, str]]:
    """``(rows, min click_id, max click_id)`` of each row group of one file, from its footer."""
    meta = pq.ParquetFile(path).metadata
    col = [meta.schema.column(i).name for i in range(meta.num_columns)].index("click_id")
    out = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        assert stats is not None
        assert stats.has_min_max
        out.append((meta.row_group(g).num_rows, str(stats.min), str(stats.max)))
    return out


def test_writer_properties_bound_row_groups():
    props = delta_module.writer_properties()
    assert props.max_row_group_size == 65_536
    assert delta_module.writer_properties(max_row_group_size=100).max_row_group_size == 100


def test_maintain_sorts_by_click_id_and_keeps_rows_and_ledger(tmp_path, monkeypatch):
    store = _build(tmp_path)
    before = _content(store)
    ledger = store.batches()
    schema = store.table("visits").schema().to_arrow()
    monkeypatch.setattr(delta_module, "SORT_SLICE_ROWS", 400)  # several click-id ranges per partition
    out = store.maintain(retention_hours=0)
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        # visits came in two overlapping ingests; the other tables in one each, which wrote them sorted already
        assert out[kind]["sorted"] >= (2 if kind == "visits" else 0), out
        for path in _files(store, kind):
            # (a) bounded row groups, click ids sorted within each file
            assert all(rows <= 65_536 for rows, _, _ in _groups(path))
            ids = pq.read_table(path, columns=["click_id"]).column("click_id").to_pylist()
            assert ids == sorted(ids), f"{kind}: {path} not sorted by click_id"
    # (b) the same rows, _row_ids and batch ids; the same table schema
    after = _content(store)
    for table in TABLES:
        assert_frame_equal(after[table], before[table])
    assert store.table("visits").schema().to_arrow() == schema
    # (c) the ledger is unchanged: maintain commits carry no batch id
    assert_frame_equal(store.batches(), ledger)
    # cheap to re-run: nothing left to sort
    again = store.maintain(retention_hours=0)
    assert all(again[k]["sorted"] == 0 and again[k]["compacted"] == 0 for k in ("visits", "postbacks")), again
    assert_frame_equal(store.batches(), ledger)


def test_maintain_resorts_only_partitions_an_ingest_touched(tmp_path):
    store = _build(tmp_path)
    store.maintain(retention_hours=0)
    late = _visits_frame(200, start=N)  # new visits, all on one day (2024-05-02)
    assert late.get_column("Visit Time").str.slice(0, 10).unique().to_list() == ["2024-05-02"]
    assert store.ingest([write_csv(late, tmp_path / "late.csv")]).ok
    out = store.maintain(retention_hours=0)
    assert out["visits"]["sorted"] == 1
    assert out["postbacks"]["sorted"] == 0
    assert store.scan("visits").select(pl.len()).collect().item() == N + late.height


def _expected_journey(store: LogStore, cid: str) -> dict[str, pl.DataFrame]:
    """Rows per table holding ``cid``, by a full read of every current file (no pruning, no Delta scan)."""
    out = {}
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        files = _files(store, kind)
        frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else pl.DataFrame()
        out[kind] = frame.filter(pl.col("click_id") == cid) if frame.height else frame
    return out


@pytest.mark.parametrize("maintained", [False, True])
def test_lookup_returns_what_a_full_scan_finds(tmp_path, maintained):
    store = _build(tmp_path)
    if maintained:
        store.maintain(retention_hours=0)
    for n in (0, 10, 1_234, N - 1, N + 7):  # N + 7: a click id that was never stored
        cid = pl.select(click_id(pl.lit(n, pl.Int64))).item()
        expected = _expected_journey(store, cid)
        got = journey(store, cid)
        assert got.columns == [c for c in JOURNEY_COLUMNS if c in got.columns]
        counts = got.group_by("step").len()
        want = {"visit": "visits", "click": "clicks", "conversion": "conversions", "postback": "postbacks"}
        for step, kind in want.items():
            n_got = counts.filter(pl.col("step") == step).get_column("len").sum()
            assert n_got == expected[kind].height, (cid, step)
        pbs = got.filter(pl.col("step") == "postback")
        assert sorted(pbs.get_column("postback_id").to_list()) == sorted(
            expected["postbacks"].get_column("postback_id").to_list()
        )
        assert pbs.get_column("outcome").to_list() == [
            "failed" if e else "accepted"
            for e in expected["postbacks"].sort("postback_time", maintain_order=True).get_column("is_error")
        ]
        times = got.get_column("time").to_list()
        assert times == sorted(times)
        # every column of the visit row, straight from the helper
        visit = click_rows(store, "visits", cid).collect()
        cols = sorted(c for c in visit.columns if c != "date")  # the partition value is not in the files
        assert_frame_equal(visit.select(cols), expected["visits"].select(cols), check_dtypes=False)


def test_lookup_can_skip_all_but_one_row_group(tmp_path, monkeypatch):
    """The mechanism behind a fast lookup: after maintain, at most one row group per date partition has a
    click-id ``[min, max]`` that can hold a given id, so a reader skips every other group."""
    monkeypatch.setattr(delta_module, "ROW_GROUP_ROWS", 128)
    monkeypatch.setattr(delta_module, "SORT_SLICE_ROWS", 500)
    store = _build(tmp_path)
    store.maintain(retention_hours=0)
    groups: dict[str, list[tuple[int, str, str]]] = {}
    for f in _files(store, "visits"):
        groups.setdefault(Path(f).parent.name, []).extend(_groups(f))
    assert len(groups) == 2
    assert sum(len(g) for g in groups.values()) >= N // 128
    assert all(rows <= 128 for g in groups.values() for rows, _, _ in g)
    for n in (0, 77, 1_500, N - 1):
        cid = pl.select(click_id(pl.lit(n, pl.Int64))).item()
        holding = {day: [g for g in gs if g[1] <= cid <= g[2]] for day, gs in groups.items()}
        assert all(len(h) <= 1 for h in holding.values()), (cid, holding)
        assert sum(len(h) for h in holding.values()) <= 2  # of about 24 row groups
        assert journey(store, cid).filter(pl.col("step") == "visit").height == 1


def test_right_after_an_ingest_a_lookup_can_skip_all_but_one_row_group_per_run(tmp_path, monkeypatch):
    """Without ``maintain``: an ingest writes runs of rows sorted by click id, each run in files of its own
    whose row groups hold disjoint click-id ranges, so a reader skips all but about one group per run and
    date partition."""
    monkeypatch.setattr(delta_module, "SORT_RUN_ROWS", 1_000)
    monkeypatch.setattr(delta_module, "RUN_ROW_GROUP_ROWS", 100)
    store = LogStore(tmp_path / "store", timezone="UTC")
    visits = _visits_frame(N).sample(fraction=1.0, shuffle=True, seed=3)
    assert store.ingest([write_csv(visits, tmp_path / "v.csv")]).ok
    files = _files(store, "visits")
    runs = {Path(f).name.split("-")[1] for f in files}  # part-RUN-INDEX-TAG-c000.zstd.parquet
    assert len(runs) == 3  # 3,000 rows in runs of 1,000
    groups = []
    for f in files:
        ids = pl.read_parquet(f, columns=["click_id"]).get_column("click_id")
        assert ids.is_sorted()  # read back: each file holds its rows in click-id order
        in_file = _groups(f)
        assert all(rows <= 100 for rows, _, _ in in_file)
        assert all(a[2] < b[1] for a, b in itertools.pairwise(in_file))  # disjoint, in order
        groups.extend(in_file)
    assert len(groups) >= N // 100
    stored = store.scan("visits").select("click_id").collect().get_column("click_id").sort()
    assert stored.to_list() == visits.get_column("Click ID").sort().to_list()  # every row, once
    for n in (0, 77, 1_500, N - 1):
        cid = pl.select(click_id(pl.lit(n, pl.Int64))).item()
        holding = [g for g in groups if g[1] <= cid <= g[2]]
        assert 1 <= len(holding) <= 3 * 2  # at most one per run and date, of 30 or more
        assert journey(store, cid).filter(pl.col("step") == "visit").height == 1


def test_panel_journey_uses_the_lookup(tmp_path, monkeypatch):
    pytest.importorskip("ipywidgets")
    store = _build(tmp_path)
    store.maintain(retention_hours=0)
    cid = pl.select(click_id(pl.lit(10, pl.Int64))).item()
    panel = EventLogsPanel(store, start="2024-05-01", end="2024-05-03")
    reads = panel.store_reads
    taken: list[str] = []
    real_read = _lookup._read

    def counted(path: str, *args: Any) -> Any:
        taken.append(path)
        return real_read(path, *args)

    monkeypatch.setattr(_lookup, "_read", counted)
    shown = panel.show_journey(cid)
    assert panel.store_reads == reads  # no table scan: the files that can hold the id are read directly
    assert {Path(p).parts[-3] for p in taken} >= {"visits", "postbacks"}, taken  # tables/KIND/date=…/file
    # the table shows the journey's rows in the same order, with names beside the ids
    expected = journey(store, cid)
    common = [c for c in shown.columns if c in expected.columns]
    assert {"time", "step", "outcome", "campaign_id"} <= set(common)
    assert_frame_equal(shown.select(common), expected.select(common))
