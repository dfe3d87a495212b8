"""Money at stake: hand-made gap rows, stores checked against a plain DuckDB query over their files, the text,
the report summary and ``--fail-on at_stake``."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import jsonschema
import polars as pl
import pytest
from deltalake import DeltaTable

from cfanalytics.cli import EXIT_THRESHOLD, main
from cfanalytics.diagnose import diagnose, gap_rows
from cfanalytics.diagnose.at_stake import at_stake, at_stake_summary
from cfanalytics.diagnose.frames import conversions, postback_outcomes
from cfanalytics.exceptions import UsageError
from cfanalytics.report import check_thresholds, parse_fail_on, summary, summary_html
from cfanalytics.text import diagnosis_text
from tests.helpers import AT_STAKE_SQL_KEYS, at_stake_rows, skip_report_notebook, sql_at_stake, write

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schemas" / "diagnose.schema.json"


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


# --------------------------------------------------------------------------- several currencies, end to end
# The recovery tests' hand-made store: USD and EUR conversions, one accepted, one fired twice.
# By hand: USD g1 11 + g2 5 + g3 7 + t1 1.80 + s1 2.50 (failed) + b1 10 + n1 3 (never posted) = 40.30 in 7;
# EUR m1 38 + m2 20 + m3 9 (failed) = 67.00 in 3; s2 was accepted; s1's second row is a duplicate.
BY_HAND = [("EUR", 3, 3, 0, 67.0), ("USD", 7, 5, 2, 40.3)]


@pytest.fixture
def two_currencies(tmp_path):
    from tests.test_recover import _hand_made

    return _hand_made(tmp_path)


@pytest.mark.parametrize("grouping", list(AT_STAKE_SQL_KEYS))
def test_diagnose_keeps_each_currency_apart_and_equals_sql(two_currencies, grouping):
    section = diagnose(two_currencies)["gaps"]["at_stake"]
    got = at_stake_rows(section[grouping], grouping)
    assert got == [(*r[:-1], pytest.approx(r[-1])) for r in sql_at_stake(two_currencies.path, grouping)]
    if grouping == "total":
        assert got == [(*r[:-1], pytest.approx(r[-1])) for r in BY_HAND]
    jsonschema.validate(diagnose(two_currencies), json.loads(SCHEMA.read_text()))


def test_the_text_names_each_currency(two_currencies):
    text = diagnosis_text(diagnose(two_currencies))
    assert (
        "at stake (never reached the traffic source, duplicates aside): 67.00 EUR in 3 conversions "
        "(3 failed, 0 not posted); 40.30 USD in 7 conversions (5 failed, 2 not posted)"
    ) in text
    assert "At stake by traffic source:" in text
    assert "107.30" not in text  # never one sum across currencies


# --------------------------------------------------------------------------- --fail-on at_stake
def test_fail_on_at_stake_parses_per_currency_rules():
    assert parse_fail_on("at_stake>=50, at_stake[usd] > 40, at_stake[unknown]>0") == [
        ("at_stake", ">=", 50.0),
        ("at_stake[USD]", ">", 40.0),
        ("at_stake[unknown]", ">", 0.0),
    ]
    for bad, says in (
        ("at_stake>5%", "amount of money, not a rate"),
        ("error_rate[USD]>0.1", "only at_stake takes a [CURRENCY]"),
        ("at_stake[US]>1", "not a currency code"),
        ("at_stakes>1", "unknown metric"),
    ):
        with pytest.raises(UsageError, match=re.escape(says)):
            parse_fail_on(bad)


def test_fail_on_at_stake_holds_per_currency_never_on_a_sum():
    current = {"at_stake": {"EUR": 67.0, "USD": 40.3}, "at_stake_conversions": 10}
    # 50: EUR reaches it, USD does not; the 107.30 of both together is never compared
    assert check_thresholds(current, parse_fail_on("at_stake>=50")) == ["at_stake[EUR] >= 50 (is 67.00)"]
    assert check_thresholds(current, parse_fail_on("at_stake>=100")) == []
    assert check_thresholds(current, parse_fail_on("at_stake[USD]>=50")) == []
    assert check_thresholds(current, parse_fail_on("at_stake[usd]>40")) == ["at_stake[USD] > 40 (is 40.30)"]
    # a currency with nothing at stake has 0 of it; nothing at stake at all is 0
    assert check_thresholds(current, parse_fail_on("at_stake[GBP]>0")) == []
    assert check_thresholds({"at_stake": {}}, parse_fail_on("at_stake>0")) == []
    assert check_thresholds({"at_stake": {}}, parse_fail_on("at_stake==0")) == ["at_stake == 0 (is 0.00)"]
    assert check_thresholds(current, parse_fail_on("at_stake_conversions>=10")) == [
        "at_stake_conversions >= 10 (is 10)"
    ]


def test_report_summary_and_cli_fail_on_at_stake(two_currencies, tmp_path, monkeypatch, capsys):
    period = summary(two_currencies, date(2026, 11, 1), date(2026, 11, 30))
    assert period["current"]["at_stake"] == {"EUR": pytest.approx(67.0), "USD": pytest.approx(40.3)}
    assert period["current"]["at_stake_conversions"] == 10
    assert (period["previous"]["at_stake"], period["previous"]["at_stake_conversions"]) == ({}, 0)
    page = summary_html(period)
    assert "<th scope='row'>Payout at stake (EUR)</th><td>67.00</td>" in page
    assert "<th scope='row'>Payout at stake (USD)</th><td>40.30</td>" in page
    assert "<th scope='row'>Conversions at stake</th><td>10</td>" in page
    # against a previous period with money at stake: the change, per currency
    before = {**period, "previous": {**period["current"], "at_stake": {"USD": 50.0}, "at_stake_conversions": 12}}
    page = summary_html(before)
    assert "<td>67.00</td><td>0.00</td><td>+67.00</td>" in page
    assert "<td>40.30</td><td>50.00</td><td>-9.70</td>" in page
    assert "<td>10</td><td>12</td><td>-2</td>" in page

    # the CLI: the notebook run is left out (its output is not what is tested here), the thresholds are real
    skip_report_notebook(monkeypatch, "<html>jp-Notebook</html>")
    args = ["report", "--store", str(two_currencies.path), "--from", "2026-11-01", "--to", "2026-11-30"]
    out = str(tmp_path / "r.html")
    assert main([*args, "--out", out, "--fail-on", "at_stake[EUR]>=60", "--json"]) == EXIT_THRESHOLD
    assert json.loads(capsys.readouterr().out)["breached"] == ["at_stake[EUR] >= 60 (is 67.00)"]
    assert main([*args, "--out", out, "--fail-on", "at_stake>=70", "--json"]) == 0
    capsys.readouterr()
    assert main([*args, "--out", out, "--fail-on", "at_stake>=40"]) == EXIT_THRESHOLD
    err = capsys.readouterr().err
    assert "threshold breached: at_stake[EUR] >= 40 (is 67.00)" in err
    assert "threshold breached: at_stake[USD] >= 40 (is 40.30)" in err
    assert main([*args, "--out", out, "--fail-on", "at_stake>4%"]) == 2
    assert "not a rate" in capsys.readouterr().err


# --------------------------------------------------------------------------- names of the campaigns at stake
class _Frames:
    """A reader over hand-made frames that records which kinds were scanned."""

    timezone = "UTC"

    def __init__(self, frames: dict[str, pl.DataFrame]) -> None:
        self.frames, self.scanned = frames, []

    def scan(self, kind: str) -> pl.LazyFrame:
        self.scanned.append(kind)
        return self.frames[kind].lazy()

    def events(self) -> pl.LazyFrame:
        raise NotImplementedError


def _named(time: str, rows: list[tuple[str, str | None, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "campaign_id": [r[0] for r in rows],
            "campaign_name": [r[1] for r in rows],
            time: [datetime(2026, 11, 20, r[2], tzinfo=UTC) for r in rows],
        }
    )


def _name_frames(conversion_names: list[tuple[str, str | None, int]]) -> dict[str, pl.DataFrame]:
    return {
        "visits": _named("visit_time", [("c1", "Visit name", 9), ("c2", "Visit name 2", 1)]),
        "clicks": _named("click_time", [("c2", "Click name 2", 2)]),
        "conversions": _named("conversion_time", conversion_names),
        "postbacks": _named("postback_time", [("c1", "Postback name", 5)]),
        "activity": pl.DataFrame(
            {
                "entity_type": ["campaign"],
                "entity_id": ["c9"],
                "entity_name": ["Only in the log"],
                "changed_at": [datetime(2026, 11, 20, tzinfo=UTC)],
            }
        ),
    }


def test_campaigns_at_stake_are_named_by_their_conversions_and_postbacks_before_any_visit_is_read():
    from cfanalytics.diagnose.document import _campaign_names

    lost = pl.DataFrame({"campaign_id": ["c1", "c2", None]})
    # every campaign at stake is named by a conversion or a postback: the latest of those (c1: the postback at
    # 5 h over the conversion at 3 h), and neither visits nor clicks are read
    reader = _Frames(_name_frames([("c1", "Conversion name", 3), ("c2", "Conversion name 2", 4)]))
    names = _campaign_names(reader, lost)
    assert names.lookup("campaign_id") == {"c1": "Postback name", "c2": "Conversion name 2", "c9": "Only in the log"}
    assert sorted(set(reader.scanned)) == ["activity", "conversions", "postbacks"]
    # c2 is named by no conversion: every kind is read, and the latest name anywhere wins (c1: the visit at 9 h)
    reader = _Frames(_name_frames([("c1", "Conversion name", 3), ("c2", None, 4)]))
    names = _campaign_names(reader, lost)
    assert names.lookup("campaign_id") == {"c1": "Visit name", "c2": "Click name 2", "c9": "Only in the log"}
    assert {"visits", "clicks"} <= set(reader.scanned)
