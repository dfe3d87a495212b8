"""The pandera value models are the one home of the value rules (docs/contract.md §2, §3).

Each rule of a model is broken on purpose, one row at a time, and the outcome
is checked against what the contract says, written out by hand here: a
required value the model rejects quarantines its record with a detail naming
the column and the check; an optional one is nulled, flagged and kept raw in
``_raw``. Then the models are changed (their checks removed, a check added)
and the outcomes follow the model: no rule is left written by hand beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import cfanalytics as cf
from cfanalytics import schemas
from cfanalytics.columns import resolve
from cfanalytics.exceptions import InputError
from cfanalytics.normalize import Normalized, Normalizer
from cfanalytics.schemas import ACTION_WORDS, ACTIONS, ENTITY_TYPES, ENTITY_WORDS, KINDS, Column, columns
from cfanalytics.store import LogStore

#: A valid text for each required column (by name), so that only the column under test can fail.
VALID = {
    "click_id": "00000001-0000-4000-8000-000000000001",
    "campaign_id": "k1",
    "postback_id": "p1",
    "is_error": "0",
    "author": "ann",
    "entity_type": "campaign",
    "action": "created",
}
VALID_TIME = "2026-11-20 10:00:00"
#: The time window of the models, as pandera names the check.
WINDOW = "in_range(1970-01-01 00:00:00+00:00, 2200-01-01 00:00:00+00:00)"
#: (kind, column) → (text the parser reads but a model check rejects, the parsed value, the check's name).
BREAKING: dict[tuple[str, str], tuple[str, Any, str]] = {
    **{
        (kind, col): ("2250-01-01 00:00:00", datetime(2250, 1, 1, tzinfo=UTC), WINDOW)
        for kind, col in [
            ("visits", "visit_time"),
            ("clicks", "click_time"),
            ("conversions", "conversion_time"),
            ("conversions", "visit_time"),
            ("postbacks", "postback_time"),
            ("postbacks", "click_time"),
            ("activity", "changed_at"),
        ]
    },
    ("visits", "bot_score"): ("inf", float("inf"), "finite"),
    ("clicks", "bot_score"): ("-inf", float("-inf"), "finite"),
    ("conversions", "payout"): ("1e400", float("inf"), "finite"),
    ("postbacks", "status_code"): ("700", 700, "in_range(100, 599)"),
    ("visits", "country"): ("usa", "USA", "str_matches('^[A-Z]{2}$')"),
    ("clicks", "country"): ("D1", "D1", "str_matches('^[A-Z]{2}$')"),
}
#: The flag of a nulled optional value (docs/contract.md §3).
FLAG = {"status_code": "flag_invalid_status_code", "payout": "flag_invalid_payout", "country": "flag_invalid_country"}


def checked_columns() -> set[tuple[str, str]]:
    """Every (kind, column) the models give a check, read from the models themselves."""
    return {
        (kind, name)
        for kind in KINDS
        for name, col in schemas.value_model(kind).columns.items()
        if col.checks  # type: ignore[attr-defined]
    }


@pytest.fixture
def fresh_models() -> Iterator[None]:
    """Models rebuilt from (possibly patched) checks, and rebuilt again afterwards."""
    schemas.value_model.cache_clear()
    yield
    schemas.value_model.cache_clear()


def normalize_one(kind: str, column: str, text: str) -> Normalized:
    """One record (number 2) of ``kind``: valid required values, ``column`` holding ``text``."""
    values: dict[str, list[str | int]] = {}
    for c in columns(kind):
        if c.required:
            values[c.name] = [VALID_TIME if c.dtype == schemas.TIME else VALID[c.name]]
    values[column] = [text]
    resolution = resolve(list(values), kind=kind)
    normalizer = Normalizer(resolution, timezone="UTC", source=f"{kind}.csv")
    batch = pa.RecordBatch.from_pydict({**values, "_record": [2]})
    return normalizer.normalize(batch)[kind]


def is_required(kind: str, column: str) -> bool:
    return next(c for c in columns(kind) if c.name == column).required


# ------------------------------------------------------------------- the rules
def test_the_breaking_cases_cover_every_check_of_every_model():
    # Activity vocabularies map any text to an allowed word (or "other"), so text cannot break their
    # isin checks; the check guards the vocabularies themselves.
    vocabularies = {("activity", "entity_type"), ("activity", "action")}
    assert checked_columns() == set(BREAKING) | vocabularies
    assert set(ENTITY_WORDS.values()) | {"other"} <= set(ENTITY_TYPES)
    assert set(ACTION_WORDS.values()) | {"other"} <= set(ACTIONS)


@pytest.mark.parametrize(("kind", "column"), sorted(BREAKING))
def test_a_value_breaking_a_check_of_the_model_is_quarantined_or_flagged(kind, column):
    text, _parsed, check = BREAKING[(kind, column)]
    out = normalize_one(kind, column, text)
    if is_required(kind, column):
        assert out.rows.height == 0
        assert out.quarantine.select("_record", "reason", "detail").rows() == [
            (2, "unparseable_required", f"{column}: '{text}' fails the {kind} model's check {check}")
        ]
    else:
        assert out.quarantine.height == 0
        row = out.rows.row(0, named=True)
        assert row[column] is None
        assert row[FLAG.get(column, "flag_invalid_value")] is True
        assert json.loads(row["_raw"]) == {column: text}


@pytest.mark.parametrize(("kind", "column"), sorted(BREAKING))
def test_without_the_models_checks_every_parsed_value_is_kept(kind, column, fresh_models, monkeypatch):
    # No rule is written beside the model: with its checks gone, the value is stored as parsed.
    monkeypatch.setattr(schemas, "column_checks", lambda _column: [])
    text, parsed, _check = BREAKING[(kind, column)]
    out = normalize_one(kind, column, text)
    assert out.quarantine.height == 0
    row = out.rows.row(0, named=True)
    assert row[column] == parsed
    assert not any(row[f] for f in schemas.flags(kind) if f.startswith("flag_invalid"))
    assert row["_raw"] is None


def test_nullability_comes_from_the_model(fresh_models, monkeypatch):
    out = normalize_one("visits", "campaign_id", " ")
    assert out.quarantine.select("reason", "detail").rows() == [("missing_required", "campaign_id: missing")]
    # A model in which campaign_id may be null: the same record is kept, its campaign null.
    strict = schemas.value_model

    def lenient(kind: str, without: tuple[str, ...] = ()) -> Any:
        return strict(kind, without).update_column("campaign_id", nullable=True)

    monkeypatch.setattr(schemas, "value_model", lenient)
    out = normalize_one("visits", "campaign_id", " ")
    assert out.quarantine.height == 0
    assert out.rows.get_column("campaign_id").to_list() == [None]


# -------------------------------------------------------------- rule changes
def with_extra_check(name: str, check: Callable[[], Any]) -> Callable[[Column], list[Any]]:
    original = schemas.column_checks

    def patched(column: Column) -> list[Any]:
        return [*original(column), check()] if column.name == name else original(column)

    return patched


def test_a_check_added_to_the_model_quarantines_a_required_value(fresh_models, monkeypatch):
    import pandera.polars as pa_polars

    assert normalize_one("visits", "campaign_id", "zz9").quarantine.height == 0
    monkeypatch.setattr(
        schemas, "column_checks", with_extra_check("campaign_id", lambda: pa_polars.Check.str_matches("^k"))
    )
    schemas.value_model.cache_clear()
    out = normalize_one("visits", "campaign_id", "zz9")
    assert out.rows.height == 0
    assert out.quarantine.select("reason", "detail").rows() == [
        ("unparseable_required", "campaign_id: 'zz9' fails the visits model's check str_matches('^k')")
    ]
    assert normalize_one("visits", "campaign_id", "k7").quarantine.height == 0


def test_a_narrower_range_in_the_model_flags_more_status_codes_through_the_ingest(
    fresh_models, monkeypatch, tmp_path: Path
):
    import pandera.polars as pa_polars

    text = (
        "Postback ID,Click ID,Postback Time,Is Error,Status Code\n"
        "p1,00000001-0000-4000-8000-000000000001,2026-11-20 10:00:00,1,503\n"
        "p2,00000002-0000-4000-8000-000000000002,2026-11-20 10:01:00,0,200\n"
        "p3,00000003-0000-4000-8000-000000000003,2099-11-20 10:01:00,0,200\n"
        "p4,00000004-0000-4000-8000-000000000004,2250-11-20 10:01:00,0,200\n"
    )
    path = tmp_path / "pb.csv"
    path.write_text(text)

    def ingest(store_path: Path) -> tuple[cf.BatchResult, pl.DataFrame, pl.DataFrame]:
        store = LogStore(store_path, timezone="UTC")
        (batch,) = store.ingest([path]).batches
        assert batch.rows_read == batch.rows_stored + batch.already_stored + batch.quarantined
        rows = store.scan("postbacks").collect().sort("postback_id")
        return batch, rows, store.quarantine()

    batch, rows, quarantine = ingest(tmp_path / "a")
    assert (batch.rows_read, batch.rows_stored, batch.quarantined, batch.flagged) == (4, 3, 1, 0)
    assert rows.get_column("status_code").to_list() == [503, 200, 200]
    assert quarantine.select("record", "reason", "detail").rows() == [
        (5, "unparseable_required", f"postback_time (Postback Time): '2250-11-20 10:01:00' fails the postbacks "
         f"model's check {WINDOW}")
    ]  # fmt: skip
    # The model now says status codes stop at 499, and times before 2050: the ingest follows it.
    original = schemas.column_checks

    def narrower(column: Column) -> list[Any]:
        if column.name == "status_code":
            return [pa_polars.Check.in_range(100, 499)]
        if column.dtype == schemas.TIME:
            return [pa_polars.Check.lt(datetime(2050, 1, 1, tzinfo=UTC))]
        return original(column)

    monkeypatch.setattr(schemas, "column_checks", narrower)
    schemas.value_model.cache_clear()
    batch, rows, quarantine = ingest(tmp_path / "b")
    assert (batch.rows_read, batch.rows_stored, batch.quarantined, batch.flagged) == (4, 2, 2, 1)
    assert batch.flagged_by_flag == {"flag_invalid_status_code": 1}
    assert rows.select("postback_id", "status_code", "_raw").rows() == [
        ("p1", None, '{"status_code":"503"}'),
        ("p2", 200, None),
    ]
    assert quarantine.sort("record").select("record", "detail").rows() == [
        (4, "postback_time (Postback Time): '2099-11-20 10:01:00' fails the postbacks model's check "
         "less_than(2050-01-01 00:00:00+00:00)"),
        (5, "postback_time (Postback Time): '2250-11-20 10:01:00' fails the postbacks model's check "
         "less_than(2050-01-01 00:00:00+00:00)"),
    ]  # fmt: skip


# -------------------------------------------------------------- cf.schemas
def test_users_validate_their_own_frames_with_cf_schemas():
    frame = pl.DataFrame(
        {
            "postback_id": ["p1", "p2", "p3"],
            "click_id": ["c1", None, "c3"],
            "postback_time": [datetime(2026, 11, 20, tzinfo=UTC)] * 3,
            "is_error": [False, True, True],
            "status_code": [200, 404, 42],
        }
    )
    assert cf.schemas.validate(frame, kind="postbacks").rows() == [
        (1, "click_id", "not_nullable", None),
        (2, "status_code", "in_range(100, 599)", "42"),
    ]
    assert cf.schemas.validate(frame.lazy().head(1), kind="postbacks").height == 0
    # A missing required column and a wrong type are failures of the whole column (no row).
    cases = cf.schemas.validate(
        frame.drop("click_id").with_columns(pl.col("status_code").cast(pl.String)), kind="postbacks"
    )
    whole = set(cases.filter(pl.col("index").is_null()).get_column("check"))
    assert {"column_in_dataframe", "dtype('Int64')"} <= whole
    with pytest.raises(
        InputError, match=r"^postbacks frame: 2 values break the model cfanalytics\.postbacks\.values: "
    ):
        cf.schemas.validate(frame, kind="postbacks", raise_errors=True)


# ---------------------------------------------------- expressions from the model
def boundary_frame(kind: str) -> pl.DataFrame:
    """Values on and beside every check's edges (and nulls) for the columns of ``kind``, cycled over 12 rows."""
    t = datetime
    edges: dict[Any, list[Any]] = {
        schemas.TIME: [t(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), t(1970, 1, 1, tzinfo=UTC), None,
                       t(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), t(2200, 1, 1, tzinfo=UTC)],
        schemas.FLOAT: [0.0, -1.5, float("inf"), float("-inf"), float("nan"), None],
        schemas.INT: [99, 100, 599, 600, None, -1, 0],
        schemas.BOOL: [True, None, False],
    }  # fmt: skip
    by_name: dict[str, list[Any]] = {
        "country": ["US", "us", "USA", None, "D1", ""],
        "entity_type": ["campaign", "other", "gizmo", None],
        "action": ["created", "deleted", "renamed", None],
    }
    n = 12
    data = {}
    for c in columns(kind):
        values = by_name.get(c.name) or edges.get(c.dtype) or ["x", None, ""]
        data[c.name] = pl.Series(c.name, [values[i % len(values)] for i in range(n)], dtype=c.dtype)
    return pl.DataFrame(data)


@pytest.mark.parametrize("kind", KINDS)
def test_the_models_checks_as_expressions_find_exactly_what_pandera_finds(kind):
    frame = boundary_frame(kind)
    by_pandera = schemas.failure_cases(frame, kind)
    assert by_pandera.height > 0  # the frame does break the model
    expected = by_pandera.sort("index", "column", "check").rows()
    assert schemas.row_failures(frame, kind).sort("index", "column", "check").rows() == expected
    assert schemas.row_failures(frame, kind, full=True).sort("index", "column", "check").rows() == expected
    # A valid subset: nothing found, by either.
    good = frame.filter(~pl.int_range(pl.len()).is_in(by_pandera.get_column("index").implode()))
    assert schemas.failure_cases(good, kind).height == schemas.row_failures(good, kind).height == 0


def test_a_check_without_an_expression_is_left_to_pandera(fresh_models, monkeypatch):
    import pandera.polars as pa_polars

    element_wise = pa_polars.Check(lambda v: v != "bad", element_wise=True, name="not_bad")
    monkeypatch.setattr(schemas, "column_checks", with_extra_check("author", lambda: element_wise))
    schemas.value_model.cache_clear()
    frame = pl.DataFrame(
        {
            "changed_at": [datetime(2026, 11, 20, tzinfo=UTC)] * 3,
            "author": ["ann", "bad", "bob"],
            "entity_type": ["campaign"] * 3,
            "action": ["created"] * 3,
        }
    )
    assert schemas.row_failures(frame, "activity").select("index", "column", "check").rows() == [
        (1, "author", "not_bad")
    ]


def test_a_required_float_treats_nan_as_null_as_pandera_does(fresh_models, monkeypatch):
    original = schemas.columns

    def required_payout(kind: str) -> tuple[Column, ...]:
        return tuple(Column(c.name, c.dtype, True, c.doc) if c.name == "payout" else c for c in original(kind))

    monkeypatch.setattr(schemas, "columns", required_payout)
    schemas.value_model.cache_clear()
    frame = pl.DataFrame(
        {
            "click_id": ["a", "b", "c"],
            "conversion_time": [datetime(2026, 11, 20, tzinfo=UTC)] * 3,
            "payout": [1.0, float("nan"), None],
        }
    )
    cases = [(1, "payout", "not_nullable"), (1, "payout", "finite"), (2, "payout", "not_nullable")]
    assert schemas.failure_cases(frame, "conversions").select("index", "column", "check").rows() == cases
    assert schemas.row_failures(frame, "conversions").select("index", "column", "check").rows() == cases
