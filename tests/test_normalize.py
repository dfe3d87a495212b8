"""Normalizer details: raw-record JSON of quarantined records, time-format detection (docs/contract.md §2, §3).

Expected values are computed by hand here (``json.dumps``, ``zoneinfo``), not
by the code under test.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from cfanalytics.columns import resolve
from cfanalytics.normalize import Normalized, Normalizer, raw_record_frame, raw_records

NY = "America/New_York"
VISIT_HEADER = ["Click ID", "Visit Time", "Campaign ID"]


def by_hand(row: dict[str, str | None]) -> str:
    """The raw-record JSON as specified: compact, columns in file order, non-ASCII kept."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def visit_batch(times: list[str | None], start: int = 2) -> pa.RecordBatch:
    """Visits with the given ``Visit Time`` texts, records numbered from ``start``."""
    n = len(times)
    return pa.RecordBatch.from_pydict(
        {
            "Click ID": [f"c{start + i}" for i in range(n)],
            "Visit Time": times,
            "Campaign ID": ["k"] * n,
            "_record": list(range(start, start + n)),
        }
    )


def visit_times(normalizer: Normalizer, batches: list[pa.RecordBatch]) -> dict[int, datetime | None]:
    """``{record: visit_time}`` over all batches (``None`` for quarantined records)."""
    out: dict[int, datetime | None] = {}
    for batch in batches:
        part = normalizer.normalize(batch)["visits"]
        out.update(zip(part.rows["_record"].to_list(), part.rows["visit_time"].to_list(), strict=True))
        out.update(dict.fromkeys(part.quarantine["_record"].to_list()))
    return dict(sorted(out.items()))


def local(text: str, tz: str = NY, fold: int = 0) -> datetime:
    """A naive local time read in ``tz`` (``fold=1``: the second of a repeated hour), in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


# ------------------------------------------------------------------ raw JSON
NASTY = 'Caf\u00e9 "quoted" back\\slash\nnew line\ttab \U0001f600'


def test_quarantine_raw_is_the_records_json() -> None:
    """Quarantined records carry their raw columns as compact JSON text; stored rows carry none."""
    columns = ["Click ID", "Visit Time", "Campaign ID", "Note"]
    data = {
        "Click ID": ["a", None, "c", "d"],
        "Visit Time": ["2026-11-20 00:00:04", "2026-11-20 00:00:05", "not a time", "2026-11-20 00:00:07"],
        "Campaign ID": ["k", "k", "k", ""],
        "Note": [NASTY, "", None, "x"],
    }
    batch = pa.RecordBatch.from_pydict({**data, "_record": [2, 3, 4, 5]})
    out = Normalizer(resolve(columns), timezone=NY, source="v.csv").normalize(batch)["visits"]

    assert out.rows["_record"].to_list() == [2]
    assert "_raw_record" not in out.rows.columns
    q = out.quarantine
    assert q.columns == ["_record", "reason", "detail", "raw", "kind"]
    assert q["_record"].to_list() == [3, 4, 5]
    assert q["reason"].to_list() == ["missing_required", "unparseable_required", "missing_required"]
    expected = [by_hand({c: data[c][i] for c in columns}) for i in (1, 2, 3)]
    assert q["raw"].to_list() == expected
    assert json.loads(expected[0])["Click ID"] is None
    assert q.schema["raw"] == pl.String


def test_raw_records_helper_matches_quarantine() -> None:
    """:func:`raw_records` gives the same text for any records, of a batch or a frame."""
    batch = pa.RecordBatch.from_pydict(
        {"Click ID": ["a", "b", None], "Visit Time": [NASTY, "", None], "_record": [7, 8, 9]}
    )
    want = {
        7: by_hand({"Click ID": "a", "Visit Time": NASTY}),
        9: by_hand({"Click ID": None, "Visit Time": None}),
    }
    assert raw_records(batch, {7, 9, 42}) == want
    assert raw_records(pl.from_arrow(batch), [9, 7]) == want
    assert raw_records(batch, []) == {}
    frame = raw_record_frame(batch, [9, 7])
    assert frame.rows() == [(7, want[7]), (9, want[9])]
    only_record = pa.RecordBatch.from_pydict({"_record": [1]})
    assert raw_records(only_record, [1]) == {1: "{}"}


def test_unknown_event_type_raw() -> None:
    """Event-log rows of an unknown type are quarantined with their raw JSON."""
    columns = ["Click ID", "Event Type", "Visit Time", "Campaign ID"]
    rows = [
        ["a", "Visit", "2026-11-20 00:00:04", "k"],
        ["b", "impression", "2026-11-20 00:00:05", "k"],
        ["c", "", "2026-11-20 00:00:06", "k"],
    ]
    batch = pa.RecordBatch.from_pydict(
        {**{c: [r[i] for r in rows] for i, c in enumerate(columns)}, "_record": [2, 3, 4]}
    )
    out = Normalizer(resolve(columns), timezone="UTC", source="e.csv").normalize(batch)
    assert out["visits"].rows["_record"].to_list() == [2]
    q = out["events"].quarantine
    assert q["reason"].to_list() == ["unknown_event_type"] * 2
    assert q["raw"].to_list() == [by_hand(dict(zip(columns, r, strict=True))) for r in rows[1:]]
    assert all("_raw_record" not in n.rows.columns for n in out.values())


# ---------------------------------------------------------------- time formats
def test_mixed_time_formats_give_hand_computed_instants() -> None:
    """Epoch s/ms, offsets, two naive formats and a DST fall-back hour, in file order."""
    rows: list[tuple[str, datetime]] = [
        ("2026-10-31 23:00:00", local("2026-10-31 23:00:00")),
        (str(int(datetime(2026, 11, 1, 3, 30, tzinfo=UTC).timestamp())), datetime(2026, 11, 1, 3, 30, tzinfo=UTC)),
        ("2026/11/01 00:10:00", local("2026-11-01 00:10:00")),
        (
            str(int(datetime(2026, 11, 1, 4, 20, tzinfo=UTC).timestamp() * 1000) + 250),
            datetime(2026, 11, 1, 4, 20, 0, 250_000, tzinfo=UTC),
        ),
        ("2026-11-01T00:45:00-04:00", datetime(2026, 11, 1, 4, 45, tzinfo=UTC)),
        ("2026-11-01 01:10:00", local("2026-11-01 01:10:00", fold=0)),  # EDT, first pass
        ("2026-11-01 01:50:00", local("2026-11-01 01:50:00", fold=0)),
        ("2026-11-01 01:05:00", local("2026-11-01 01:05:00", fold=1)),  # EST, the hour again
        ("2026/11/01 01:30:00", local("2026-11-01 01:30:00", fold=1)),
        ("2026-11-01T07:00:00Z", datetime(2026, 11, 1, 7, 0, tzinfo=UTC)),
        ("2026-11-01 02:15:00", local("2026-11-01 02:15:00")),
    ]
    assert local("2026-11-01 01:05:00", fold=1) - local("2026-11-01 01:05:00") == timedelta(hours=1)
    texts = [t for t, _ in rows]
    want = {i + 2: w for i, (_, w) in enumerate(rows)}
    for size in (len(rows), 4, 1):
        n = Normalizer(resolve(VISIT_HEADER), timezone=NY, source="v.csv")
        batches = [visit_batch(texts[i : i + size], start=i + 2) for i in range(0, len(texts), size)]
        assert visit_times(n, batches) == want, size
    n = Normalizer(resolve(VISIT_HEADER), timezone=NY, source="v.csv")
    flags = n.normalize(visit_batch(texts))["visits"].rows["flag_ambiguous_time"].to_list()
    assert flags == [False] * 5 + [True] * 4 + [False] * 2


def test_spring_forward_and_placeholders() -> None:
    """A non-existent local time is shifted by the gap; times outside 1970–2200 are quarantined."""
    texts = ["2026-03-08 01:59:00", "2026-03-08 02:30:00", "2026-03-08 03:10:00", "9999-12-31 00:00:00", "5"]
    n = Normalizer(resolve(VISIT_HEADER), timezone=NY, source="v.csv")
    out = n.normalize(visit_batch(texts))["visits"]
    assert out.rows["visit_time"].to_list() == [
        local("2026-03-08 01:59:00"),
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 EDT
        local("2026-03-08 03:10:00"),
    ]
    assert out.rows["flag_shifted_time"].to_list() == [False, True, False]
    assert out.quarantine["_record"].to_list() == [5, 6]
    assert set(out.quarantine["reason"]) == {"unparseable_required"}


def test_detection_survives_empty_and_other_first_rows() -> None:
    """Empty first values, a first batch of epochs, then naive times: every row as by hand."""
    epoch = int(datetime(2026, 11, 20, 5, 0, tzinfo=UTC).timestamp())
    first = [None, "", "  ", str(epoch), str(epoch + 60)]
    then = ["2026-11-20 00:02:00", "2026-11-20 00:03:00", "2026-11-20T00:04:00+00:00", "2026-11-20 00:05"]
    later = ["2026-11-20 00:06:00", str(epoch + 420), "2026/11/20 00:08:00", ""]
    n = Normalizer(resolve(VISIT_HEADER), timezone=NY, source="v.csv")
    empty_only = n.normalize(visit_batch([None, ""], start=100))["visits"]
    assert empty_only.rows.height == 0
    assert empty_only.quarantine.height == 2
    got = visit_times(n, [visit_batch(first, 2), visit_batch(then, 7), visit_batch(later, 11)])
    assert got == {
        2: None,
        3: None,
        4: None,
        5: datetime(2026, 11, 20, 5, 0, tzinfo=UTC),
        6: datetime(2026, 11, 20, 5, 1, tzinfo=UTC),
        7: local("2026-11-20 00:02:00"),
        8: local("2026-11-20 00:03:00"),
        9: datetime(2026, 11, 20, 0, 4, tzinfo=UTC),
        10: local("2026-11-20 00:05:00"),
        11: local("2026-11-20 00:06:00"),
        12: datetime(2026, 11, 20, 5, 7, tzinfo=UTC),
        13: local("2026-11-20 00:08:00"),
        14: None,
    }


TIME_TEXTS = [
    "2026-11-01 00:59:59",
    "2026-11-01 01:00:00",
    "2026-11-01 01:30:00.5",
    "2026-11-01 01:45",
    "2026/11/01 01:15:00",
    "2026-11-01",
    "2026-03-08 02:30:00",
    "2026-11-01T01:30:00",
    "2026-11-01T01:45",
    "2026-11-01T01:30:00.250",
    "2026-11-01TT01:30:00",
    "2026-11-01T01:30:00Z",
    "2026-11-01T01:30:00z",
    "2026-11-01 01:30:00+05:00",
    "2026-11-01 01:30:00 -0330",
    "2026-11-01 01:30+01:00",
    "2026-11-01 01:30:00+05 00",
    "1793500200",
    "1793500200123",
    "1793500200.5",
    "12345",
    "1e10",
    "-1700000000",
    "9999-12-31 00:00:00",
    "2026-13-01 00:00:00",
    "not a time",
    "",
    " ",
    None,
]


def record_detections(normalizer: Normalizer) -> list[str | None]:
    """Make ``normalizer`` note every format its detection returns; the list it appends to."""
    seen: list[str | None] = []
    detect = normalizer._time_format

    def noting(frame: pl.DataFrame, name: str, key: str) -> str | None:
        seen.append(detect(frame, name, key))
        return seen[-1]

    normalizer._time_format = noting  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_detection_equals_full_parse(seed: int) -> None:
    """Whatever format is detected first, every value parses as with all formats tried."""
    rng = random.Random(seed)
    texts = [rng.choice(TIME_TEXTS) for _ in range(300)]
    if seed % 2:
        texts.sort(key=lambda t: (t or "").replace("/", "-"))
    sizes = [rng.randint(1, 60) for _ in range(40)]
    batches, start = [], 2
    for size in sizes:
        part = texts[start - 2 : start - 2 + size]
        if part:
            batches.append(visit_batch(part, start))
        start += size
    for tz in (NY, "Europe/Berlin", "UTC"):
        detecting = Normalizer(resolve(VISIT_HEADER), timezone=tz, source="v.csv")
        full = Normalizer(resolve(VISIT_HEADER), timezone=tz, source="v.csv")
        full._time_format = lambda *_: None  # type: ignore[method-assign]
        detected = record_detections(detecting)
        for batch in batches:
            a, b = detecting.normalize(batch)["visits"], full.normalize(batch)["visits"]
            assert_frame_equal(a.rows, b.rows)
            assert_frame_equal(a.quarantine, b.quarantine)
        assert any(detected)  # the detected format was used


def test_normalized_rows_have_no_raw_record_column() -> None:
    """The stored-to-be rows do not carry the raw-record JSON any more."""
    out = Normalizer(resolve(VISIT_HEADER), timezone="UTC", source="v.csv").normalize(
        visit_batch(["2026-11-20 00:00:00"])
    )
    assert isinstance(out["visits"], Normalized)
    assert "_raw_record" not in out["visits"].rows.columns
