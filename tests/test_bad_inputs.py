"""A corpus of bad inputs (``tests/data/bad/``) and what each one gets (docs/contract.md §3).

Every file is ingested into a fresh store in America/New_York and checked for:
no exception (unreadable files are reported in ``result.failures``, one line
naming the file), ``rows_read = rows_stored + already_stored + quarantined`` on
every batch, no lost record (the records are counted independently, with the
``csv``/``json`` modules, and by hand in the table), the outcome written in
:data:`CASES`, and a re-ingest that stores nothing new. The same files go
through ``cfanalytics validate --json``: exit code 0 or 1, no traceback, and
the same counts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cfanalytics import LogStore

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "data" / "bad"
TZ = "America/New_York"


def u(i: int) -> str:
    """The UUID-shaped click id the corpus uses for row ``i``."""
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ value checks
def column(store: LogStore, kind: str, name: str, by: str = "click_id") -> list[Any]:
    return store.scan(kind).sort(by).select(name).collect().to_series().to_list()


def check_cp1252(store: LogStore) -> None:
    assert column(store, "visits", "city") == ["Zürich", "São Paulo"]
    assert column(store, "visits", "campaign_name") == ["Été – “promo” €", "Café"]


def check_latin1(store: LogStore) -> None:
    assert column(store, "visits", "city") == ["Zürich", "a\x81b"]


def check_quoted_newlines(store: LogStore) -> None:
    assert column(store, "postbacks", "error_message", by="postback_id") == [
        "Bad request:\nline two\r\nline three",
        None,
        'say "hi"',
    ]
    assert column(store, "postbacks", "status_code", by="postback_id") == [400, 200, 500]


def check_formulas(store: LogStore) -> None:
    # Formula-looking text is data: stored exactly as exported (escaping is the job of CSV/Excel writers).
    assert column(store, "postbacks", "error_message", by="postback_id") == [
        '=HYPERLINK("http://evil.example","click")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A2)",
    ]
    assert column(store, "postbacks", "postback_url", by="postback_id")[-1] == "=1+1"


def check_stray_quotes(store: LogStore) -> None:
    # a quote inside an unquoted field is a character, as in every spreadsheet
    assert column(store, "visits", "campaign_name") == ['15" screens', "quoted, fine", 'say "hi" and 5"']


def check_formula_controls(store: LogStore) -> None:
    assert column(store, "postbacks", "error_message", by="postback_id") == [
        '\x01=HYPERLINK("http://evil.example","x")',
        "==1+1",
        "=1+1",  # text values are stored trimmed
        "@SUM(A1)",
    ]


def check_html(store: LogStore) -> None:
    assert column(store, "postbacks", "error_message", by="postback_id") == [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "<b>Bad</b> &amp; &lt;",
    ]
    assert column(store, "postbacks", "postback_url", by="postback_id")[1] == "javascript:alert(1)"
    assert column(store, "postbacks", "ct", by="postback_id")[2] == "<i>lead</i>"


def check_nul(store: LogStore) -> None:
    assert column(store, "visits", "campaign_id") == ["k1", "k\x001", "k1"]
    assert column(store, "visits", "country") == ["US", "US", None]
    assert column(store, "visits", "_raw")[2] == '{"country":"U\\u0000"}'


def check_unix_times(store: LogStore) -> None:
    seconds = datetime.fromtimestamp(1763632804, tz=UTC)
    assert column(store, "visits", "visit_time") == [
        seconds,  # Unix seconds
        seconds.replace(microsecond=123_000),  # Unix milliseconds
        seconds.replace(microsecond=500_000),  # fractional seconds
        utc(2026, 11, 20, 10),  # ISO with Z
        utc(2026, 11, 20, 8),  # the offset wins over the store zone
    ]


def check_dst_ambiguous(store: LogStore) -> None:
    # The column is monotonic in file order: 01:20, 01:50 are EDT; 01:10, 01:40 (after the wrap) are EST.
    assert column(store, "visits", "visit_time") == [
        utc(2026, 11, 1, 4, 50),
        utc(2026, 11, 1, 5, 20),
        utc(2026, 11, 1, 5, 50),
        utc(2026, 11, 1, 6, 10),
        utc(2026, 11, 1, 6, 40),
        utc(2026, 11, 1, 7, 10),
    ]
    assert column(store, "visits", "flag_ambiguous_time") == [False, True, True, True, True, False]


def check_dst_gap(store: LogStore) -> None:
    # 02:00–03:00 does not exist on 2026-03-08 in New York: shifted forward by the hour.
    assert column(store, "visits", "visit_time") == [
        utc(2026, 3, 8, 6, 59, 59),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 8, 7),
    ]
    assert column(store, "visits", "flag_shifted_time") == [False, True, True, False]


def check_status_codes(store: LogStore) -> None:
    by = "postback_id"
    assert column(store, "postbacks", "status_code", by=by) == [None, None, None, None, None, 200, 404]
    assert column(store, "postbacks", "_raw", by=by)[:4] == [
        '{"status_code":"abc"}',
        '{"status_code":"999"}',
        '{"status_code":"-1"}',
        None,  # 0 = no response: null, not flagged
    ]


def check_decimal_comma(store: LogStore) -> None:
    assert column(store, "conversions", "payout") == [12.5, 3.0, -1.25]
    assert column(store, "conversions", "flag_invalid_payout") == [False] * 3


def check_bad_payouts(store: LogStore) -> None:
    assert column(store, "conversions", "payout") == [None, None, None, -4.5, None, 7.25]
    assert column(store, "conversions", "_raw") == [
        '{"payout":"$5"}',
        '{"payout":"NaN"}',
        '{"payout":"inf"}',
        None,
        '{"payout":"12,50"}',  # a decimal comma only counts in a ';' file
        None,
    ]


def check_first_key_kept(store: LogStore) -> None:
    rows = store.scan("visits").sort("click_id").select("click_id", "campaign_id", "visit_time").collect()
    assert rows.rows() == [(u(1), "k1", utc(2026, 11, 20, 15)), (u(2), "k1", utc(2026, 11, 20, 15, 1))]


def check_duplicate_header_names(store: LogStore) -> None:
    rows = store.scan("visits").sort("click_id").collect()
    assert rows.select("campaign_id", "campaign_id_2", "note", "note_2").rows() == [
        ("k1", "k9", "a", "b"),
        ("k2", "k8", "c", "d"),
    ]


def check_macros(store: LogStore) -> None:
    by = "postback_id"
    assert column(store, "postbacks", "click_id", by=by) == ["{subid}", "[CLICKID]", "%7Bclick_id%7D", u(4)]
    assert column(store, "postbacks", "flag_click_id_macro", by=by) == [True, True, True, False]
    assert column(store, "postbacks", "flag_click_id_malformed", by=by) == [False] * 4


def check_truncated_ids(store: LogStore) -> None:
    by = "postback_id"
    assert column(store, "postbacks", "click_id", by=by)[:2] == [u(1)[:20], u(2)[:-1]]
    assert column(store, "postbacks", "flag_click_id_malformed", by=by) == [True, True, True, False]


def check_events(store: LogStore) -> None:
    assert store.counts()["visits"] == 1
    assert column(store, "conversions", "payout") == [2.5]


def check_countries(store: LogStore) -> None:
    assert column(store, "visits", "country") == ["US", None, None, None]
    assert column(store, "visits", "flag_invalid_country") == [False, True, False, True]


def check_unnamed_column_kept(store: LogStore) -> None:
    rows = store.scan("visits").sort("click_id").collect()
    assert rows.height == 2
    assert rows.get_column("campaign_id").to_list() == ["k1", "k1"]


def check_sentinel_times(store: LogStore) -> None:
    # 0001-01-01 and 9999-12-31 are placeholders, not log times: outside 1970–2200 they are quarantined
    rows = store.scan("visits").sort("click_id").select("click_id", "visit_time").collect().rows()
    assert rows == [(u(1), utc(2026, 11, 20, 15))]


# ------------------------------------------------------------------------ table
@dataclass(frozen=True)
class Case:
    """One corpus file and its expected outcome (summed over the file's batches).

    ``error``: the file fails, with one line holding this text, and nothing is written.
    Otherwise ``records`` data records (counted by hand) are read, ``stored`` of
    them stored, ``already`` counted as already stored, ``quarantined`` by reason,
    ``flagged`` (stored rows) by flag; ``q_records`` are the record numbers in the
    quarantine table (CSV: header = 1; NDJSON: line; JSON: item index).
    ``bug`` marks a known defect (strict xfail); ``bug_in_validate`` says whether
    ``cfanalytics validate`` shows it too.
    """

    file: str
    records: int = 0
    error: str | None = None
    stored: int = 0
    already: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    q_records: tuple[int, ...] | None = None
    check: Callable[[LogStore], None] | None = None
    bug: str | None = None
    bug_in_validate: bool = True


NOT_A_LOG = "not a CSV, JSON, NDJSON, Parquet or xlsx file"

CASES: tuple[Case, ...] = (
    # ------------------------------------------------ files that cannot be read at all
    Case("empty.csv", error="empty file"),
    Case("binary_garbage.csv", error=NOT_A_LOG),
    Case("truncated.csv.gz", error="truncated gzip stream"),
    Case("trailing_garbage.csv.gz", error="corrupt gzip stream"),
    Case("wrong_shape.json", error='got "items" holding an object'),
    Case("number.json", error='JSON must be a list of records or {"items": [...]}, got a number'),
    Case("invalid.json", error="invalid JSON"),
    Case("no_columns.csv", error="no recognisable log columns (found: foo, bar, baz)"),
    Case("html_page.csv", error="no recognisable log columns (found: <!DOCTYPE html>)"),
    Case("missing_required.csv", error="visits input has no campaign_id column"),
    Case("utf16.csv", error="UTF-16 text is not supported"),
    Case("truncated.parquet", error="not a readable Parquet file"),
    Case("not_a_workbook.xlsx", error="xlsx"),
    Case("zip_archive.csv", error="a zip archive, not an xlsx workbook or a log file; unzip it first"),
    Case("opendocument.xlsx", error="an OpenDocument spreadsheet: save it as .xlsx or CSV"),
    Case("legacy_excel.xls", error="an old Excel .xls workbook (or another OLE2 file): save it as .xlsx or CSV"),
    Case("deep_nesting.json", error="JSON nested too deeply to read"),
    Case("deep_nesting_envelope.json", error="JSON nested too deeply to read"),
    # ------------------------------------------- record counts the reader cannot vouch for
    Case("unbalanced_quote.csv", error="line 2: a quoted value opens there and is never closed"),
    Case("unbalanced_quote_header.csv", error="line 1: a quoted value opens there and is never closed"),
    Case(
        "unbalanced_quote.csv.gz",
        error="line 11: a quoted value opens there and is never closed, so the 30 lines after it would be one value",
    ),
    Case(
        "unbalanced_quote_500.csv",
        error="line 203: a quoted value opens there and is never closed, so the 298 lines after it would be one value",
    ),
    Case(
        "unbalanced_quote_middle.csv",
        error="record 4 spans 4 lines of which 3 look like records of their own (an unbalanced quote?)",
    ),
    Case(
        "unbalanced_quote_last_field.csv",
        error="record 4 spans 4 lines of which 3 look like records of their own (an unbalanced quote?)",
    ),
    Case("two_sheets.xlsx", error="the workbook has 2 sheets with data ('visits', 'more visits')"),
    # ----------------------------------------------------- empty but well-formed
    Case("header_only.csv", records=0),
    Case(
        "empty_items.json",
        records=0,
    ),
    # ---------------------------------------------------------- spellings and encodings
    Case("semicolon.csv", records=3, stored=3),
    Case("tab.tsv", records=3, stored=3),
    Case("pipe.csv", records=2, stored=2),
    Case("bom.csv", records=2, stored=2),
    Case("cp1252.csv", records=2, stored=2, check=check_cp1252),
    Case("latin1.csv", records=2, stored=2, check=check_latin1),
    Case("quoted_newlines.csv", records=3, stored=3, check=check_quoted_newlines),
    Case("cr_line_endings.csv", records=2, stored=2),
    Case("crlf_gzip.csv.gz", records=1, stored=1),
    Case("multi_member.csv.gz", records=3, stored=3),
    Case("blank_lines.csv", records=2, stored=2),
    Case("non_ascii_headers.csv", records=2, stored=2),
    Case("duplicate_header_names.csv", records=2, stored=2, check=check_duplicate_header_names),
    Case("pandas_index_column.csv", records=2, stored=2, check=check_unnamed_column_kept),
    Case("header_trailing_delimiter.csv", records=2, stored=2, check=check_unnamed_column_kept),
    # ------------------------------------------------------------------ record shape
    Case("ragged.csv", records=6, stored=3, quarantined={"ragged_row": 3}, q_records=(3, 4, 6)),
    Case("stray_quotes.csv", records=3, stored=3, check=check_stray_quotes),
    Case("data_on_second_sheet.xlsx", records=2, stored=2),
    Case("workbook_named.csv", records=2, stored=2),
    Case("deep_nesting.ndjson", records=3, stored=2, quarantined={"invalid_record": 1}, q_records=(2,)),
    Case("columns_change.csv", records=5, stored=2, quarantined={"ragged_row": 3}, q_records=(4, 5, 6)),
    Case("columns_reordered.csv", records=3, stored=1, quarantined={"unparseable_required": 2}, q_records=(3, 4)),
    Case("repeated_header.csv", records=5, stored=3, quarantined={"repeated_header": 2}, q_records=(3, 5)),
    Case(
        "concatenated_bom.csv",
        records=3,
        stored=2,
        quarantined={"repeated_header": 1},
        q_records=(3,),
    ),
    Case("ndjson_invalid_lines.ndjson", records=5, stored=2, quarantined={"invalid_record": 3}, q_records=(2, 3, 6)),
    Case(
        "ndjson_junk_first_line.ndjson",
        records=3,
        stored=2,
        quarantined={"invalid_record": 1},
        q_records=(1,),
    ),
    Case("json_non_objects.json", records=6, stored=2, quarantined={"invalid_record": 4}, q_records=(2, 3, 4, 5)),
    Case("unknown_event_type.json", records=4, stored=2, quarantined={"unknown_event_type": 2}, check=check_events),
    Case("nul_bytes.csv", records=3, stored=3, flagged={"flag_invalid_country": 1}, check=check_nul),
    # ------------------------------------------------------------------------ times
    Case(
        "bad_times.csv",
        records=6,
        stored=1,
        quarantined={"unparseable_required": 5},
        q_records=(2, 3, 4, 5, 6),
    ),
    Case(
        "sentinel_times.csv",
        records=3,
        stored=1,
        quarantined={"unparseable_required": 2},
        q_records=(3, 4),
        check=check_sentinel_times,
    ),
    Case("dst_ambiguous.csv", records=6, stored=6, flagged={"flag_ambiguous_time": 4}, check=check_dst_ambiguous),
    Case("dst_nonexistent.csv", records=4, stored=4, flagged={"flag_shifted_time": 2}, check=check_dst_gap),
    Case("unix_times.csv", records=5, stored=5, check=check_unix_times),
    # ----------------------------------------------------------------------- values
    Case(
        "status_codes.csv",
        records=7,
        stored=7,
        flagged={"flag_invalid_status_code": 3, "flag_error_status_mismatch": 1},
        check=check_status_codes,
    ),
    Case(
        "is_error_values.csv",
        records=5,
        stored=2,
        quarantined={"unparseable_required": 2, "missing_required": 1},
        q_records=(2, 3, 6),
    ),
    Case(
        "payout_decimal_comma.csv",
        records=3,
        stored=3,
        flagged={"flag_negative_payout": 1},
        check=check_decimal_comma,
    ),
    Case(
        "payout_bad.csv",
        records=6,
        stored=6,
        flagged={"flag_invalid_payout": 4, "flag_negative_payout": 1},
        check=check_bad_payouts,
    ),
    Case("country_values.csv", records=4, stored=4, flagged={"flag_invalid_country": 2}, check=check_countries),
    Case("missing_values.csv", records=5, stored=1, quarantined={"missing_required": 4}, q_records=(2, 3, 4, 5)),
    # ------------------------------------------------------------------------- keys
    Case(
        "duplicate_keys.csv",
        records=5,
        stored=2,
        already=1,
        quarantined={"conflicting_key": 2},
        q_records=(4, 6),
        check=check_first_key_kept,
    ),
    Case(
        "duplicate_postback_ids.csv",
        records=3,
        stored=1,
        already=1,
        quarantined={"conflicting_key": 1},
        q_records=(4,),
    ),
    # -------------------------------------------------------------------- click ids
    Case("macros.csv", records=4, stored=4, flagged={"flag_click_id_macro": 3}, check=check_macros),
    Case(
        "truncated_click_ids.csv",
        records=4,
        stored=4,
        flagged={"flag_click_id_malformed": 3},
        check=check_truncated_ids,
    ),
    # ------------------------------------------------------------ payloads are data
    Case("formula_payloads.csv", records=4, stored=4, check=check_formulas),
    Case("html_js.csv", records=3, stored=3, check=check_html),
    Case("formula_controls.csv", records=4, stored=4, check=check_formula_controls),
)


def _param(case: Case, *, validate: bool = False) -> Any:
    marks = []
    if case.bug and (case.bug_in_validate or not validate):
        marks.append(pytest.mark.xfail(strict=True, reason=case.bug))
    return pytest.param(case, id=case.file, marks=marks)


# ---------------------------------------------------------- independent counting
def _text_of(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: latin-1 decodes every byte")


def count_records(path: Path) -> int:
    """Data records of a corpus file, counted with the standard library (openpyxl for a workbook)."""
    if path.read_bytes()[:4] == b"PK\x03\x04":
        from openpyxl import load_workbook

        with path.open("rb") as f:
            book = load_workbook(f, read_only=True)
            rows = [r for ws in book.worksheets for r in ws.iter_rows(values_only=True) if any(r)]
            book.close()
        return max(len(rows) - 1, 0)
    text = _text_of(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".ndjson"):
        return sum(1 for line in text.splitlines() if line.strip())
    if name.endswith(".json"):
        doc = json.loads(text)
        return len(doc["items"] if isinstance(doc, dict) else doc)
    first = next(line for line in io.StringIO(text, newline=None) if line.strip())
    delimiter = max(",;\t|", key=first.count)
    rows = [row for row in csv.reader(io.StringIO(text, newline=None), delimiter=delimiter) if row]
    return max(len(rows) - 1, 0)


def test_the_corpus_is_complete_and_small():
    files = {p.name for p in BAD.iterdir()}
    assert files == {c.file for c in CASES}
    assert len(files) >= 30
    assert all((BAD / f).stat().st_size < 50_000 for f in files)


# ------------------------------------------------------------------------ ingest
def ingest_checked(store: LogStore, *paths: Path) -> Any:
    result = store.ingest(list(paths))
    for b in result.batches:
        assert b.rows_read == b.rows_stored + b.already_stored + b.quarantined, b
    for line in result.failures:
        assert "\n" not in line
        assert "Traceback" not in line
    return result


def _merge(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, n in d.items():
            out[k] = out.get(k, 0) + n
    return out


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_gets_its_outcome(case: Case, tmp_path: Path):
    path = BAD / case.file
    store = LogStore(tmp_path / "store", timezone=TZ)
    result = ingest_checked(store, path)
    if case.error is not None:
        assert result.batches == []
        assert len(result.failures) == 1, result.failures
        assert result.failures[0].startswith(f"{path}: ")
        assert case.error in result.failures[0]
        assert set(store.counts().values()) == {0}, "nothing of a failed file is written"
        return
    assert result.failures == []
    assert count_records(path) == case.records, "the table's hand count disagrees with the csv/json modules"
    got = {
        "records": sum(b.rows_read for b in result.batches),
        "stored": sum(b.rows_stored for b in result.batches),
        "already": sum(b.already_stored for b in result.batches),
        "quarantined": _merge([b.quarantined_by_reason for b in result.batches]),
        "flagged": _merge([b.flagged_by_flag for b in result.batches]),
    }
    want = {
        "records": case.records,
        "stored": case.stored,
        "already": case.already,
        "quarantined": case.quarantined,
        "flagged": case.flagged,
    }
    assert got == want
    q = store.quarantine()
    assert q.height == sum(case.quarantined.values())
    assert set(q.get_column("reason").to_list()) <= set(case.quarantined)
    if case.q_records is not None:
        assert sorted(q.get_column("record").to_list()) == list(case.q_records)
    if case.check is not None:
        case.check(store)
    # Re-ingesting the same file stores nothing new and quarantines nothing twice.
    again = ingest_checked(store, path)
    assert sum(b.rows_stored for b in again.batches) == 0
    assert sum(b.already_stored + b.quarantined for b in again.batches) == case.records
    assert store.quarantine().height == q.height


def test_a_failing_file_does_not_stop_the_others(tmp_path: Path):
    store = LogStore(tmp_path / "store", timezone=TZ)
    paths = [BAD / "empty.csv", BAD / "semicolon.csv", BAD / "binary_garbage.csv", BAD / "ragged.csv"]
    result = ingest_checked(store, *paths)
    assert [f.split(": ")[0] for f in result.failures] == [str(paths[0]), str(paths[2])]
    assert [(b.source, b.rows_read) for b in result.batches] == [(str(paths[1]), 3), (str(paths[3]), 6)]


def test_a_5_mb_field_is_read_whole(tmp_path: Path):
    big = "x" * (5 << 20)
    store = LogStore(tmp_path / "store", timezone=TZ)
    head = "Click ID,Visit Time,Campaign ID,User Agent\n"
    path = tmp_path / "big.csv"
    path.write_text(
        head
        + f"{u(1)},2026-11-20 10:00:00,k1,ok\n"
        + f'{u(2)},2026-11-20 10:01:00,k1,"{big}"\n'  # quoted
        + f"{u(3)},2026-11-20 10:02:00,k1,{big}y\n"  # unquoted
        + f"{u(4)},2026-11-20 10:03:00,k1,ok,extra\n"  # ragged, after the big records
    )
    nd = tmp_path / "big.ndjson"
    nd.write_text(json.dumps({"ClickID": u(5), "VisitTime": "2026-11-20 10:04:00", "CampaignID": "k1", "UA": big}))
    result = ingest_checked(store, path, nd)
    assert result.failures == []
    assert [(b.rows_read, b.rows_stored, b.quarantined) for b in result.batches] == [(4, 3, 1), (1, 1, 0)]
    lengths = store.scan("visits").sort("click_id").select(pl.col("user_agent").str.len_bytes()).collect()
    assert lengths.to_series().to_list() == [2, 5 << 20, (5 << 20) + 1, 5 << 20]
    assert store.quarantine().get_column("record").to_list() == [5]


def test_very_long_lines_keep_every_record_and_its_number(tmp_path: Path):
    header = (
        "Postback ID,Click ID,Postback Time,Is Error,Error Message,Status Code,Postback URL,Custom Conversion (ct)\n"
    )
    lines = [header]
    for record in range(2, 40):
        if record in (5, 21):
            lines.append(f"p{record},{u(record)},extra\n")  # too few fields
        elif record == 17:
            lines.append(header)
        elif record == 25:
            lines.append(f'p{record},{u(record)},2026-11-20 10:00:00,1,"{"e" * (5 << 20)}",400,u,sale\n')
        elif record == 30:
            lines.append(f"p{record},{u(record)},2026-11-20 10:00:00,1,err,400,u,sale,x,y\n")  # too many
        else:
            url = f"https://ts.example/pb?x={'y' * 300_000}"  # 38 × 300 kB: several 4 MB blocks
            lines.append(f"p{record},{u(record)},2026-11-20 10:{record:02d}:00,1,err,400,{url},sale\n")
    path = tmp_path / "long.csv"
    path.write_text("".join(lines))
    store = LogStore(tmp_path / "store", timezone=TZ)
    (b,) = ingest_checked(store, path).batches
    assert (b.rows_read, b.rows_stored, b.quarantined) == (38, 34, 4)
    assert b.quarantined_by_reason == {"ragged_row": 3, "repeated_header": 1}
    q = store.quarantine().sort("record")
    assert q.select("record", "reason").rows() == [
        (5, "ragged_row"),
        (17, "repeated_header"),
        (21, "ragged_row"),
        (30, "ragged_row"),
    ]
    ids = store.scan("postbacks").select(pl.col("postback_id").str.slice(1).cast(pl.Int64)).collect()
    assert sorted(ids.to_series().to_list()) == [r for r in range(2, 40) if r not in (5, 17, 21, 30)]


def test_non_ascii_headers_keep_their_column_across_ingests(tmp_path: Path):
    store = LogStore(tmp_path / "store", timezone=TZ)
    ingest_checked(store, BAD / "non_ascii_headers.csv")
    before = store.scan("visits").collect_schema().names()
    later = tmp_path / "later.csv"
    later.write_text(f"Click ID,Visit Time,Campaign ID,城市,Страна\n{u(3)},2026-11-21 10:00:00,k1,深圳,Китай\n")
    assert ingest_checked(store, later).batches[0].rows_stored == 1
    assert store.scan("visits").collect_schema().names() == before
    first, _, third = store.scan("visits").sort("click_id").collect().iter_rows(named=True)
    city = next(name for name, value in first.items() if value == "北京")
    assert third[city] == "深圳"


# ----------------------------------------------------------------- validate CLI
def _validate(*paths: Path, timezone: str | None = TZ) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    zone = ["--timezone", timezone] if timezone else []
    cmd = [sys.executable, "-m", "cfanalytics", "validate", "--json", *zone, *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, env=env, timeout=600)


@pytest.fixture(scope="module")
def validated() -> dict[str, subprocess.CompletedProcess[str]]:
    """``cfanalytics validate --json`` of every corpus file.

    A process costs seconds of start-up, so files share one: all readable files,
    all unreadable ones (exit 1 for the group; each file's own line is checked),
    and each file with a known defect alone, so that its crash hides no other file.
    """
    groups = [
        [c for c in CASES if c.error is None and c.bug is None],
        [c for c in CASES if c.error is not None and c.bug is None],
        *([c] for c in CASES if c.bug is not None),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda group: _validate(*(BAD / c.file for c in group)), groups))
    return {c.file: run for group, run in zip(groups, runs, strict=True) for c in group}


@pytest.mark.parametrize("case", [_param(c, validate=True) for c in CASES])
def test_validate_cli_on_bad_input(case: Case, validated: dict[str, subprocess.CompletedProcess[str]]):
    run = validated[case.file]
    path = str(BAD / case.file)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == (1 if case.error else 0), run.stderr
    doc = json.loads(run.stdout)
    batches = [b for b in doc["batches"] if b["source"] == path]
    failures = [f for f in doc["failures"] if f.startswith(f"{path}: ")]
    if case.error is not None:
        assert batches == []
        assert len(failures) == 1
        assert case.error in failures[0]
        return
    assert failures == []
    for b in batches:
        assert b["rows_read"] == b["rows_stored"] + b["already_stored"] + b["quarantined"], b
    keys = ("rows_read", "rows_stored", "already_stored", "quarantined")
    got = tuple(sum(b[k] for b in batches) for k in keys)
    assert got == (case.records, case.stored, case.already, sum(case.quarantined.values()))
    flagged = sum(b["flagged"] for b in batches)
    assert flagged <= case.stored
    assert (flagged == 0) == (not case.flagged)


@pytest.mark.parametrize(("file", "code"), [("ragged.csv", 0), ("empty.csv", 1)])
def test_validate_cli_exit_code_of_one_file(file: str, code: int):
    run = _validate(BAD / file, timezone=None)
    assert (run.returncode, "Traceback" in run.stderr) == (code, False), run.stderr
    doc = json.loads(run.stdout)
    assert len(doc["failures"]) == code


# --------------------------------------------------------------- formula injection in exports
FORMULA_PAYLOADS = [
    '=HYPERLINK("http://evil.example","x")',
    "==1+1",
    "+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    "\x01=HYPERLINK(1)",
    "\x1b@x",
    " =1+1",
    "\u00a0+1",
    "\u3000-1",
    "\ufeff=1",
    "\uff1dcmd",  # full-width equals sign
    "\n=1",
]
HARMLESS = ["plain", "a=1", "1-2", "x@y.example", "ok;=1+1", "'already"]


def _needs_quote(text: str) -> bool:
    """The OWASP rule, written independently: a tab or CR first, or = + - @ after white space and controls."""
    if text[:1] in ("\t", "\r"):
        return True
    stripped = text
    while stripped and (stripped[0].isspace() or ord(stripped[0]) < 32 or stripped[0] in "\x7f\ufeff\u00a0"):
        stripped = stripped[1:]
    return stripped[:1] in ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_exports_neutralise_every_formula_shape(tmp_path: Path, suffix: str):
    from cfanalytics.panels.export import export_frame

    texts = FORMULA_PAYLOADS + HARMLESS
    assert [_needs_quote(t) for t in texts] == [True] * len(FORMULA_PAYLOADS) + [False] * len(HARMLESS)
    frame = pl.DataFrame({"text": texts, "n": list(range(len(texts)))})
    path = export_frame(frame, tmp_path / f"t{suffix}")
    if suffix == ".csv":
        text = path.read_bytes().decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows[0] == ["text", "n"]
        # every text field is quoted, so a ';' inside a cell cannot split it in a ';' spreadsheet
        assert '"ok;=1+1"' in text
        got = [r[0] for r in rows[1:]]
        assert got == ["'" + t for t in FORMULA_PAYLOADS] + HARMLESS
        return
    from openpyxl import load_workbook

    sheet = load_workbook(path).active
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert all(c.data_type == "s" for c in cells), [(c.value, c.data_type) for c in cells]
    got = [c.value for c in cells]
    # Excel cannot hold control characters: they are dropped, after the cell was neutralised
    expected = ["'" + "".join(ch for ch in t if ch in "\t\n\r" or ord(ch) >= 32) for t in FORMULA_PAYLOADS]
    expected = [e.replace("\r", "\n") if e.startswith("'\r") else e for e in expected]
    assert [g.replace("\r", "\n") for g in got] == expected + HARMLESS
    assert all(not g.startswith("=") for g in got)


# ------------------------------------------------------------------ odd files: pipes, devices, names
VISITS = f"Click ID,Visit Time,Campaign ID\n{u(1)},2026-11-20 10:00:00,k1\n{u(2)},2026-11-20 10:01:00,k1\n"


def _cli(*argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ.copy()
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p)
    environ.update(env)
    cmd = [sys.executable, "-m", "cfanalytics", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, env=environ, timeout=timeout)


def test_a_fifo_nobody_writes_to_fails_in_one_line_instead_of_hanging(tmp_path: Path):
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    started = datetime.now(tz=UTC)
    r = _cli("validate", str(fifo), timeout=60, CFANALYTICS_PIPE_TIMEOUT="1")
    assert (datetime.now(tz=UTC) - started).total_seconds() < 30
    assert r.returncode == 1
    assert r.stderr == (
        f"cfanalytics: {fifo}: a pipe with nothing written to it for 1 s (CFANALYTICS_PIPE_TIMEOUT); "
        "is its writer running?\n"
    )


def test_a_fifo_and_a_process_substitution_are_read(tmp_path: Path):
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    scratch = tmp_path / "tmp"  # the spooled copies go here, and must be gone afterwards
    scratch.mkdir()

    def feed() -> None:
        with fifo.open("w") as f:  # blocks until the reader opens it
            f.write(VISITS)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(feed)
        r = _cli(
            "ingest", "--store", str(tmp_path / "s"), "--timezone", "UTC", "--json", str(fifo), TMPDIR=str(scratch)
        )
    assert r.returncode == 0, r.stderr
    assert [(b["rows_read"], b["rows_stored"]) for b in json.loads(r.stdout)["batches"]] == [(2, 2)]
    # /dev/fd/N of `<(cat export.csv)`: a pipe that already holds the records
    source = tmp_path / "v.csv"
    source.write_text(VISITS)
    script = f'exec {sys.executable} -m cfanalytics validate --json <(cat "{source}")'
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["TMPDIR"] = str(scratch)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [b["rows_read"] for b in json.loads(done.stdout)["batches"]] == [2]
    assert list(scratch.iterdir()) == []


def test_devices_are_refused(tmp_path: Path):
    store = LogStore(tmp_path / "store", timezone=TZ)
    result = ingest_checked(store, Path("/dev/null"))
    assert result.failures == ["/dev/null: is a device or socket, not a file"]


def test_a_file_name_that_is_not_utf8(tmp_path: Path):
    name = os.fsdecode(b"visits-\xff\xfe.csv")
    path = tmp_path / name
    path.write_text(VISITS)
    store = LogStore(tmp_path / "store", timezone=TZ)
    result = ingest_checked(store, path)
    shown = str(tmp_path / "visits-\\xff\\xfe.csv")
    assert [(b.source, b.rows_read, b.rows_stored) for b in result.batches] == [(shown, 2, 2)]
    assert set(store.batches().get_column("source").to_list()) == {shown}
    r = _cli("validate", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{shown} [visits]: 2 read")
    r = _cli("validate", str(tmp_path / os.fsdecode(b"missing-\xff.csv")))
    assert r.stderr == f"cfanalytics: {tmp_path}/missing-\\xff.csv: no such file\n"


# ------------------------------------------------------------------ memory per record
def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its peak resident memory (MB) and its stdout.

    The peak is the process's own high-water mark (``VmHWM``): ``ru_maxrss`` of a child would
    also count the memory of this test process at the fork.
    """
    hwm = "[int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0] / 1024"
    wrapper = code + f"\nprint({hwm})\n"
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    *lines, peak = done.stdout.strip().splitlines()
    return float(peak), "\n".join(lines)


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "json"])
def test_a_record_beyond_the_maximum_fails_in_one_line_in_bounded_memory(tmp_path: Path, fmt: str):
    from cfanalytics.readers import MAX_RECORD_BYTES

    assert MAX_RECORD_BYTES == 16 << 20
    size = 50 << 20
    path = tmp_path / f"big.{fmt}"
    with path.open("w") as f:
        if fmt == "ndjson":
            f.write(json.dumps({"ClickID": u(1), "VisitTime": "2026-11-20 10:00:00", "CampaignID": "k1"}) + "\n")
            f.write('{"ClickID": "' + u(2) + '", "VisitTime": "2026-11-20 10:00:00", "UA": "' + "x" * size + '"}\n')
        elif fmt == "json":  # a document: parsed whole, then refused before anything is stored
            json.dump([{"ClickID": u(1), "VisitTime": "2026-11-20 10:00:00", "UA": "x" * size}], f)
        else:
            f.write(f'Click ID,Visit Time,Campaign ID,User Agent\n{u(1)},2026-11-20 10:00:00,k1,"{"x" * size}"\n')
    code = (
        "from cfanalytics import LogStore\n"
        f"r = LogStore({str(tmp_path / 's')!r}, timezone='UTC').ingest([{str(path)!r}])\n"
        "print(r.failures[0]); print(sum(b.rows_stored for b in r.batches))"
    )
    peak, out = _peak_rss_mb(code)
    failure, stored = out.splitlines()
    where = {"ndjson": "line 2", "json": "record 1", "csv": "a record after record 1 is"}[fmt]
    assert failure.startswith(f"{path}: {where}")
    assert "larger than 16 MB, the largest record read" in failure
    assert stored == "0"
    print(f"peak RSS {peak:.0f} MB for a {size >> 20} MB {fmt} record")
    assert peak < 500, f"peak RSS {peak:.0f} MB for a {size >> 20} MB record"


def test_a_record_at_the_maximum_is_read(tmp_path: Path):
    size = (16 << 20) - 200
    path = tmp_path / "big.ndjson"
    path.write_text(
        '{"ClickID": "'
        + u(1)
        + '", "VisitTime": "2026-11-20 10:00:00", "CampaignID": "k1", "UA": "'
        + "x" * size
        + '"}\n'
    )
    code = (
        "from cfanalytics import LogStore\n"
        f"r = LogStore({str(tmp_path / 's')!r}, timezone='UTC').ingest([{str(path)!r}])\n"
        "print(r.failures); print(sum(b.rows_stored for b in r.batches))"
    )
    peak, out = _peak_rss_mb(code)
    assert out.splitlines() == ["[]", "1"]
    assert peak < 900, f"peak RSS {peak:.0f} MB for a 16 MB record"


def test_sigterm_while_waiting_on_a_pipe_cleans_up(tmp_path: Path):
    import signal
    import time

    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(TMPDIR=str(scratch), CFANALYTICS_PIPE_TIMEOUT="60")
    cmd = [sys.executable, "-m", "cfanalytics", "validate", str(fifo)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not list(scratch.iterdir()) and time.monotonic() < deadline:  # waiting on the pipe, its copy open
        time.sleep(0.05)
    assert list(scratch.iterdir())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (143, "cfanalytics: terminated\n")
    assert list(scratch.iterdir()) == []
