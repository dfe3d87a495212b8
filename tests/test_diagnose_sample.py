"""Diagnostics on the generated sample account: the injected truth, and a second method (DuckDB SQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

import cfanalytics as cf
from cfanalytics.diagnose import diagnose
from cfanalytics.sample import generate
from tests.helpers import AT_STAKE_SQL_KEYS, at_stake_rows, gap_counts_of, sql_at_stake


def _account(tmp_path_factory, seed: int, visits: int):
    folder = tmp_path_factory.mktemp(f"sample-{seed}-{visits}")
    account = generate(folder / "exports", seed=seed, visits=visits)
    store = cf.LogStore(folder / "store", timezone=account.truth["timezone"])
    result = store.ingest([p for role, p in sorted(account.files.items()) if role != "network_export"])
    assert result.ok, result.failures
    return account, store


@pytest.fixture(
    scope="module", params=[(7, 20_000), (11, 20_000), (7, 40_000), (23, 40_000)], ids=lambda p: f"seed{p[0]}-{p[1]}"
)
def generated(request, tmp_path_factory):
    seed, visits = request.param
    if (seed, visits) == (7, 20_000):  # the session's sample account
        built = request.getfixturevalue("sample")
        return built.account, built.store
    return _account(tmp_path_factory, seed, visits)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _same_change(got: dict | None, expected: dict | None) -> bool:
    if expected is None:
        return got is None
    keys = ("changed_at", "author", "entity_type", "entity_id")
    return got is not None and all(got[k] == expected[k] for k in keys)


def test_diagnose_finds_exactly_the_injected_incidents(generated):
    account, store = generated
    truth = account.truth
    doc = diagnose(store)
    assert gap_counts_of(doc["gaps"]) == truth["gaps"]
    found = {(i["scope"], i["id"]): i for i in doc["incidents"]}
    expected = {(i["scope"], i["id"]): i for i in truth["incidents"]}
    assert set(found) == set(expected), (sorted(found), sorted(expected))  # none missing, none extra
    assert expected, "the sample account must hold incidents"
    for key, exp in expected.items():
        got = found[key]
        assert abs(_t(got["start"]) - _t(exp["start"])) <= timedelta(hours=1), key
        # the generator's truth: the URL edit caused its incident and the budget raise starting TikTok's
        # traffic push its rate limit; the token expiry and the receiver time-out are nobody's edit
        assert _same_change(got["suspected_change"], exp["suspected_change"]), (key, got["suspected_change"])
        # the URL fix and the reconnect ended theirs; the others ended by themselves
        assert _same_change(got["resolved_by"], exp["resolved_by"]), (key, got["resolved_by"])
        # every incident has ranked suspects; a decoy is among them but never blamed
        assert got["suspects"], key
        assert [s["rank"] for s in got["suspects"]] == list(range(1, len(got["suspects"]) + 1))
        for decoy in exp["decoys"]:
            (ranked,) = [s for s in got["suspects"] if _same_change(s, decoy)]
            assert not ranked["explains"], key
            assert not _same_change(got["suspected_change"], decoy), key
        if exp["suspected_change"] is not None:
            assert got["suspects"][0]["rank"] == 1
            assert _same_change(got["suspects"][0], exp["suspected_change"])
    by_fault = {i["fault"]: found[(i["scope"], i["id"])] for i in truth["incidents"]}
    if "rate_limit" in by_fault:  # 200 → 800, then four times the postbacks
        (raised,) = [s for s in by_fault["rate_limit"]["suspects"] if s["explains"]]
        assert raised["fields"] == [{"field": "daily_budget", "old": "200", "new": "800"}]
        assert (raised["family"], raised["direction"], raised["volume_changed"]) == ("volume", "up", True)


def test_stored_counts_equal_the_truth(generated):
    account, store = generated
    counts = store.counts()
    for kind, expected in account.truth["ingest"].items():
        assert counts[kind] == expected["rows_stored"], kind
    assert counts["quarantine"] == sum(e["quarantined"] for e in account.truth["ingest"].values())


def _duckdb(store: cf.LogStore) -> duckdb.DuckDBPyConnection:
    """Views over exactly the files of the current Delta versions (from the log, never a glob)."""
    con = duckdb.connect()
    for kind in ("visits", "conversions", "postbacks"):
        files = store.file_uris(kind)
        con.execute(f"create view {kind} as select * from read_parquet({files!r}, union_by_name = true)")
    return con


def test_error_rates_gap_classes_and_duplicates_equal_plain_sql(generated):
    _, store = generated
    con = _duckdb(store)
    sql_rates = con.execute(
        """
        with conv as (select click_id, min(traffic_source_id) ts from conversions group by click_id)
        select coalesce(p.traffic_source_id, v.traffic_source_id, conv.ts) as ts,
               count(*) as postbacks, sum(case when p.is_error then 1 else 0 end) as errors
        from postbacks p
        left join visits v on v.click_id = p.click_id
        left join conv on conv.click_id = p.click_id
        group by 1 order by 1 nulls last
        """
    ).fetchall()
    ours = cf.diagnose.postback_errors(store, by="traffic_source_id").sort("traffic_source_id", nulls_last=True)
    assert ours.select("traffic_source_id", "postbacks", "errors").rows() == sql_rates
    sql_gaps = dict(
        con.execute(
            """
            with c as (select click_id, nullif(ct, '') ctk from conversions),
                 p as (select click_id, nullif(ct, '') ctk, count(*) n,
                              sum(case when is_error then 1 else 0 end) e from postbacks group by 1, 2)
            select case when p.n > p.e then 'posted_ok' when p.n > 0 then 'posted_failed' else 'not_posted' end,
                   count(*)
            from c left join p on c.click_id = p.click_id and c.ctk is not distinct from p.ctk
            group by 1
            """
        ).fetchall()
    )
    sql_dups = con.execute(
        """
        select coalesce(sum(n - 1), 0) from (
          select count(*) n from conversions group by click_id, nullif(ct, ''), nullif(txid, ''))
        """
    ).fetchone()[0]
    gaps = cf.diagnose.gap_summary(store)
    assert {k: gaps[k] for k in ("posted_ok", "posted_failed", "not_posted") if gaps[k]} == sql_gaps
    assert gaps["duplicate_conversions"] == sql_dups


def test_gap_classes_per_traffic_source_and_integration_equal_plain_sql(generated):
    account, store = generated
    con = _duckdb(store)
    per_conversion = """
        with p as (select click_id, nullif(ct, '') ctk, count(*) n, sum(case when is_error then 1 else 0 end) e,
                          arg_max(nullif(integration_id, ''), postback_time)
                              filter (where nullif(integration_id, '') is not null) integ
                   from postbacks group by 1, 2),
             v as (select click_id, min(traffic_source_id) ts from visits group by 1)
        select coalesce(c.traffic_source_id, v.ts) ts, p.integ,
               case when p.n > p.e then 'posted_ok' when p.n > 0 then 'posted_failed' else 'not_posted' end gap
        from conversions c
        left join p on c.click_id = p.click_id and nullif(c.ct, '') is not distinct from p.ctk
        left join v on v.click_id = c.click_id
    """

    def by(column: str) -> list[tuple]:
        return con.execute(
            f"""
            select {column}, count(*) conversions, count(*) filter (gap = 'posted_ok'),
                   count(*) filter (gap = 'posted_failed'), count(*) filter (gap = 'not_posted'), 0
            from ({per_conversion}) group by 1
            order by 5 desc, 2 desc, 1 nulls last
            """
        ).fetchall()

    gaps = diagnose(store)["gaps"]
    classes = ("conversions", "posted_ok", "posted_failed", "not_posted", "pending")
    for key, column, sql in (
        ("by_traffic_source", "traffic_source_id", "ts"),
        ("by_integration", "integration_id", "integ"),
    ):
        assert [(r[column], *(r[c] for c in classes)) for r in gaps[key]] == by(sql), key
        for cls in classes:  # every conversion in exactly one group
            assert sum(r[cls] for r in gaps[key]) == gaps[cls]
    # the source with no postback configured: named, every conversion never posted, as the generator wrote them
    (nativex,) = [f for f in account.truth["faults"] if f["fault"] == "no_postback_configured"]
    (row,) = [r for r in gaps["by_traffic_source"] if r["traffic_source_id"] == nativex["traffic_source_id"]]
    assert row["traffic_source_name"] == "NativeX"
    assert row["conversions"] == row["not_posted"] == nativex["conversions"] > 0


def _truth_rows(truth: dict, grouping: str) -> list[tuple]:
    """The generator's money at stake as :func:`tests.helpers.sql_at_stake` gives it (no currency)."""
    fields = ("conversions", "posted_failed", "not_posted", "payout")
    rows = [
        (*((r["id"],) if grouping != "total" else ()), truth["currency"], *(r[f] for f in fields))
        for r in truth[grouping]
    ]
    return sorted(rows, key=str)


def _approx(rows: list[tuple]) -> list[tuple]:
    return [(*r[:-1], pytest.approx(r[-1], abs=1e-6)) for r in rows]


@pytest.mark.parametrize("grouping", list(AT_STAKE_SQL_KEYS))
def test_money_at_stake_equals_the_truth_and_a_plain_sql_query(generated, grouping):
    account, store = generated
    got = at_stake_rows(diagnose(store)["gaps"]["at_stake"][grouping], grouping)
    sql = sql_at_stake(store.path, grouping, timezone=account.truth["timezone"])
    assert got == _approx(sql)
    assert got == _approx(_truth_rows(account.truth["at_stake"], grouping))
    assert sum(r[-1] for r in got) == pytest.approx(sum(r[-1] for r in sql))
    # every grouping adds up to the total (one currency: the sample's conversions carry none)
    if grouping == "total":
        (row,) = got
        assert row[2] + row[3] == row[1] > 0
