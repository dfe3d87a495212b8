"""Money at stake: hand-made gap rows, and a store checked against a plain DuckDB query over its files."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import polars as pl
from deltalake import DeltaTable

from cfanalytics.diagnose import gap_rows
from cfanalytics.diagnose.at_stake import at_stake, at_stake_summary
from cfanalytics.diagnose.frames import conversions, postback_outcomes
from tests.helpers import write


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def test_currencies_are_never_mixed_and_duplicates_are_not_money():
    rows = pl.DataFrame(
        {
            "gap": ["not_posted", "not_posted", "posted_failed", "posted_ok", "not_posted", "pending"],
            "payout": [10.0, 10.0, 5.0, 50.0, 7.0, 3.0],
            "currency": ["USD", "USD", "EUR", "USD", None, "USD"],
            "duplicate": [False, True, False, False, False, False],
            "traffic_source_id": ["t1", "t1", "t1", "t1", "t2", "t2"],
            "conversion_time": [datetime(2026, 11, 20, 3, tzinfo=UTC)] * 6,
        }
    )
    # USD: the first not_posted (10; its duplicate is left out); EUR: the failed 5; the null currency → store's GBP
    got = at_stake(rows, by=["traffic_source_id"], currency="GBP")
    assert got.select("traffic_source_id", "currency", "conversions", "payout").rows() == [
        ("t1", "USD", 1, 10.0),
        ("t2", "GBP", 1, 7.0),
        ("t1", "EUR", 1, 5.0),
    ]
    # 03:00 UTC on Nov 20 is Nov 19 in New York
    days = at_stake(rows, by=["day"], timezone="America/New_York", currency="GBP")
    assert set(days.get_column("day").to_list()) == {date(2026, 11, 19)}
    summary = at_stake_summary(rows, timezone="America/New_York", currency="GBP")
    assert summary["by_day"][0]["day"] == "2026-11-19"
    assert summary["by_integration"] == []  # no integration column in these rows


def _files(store, kind: str) -> list[str]:
    return DeltaTable(str(store.table_path(kind))).file_uris()


def test_at_stake_of_a_store_equals_a_plain_sql_query(store, tmp_path):
    a, b, c, d, e = (uuid(i) for i in range(1, 6))
    write(
        tmp_path / "v.csv",
        "Click ID,Visit Time,Campaign ID,Traffic Source ID\n"
        f"{a},2026-11-20 10:00:00,k1,t1\n{b},2026-11-20 10:00:00,k1,t1\n{c},2026-11-20 10:00:00,k2,t2\n"
        f"{d},2026-11-20 10:00:00,k2,t2\n",
    )
    write(
        tmp_path / "c.csv",
        "Click ID,Conversion Date,Custom Conversion (ct),Transaction ID,Payout,Currency\n"
        f"{a},2026-11-20 11:00:00,sale,x1,10.50,USD\n"  # posted ok
        f"{b},2026-11-20 11:00:00,sale,x2,20,USD\n"  # all postbacks failed
        f"{b},2026-11-20 11:00:00,sale,x2,20,USD\n"  # the same again: a duplicate, not money
        f"{c},2026-11-20 11:00:00,lead,,3.25,EUR\n"  # never posted
        f"{d},2026-11-20 11:00:00,sale,x4,8,USD\n"  # never posted (its postback has another ct)
        f"{e},2026-11-20 11:00:00,sale,x5,1,\n",  # unknown click, never posted, no currency
    )
    write(
        tmp_path / "p.csv",
        "Postback ID,Click ID,Postback Time,Is Error,Status Code,Custom Conversion (ct)\n"
        f"p1,{a},2026-11-20 11:00:05,0,200,sale\n"
        f"p2,{b},2026-11-20 11:00:05,1,500,sale\n"
        f"p3,{b},2026-11-20 11:05:05,1,500,sale\n"
        f"p4,{d},2026-11-20 11:00:05,0,200,lead\n",
    )
    store.ingest([tmp_path / "v.csv", tmp_path / "c.csv", tmp_path / "p.csv"])
    got = at_stake(gap_rows(conversions(store), postback_outcomes(store)), by=["traffic_source_id"])
    got_rows = sorted(got.select("traffic_source_id", "currency", "conversions", "payout").rows(), key=str)

    sql = f"""
        with c as (
            select click_id, nullif(ct, '') as ct, nullif(txid, '') as txid, payout, currency, traffic_source_id,
                   row_number() over (partition by click_id, nullif(ct, ''), nullif(txid, '')
                                      order by conversion_time, _row_id) as nth
            from read_parquet({_files(store, "conversions")!r})
        ),
        p as (
            select click_id, nullif(ct, '') as ct, count(*) as n, sum(case when is_error then 1 else 0 end) as e
            from read_parquet({_files(store, "postbacks")!r}) group by 1, 2
        ),
        v as (select click_id, traffic_source_id from read_parquet({_files(store, "visits")!r}))
        select coalesce(c.traffic_source_id, v.traffic_source_id) as ts, c.currency, count(*), sum(coalesce(payout, 0))
        from c
        left join p on p.click_id = c.click_id and p.ct is not distinct from c.ct
        left join v on v.click_id = c.click_id
        where c.nth = 1 and (p.n is null or p.n = p.e)
        group by 1, 2
    """
    expected = sorted(duckdb.sql(sql).fetchall(), key=str)
    assert got_rows == [(ts, cur, int(n), float(total)) for ts, cur, n, total in expected]
    # and by hand: t1 USD 20 (b, once), t2 USD 8 (d), t2 EUR 3.25 (c), no source 1.0 with no currency (e)
    assert sorted(got_rows, key=str) == sorted(
        [("t1", "USD", 1, 20.0), ("t2", "USD", 1, 8.0), ("t2", "EUR", 1, 3.25), (None, None, 1, 1.0)], key=str
    )
