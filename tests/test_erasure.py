"""Erasure that erases: `forget --ip` leaves the address nowhere under the store; `forget --batch` removes
only what no other batch stored; a prefix that matches nothing deletes nothing (docs/contract.md §3)."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from cfanalytics import LogStore
from cfanalytics._delta import partitions_to_sort
from cfanalytics.cli import main
from cfanalytics.exceptions import UsageError
from cfanalytics.normalize import hash_ip
from tests.helpers import write

ERASED = "203.0.113.9"  # no other address in these inputs has it as a prefix
HEAD = "Click ID,Visit Time,Campaign ID,IP\n"


def _cid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def _visits(path: Path, ids: range, *, ip_of=lambda i: f"198.51.100.{i % 200}", extra: str = "") -> Path:
    rows = "".join(f"{_cid(i)},2026-11-2{i % 3} 10:{i % 60:02d}:00,k{i % 2},{ip_of(i)}\n" for i in ids)
    return write(path, HEAD + rows + extra)


def _texts(path: Path) -> list[bytes]:
    """Every readable form of a file: its bytes, decompressed bytes, and a Parquet file's values and footer."""
    data = path.read_bytes()
    out = [data]
    if data[:2] == b"\x1f\x8b":
        out.append(gzip.decompress(data))
    if data[:4] == b"PAR1":
        parquet = pq.ParquetFile(path)
        out.append(json.dumps(parquet.read().to_pylist(), default=str).encode())
        meta = parquet.metadata
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                st = meta.row_group(g).column(c).statistics
                if st is not None and st.has_min_max:
                    out.append(f"{st.min!r} {st.max!r}".encode())
    return out


def _holding(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` where any needle can be read, with the needle."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for text in _texts(path):
            found += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in text]
    return sorted(set(found))


@pytest.mark.parametrize("mode", ["raw", "hashed"])
def test_forget_ip_leaves_the_address_in_no_file_of_the_store(tmp_path, mode):
    store = LogStore(tmp_path / "s", timezone="UTC")
    store.set_privacy(store_ips=mode)
    forms = [ERASED, hash_ip(ERASED, store.metadata["ip_salt"])]

    def ip_of(i: int) -> str:
        return ERASED if i % 10 == 0 else f"198.51.100.{i % 200}"

    bad = f",2026-11-20 10:00:00,k1,{ERASED}\n"  # no click id: quarantined, raw text kept
    assert store.ingest([_visits(tmp_path / "a.csv", range(40), ip_of=ip_of, extra=bad)]).ok
    store.maintain(retention_hours=0)  # files replaced once: their log entries still quote the address
    assert store.ingest([_visits(tmp_path / "b.csv", range(40, 60), ip_of=ip_of)]).ok
    assert _holding(store.path, forms), "the address is stored before the request"
    kept = store.scan("visits").filter(~pl.col("ip").is_in(forms)).collect().sort("_row_id")

    deleted = store.forget_ip(ERASED)

    assert deleted == {"visits": 6, "quarantine": 1}  # ids 0, 10, …, 50 and the quarantined record
    assert _holding(store.path, forms) == []
    assert store.scan("visits").collect().sort("_row_id").equals(kept)
    assert store.maintain(retention_hours=0)["visits"]["sorted"] >= 0
    assert _holding(store.path, forms) == []
    assert store.scan("visits").collect().sort("_row_id").equals(kept)
    assert store.batches().height == 3  # the ledger is untouched: two visit batches and the quarantine
    # a later ingest of the same rows stores them again (they were erased, not remembered)
    again = store.ingest([tmp_path / "b.csv"]).batches[0]
    assert (again.rows_stored, again.already_stored) == (2, 18)


def test_forget_batch_keeps_the_rows_a_live_batch_stored_too(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    bad = ",2026-11-20 10:00:00,k1,198.51.100.1\n"
    a = store.ingest([_visits(tmp_path / "a.csv", range(10), extra=bad)]).batches[0]
    b = store.ingest([_visits(tmp_path / "b.csv", range(5, 15), extra=bad)]).batches[0]
    c = store.ingest([_visits(tmp_path / "c.csv", range(20, 25))]).batches[0]
    assert (b.rows_stored, b.already_stored, b.quarantined) == (5, 5, 1)
    before = store.scan("visits").collect()

    deleted = store.forget(a.batch_id)

    assert deleted == {"visits": 5, "quarantine": 1}  # ids 0-4 only A had; 5-9 B stored too
    assert deleted.kept == {"visits": 5}
    after = store.scan("visits").collect().sort("click_id")
    assert after.get_column("click_id").to_list() == [_cid(i) for i in [*range(5, 15), *range(20, 25)]]
    owners = dict(after.select("click_id", "_batch_id").iter_rows())
    assert {owners[_cid(i)] for i in range(5, 15)} == {b.batch_id}
    assert {owners[_cid(i)] for i in range(20, 25)} == {c.batch_id}
    same = before.filter(pl.col("click_id").is_in(after.get_column("click_id").implode())).drop("_batch_id")
    assert after.drop("_batch_id").sort("_row_id").equals(same.sort("_row_id"))  # values unchanged
    assert store.quarantine().get_column("_batch_id").to_list() == [b.batch_id]
    # B is now the only owner: forgetting it removes its rows and its quarantined record
    assert store.forget(b.batch_id) == {"visits": 10, "quarantine": 1}
    assert store.scan("visits").collect().get_column("click_id").sort().to_list() == [_cid(i) for i in range(20, 25)]


def test_forget_batch_hands_a_row_to_the_earliest_live_claimant(tmp_path, capsys):
    store = LogStore(tmp_path / "s", timezone="UTC")
    path = _visits(tmp_path / "a.csv", range(4), extra=",2026-11-20 10:00:00,k1,198.51.100.1\n")
    first, second, third = (store.ingest([path]).batches[0] for _ in range(3))
    assert (second.rows_stored, third.already_stored, third.quarantined) == (0, 4, 1)
    assert store.quarantine().height == 1  # the same record of the same file is quarantined once

    def owners(table):
        return set(store.scan(table).collect().get_column("_batch_id"))

    first_gone = store.forget(first.batch_id)
    assert (first_gone, first_gone.kept) == ({}, {"visits": 4, "quarantine": 1})
    assert owners("visits") == owners("quarantine") == {second.batch_id}
    assert main(["forget", "--store", str(store.path), "--batch", second.batch_id.rsplit("-", 1)[0]]) == 0
    assert capsys.readouterr().out == "kept (later batches stored them too): 1 quarantine, 4 visits\n"
    assert owners("visits") == owners("quarantine") == {third.batch_id}
    assert store.forget(third.batch_id) == {"visits": 4, "quarantine": 1}
    assert store.counts()["visits"] == store.counts()["quarantine"] == 0


def test_forget_a_prefix_that_matches_no_batch_deletes_and_reports_nothing(tmp_path, capsys):
    store = LogStore(tmp_path / "s", timezone="UTC")
    batch = store.ingest([_visits(tmp_path / "a.csv", range(6))]).batches[0]
    versions = {t: store.table(t).version() for t in ("visits", "quarantine")}
    prefix = batch.batch_id.rsplit("-", 1)[0][:-1]  # the input's prefix less its last character
    for missing in (prefix, batch.batch_id[:-1], "%", "_", "*", f"{batch.batch_id}-x", ""):
        assert store.forget(missing) == {}, missing
    assert {t: store.table(t).version() for t in versions} == versions  # no commit at all
    assert store.counts()["visits"] == 6
    assert main(["forget", "--store", str(store.path), "--batch", prefix, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == {}
    assert main(["forget", "--store", str(store.path), "--batch", prefix]) == 0
    assert capsys.readouterr().out.startswith("no rows of batch")


def test_maintain_lays_out_a_partition_of_two_small_sorted_files(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")

    def rows(ids: range) -> str:
        return "Click ID,Visit Time,Campaign ID\n" + "".join(f"{_cid(i)},2026-11-20 10:00:00,k1\n" for i in ids)

    store.ingest([write(tmp_path / "a.csv", rows(range(10)))])
    store.ingest([write(tmp_path / "b.csv", rows(range(10, 20)))])  # a later, disjoint id range: still sorted
    root = store.table_path("visits")
    assert partitions_to_sort(store.table("visits"), root) == {"2026-11-20": 2}
    out = store.maintain(retention_hours=0)
    assert out["visits"]["sorted"] == 1
    (uri,) = store.file_uris("visits")
    ids = pq.read_table(uri, columns=["click_id"]).column("click_id").to_pylist()
    assert ids == [_cid(i) for i in range(20)]
    assert partitions_to_sort(store.table("visits"), root) == {}
    assert store.scan("visits").filter(pl.col("date") == date(2026, 11, 20)).collect().height == 20


def test_forget_ip_matches_the_address_as_a_whole_word(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    ips = {0: f"{ERASED}, 10.1.2.3", 1: "10.1.2.3,203.0.113.9", 2: "203.0.113.90", 3: "1203.0.113.9", 4: "198.51.100.1"}
    store.ingest([_visits(tmp_path / "a.csv", range(5), ip_of=lambda i: f'"{ips[i]}"')])  # quoted CSV cells
    assert store.forget_ip(f" {ERASED} ") == {"visits": 2}  # a forwarded-for list holds it, in either place
    left = store.scan("visits").select("ip").collect().get_column("ip").sort().to_list()
    assert left == sorted(ips[i] for i in (2, 3, 4))
    with pytest.raises(UsageError, match="empty address"):
        store.forget_ip(" ")


def test_forget_ip_finds_every_spelling_of_an_ipv6_address(tmp_path):
    store = LogStore(tmp_path / "s", timezone="UTC")
    ips = {0: "2001:db8::1", 1: "2001:0DB8:0000:0000:0000:0000:0000:0001", 2: "2001:db8::10", 3: "2001:db8::1:0"}
    store.ingest([_visits(tmp_path / "a.csv", range(4), ip_of=ips.__getitem__)])
    assert store.forget_ip("2001:DB8:0:0::1") == {"visits": 2}
    assert sorted(store.scan("visits").collect().get_column("ip")) == sorted([ips[2], ips[3]])
