"""_row_id: the canonical encoding and golden hash values (docs/contract.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import xxhash

from cfanalytics.identity import encode_rows, row_ids

A = "aaaaaaaa-0000-4000-8000-000000000001"


def _epoch_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000


def test_golden_visit_and_postback_ids():
    # Literal values pinned: changing them breaks every existing store.
    visits = pl.DataFrame({"click_id": [A]})
    assert row_ids(visits, "visits").to_list() == ["95f7e6771179c1acb16da8c7143bb1fb"]
    postbacks = pl.DataFrame({"postback_id": ["p1"]})
    assert row_ids(postbacks, "postbacks").to_list() == ["d6999e08f326e771506818fbc48754f6"]


def test_encoding_is_length_prefixed_and_typed():
    t = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    conv = pl.DataFrame(
        {
            "click_id": [A],
            "conversion_time": [t],
            "ct": [None],
            "txid": [""],
            "payout": [10.0],
            "status": [None],
        },
        schema_overrides={"conversion_time": pl.Datetime("us", "UTC"), "ct": pl.String, "status": pl.String},
    )
    cols = ("click_id", "conversion_time", "ct", "txid", "payout", "status")
    expected = f"cf1|conversions|36:{A}|16:{_epoch_us(2026, 11, 20, 11)}|0:|0:|4:10.0|0:"
    assert encode_rows(conv, "conversions", cols).to_list() == [expected]


def test_identical_conversions_get_distinct_ordinals_and_golden_hashes():
    t = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    conv = pl.DataFrame(
        {"click_id": [A, A], "conversion_time": [t, t], "payout": [10.0, 10.0]},
        schema_overrides={"conversion_time": pl.Datetime("us", "UTC")},
    )
    base = f"cf1|conversions|36:{A}|16:{_epoch_us(2026, 11, 20, 11)}|0:|0:|4:10.0|0:"
    expected = [xxhash.xxh3_128_hexdigest(f"{base}|#{n}".encode()) for n in (0, 1)]
    assert row_ids(conv, "conversions").to_list() == expected
    assert expected == ["f302197028fc1e456f18d3f6ce443ba1", "9631e8fe13c8eda04be24af13a5fe8aa"]


def test_null_equals_empty_and_names_do_not_count():
    a = pl.DataFrame(
        {"click_id": [A], "click_time": [datetime(2026, 1, 1, tzinfo=UTC)], "cta": [None]},
        schema_overrides={"cta": pl.Int64},
    )
    b = a.with_columns(pl.lit("Campaign X").alias("campaign_name"), pl.lit("x").alias("tracking_field_1"))
    assert row_ids(a, "clicks").to_list() == row_ids(b, "clicks").to_list()


def test_float_encoding_uses_shortest_repr():
    df = pl.DataFrame({"click_id": ["c"], "payout": [1e-7]})
    assert encode_rows(df, "conversions", ("payout",)).to_list() == ["cf1|conversions|5:1e-07"]


def test_id_halves_hold_the_bits_of_the_id():
    from cfanalytics.identity import id_halves

    ids = ["cf80c37bb4ea881de951f0d80ecf9218", "00000000000000017fffffffffffffff", "f" * 32]
    got = pl.DataFrame({"_row_id": ids}).select(id_halves()).rows()

    def signed(text: str) -> int:  # two's complement of 64 bits, by hand
        n = int(text, 16)
        return n - (1 << 64) if n >= 1 << 63 else n

    assert got == [(signed(i[:16]), signed(i[16:])) for i in ids]
    assert got[1] == (1, (1 << 63) - 1)
    assert got[2] == (-1, -1)
