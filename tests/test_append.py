"""_delta.append_rows: the files an ingest commits, their Delta stats, schema evolution, failure cleanup."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pyarrow.parquet as pq
import pytest

from cfanalytics import LogStore
from cfanalytics._delta import append_rows
from cfanalytics.exceptions import StoreError
from tests.helpers import write

HEAD = "Click ID,Visit Time,Campaign ID,User Agent,Bot Score\n"
LONG_UA = "Mozilla/5.0 " + "x" * 100


def _actions(store: LogStore, kind: str) -> list[dict]:
    return pl.DataFrame(store.table(kind).get_add_actions(flatten=False)).to_dicts()


def test_the_stats_of_each_file_match_its_rows(store, tmp_path):
    rows = [
        f"aaaaaaaa-0000-4000-8000-00000000000{n},2026-11-{20 + n % 2} 10:0{n}:00,k{n},{LONG_UA if n == 3 else 'ua'},"
        + ("" if n == 2 else "0.5")
        for n in range(1, 7)
    ]
    store.ingest([write(tmp_path / "v.csv", HEAD + "\n".join(rows) + "\n")])
    actions = _actions(store, "visits")
    assert sorted(str(a["partition"]["date"]) for a in actions) == ["2026-11-20", "2026-11-21"]
    for a in actions:
        # the file's own rows, read back independently
        df = pl.read_parquet(store.table_path("visits") / a["path"])
        assert a["num_records"] == df.height
        assert a["null_count"]["bot_score"] == df.get_column("bot_score").null_count()
        assert a["min"]["click_id"] == df.get_column("click_id").min()
        assert a["max"]["campaign_id"] == df.get_column("campaign_id").max()
        assert a["min"]["visit_time"] is None  # timestamps: no min/max (readers treat them as unknown)
        if df.get_column("user_agent").str.len_bytes().max() >= 64:  # footer values may be truncated
            assert a["max"]["user_agent"] is None
        else:
            assert a["max"]["user_agent"] == df.get_column("user_agent").max()
    # the table reads back every row, in the stored types
    assert store.scan("visits").select(pl.len()).collect().item() == 6


def test_a_new_extra_column_is_added_to_the_table_schema(store, tmp_path):
    first = HEAD + "aaaaaaaa-0000-4000-8000-000000000001,2026-11-20 10:00:00,k1,ua,\n"
    store.ingest([write(tmp_path / "a.csv", first)])
    with_extra = (
        "Click ID,Visit Time,Campaign ID,Sub 7\n" + "aaaaaaaa-0000-4000-8000-000000000002,2026-11-20 10:01:00,k1,z\n"
    )
    result = store.ingest([write(tmp_path / "b.csv", with_extra)])
    assert result.ok
    got = store.scan("visits").select("click_id", "sub_7").collect().sort("click_id").rows()
    assert got == [("aaaaaaaa-0000-4000-8000-000000000001", None), ("aaaaaaaa-0000-4000-8000-000000000002", "z")]
    # the schema-only commit is no batch: the ledger lists the two ingests
    assert store.batches().filter(pl.col("table") == "visits").height == 2


def test_a_failed_append_leaves_no_file_and_no_commit(store):
    root = store.table_path("visits")
    version = store.table("visits").version()
    bad = pl.LazyFrame(
        {
            "_row_id": ["r1", None],
            "click_id": ["c1", "c2"],
            "visit_time": [datetime(2026, 11, 20, tzinfo=UTC)] * 2,
            "date": [date(2026, 11, 20)] * 2,
        }
    )
    with pytest.raises(StoreError, match=r"required value is null.*_row_id"):
        append_rows(root, bad, metadata={}, required=["_row_id"], label="test")
    assert store.table("visits").version() == version
    assert not list(root.glob("date=*/*.parquet"))
    with pytest.raises(StoreError, match="1 rows written, 2 expected"):
        append_rows(root, bad.head(1), metadata={}, expected=2, label="test")
    assert not list(root.glob("date=*/*.parquet"))


def test_files_hold_row_groups_of_the_store_size(store, tmp_path):
    from cfanalytics._delta import ROW_GROUP_ROWS

    rows = "".join(f"{n:08x}-0000-4000-8000-000000000000,2026-11-20 10:00:00,k1,ua,0.5\n" for n in range(1000))
    store.ingest([write(tmp_path / "v.csv", HEAD + rows)])
    (action,) = _actions(store, "visits")
    meta = pq.read_metadata(store.table_path("visits") / action["path"])
    assert meta.num_rows == 1000
    assert all(meta.row_group(g).num_rows <= ROW_GROUP_ROWS for g in range(meta.num_row_groups))
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_an_input_over_many_dates_is_written_a_few_dates_at_a_time_in_one_commit(store, tmp_path, monkeypatch):
    import cfanalytics._delta as delta_module

    monkeypatch.setattr(delta_module, "SINK_PARTITIONS", 2)
    rows = "".join(f"{n:08x}-0000-4000-8000-000000000000,2026-11-{10 + n % 5} 10:00:00,k1,ua,0.5\n" for n in range(50))
    version = store.table("visits").version()
    (batch,) = store.ingest([write(tmp_path / "v.csv", HEAD + rows)]).batches
    assert batch.rows_stored == 50
    assert store.table("visits").version() == version + 1  # three passes, one commit
    per_day = store.scan("visits").group_by("date").len().collect().sort("date")
    assert per_day.rows() == [(date(2026, 11, d), 10) for d in range(10, 15)]
    assert {str(a["partition"]["date"]) for a in _actions(store, "visits")} == {f"2026-11-{d}" for d in range(10, 15)}


def _assert_stats_match_files(store: LogStore, kind: str) -> int:
    """Every live file's Delta stats equal what its rows say, read back independently; the files checked."""
    actions = _actions(store, kind)
    for a in actions:
        df = pl.read_parquet(store.table_path(kind) / a["path"])
        assert a["num_records"] == df.height
        for name in ("click_id", "campaign_id", "user_agent", "_row_id", "bot_score", "_raw"):
            assert a["null_count"][name] == df.get_column(name).null_count(), name
        for name in ("click_id", "campaign_id", "_row_id"):
            assert (a["min"][name], a["max"][name]) == (df.get_column(name).min(), df.get_column(name).max()), name
        long_ua = (df.get_column("user_agent").str.len_bytes().max() or 0) >= 64
        assert a["max"]["user_agent"] == (None if long_ua else df.get_column("user_agent").max())
        assert a["min"]["visit_time"] is None
    return len(actions)


def test_files_rewritten_by_maintain_and_forget_carry_the_stats_of_their_rows(store, tmp_path, monkeypatch):
    import cfanalytics._delta as delta_module

    monkeypatch.setattr(delta_module, "ROW_GROUP_ROWS", 64)
    monkeypatch.setattr(delta_module, "SORT_SLICE_ROWS", 100)  # several click-id ranges, several row groups

    def visits(path, ids):
        body = "".join(
            f"{n:08x}-0000-4000-8000-000000000000,2026-11-{20 + n // 2 % 2} 10:00:00,k{n % 3},"
            f"{LONG_UA if n % 50 == 0 else 'ua'},{'' if n % 7 == 0 else '0.5'}\n"
            for n in ids
        )
        return write(path, HEAD + body)

    store.ingest([visits(tmp_path / "a.csv", range(0, 600, 2))])
    late = store.ingest([visits(tmp_path / "b.csv", range(1, 600, 2))]).batches[0]
    assert _assert_stats_match_files(store, "visits") == 4
    assert store.maintain(retention_hours=0)["visits"]["sorted"] == 2
    assert _assert_stats_match_files(store, "visits") == 2
    assert store.forget(late.batch_id) == {"visits": 300}
    assert _assert_stats_match_files(store, "visits") == 2
    assert store.scan("visits").select(pl.len()).collect().item() == 300
