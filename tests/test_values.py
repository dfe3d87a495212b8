"""Value rules shared by the ingest and the reconciliation, on hand-picked texts."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from cfanalytics.exceptions import UsageError
from cfanalytics.schemas import failure_cases
from cfanalytics.values import (
    EXTRA_NAIVE_FORMATS,
    NAIVE_FORMATS,
    check_timezone,
    day_first,
    money_text,
    parse_bool_expr,
    parse_country_expr,
    parse_float_expr,
    parse_int_expr,
    parse_number_expr,
    parse_time_expr,
    vocabulary_expr,
)

NY = "America/New_York"


def _times(texts: list[str | None], timezone: str = NY, formats: tuple[str, ...] = NAIVE_FORMATS) -> list:
    frame = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    return frame.select(parse_time_expr(pl.col("t"), timezone, formats=formats)).to_series().to_list()


def test_the_three_classes_of_time_text():
    assert (
        _times(["1795150804", "1795150804000", "2026-11-20T00:00:04-05:00", "2026-11-20 05:00:04Z"])
        == [datetime(2026, 11, 20, 5, 0, 4, tzinfo=UTC)] * 4
    )
    # naive text is local time in the zone (EST, UTC-5)
    assert _times(["2026-11-20 00:00:04", "2026-11-20"]) == [
        datetime(2026, 11, 20, 5, 0, 4, tzinfo=UTC),
        datetime(2026, 11, 20, 5, 0, tzinfo=UTC),
    ]
    assert _times(["yesterday", "", None, "2026-02-30 10:00:00"]) == [None, None, None, None]


def test_dst_fall_back_reads_the_earlier_instant_and_spring_forward_shifts_by_the_gap():
    # 2026-11-01 01:30 happens twice in New York (EDT -4, then EST -5): the earlier one
    assert _times(["2026-11-01 01:30:00"]) == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]
    # 2026-03-08 02:30 does not exist (clocks jump 02:00 → 03:00): read as 03:30 EDT
    assert _times(["2026-03-08 02:30:00"]) == [datetime(2026, 3, 8, 7, 30, tzinfo=UTC)]


def test_exports_of_other_systems_may_use_12_hour_clocks_and_slash_dates():
    formats = (*NAIVE_FORMATS, *EXTRA_NAIVE_FORMATS, "%m/%d/%Y %H:%M")
    assert (
        _times(["2026-11-20 01:15 PM", "2026/11/20 13:15", "11/20/2026 13:15"], "UTC", formats)
        == [datetime(2026, 11, 20, 13, 15, tzinfo=UTC)] * 3
    )
    assert _times(["2026-11-20 01:15 PM"], "UTC") == [None]  # not a store format
    assert day_first(pl.Series(["05/11/2026", "25/11/2026"])) is True
    assert day_first(pl.Series(["11/05/2026", "11/25/2026", None])) is False


def test_numbers_are_strict_and_money_text_is_cleaned_first():
    plain = pl.DataFrame({"p": ["12.5", "-1.25", "1e2", ".5", "$5", "NaN", "inf", "12,50", "1,250.00"]})
    assert plain.select(parse_number_expr(pl.col("p"))).to_series().to_list() == [
        12.5, -1.25, 100.0, 0.5, None, None, None, None, None
    ]  # fmt: skip
    comma = pl.DataFrame({"p": ["12,50", "-3"]})
    assert comma.select(parse_number_expr(pl.col("p"), decimal_comma=True)).to_series().to_list() == [12.5, -3.0]
    money = pl.DataFrame({"p": ["$1,250.00", "1.250,00 €", "12,50", "USD 7", "1,250", "free"]})
    assert money.select(parse_number_expr(money_text(pl.col("p")))).to_series().to_list() == [
        1250.0, 1250.0, 12.5, 7.0, 1250.0, None
    ]  # fmt: skip


def test_status_codes_booleans_and_vocabularies():
    codes = pl.DataFrame({"s": ["200", " 404 ", "503.0", "99", "600", "2e2", "abc", "2.5", None]})
    parsed = codes.select(parse_int_expr(pl.col("s")).alias("status_code"))
    assert parsed.to_series().to_list() == [200, 404, 503, 99, 600, 200, None, None, None]
    # The range is the postbacks model's check: 99 and 600 (rows 3 and 4) break it, nulls pass.
    assert failure_cases(parsed, "postbacks").filter(pl.col("column") == "status_code").rows() == [
        (3, "status_code", "in_range(100, 599)", "99"),
        (4, "status_code", "in_range(100, 599)", "600"),
    ]
    flags = pl.DataFrame({"b": ["TRUE", "y", "0", "No", "maybe", ""]})
    assert flags.select(parse_bool_expr(pl.col("b"))).to_series().to_list() == [True, True, False, False, None, None]
    words = pl.DataFrame({"w": ["Traffic Source", "campaigns", "gizmo", "  "]})
    vocabulary = {"trafficsource": "traffic_source", "campaigns": "campaign"}
    assert words.select(vocabulary_expr(pl.col("w"), vocabulary, "other")).to_series().to_list() == [
        "traffic_source", "campaign", "other", None
    ]  # fmt: skip


def test_time_zones_are_checked_by_name():
    assert check_timezone("Asia/Kolkata") == "Asia/Kolkata"
    with pytest.raises(UsageError, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")


def test_parsing_types_text_and_leaves_the_value_rules_to_the_models():
    # Countries are only cleaned; "USA" is the model's to reject (COUNTRY_PATTERN), not the parser's.
    countries = pl.DataFrame({"c": [" us", "USA", "", None]}).select(parse_country_expr(pl.col("c")).alias("country"))
    assert countries.to_series().to_list() == ["US", "USA", None, None]
    assert failure_cases(countries, "visits").filter(pl.col("column") == "country").rows() == [
        (1, "country", "str_matches('^[A-Z]{2}$')", "USA")
    ]
    # Floats keep infinities; the model's ``finite`` check rejects them (NaN too).
    floats = pl.DataFrame({"b": ["0.5", "inf", "nan", "x"]}).select(parse_float_expr(pl.col("b")).alias("bot_score"))
    assert floats.to_series().to_list()[:2] == [0.5, float("inf")]
    assert floats.to_series().to_list()[3] is None
    cases = failure_cases(floats, "visits").filter(pl.col("column") == "bot_score")
    assert cases.select("index", "check").rows() == [(1, "finite"), (2, "finite")]
