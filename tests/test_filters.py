"""LogFilter: local date bounds (DST days, inclusive end, naive datetimes), the ct rule, and StoreReader."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from cfanalytics.exceptions import UsageError
from cfanalytics.filters import LogFilter, StoreReader, as_date, display_timezone

NY = "America/New_York"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_local_day_is_midnight_to_midnight_in_utc():
    # 2026-11-20 in New York (EST, UTC-5): [05:00Z, next day 05:00Z)
    assert LogFilter(start=date(2026, 11, 20), end=date(2026, 11, 20)).time_bounds(NY) == (
        _utc(2026, 11, 20, 5),
        _utc(2026, 11, 21, 5),
    )


def test_dst_days_are_23_and_25_hours_long():
    spring = LogFilter(start=date(2026, 3, 8), end=date(2026, 3, 8)).time_bounds(NY)  # clocks go forward
    assert spring == (_utc(2026, 3, 8, 5), _utc(2026, 3, 9, 4))
    assert spring[1] - spring[0] == timedelta(hours=23)
    autumn = LogFilter(start=date(2026, 11, 1), end=date(2026, 11, 1)).time_bounds(NY)  # clocks go back
    assert autumn == (_utc(2026, 11, 1, 4), _utc(2026, 11, 2, 5))
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_the_end_date_is_inclusive_and_a_datetime_end_exclusive():
    rows = pl.LazyFrame(
        {
            "postback_time": [
                _utc(2026, 11, 20, 4, 59),
                _utc(2026, 11, 20, 5),
                _utc(2026, 11, 21, 4, 59),
                _utc(2026, 11, 21, 5),
            ],
            "id": [1, 2, 3, 4],
        }
    )
    by_date = LogFilter(start="2026-11-20", end="2026-11-20", timezone=NY)
    assert by_date.apply(rows, "postbacks").collect().get_column("id").to_list() == [2, 3]
    by_time = LogFilter(start="2026-11-20", end=datetime(2026, 11, 21, 0, 0), timezone=NY)  # naive: local
    assert by_time.apply(rows, "postbacks").collect().get_column("id").to_list() == [2, 3]
    to_the_second = LogFilter(end=datetime(2026, 11, 20, 23, 59), timezone=NY)
    assert to_the_second.apply(rows, "postbacks").collect().get_column("id").to_list() == [1, 2]


def test_naive_datetimes_are_local_and_aware_ones_keep_their_zone():
    naive = LogFilter(start=datetime(2026, 11, 20, 10, 0), timezone=NY).time_bounds(None)
    aware = LogFilter(start=_utc(2026, 11, 20, 10), timezone=NY).time_bounds(None)
    assert naive[0] == _utc(2026, 11, 20, 15)
    assert aware[0] == _utc(2026, 11, 20, 10)
    # the filter's zone wins over the store's; without either, UTC
    assert LogFilter(start="2026-11-20").time_bounds("Europe/Paris")[0] == _utc(2026, 11, 19, 23)
    assert LogFilter(start="2026-11-20").time_bounds(None)[0] == _utc(2026, 11, 20)


def test_date_bounds_name_every_utc_partition_that_can_hold_the_range():
    # a New York day spans two UTC dates
    assert LogFilter(start="2026-11-20", end="2026-11-20").date_bounds(NY) == (date(2026, 11, 20), date(2026, 11, 21))
    assert LogFilter(start="2026-11-20", end="2026-11-20").date_bounds("UTC") == (
        date(2026, 11, 20),
        date(2026, 11, 20),
    )


def test_empty_ct_selects_rows_without_a_ct():
    rows = pl.DataFrame({"ct": ["sale", "", None, "lead"], "id": [1, 2, 3, 4]})
    pick = lambda cts: rows.filter(LogFilter(cts=cts).expr(rows.columns)).get_column("id").to_list()  # noqa: E731
    assert pick([""]) == [2, 3]
    assert pick(["sale"]) == [1]
    assert pick(["sale", ""]) == [1, 2, 3]
    assert pick([]) == []


def test_filtered_traffic_is_excluded_unless_asked_and_absent_columns_are_ignored():
    rows = pl.DataFrame({"is_filtered": [False, True, None], "campaign_id": ["c1", "c1", "c2"]})
    assert rows.filter(LogFilter().expr(rows.columns)).height == 2
    assert rows.filter(LogFilter(include_filtered=True).expr(rows.columns)).height == 3
    # a field naming a column the frame lacks restricts nothing
    assert rows.filter(LogFilter(include_filtered=True, error_kinds=["auth"]).expr(rows.columns)).height == 3
    assert rows.filter(LogFilter(include_filtered=True, campaigns=["c2"]).expr(rows.columns)).height == 1


def test_bad_values_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="not a date or time: 'yesterday'"):
        LogFilter(start="yesterday").time_bounds("UTC")
    with pytest.raises(UsageError, match="must be a list"):
        LogFilter(campaigns=42).expr(["campaign_id"])  # type: ignore[arg-type]


def test_as_date_and_display_timezone():
    assert as_date("2026-11-20T23:30:00") == date(2026, 11, 20)
    assert as_date(datetime(2026, 11, 20, 23, 30)) == date(2026, 11, 20)
    assert as_date(None) is None
    assert as_date("") is None
    assert display_timezone(LogFilter(), "Asia/Tokyo") == "Asia/Tokyo"
    assert display_timezone(LogFilter(timezone="UTC"), "Asia/Tokyo") == "UTC"


def test_a_store_is_a_reader_and_so_is_any_object_with_the_three_members(store):
    assert isinstance(store, StoreReader)

    class Frames:
        timezone = "UTC"

        def scan(self, kind: str) -> pl.LazyFrame:
            return pl.LazyFrame()

        def events(self) -> pl.LazyFrame:
            return pl.LazyFrame()

    assert isinstance(Frames(), StoreReader)
    assert not isinstance(object(), StoreReader)
