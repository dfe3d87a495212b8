"""Readers: raw string values and record numbers for every input format."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import json
import random
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cfanalytics import readers
from cfanalytics.exceptions import InputError
from cfanalytics.readers import RawInput, RowProblem, frame_input, open_input

DATA = Path(__file__).parent / "data" / "readers"


def read_all(raw: RawInput) -> tuple[list[dict[str, str | int | None]], list[RowProblem]]:
    """All rows (as dicts, with ``_record``) and all problems; checks every batch's schema."""
    rows: list[dict[str, str | int | None]] = []
    problems: list[RowProblem] = []
    expected = pa.schema([*((c, pa.string()) for c in raw.columns), ("_record", pa.int64())])
    for batch, found in raw.batches():
        assert batch.schema == expected
        rows.extend(batch.to_pylist())
        problems.extend(found)
    return rows, problems


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def records(rows: list[dict[str, str | int | None]]) -> list[int | None]:
    return [r["_record"] for r in rows]


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    d = delimiter
    path = write(tmp_path / "pb.csv", f"Click ID{d}Payout{d}Note\nc-1{d}12.5{d} padded \nc-2{d}{d}x\n")
    raw = open_input(path)
    rows, problems = read_all(raw)
    assert (raw.format, raw.delimiter, raw.encoding, raw.compression) == ("csv", d, "utf-8", None)
    assert raw.columns == ["Click ID", "Payout", "Note"]
    assert rows == [
        {"Click ID": "c-1", "Payout": "12.5", "Note": " padded ", "_record": 2},
        {"Click ID": "c-2", "Payout": "", "Note": "x", "_record": 3},
    ]
    assert problems == []


def test_csv_delimiter_inside_quotes_does_not_count(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", '"a;b;c";d\n1;2\n')
    raw = open_input(path)
    assert raw.delimiter == ";"
    assert raw.columns == ["a;b;c", "d"]


def test_csv_utf8_bom_is_dropped_from_the_first_name(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "\ufeffClick ID,City\nc-1,Zürich\n".encode())
    raw = open_input(path)
    rows, _ = read_all(raw)
    assert raw.encoding == "utf-8-sig"
    assert raw.columns == ["Click ID", "City"]
    assert rows == [{"Click ID": "c-1", "City": "Zürich", "_record": 2}]


def test_csv_cp1252_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "name,price\nCafé,5 €\n".encode("cp1252"))
    raw = open_input(path)
    rows, _ = read_all(raw)
    assert raw.encoding == "cp1252"
    assert rows == [{"name": "Café", "price": "5 €", "_record": 2}]


def test_csv_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", b"name\nCaf\xe9\x81\n")
    raw = open_input(path)
    rows, _ = read_all(raw)
    assert raw.encoding == "latin-1"
    assert rows == [{"name": "Café\x81", "_record": 2}]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("name\n" + "x" * 5 + "Zürich €\n", "utf-8"),  # ü and € straddle the 8-byte chunks
        (b"name\nxx\xc3" + b"abcdefgh" + b"\xbc\n", "cp1252"),  # a lead byte, then a chunk of ASCII
        (b"name\nabc\xc3", "cp1252"),  # an incomplete character at the end
        (b"name\n" + "Ё".encode() + b"x" * 40 + b"\ncaf\xe9\n", "latin-1"),  # hole (0x81) before the first bad byte
        (b"name\ncaf\xe9\n" + b"x" * 40 + b"\x9d\n", "latin-1"),  # hole after the first bad byte
        (b"\xef\xbb\xbfname\n" + b"y" * 40 + "ü\n".encode(), "utf-8-sig"),
    ],
)
def test_encoding_is_decided_on_the_whole_file_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes | str, encoding: str
) -> None:
    monkeypatch.setattr(readers, "_CHUNK", 8)
    raw = open_input(write(tmp_path / "x.csv", data))
    assert raw.encoding == encoding
    rows, problems = read_all(raw)
    text = data if isinstance(data, str) else data.decode(encoding)
    assert [r["name"] for r in rows] == text.splitlines()[1:]
    assert problems == []


def test_csv_cp1252_semicolon_fixture() -> None:
    raw = open_input(DATA / "postbacks_cp1252_semicolon.csv")
    rows, problems = read_all(raw)
    assert (raw.encoding, raw.delimiter) == ("cp1252", ";")
    assert raw.columns == ["Postback ID", "Click ID", "Payout", "Error Message"]
    assert rows == [
        {"Postback ID": "pb-1", "Click ID": "c-1", "Payout": "12,50", "Error Message": "Café refusé", "_record": 2},
        {"Postback ID": "pb-2", "Click ID": "c-2", "Payout": "3,00", "Error Message": "quoted; with delimiter",
         "_record": 3},
    ]  # fmt: skip
    assert problems == []


def test_csv_quoted_newlines_count_records_not_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", 'id,note\n1,"line one\nline two"\n2,plain\n\n3,"a\r\nb"\n4,""\n')
    rows, problems = read_all(open_input(path))
    assert [(r["id"], r["note"], r["_record"]) for r in rows] == [
        ("1", "line one\nline two", 2),
        ("2", "plain", 3),
        ("3", "a\r\nb", 4),
        ("4", "", 5),
    ]
    assert problems == []


def test_csv_ragged_rows_are_skipped_with_their_record_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", 'a,b\n1,2\n3\n4,5,6\n"q\nq",8\n9,"x,y",z\n,\n')
    rows, problems = read_all(open_input(path))
    assert rows == [
        {"a": "1", "b": "2", "_record": 2},
        {"a": "q\nq", "b": "8", "_record": 5},
        {"a": "", "b": "", "_record": 7},
    ]
    assert problems == [
        RowProblem(3, "ragged_row", "1 field, expected 2", "3"),
        RowProblem(4, "ragged_row", "3 fields, expected 2", "4,5,6"),
        RowProblem(6, "ragged_row", "3 fields, expected 2", '9,"x,y",z'),
    ]


def test_csv_header_with_fewer_names_than_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a,b\n1,2,3\n4,5,6\n")
    rows, problems = read_all(open_input(path))
    assert rows == []
    assert [(p.record, p.reason, p.detail) for p in problems] == [
        (2, "ragged_row", "3 fields, expected 2"),
        (3, "ragged_row", "3 fields, expected 2"),
    ]


def test_csv_ragged_raw_text_is_truncated(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a,b\n" + "z" * 20_000 + "\n1,2\n")
    rows, problems = read_all(open_input(path))
    assert records(rows) == [3]
    assert problems[0].record == 2
    assert problems[0].raw == "z" * 10_000


def test_csv_repeated_header_mid_file_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "id,name\n1,a\nid,name\n2,b\n")
    rows, problems = read_all(open_input(path))
    assert rows == [{"id": "1", "name": "a", "_record": 2}, {"id": "2", "name": "b", "_record": 4}]
    assert problems == [RowProblem(3, "repeated_header", "record repeats the header", "id,name")]


def test_csv_duplicate_header_names_get_a_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "id,id,_record,id\n1,2,3,4\n")
    raw = open_input(path)
    rows, _ = read_all(raw)
    assert raw.columns == ["id", "id (2)", "_record (2)", "id (3)"]
    assert rows == [{"id": "1", "id (2)": "2", "_record (2)": "3", "id (3)": "4", "_record": 2}]


def test_csv_five_megabyte_field(tmp_path: Path) -> None:
    big = "x" * 5_000_000
    path = write(tmp_path / "x.csv", f'id,body\n1,"{big}"\n2,small\n')
    rows, problems = read_all(open_input(path))
    assert [(r["id"], len(r["body"] or ""), r["_record"]) for r in rows] == [("1", 5_000_000, 2), ("2", 5, 3)]
    assert rows[0]["body"] == big
    assert problems == []


def test_csv_record_larger_than_the_block_is_retried_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", 1 << 16)
    small = "".join(f"{i},v{i}\n" for i in range(1, 20_001))
    tail = "".join(f"{i},v{i}\n" for i in range(20_002, 20_011))
    path = write(tmp_path / "x.csv", f'id,body\n{small}bad\n20001,"{"y" * 300_000}"\n{tail}')
    rows, problems = read_all(open_input(path, batch_rows=5_000))
    assert [r["id"] for r in rows] == [str(i) for i in range(1, 20_011)]
    assert records(rows) == [i + 1 for i in range(1, 20_001)] + [i + 2 for i in range(20_001, 20_011)]
    assert rows[20_000]["body"] == "y" * 300_000
    assert problems == [RowProblem(20_002, "ragged_row", "1 field, expected 2", "bad")]


def test_csv_unbalanced_quote_beyond_the_largest_block_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", 1 << 16)
    monkeypatch.setattr(readers, "_MAX_BLOCK", 1 << 20)
    path = write(tmp_path / "x.csv", 'a,b\n1,2\n3,"' + "x" * 3_000_000 + '"\n')  # closed, but too big
    with pytest.raises(InputError) as info:
        read_all(open_input(path))
    assert str(info.value) == (
        f"{path}: a record after record 2 is larger than 1 MB, the largest record read (a log record is a few kB)"
    )
    # the same record with its quote left open: found before reading, with its line
    path = write(tmp_path / "y.csv", 'a,b\n1,2\n3,"' + "x" * 3_000_000)
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == (
        f"{path}: line 3: a quoted value opens there and is never closed (unbalanced quote); "
        "nothing of the file was stored"
    )


def test_csv_nul_bytes_do_not_lose_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", b"id,note\n1,ab\x00cd\n2,ok\n")
    rows, problems = read_all(open_input(path))
    assert rows == [{"id": "1", "note": "ab\x00cd", "_record": 2}, {"id": "2", "note": "ok", "_record": 3}]
    assert problems == []


def test_csv_header_only_has_zero_rows(tmp_path: Path) -> None:
    raw = open_input(write(tmp_path / "x.csv", "Click ID,Postback ID\n"))
    assert raw.columns == ["Click ID", "Postback ID"]
    assert read_all(raw) == ([], [])


def test_csv_streams_in_batches_of_at_most_batch_rows(tmp_path: Path) -> None:
    lines = "".join(f"c-{i},{i % 7},2026-11-20 05:00:{i % 60:02d}\n" for i in range(200_000))
    path = write(tmp_path / "big.csv", "click_id,n,time\n" + lines)
    sizes: list[int] = []
    first_and_last: list[tuple[int, int]] = []
    for batch, problems in open_input(path, batch_rows=10_000).batches():
        assert problems == []
        sizes.append(batch.num_rows)
        rec = batch.column("_record").to_pylist()
        first_and_last.append((rec[0], rec[-1]))
    assert len(sizes) >= 20
    assert max(sizes) <= 10_000
    assert sum(sizes) == 200_000
    assert first_and_last[0][0] == 2
    assert first_and_last[-1][1] == 200_001
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(first_and_last))


def test_batches_can_be_read_twice(tmp_path: Path) -> None:
    raw = open_input(write(tmp_path / "x.csv", "a,b\n1,2\n3\n4,5\n"))
    assert read_all(raw) == read_all(raw)


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n"
    raw = open_input(write(tmp_path / "x.csv", data))
    assert raw.sha256 == hashlib.sha256(data).hexdigest()


def _big_csv() -> bytes:
    rng = random.Random(7)
    lines = [f"c-{i},{rng.random()},{'é' if i % 1000 == 0 else 'e'}\n" for i in range(150_000)]
    return ("id,value,note\n" + "".join(lines)).encode()


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz", "big.ndjson", "big.ndjson.gz", "big.parquet"])
def test_sha256_of_a_multi_megabyte_file_equals_hashlib_of_its_bytes(tmp_path: Path, name: str) -> None:
    if name.startswith("big.csv"):
        data = _big_csv()
    elif name.startswith("big.ndjson"):
        data = "".join(json.dumps({"id": f"c-{i}", "n": i}) + "\n" for i in range(100_000)).encode()
    else:
        pq.write_table(pa.table({"id": [f"c-{i}" for i in range(300_000)]}), tmp_path / "t.parquet")
        data = (tmp_path / "t.parquet").read_bytes()
    stored = gzip.compress(data, compresslevel=1) if name.endswith(".gz") else data
    path = write(tmp_path / name, stored)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()  # hashed here, independently of the reader
    raw = open_input(path, batch_rows=10_000)
    n = sum(batch.num_rows for batch, _ in raw.batches())
    assert n in (150_000, 100_000, 300_000)
    assert raw.sha256 == expected
    assert raw.sha256 == expected  # cached


def test_sha256_can_be_awaited_before_reading_and_from_several_threads(tmp_path: Path) -> None:
    data = _big_csv()
    path = write(tmp_path / "big.csv", data)
    raw = open_input(path)
    with ThreadPoolExecutor(4) as pool:
        digests = list(pool.map(lambda _: raw.sha256, range(8)))
    assert set(digests) == {hashlib.sha256(data).hexdigest()}
    with ThreadPoolExecutor(2) as pool:  # the whole input read on another thread
        total = pool.submit(lambda: sum(b.num_rows for b, _ in open_input(path).batches())).result()
    assert total == 150_000


class _AppendOnUpdate:
    """A sha256 stand-in that appends to ``path`` the first time it is fed (a file changed mid-read)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._inner = hashlib.sha256()
        self._done = False

    def update(self, data: bytes) -> None:
        if not self._done:
            self._done = True
            with self._path.open("ab") as f:
                f.write(b"c-late,1,x\n")
        self._inner.update(data)

    def hexdigest(self) -> str:
        return self._inner.hexdigest()


def test_a_file_changed_while_hashed_is_a_one_line_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "x.csv", _big_csv())
    monkeypatch.setattr(readers, "_HASH_CHUNK", 1 << 16)
    monkeypatch.setattr(readers, "hashlib", SimpleNamespace(sha256=lambda: _AppendOnUpdate(path)))
    raw = open_input(path)
    with pytest.raises(InputError) as info:
        _ = raw.sha256
    assert str(info.value) == f"{path}: the file changed while it was being read"
    with pytest.raises(InputError):  # still an error when asked again
        _ = raw.sha256


def test_a_read_error_while_hashing_is_a_one_line_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def update(self, data: bytes) -> None:
            raise OSError("Input/output error\nsecond line")

    path = write(tmp_path / "x.csv", b"a,b\n1,2\n")
    monkeypatch.setattr(readers, "hashlib", SimpleNamespace(sha256=Failing))
    raw = open_input(path)
    assert read_all(raw)[0] == [{"a": "1", "b": "2", "_record": 2}]
    with pytest.raises(InputError) as info:
        _ = raw.sha256
    assert str(info.value) == f"{path}: Input/output error"


def test_record_numbers_across_tiny_blocks_and_batches_match_a_count_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_BLOCK", 512)
    rng = random.Random(3)
    lines = ["id,note"]
    expected_rows: list[tuple[str, int]] = []
    expected_problems: list[tuple[int, str]] = []
    record = 1  # the header
    for i in range(3_000):
        kind = rng.random()
        if kind < 0.05:
            lines.append("")  # a blank line is not a record
            continue
        record += 1
        if kind < 0.10:
            lines.append(f"r{i}")
            expected_problems.append((record, "ragged_row"))
        elif kind < 0.13:
            lines.append(rng.choice(["id,note", "\ufeffid,note"]))
            expected_problems.append((record, "repeated_header"))
        elif kind < 0.20:
            lines.append(f'{i},"two\nlines"')  # one record, two lines
            expected_rows.append((str(i), record))
        else:
            lines.append(f"{i},n{i}")
            expected_rows.append((str(i), record))
    path = write(tmp_path / "x.csv", "\n".join(lines) + "\n")
    rows, problems = read_all(open_input(path, batch_rows=7))
    assert [(r["id"], r["_record"]) for r in rows] == expected_rows
    assert [(p.record, p.reason) for p in problems] == expected_problems


def test_number_jumps_over_skipped_records() -> None:
    skipped = deque([4, 5, 9, 30])
    numbers, used = readers._number(2, 6, skipped)
    assert numbers.type == pa.int64()
    assert (numbers.to_pylist(), used, list(skipped)) == ([2, 3, 6, 7, 8, 10], [4, 5, 9], [30])
    numbers, used = readers._number(11, 0, skipped)
    assert (numbers.to_pylist(), used, list(skipped)) == ([], [], [30])


# --------------------------------------------------------------------------- NDJSON and JSON


def test_ndjson_union_of_keys_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        '{"ClickID": "c-1", "Payout": 12.5, "IsError": false}',
        "",
        "not json",
        '{"ClickID": "c-2", "Extra": {"a": [1, 2]}, "Big": 1e20, "N": 7, "Payout": null}',
        "[1, 2]",
        '{"Late": "ü"}\r',
    ]
    raw = open_input(write(tmp_path / "x.ndjson", "\n".join(lines) + "\n"), batch_rows=1)
    rows, problems = read_all(raw)
    assert raw.format == "ndjson"
    assert raw.columns == ["ClickID", "Payout", "IsError", "Extra", "Big", "N", "Late"]
    none = dict.fromkeys(raw.columns)
    assert rows == [
        {**none, "ClickID": "c-1", "Payout": "12.5", "IsError": "false", "_record": 1},
        {**none, "ClickID": "c-2", "Extra": '{"a":[1,2]}', "Big": "1e+20", "N": "7", "_record": 4},
        {**none, "Late": "ü", "_record": 6},
    ]
    assert [(p.record, p.reason, p.raw) for p in problems] == [
        (3, "invalid_record", "not json"),
        (5, "invalid_record", "[1, 2]"),
    ]
    assert problems[0].detail.startswith("not valid JSON")
    assert problems[1].detail == "a list, not an object"


def test_ndjson_streams_in_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", "".join(f'{{"i": {i}}}\n' for i in range(25)))
    sizes = [b.num_rows for b, _ in open_input(path, batch_rows=10).batches()]
    assert sizes == [10, 10, 5]


def test_json_list(tmp_path: Path) -> None:
    items = [{"a": "x", "b": 1}, 5, {"b": 2.0, "c": [1, "é"]}, {"a": None}]
    raw = open_input(write(tmp_path / "x.json", json.dumps(items, indent=1)))
    rows, problems = read_all(raw)
    assert (raw.format, raw.columns) == ("json", ["a", "b", "c"])
    assert rows == [
        {"a": "x", "b": "1", "c": None, "_record": 1},
        {"a": None, "b": "2.0", "c": '[1,"é"]', "_record": 3},
        {"a": None, "b": None, "c": None, "_record": 4},
    ]
    assert problems == [RowProblem(2, "invalid_record", "a number, not an object", "5")]


def test_api_envelope_fixture() -> None:
    raw = open_input(DATA / "api_envelope.json")
    rows, problems = read_all(raw)
    assert raw.format == "json"
    assert raw.columns == ["PostbackID", "ClickID", "IsError", "StatusCode", "PostbackTime", "ErrorMessage"]
    assert rows == [
        {"PostbackID": "pb-1", "ClickID": "c-1", "IsError": "0", "StatusCode": "200",
         "PostbackTime": "2026-11-20 05:00:04", "ErrorMessage": None, "_record": 1},
        {"PostbackID": "pb-2", "ClickID": "c-2", "IsError": "1", "StatusCode": None,
         "PostbackTime": "2026-11-20 05:01:00", "ErrorMessage": "timeout", "_record": 2},
    ]  # fmt: skip
    assert problems == []


def test_single_line_envelope_is_json_not_ndjson(tmp_path: Path) -> None:
    doc = {"items": [{"ClickID": "c-1"}, {"ClickID": "c-2"}], "totals": {"counter": 2}}
    raw = open_input(write(tmp_path / "x.json", json.dumps(doc)))
    rows, _ = read_all(raw)
    assert raw.format == "json"
    assert rows == [{"ClickID": "c-1", "_record": 1}, {"ClickID": "c-2", "_record": 2}]


@pytest.mark.parametrize(
    ("content", "got"),
    [
        ("42", "a number"),
        ('"text"', "a string"),
        ('{"items": 3}', '"items" holding a number'),
        ('{\n "data": [{"a": 1}]\n}', 'an object without "items" that holds a list of records'),
    ],
)
def test_wrong_json_shape_is_an_input_error(tmp_path: Path, content: str, got: str) -> None:
    path = write(tmp_path / "x.json", content)
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == f'{path}: JSON must be a list of records or {{"items": [...]}}, got {got}'


def test_invalid_json_document_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.json", '[{"a": 1},\n {"a": ]')
    with pytest.raises(InputError, match=r"x\.json: invalid JSON: ") as info:
        open_input(path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- Parquet and frames


def test_parquet_values_become_exact_strings(tmp_path: Path) -> None:
    t = dt.datetime(2026, 11, 20, 5, 0, 4, tzinfo=dt.UTC)
    table = pa.table(
        {
            "i": pa.array([1, None, -3], pa.int64()),
            "f": pa.array([12.5, 1e20, 1.0], pa.float64()),
            "f32": pa.array([0.1, None, 2.0], pa.float32()),
            "b": pa.array([True, False, None]),
            "utc": pa.array([t, t + dt.timedelta(microseconds=500_000), None], pa.timestamp("us", tz="UTC")),
            "ny": pa.array([t, t, t], pa.timestamp("ns", tz="America/New_York")),
            "naive": pa.array([t.replace(tzinfo=None)] * 3, pa.timestamp("ms")),
            "d": pa.array([dt.date(2026, 11, 20), None, dt.date(2026, 1, 2)], pa.date32()),
            "s": pa.array([" a ", "", None]),
            "nothing": pa.nulls(3),
            "dec": pa.array([Decimal("12.50"), None, Decimal("-1.00")], pa.decimal128(6, 2)),
            "lst": pa.array([[1, 2], [], None], pa.list_(pa.int64())),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    raw = open_input(tmp_path / "x.parquet")
    rows, problems = read_all(raw)
    assert raw.format == "parquet"
    assert raw.encoding is None
    assert raw.columns == table.column_names
    assert rows == [
        {"i": "1", "f": "12.5", "f32": "0.1", "b": "true", "utc": "2026-11-20T05:00:04Z",
         "ny": "2026-11-20T00:00:04-05:00", "naive": "2026-11-20T05:00:04", "d": "2026-11-20", "s": " a ",
         "nothing": None, "dec": "12.50", "lst": "[1,2]", "cat": "x", "_record": 1},
        {"i": None, "f": "1e+20", "f32": None, "b": "false", "utc": "2026-11-20T05:00:04.5Z",
         "ny": "2026-11-20T00:00:04-05:00", "naive": "2026-11-20T05:00:04", "d": None, "s": "",
         "nothing": None, "dec": None, "lst": "[]", "cat": "y", "_record": 2},
        {"i": "-3", "f": "1.0", "f32": "2.0", "b": None, "utc": None,
         "ny": "2026-11-20T00:00:04-05:00", "naive": "2026-11-20T05:00:04", "d": "2026-01-02", "s": None,
         "nothing": None, "dec": "-1.00", "lst": None, "cat": "x", "_record": 3},
    ]  # fmt: skip
    assert problems == []


def test_parquet_streams_in_batches(tmp_path: Path) -> None:
    pq.write_table(pa.table({"i": list(range(25))}), tmp_path / "x.pq")
    batches = [b for b, _ in open_input(tmp_path / "x.pq", batch_rows=10).batches()]
    assert [b.num_rows for b in batches] == [10, 10, 5]
    assert batches[2].column("_record").to_pylist() == [21, 22, 23, 24, 25]
    assert batches[2].column("i").to_pylist() == ["20", "21", "22", "23", "24"]


def test_frame_input_from_polars() -> None:
    df = pl.DataFrame(
        {
            "Click ID": ["c-1", None],
            "Payout": [12.5, None],
            "N": [1, 2],
            "Is Error": [True, False],
            "Time": [dt.datetime(2026, 11, 20, 5, 0, 4), dt.datetime(2026, 11, 20, 5, 0, 4, 250_000)],
        }
    ).with_columns(pl.col("Time").dt.replace_time_zone("UTC"))
    raw = frame_input(df, name="api-window")
    rows, problems = read_all(raw)
    assert (raw.name, raw.format, raw.compression, raw.encoding, raw.delimiter) == (
        "api-window", "frame", None, None, None,
    )  # fmt: skip
    assert raw.columns == ["Click ID", "Payout", "N", "Is Error", "Time"]
    assert rows == [
        {"Click ID": "c-1", "Payout": "12.5", "N": "1", "Is Error": "true", "Time": "2026-11-20T05:00:04Z",
         "_record": 1},
        {"Click ID": None, "Payout": None, "N": "2", "Is Error": "false", "Time": "2026-11-20T05:00:04.25Z",
         "_record": 2},
    ]  # fmt: skip
    assert problems == []
    assert len(raw.sha256) == 64
    assert frame_input(df.clone()).sha256 == raw.sha256
    assert frame_input(df.with_columns(pl.col("N") + 1)).sha256 != raw.sha256


def test_frame_input_from_arrow_table_and_wrong_type() -> None:
    raw = frame_input(pa.table({"a": ["x"], "a ": [1]}))
    assert read_all(raw) == ([{"a": "x", "a ": "1", "_record": 1}], [])
    with pytest.raises(InputError, match="<frame>: expected a Polars DataFrame or an Arrow table, got list"):
        frame_input([1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- gzip


def test_gzip_csv(tmp_path: Path) -> None:
    data = gzip.compress("id,name\n1,Café\n2,b\n".encode("cp1252"))
    raw = open_input(write(tmp_path / "x.csv.gz", data))
    rows, _ = read_all(raw)
    assert (raw.format, raw.compression, raw.encoding) == ("csv", "gzip", "cp1252")
    assert raw.sha256 == hashlib.sha256(data).hexdigest()
    assert rows == [{"id": "1", "name": "Café", "_record": 2}, {"id": "2", "name": "b", "_record": 3}]


def test_gzip_ndjson(tmp_path: Path) -> None:
    raw = open_input(write(tmp_path / "x.ndjson.gz", gzip.compress(b'{"a": 1}\n{"b": "x"}\n')))
    rows, _ = read_all(raw)
    assert (raw.format, raw.compression) == ("ndjson", "gzip")
    assert rows == [{"a": "1", "b": None, "_record": 1}, {"a": None, "b": "x", "_record": 2}]


def test_gzip_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "x.parquet")
    path = write(tmp_path / "x.parquet.gz", gzip.compress((tmp_path / "x.parquet").read_bytes()))
    raw = open_input(path)
    assert (raw.format, raw.compression) == ("parquet", "gzip")
    assert read_all(raw)[0] == [{"a": "1", "_record": 1}, {"a": "2", "_record": 2}]


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    lines = "".join(f"c-{i},{i}\n" for i in range(5_000))
    data = gzip.compress(f"id,n\n{lines}".encode())
    path = write(tmp_path / "x.csv.gz", data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == f"{path}: truncated gzip stream"


# --------------------------------------------------------------------------- detection and errors


def test_missing_and_empty_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    write(tmp_path / "exports" / "x.csv", b"")
    with pytest.raises(InputError) as info:
        open_input("exports/x.csv")
    assert str(info.value) == "exports/x.csv: empty file"
    with pytest.raises(InputError) as info:
        open_input("exports/missing.csv")
    assert str(info.value) == "exports/missing.csv: no such file"
    write(tmp_path / "blank.csv", "\n\n  \n")
    with pytest.raises(InputError, match=r"^blank\.csv: empty file$"):
        open_input("blank.csv")
    write(tmp_path / "x.csv.gz", gzip.compress(b""))
    with pytest.raises(InputError, match=r"^x\.csv\.gz: empty file$"):
        open_input("x.csv.gz")


def test_unreadable_parquet_and_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "x.parquet", b"PAR1" + b"\x00" * 64)
    with pytest.raises(InputError, match=r"x\.parquet: not a readable Parquet file \("):
        open_input(path)
    with pytest.raises(InputError) as info:
        open_input(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a file"


@pytest.mark.parametrize(
    "data",
    [random.Random(0).randbytes(4096), bytes(range(256)) * 8, b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200],
)
def test_binary_garbage_is_an_input_error(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path / "x.bin", data)
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == f"{path}: not a CSV, JSON, NDJSON, Parquet or xlsx file"


def test_format_is_sniffed_when_the_extension_is_missing_or_wrong(tmp_path: Path) -> None:
    csv_dat = open_input(write(tmp_path / "export.dat", "a;b\n1;2\n"))
    assert (csv_dat.format, csv_dat.delimiter) == ("csv", ";")
    ndjson_json = open_input(write(tmp_path / "export.json", '{"a": 1}\n{"a": 2}\n'))
    assert ndjson_json.format == "ndjson"
    assert records(read_all(ndjson_json)[0]) == [1, 2]
    json_bare = open_input(write(tmp_path / "export", '[\n  {"a": 1}\n]'))
    assert json_bare.format == "json"
    pq.write_table(pa.table({"a": [1]}), tmp_path / "really-parquet.csv")
    assert open_input(tmp_path / "really-parquet.csv").format == "parquet"
    gz_no_ext = open_input(write(tmp_path / "download", gzip.compress(b"a,b\n1,2\n")))
    assert (gz_no_ext.format, gz_no_ext.compression) == ("csv", "gzip")
    macro_csv = open_input(write(tmp_path / "odd", "{subid},b\n1,2\n"))
    assert (macro_csv.format, macro_csv.columns) == ("csv", ["{subid}", "b"])


# --------------------------------------------------------------------------- xlsx


def test_xlsx_first_sheet(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Click ID", "Payout", "Visit Time", "Is Error", "Click ID"])
    ws.append(["c-1", 12.5, dt.datetime(2026, 11, 20, 5, 0, 4), True, "dup"])
    ws.append([])
    ws.append(["c-2", 3, None, False])
    ws.append(["c-3", 1, None, None, None, "extra"])
    wb.create_sheet("empty")  # an empty sheet is no data
    wb.save(tmp_path / "x.xlsx")
    raw = open_input(tmp_path / "x.xlsx")
    rows, problems = read_all(raw)
    assert (raw.format, raw.encoding, raw.delimiter) == ("xlsx", None, None)
    assert raw.columns == ["Click ID", "Payout", "Visit Time", "Is Error", "Click ID (2)"]
    assert rows == [
        {"Click ID": "c-1", "Payout": "12.5", "Visit Time": "2026-11-20T05:00:04", "Is Error": "true",
         "Click ID (2)": "dup", "_record": 2},
        {"Click ID": "c-2", "Payout": "3", "Visit Time": None, "Is Error": "false", "Click ID (2)": None,
         "_record": 4},
    ]  # fmt: skip
    assert [(p.record, p.reason, p.detail) for p in problems] == [(5, "ragged_row", "6 fields, expected 5")]


def test_xlsx_without_openpyxl_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "x.xlsx", b"PK\x03\x04" + b"\x00" * 100)
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == f"{path}: reading .xlsx needs openpyxl: pip install 'cfanalytics[xlsx]'"


def test_xlsx_that_is_not_a_workbook(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    path = write(tmp_path / "x.xlsx", b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(InputError, match=r"x\.xlsx: not a readable xlsx workbook"):
        open_input(path)


def test_xlsx_with_two_sheets_of_data_is_refused(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.title = "Postbacks"
    wb.active.append(["Click ID", "Payout"])
    wb.active.append(["c-1", 1])
    wb.create_sheet("empty")
    wb.create_sheet("More token=abc123").append(["Click ID", "Payout"])
    wb.save(tmp_path / "x.xlsx")
    with pytest.raises(InputError) as info:
        open_input(tmp_path / "x.xlsx")
    assert str(info.value) == (
        f"{tmp_path / 'x.xlsx'}: the workbook has 2 sheets with data ('Postbacks', 'More token=***'); "
        "one sheet per file is read: save each sheet as its own file"
    )


def test_xlsx_data_on_a_later_sheet_and_a_workbook_named_csv(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.title = "cover"
    ws = wb.create_sheet("data")
    ws.append(["Click ID", "Payout"])
    ws.append(["c-1", 2])
    wb.save(tmp_path / "book.xlsx")
    (tmp_path / "book.csv").write_bytes((tmp_path / "book.xlsx").read_bytes())  # a workbook named .csv
    for name in ("book.xlsx", "book.csv"):
        raw = open_input(tmp_path / name)
        rows, problems = read_all(raw)
        assert (raw.format, rows, problems) == ("xlsx", [{"Click ID": "c-1", "Payout": "2", "_record": 2}], [])


def test_a_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "export.csv"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("export.csv", "Click ID\nc-1\n")
    with pytest.raises(InputError) as info:
        open_input(path)
    assert str(info.value) == f"{path}: a zip archive, not an xlsx workbook or a log file; unzip it first"
