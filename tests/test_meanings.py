"""Error meanings stored at ingest (``cfanalytics._meanings``): written by ingest, read by the diagnostics,
re-derived by ``maintain``, removed by ``forget``; the answers never depend on whether they are there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from cfanalytics import LogStore
from cfanalytics._meanings import ERROR_MEANINGS, MEANINGS_SCHEMA, RULES_VERSION, write_meanings
from cfanalytics.diagnose import diagnose, frames
from tests.helpers import postbacks_frame, run_cli, write, write_csv

# three failing postbacks whose kinds are known by reading them: a URL with an unreplaced macro,
# a platform throttling, a server error; and one that went through
_POSTBACKS = (
    "Postback ID,Click ID,Postback Time,Is Error,Status Code,Error Message,Postback URL\n"
    "p1,c1,2026-11-20 10:00:00,1,400,Bad request,https://ts.example/pb?cid={clickid}\n"
    "p2,c2,2026-11-20 11:00:00,1,429,Too many requests,https://ts.example/pb?cid=c2\n"
    "p3,c3,2026-11-20 12:00:00,1,503,Service Unavailable,https://ts.example/pb?cid=c3\n"
    "p4,c4,2026-11-20 13:00:00,0,200,,https://ts.example/pb?cid=c4\n"
)
_KINDS = {"p1": "unreplaced_macro", "p2": "rate_limit", "p3": "server_error"}


def _meanings(store: LogStore) -> pl.DataFrame:
    return store.scan(ERROR_MEANINGS).collect().sort("postback_id")


def _document(store: LogStore) -> str:
    return json.dumps(diagnose(store), sort_keys=True)


def _derived_on_the_fly(monkeypatch: pytest.MonkeyPatch, store: LogStore) -> str:
    """The diagnosis with no stored meaning read (every one derived by the diagnostics)."""
    with monkeypatch.context() as m:
        m.setattr(frames, "_has_meanings", lambda reader: False)
        return _document(store)


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    store = LogStore(tmp_path / "s", timezone="UTC")
    assert store.ingest([write(tmp_path / "pb.csv", _POSTBACKS)]).ok
    return store


def test_ingest_stores_the_meaning_of_each_failing_postback(store):
    stored = _meanings(store)
    assert stored.columns == list(MEANINGS_SCHEMA)
    assert dict(zip(stored["postback_id"], stored["error_kind"], strict=True)) == _KINDS
    assert set(stored["rules"]) == {RULES_VERSION}
    assert stored.filter(pl.col("postback_id") == "p2").row(0, named=True)["signature"] == "Too many requests"
    # and they are what the diagnostics show
    shown = frames.postbacks(store).collect().filter(pl.col("is_error")).sort("postback_id")
    assert shown.select(stored.columns[:-1]).equals(stored.drop("rules"))


def test_the_diagnosis_is_the_same_with_and_without_stored_meanings(store, monkeypatch):
    assert _document(store) == _derived_on_the_fly(monkeypatch, store)
    by_kind = {row["error_kind"]: row["errors"] for row in diagnose(store)["postbacks"]["by_error_kind"]}
    assert by_kind == {"unreplaced_macro": 1, "rate_limit": 1, "server_error": 1}


def test_meanings_of_other_rules_are_ignored_then_derived_again_by_maintain(store, monkeypatch):
    expected = _document(store)
    # what an older version of the rules stored: other kinds
    old = _meanings(store).with_columns(pl.lit("auth").alias("error_kind"), pl.lit("0ld").alias("rules"))
    write_meanings(store.table_root(ERROR_MEANINGS), old, mode="overwrite")
    assert _document(store) == expected
    out = store.maintain(retention_hours=0)
    assert out[ERROR_MEANINGS]["derived"] == 3
    stored = _meanings(store)
    assert set(stored["rules"]) == {RULES_VERSION}
    assert dict(zip(stored["postback_id"], stored["error_kind"], strict=True)) == _KINDS
    assert store.maintain(retention_hours=0)[ERROR_MEANINGS]["derived"] == 0  # nothing left to derive


def test_missing_meanings_are_derived_by_the_diagnostics_and_stored_by_maintain(store, monkeypatch):
    expected = _document(store)
    write_meanings(
        store.table_root(ERROR_MEANINGS), _meanings(store).filter(pl.col("postback_id") == "p2"), mode="overwrite"
    )
    assert _document(store) == expected
    assert store.maintain(retention_hours=0)[ERROR_MEANINGS]["derived"] == 2  # p1 and p3 only: appended
    assert _meanings(store)["postback_id"].to_list() == ["p1", "p2", "p3"]


def test_a_store_written_before_the_table_reads_the_same(store, monkeypatch):
    expected = _document(store)
    shutil.rmtree(store.table_path(ERROR_MEANINGS))
    assert not store.has_table(ERROR_MEANINGS)
    assert store.scan(ERROR_MEANINGS).collect().schema == pl.Schema(MEANINGS_SCHEMA)
    assert _document(store) == expected
    store.maintain(retention_hours=0)
    assert _meanings(store).height == 3


def test_a_meaning_stored_twice_counts_once(store):
    expected = _document(store)
    write_meanings(store.table_root(ERROR_MEANINGS), _meanings(store))  # every row again
    assert _meanings(store).height == 6
    assert _document(store) == expected
    assert store.maintain(retention_hours=0)[ERROR_MEANINGS]["derived"] == 3  # rewritten whole
    assert _meanings(store).height == 3


def test_forget_removes_the_meanings_of_the_rows_it_deletes(tmp_path, monkeypatch):
    store = LogStore(tmp_path / "s", timezone="UTC")
    first = write_csv(postbacks_frame(70), tmp_path / "a.csv")  # failing: every 7th row, pb-0 … pb-63
    second = write_csv(postbacks_frame(70, start=70), tmp_path / "b.csv")  # pb-70 … pb-133
    batch = store.ingest([first]).batches[0].batch_id
    assert store.ingest([second]).ok
    assert _meanings(store).height == 20
    assert store.forget(batch.rsplit("-", 1)[0])["postbacks"] == 70
    left = _meanings(store)["postback_id"].to_list()
    assert left == sorted(f"pb-{i}" for i in range(70, 140, 7))
    # ingested again: one meaning per row, no duplicate
    assert store.ingest([first]).ok
    assert _meanings(store)["postback_id"].n_unique() == _meanings(store).height == 20
    assert _document(store) == _derived_on_the_fly(monkeypatch, store)


def test_a_failed_meanings_write_loses_no_postback(tmp_path, monkeypatch):
    import cfanalytics._meanings as meanings

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(meanings, "write_meanings", disk_full)
    store = LogStore(tmp_path / "s", timezone="UTC")
    result = store.ingest([write(tmp_path / "pb.csv", _POSTBACKS)])
    assert result.ok
    assert result.totals()["rows_stored"] == 4
    assert not store.has_table(ERROR_MEANINGS)
    monkeypatch.undo()
    assert {r["error_kind"]: r["errors"] for r in diagnose(store)["postbacks"]["by_error_kind"]} == {
        "unreplaced_macro": 1,
        "rate_limit": 1,
        "server_error": 1,
    }
    assert store.maintain(retention_hours=0)[ERROR_MEANINGS]["derived"] == 3


def test_maintain_on_the_command_line_says_what_it_derived(store):
    done = run_cli("maintain", "--store", str(store.path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tables"][ERROR_MEANINGS]["derived"] == 0
