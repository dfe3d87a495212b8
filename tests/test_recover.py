"""Recovery files: a hand-made store with worked numbers, the sample account checked against plain DuckDB SQL."""

from __future__ import annotations

import csv
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

import cfanalytics as cf
from cfanalytics.diagnose.frames import postback_outcomes
from cfanalytics.exceptions import UsageError
from cfanalytics.recover import recover, summary_text
from cfanalytics.recover._ledger import LEDGER_FILE
from cfanalytics.recover._macros import fill_url
from cfanalytics.recover._select import select
from cfanalytics.sample import generate
from tests.helpers import run_cli

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "SUPERSECRETTOKEN42"
CSV_HEADERS = {
    "google_ads_offline_conversions.csv": "Google Click ID",
    "microsoft_offline_conversions.csv": "Microsoft Click ID",
}


def _cid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# --------------------------------------------------------------------------- the hand-made store
# (name, n, traffic source, external id, visit time, conversion time, payout, currency, txid, postbacks,
#  referrer, tracking field 1); a postback is (status, message, url); status "" = no answer
GOOGLE_URL = "https://googleads.googleapis.com/v17/customers/71:uploadClickConversions?conversion_action=8&gclid={g}"
META_URL = f"https://graph.facebook.com/v21.0/729/events?access_token=EAAG{SECRET}"
TIKTOK_URL = "https://business-api.tiktok.com/open_api/v1.3/event/track/?pixel_code=CJC0&event=SubmitForm&ttclid={t}"
S2S_URL = f"http://ad.propeller.example/conversion.php?aid=1&visitor_id={{clickid}}&payout={{payout}}&token={SECRET}"
ROWS = [
    # included: Google (server error, gclid in URL), 11.00 USD
    ("g1", 1, "ts-g", "Cj0G1", "2026-11-10 08:00", "2026-11-10 09:00", 11.0, "USD", "T1",
     [("503", "Service Unavailable", GOOGLE_URL.format(g="Cj0G1"))], "", ""),
    # no gclid anywhere (missing_click_id is fixable, but nothing to fix it with)
    ("g2", 2, "ts-g", "", "2026-11-11 08:00", "2026-11-11 09:00", 5.0, "USD", "T2",
     [("400", "The gclid is missing", GOOGLE_URL.format(g=""))], "", ""),
    # click 100 days before NOW: outside Google's 90 days
    ("g3", 3, "ts-g", "Cj0G3", "2026-08-12 08:00", "2026-11-12 09:00", 7.0, "USD", "T3",
     [("429", "Too many requests", GOOGLE_URL.format(g="Cj0G3"))], "", ""),
    # included: Meta (no response), 38.00 EUR, fbclid from the visit
    ("m1", 4, "ts-m", "IwAR_M1", "2026-11-18 10:00", "2026-11-18 10:30", 38.0, "EUR", "T4",
     [("", "Connection timed out after 10000 ms", META_URL)], "", ""),
    # 10 days old at NOW: outside Meta's 7 days
    ("m2", 5, "ts-m", "IwAR_M2", "2026-11-10 10:00", "2026-11-10 10:30", 20.0, "EUR", "T5",
     [("500", "Internal error", META_URL)], "", ""),
    # token expired: not recoverable by sending again
    ("m3", 6, "ts-m", "IwAR_M3", "2026-11-19 10:00", "2026-11-19 10:30", 9.0, "EUR", "T6",
     [("401", "Error validating access token: Session has expired", META_URL)], "", ""),
    # included: TikTok (rate limit), 1.80 USD
    ("t1", 7, "ts-t", "E.C.P.T1", "2026-11-19 07:00", "2026-11-19 07:10", 1.8, "USD", "T7",
     [("429", "Too many requests", TIKTOK_URL.format(t="E.C.P.T1"))], "", ""),
    # included: Microsoft, never posted; msclkid in a tracking field, Bing referrer, 10.00 USD
    ("b1", 8, "ts-b", "", "2026-11-15 07:00", "2026-11-15 07:20", 10.0, "USD", "T8",
     [], "https://www.bing.com/search?q=vpn", "msclkid=f894f652ea33"),
    # included: S2S with an unreplaced macro, filled from the visit's external id; 2.50 USD
    ("s1", 9, "ts-s", "vis9", "2026-11-19 05:00", "2026-11-19 05:05", 2.5, "USD", "T9",
     [("400", "Invalid click id", S2S_URL)], "", ""),
    # accepted on the second attempt: never a candidate
    ("s2", 10, "ts-s", "vis10", "2026-11-19 06:00", "2026-11-19 06:05", 4.0, "USD", "T10",
     [("500", "Bad gateway", S2S_URL.replace("{clickid}", "vis10")),
      ("200", "", S2S_URL.replace("{clickid}", "vis10"))], "", ""),
    # a traffic source without postbacks nor ad-platform click id: no destination
    ("n1", 11, "ts-n", "abc", "2026-11-19 06:00", "2026-11-19 06:05", 3.0, "USD", "T11",
     [], "https://news.example/", ""),
]  # fmt: skip
# the network fired s1 twice: same click, ct and txid — a duplicate
DUPLICATE_OF = "s1"


def _hand_made(folder: Path) -> cf.LogStore:
    store = cf.LogStore(folder / "store", timezone="UTC")
    visits, conversions, postbacks = [], [], []
    for name, n, ts, ext, vt, conv_t, payout, cur, txid, pbs, ref, tf1 in ROWS:
        visits.append(
            {"Click ID": _cid(n), "Visit Time": vt, "Campaign ID": f"c-{ts}", "Traffic Source ID": ts,
             "External ID": ext, "Referrer": ref, "Tracking Field 1": tf1, "User Agent": "Mozilla/5.0 test",
             "IP": "203.0.113.9"}
        )  # fmt: skip
        conv = {"Click ID": _cid(n), "Conversion Time": conv_t, "Payout": str(payout), "Currency": cur,
                "Transaction ID": txid, "Custom Conversion (ct)": "lead", "Traffic Source ID": ts}  # fmt: skip
        conversions.append(conv)
        if name == DUPLICATE_OF:
            conversions.append({**conv, "Conversion Time": conv_t[:-2] + "06"})
        for k, (status, msg, url) in enumerate(pbs):
            postbacks.append(
                {"Postback ID": f"pb-{n}-{k}", "Click ID": _cid(n),
                 "Postback Time": (datetime.fromisoformat(conv_t) + timedelta(minutes=1 + k)).isoformat(" "),
                 "Is Error": "0" if status == "200" else "1", "Error Message": msg, "Status Code": status,
                 "Postback URL": url, "Custom Conversion (ct)": "lead", "Traffic Source ID": ts}
            )  # fmt: skip
    for name, rows in (("visits", visits), ("conversions", conversions), ("postbacks", postbacks)):
        result = store.ingest_frame(pl.DataFrame(rows), kind=name, name=name)
        assert result.ok, result.failures
    return store


@pytest.fixture
def hand_made(tmp_path):
    return _hand_made(tmp_path)


def _csv_rows(path: Path, click_header: str) -> list[dict[str, str]]:
    """A Google/Microsoft template file parsed as the documented format: time-zone row, header, rows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Parameters:TimeZone=+0000"
    rows = list(csv.DictReader(lines[1:]))
    assert list(rows[0]) == [
        click_header,
        "Conversion Name",
        "Conversion Time",
        "Conversion Value",
        "Conversion Currency",
    ]
    for r in rows:
        assert r[click_header]
        assert " " not in r[click_header]
        assert "{" not in r[click_header]
        datetime.strptime(r["Conversion Time"], "%Y-%m-%d %H:%M:%S")  # documented format, raises otherwise
        float(r["Conversion Value"])
        assert len(r["Conversion Currency"]) in (0, 3)
    return rows


def _events(path: Path, *, now: datetime, kind: str) -> list[dict]:
    """Meta/TikTok batches parsed with their required fields; event_time within 7 days of ``now``."""
    batches = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for batch in batches:
        body = batch["body"]
        assert 1 <= len(body["data"]) <= 1000
        assert "access_token" not in json.dumps(batch)
        if kind == "tiktok":
            assert body["event_source"] == "web"
            assert body["event_source_id"]
        for ev in body["data"]:
            t = ev["event_time"]
            assert isinstance(t, int)
            assert 0 <= now.timestamp() - t <= 7 * 86400
            assert ev["event_id"]
            if kind == "meta":
                assert ev["event_name"]
                assert ev["action_source"] == "website"
                fbc = ev["user_data"]["fbc"].split(".", 3)
                assert fbc[:2] == ["fb", "1"]
                assert fbc[2].isdigit()
                assert fbc[3]
                assert set(ev["custom_data"]) <= {"value", "currency"}
            else:
                assert ev["event"]
                assert ev["user"]["ttclid"].startswith("E.C.P.")
            out.append(ev)
    return out


def test_hand_made_store_worked_numbers(hand_made, tmp_path):
    result = recover(hand_made, now=NOW, out=tmp_path / "out")
    m = result.manifest
    # 11 rows + the duplicate; s2 was accepted → 11 candidates
    assert m["candidates"] == 11
    files = {name: (f["conversions"], f["payout"]) for name, f in m["files"].items()}
    assert files == {
        "google_ads_offline_conversions.csv": (1, {"USD": 11.0}),
        "meta_capi_events.json": (1, {"EUR": 38.0}),
        "tiktok_events.json": (1, {"USD": 1.8}),
        "microsoft_offline_conversions.csv": (1, {"USD": 10.0}),
        "s2s_postbacks.jsonl": (1, {"USD": 2.5}),
    }
    excluded = {reason: (e["conversions"], e["payout"]) for reason, e in m["excluded"].items()}
    assert excluded == {
        "duplicate": (1, {"USD": 2.5}),
        "error_not_recoverable": (1, {"EUR": 9.0}),
        "no_destination": (1, {"USD": 3.0}),
        "no_click_id": (1, {"USD": 5.0}),
        "outside_window": (2, {"EUR": 20.0, "USD": 7.0}),
    }
    out = tmp_path / "out"
    google = _csv_rows(out / "google_ads_offline_conversions.csv", "Google Click ID")
    assert [(r["Google Click ID"], r["Conversion Time"], r["Conversion Value"], r["Conversion Currency"])
            for r in google] == [("Cj0G1", "2026-11-10 09:00:00", "11.0", "USD")]  # fmt: skip
    microsoft = _csv_rows(out / "microsoft_offline_conversions.csv", "Microsoft Click ID")
    assert [r["Microsoft Click ID"] for r in microsoft] == ["f894f652ea33"]
    (meta_ev,) = _events(out / "meta_capi_events.json", now=NOW, kind="meta")
    visit_ms = int(datetime(2026, 11, 18, 10, tzinfo=UTC).timestamp() * 1000)
    assert meta_ev["user_data"]["fbc"] == f"fb.1.{visit_ms}.IwAR_M1"
    assert meta_ev["custom_data"] == {"value": 38.0, "currency": "EUR"}
    # the store masks IPs in its outputs (the default): no IP goes out; the user agent does
    assert meta_ev["user_data"]["client_user_agent"] == "Mozilla/5.0 test"
    assert "client_ip_address" not in meta_ev["user_data"]
    assert meta_ev["event_time"] == int(datetime(2026, 11, 18, 10, 30, tzinfo=UTC).timestamp())
    (tt_ev,) = _events(out / "tiktok_events.json", now=NOW, kind="tiktok")
    assert tt_ev["user"]["ttclid"] == "E.C.P.T1"
    assert tt_ev["properties"] == {"value": 1.8, "currency": "USD"}
    (line,) = (out / "s2s_postbacks.jsonl").read_text().splitlines()
    s2s = json.loads(line)
    assert s2s["url"] == S2S_URL.replace("{clickid}", "vis9").replace("{payout}", "2.50")
    assert stat.S_IMODE((out / "s2s_postbacks.jsonl").stat().st_mode) == 0o600
    # the secret is only where it must be: the S2S file; never in the manifest, summary, ledger, exclusions
    for text in (
        (out / "manifest.json").read_text(),
        summary_text(result),
        (hand_made.path / LEDGER_FILE).read_text(),
        (out / "excluded.csv").read_text(),
        (out / "meta_capi_events.json").read_text(),
    ):
        assert SECRET not in text
    with (out / "excluded.csv").open() as fh:
        reasons = sorted(r["reason"] for r in csv.DictReader(fh))
    assert reasons == ["duplicate", "error_not_recoverable", "no_click_id", "no_destination"] + ["outside_window"] * 2


def test_second_run_adds_nothing_and_out_is_not_overwritten(hand_made, tmp_path):
    first = recover(hand_made, now=NOW, out=tmp_path / "a")
    ledger = json.loads((hand_made.path / LEDGER_FILE).read_text())["conversions"]
    assert len(ledger) == first.manifest["included"] == 5
    assert {Path(e["file"]).name for e in ledger.values()} == set(first.manifest["files"])
    second = recover(hand_made, now=NOW, out=tmp_path / "b")
    assert second.manifest["included"] == 0
    assert second.files == {}
    assert second.manifest["excluded"]["already_recovered"]["conversions"] == 5
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["excluded.csv", "manifest.json"]
    with pytest.raises(UsageError, match="already holds a recovery run"):
        recover(hand_made, now=NOW, out=tmp_path / "a")
    with pytest.raises(UsageError, match="ISO 4217"):
        recover(hand_made, now=NOW, out=tmp_path / "c", currency="dollars")


def test_ip_goes_out_only_when_the_store_keeps_and_shows_it_raw(hand_made, tmp_path):
    hand_made.set_privacy(mask_ips=False)
    recover(hand_made, now=NOW, out=tmp_path / "out")
    (meta_ev,) = _events(tmp_path / "out" / "meta_capi_events.json", now=NOW, kind="meta")
    (tt_ev,) = _events(tmp_path / "out" / "tiktok_events.json", now=NOW, kind="tiktok")
    assert meta_ev["user_data"]["client_ip_address"] == tt_ev["user"]["ip"] == "203.0.113.9"


def test_fixed_kinds_go_to_the_platform_files_only(hand_made, tmp_path):
    m = recover(hand_made, now=NOW, out=tmp_path / "out", fixed=["auth"]).manifest
    # m3's expired token is renewed: its Meta event goes out with the current token; nothing else changes
    assert m["files"]["meta_capi_events.json"]["conversions"] == 2
    assert m["files"]["meta_capi_events.json"]["payout"] == {"EUR": 47.0}
    assert "error_not_recoverable" not in m["excluded"]
    assert m["fixed_kinds"] == ["auth"]
    with pytest.raises(UsageError, match="not an error kind"):
        recover(hand_made, now=NOW, out=tmp_path / "other", fixed=["tokens"])


def test_range_limits_the_candidates_by_local_conversion_date(hand_made, tmp_path):
    m = recover(hand_made, start="2026-11-18", end="2026-11-19", now=NOW, out=tmp_path / "out").manifest
    # m1 (18th); m3, t1, s1 and its duplicate, n1 (19th); s2 was accepted
    assert m["candidates"] == 6
    assert m["range"] == {"from": "2026-11-18", "to": "2026-11-19"}
    assert sorted(m["files"]) == ["meta_capi_events.json", "s2s_postbacks.jsonl", "tiktok_events.json"]


def test_windows_move_with_now(hand_made, tmp_path):
    # 8 days later Meta's and TikTok's events are too old; Google's click (Nov 10) still within 90 days
    later = recover(hand_made, now=NOW + timedelta(days=8), out=tmp_path / "later").manifest
    assert set(later["files"]) == {
        "google_ads_offline_conversions.csv",
        "microsoft_offline_conversions.csv",
        "s2s_postbacks.jsonl",
    }
    assert later["excluded"]["outside_window"]["conversions"] == 4


_NO_VISITS = pl.DataFrame(
    schema={"click_id": pl.String, "visit_time": pl.Datetime("us", "UTC"), "external_id": pl.String}
)


def test_select_leaves_out_what_a_later_postback_accepted():
    t = datetime(2026, 11, 19, tzinfo=UTC)
    conv = pl.DataFrame(
        {"click_id": ["a", "b"], "conversion_time": [t, t], "ct": ["lead", None], "txid": [None, None],
         "payout": [1.0, 2.0], "currency": [None, None], "traffic_source_id": ["x", "x"],
         "gap": ["posted_failed", "posted_failed"], "duplicate": [False, False]}
    )  # fmt: skip
    pb = pl.DataFrame(
        {"click_id": ["a", "a", "b"], "ct": ["lead", "lead", ""],
         "postback_time": [t + timedelta(minutes=1), t + timedelta(hours=1), t + timedelta(minutes=1)],
         "is_error": [True, False, True], "postback_url": ["https://ts.example/pb?cid=1"] * 3,
         "error_kind": ["server_error", None, "server_error"], "traffic_source_id": ["x"] * 3,
         "retryable": [True, None, False]}
    )  # fmt: skip
    visits = pl.DataFrame(
        schema={"click_id": pl.String, "visit_time": pl.Datetime("us", "UTC"), "external_id": pl.String}
    )
    out = select(conv, pb, visits, now=t + timedelta(days=1), currency="usd")
    # a: accepted by its second postback; b: the given retryable column says no
    assert out.select("click_id", "reason", "currency").rows() == [
        ("a", "accepted", "USD"),
        ("b", "error_not_recoverable", "USD"),
    ]


def test_select_takes_platform_and_retryable_columns_when_given():
    t = datetime(2026, 11, 19, tzinfo=UTC)
    conv = pl.DataFrame(
        {"click_id": ["a", "b", "c"], "conversion_time": [t] * 3, "ct": [None] * 3, "txid": [None] * 3,
         "payout": [1.0, 2.0, 3.0], "currency": ["USD"] * 3, "traffic_source_id": ["x", "y", "z"],
         "gap": ["posted_failed"] * 3, "duplicate": [False] * 3}
    )  # fmt: skip
    pb = pl.DataFrame(
        {"click_id": ["a", "b", "c"], "ct": [None] * 3, "postback_time": [t] * 3, "is_error": [True] * 3,
         "postback_url": ["https://relay.example/pb?gclid=Cj0A", "https://relay.example/pb?cid=v2",
                          "https://relay.example/pb?twclid=9"],
         "error_kind": ["other", "bad_request", "server_error"], "traffic_source_id": ["x", "y", "z"],
         "retryable": [True, False, True], "platform": ["Google Ads", "propellerads", "x"]}
    )  # fmt: skip
    out = select(conv, pb, _NO_VISITS, now=t + timedelta(days=1))
    # a: the relay is Google Ads by the given platform, retryable by the given flag; b: not retryable;
    # c: an API platform without an upload format here
    assert out.select("click_id", "destination", "platform_click_id", "reason").rows() == [
        ("a", "google_ads", "Cj0A", None),
        ("b", None, None, "error_not_recoverable"),
        ("c", None, None, "no_destination"),
    ]


def test_fill_url_leaves_unknown_macros_and_empty_click_ids_reported():
    assert fill_url("https://t.example/p?c={clickid}&v={payout}", {"ts_click_id": None, "payout": 1.0}) == (
        "https://t.example/p?c={clickid}&v=1.00",
        ["{clickid}"],
    )
    assert fill_url("https://t.example/p?visitor_id=&x=1", {}) == (
        "https://t.example/p?visitor_id=&x=1",
        ["visitor_id="],
    )


# --------------------------------------------------------------------------- the sample account
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recover-sample")
    account = generate(folder / "exports", seed=7, visits=20_000)
    store = cf.LogStore(folder / "store", timezone=account.truth["timezone"])
    assert store.ingest([p for role, p in sorted(account.files.items()) if role != "network_export"]).ok
    now = datetime.fromisoformat(account.truth["window"]["end"].replace("Z", "+00:00"))
    result = recover(store, now=now, out=folder / "out", currency="USD")
    return store, result, now


def _con(store: cf.LogStore) -> duckdb.DuckDBPyConnection:
    """Views over the files of the current Delta versions (``DeltaTable(path).file_uris()``)."""
    from deltalake import DeltaTable

    con = duckdb.connect()
    for kind in ("visits", "conversions", "postbacks"):
        files = DeltaTable(str(store.table_path(kind))).file_uris()
        con.execute(f"create view {kind} as select * from read_parquet({files!r}, union_by_name = true)")
    con.execute(
        """create view conv_keys as
           select click_id || '|' || coalesce(ct, '') || '|' || coalesce(txid, '') as key,
                  arg_min(payout, conversion_time) as payout, min(conversion_time) as conversion_time
           from conversions group by 1"""
    )
    return con


def test_sample_files_parse_and_payouts_equal_plain_sql(sample):
    store, result, now = sample
    con = _con(store)
    ledger = json.loads((store.path / LEDGER_FILE).read_text())["conversions"]
    assert result.files, "the sample account must have recoverable conversions"
    for dest, path in result.files.items():
        keys = sorted(k for k, e in ledger.items() if e["file"] == str(path.resolve()))
        manifest_file = result.manifest["files"][path.name]
        assert manifest_file["conversions"] == len(keys)
        sql_sum = con.execute("select sum(coalesce(payout, 0)) from conv_keys where key in ?", [keys]).fetchone()[0]
        assert manifest_file["payout"] == {"USD": pytest.approx(sql_sum)}, dest
        if path.name in CSV_HEADERS:
            rows = _csv_rows(path, CSV_HEADERS[path.name])
            assert sum(float(r["Conversion Value"]) for r in rows) == pytest.approx(sql_sum)
            # every click within Google's 90 days, found among the stored visits' external ids
            ids = [r[CSV_HEADERS[path.name]] for r in rows]
            oldest = con.execute("select min(visit_time) from visits where external_id in ?", [ids]).fetchone()[0]
            assert now - oldest <= timedelta(days=90)
        elif path.suffix == ".json":
            events = _events(path, now=now, kind=dest)
            assert sorted(e["event_id"] for e in events) == keys
            values = [e["custom_data" if dest == "meta" else "properties"].get("value", 0) for e in events]
            assert sum(values) == pytest.approx(sql_sum)
        else:
            lines = [json.loads(x) for x in path.read_text().splitlines()]
            assert sorted(x["key"] for x in lines) == keys
            assert all(x["url"].startswith("http") and "{" not in x["url"] for x in lines)


def test_sample_never_includes_an_accepted_conversion_and_accounts_for_every_candidate(sample):
    store, result, _ = sample
    con = _con(store)
    included = result.decisions.filter(pl.col("reason").is_null())
    keys = included.get_column("key").to_list()
    accepted = con.execute(
        """select count(*) from conversions c join postbacks p
           on p.click_id = c.click_id and nullif(p.ct, '') is not distinct from nullif(c.ct, '')
           where not p.is_error
             and c.click_id || '|' || coalesce(c.ct, '') || '|' || coalesce(c.txid, '') in ?""",
        [keys],
    ).fetchone()[0]
    assert accepted == 0
    # candidates = stored conversions with no successful postback on their click id and ct (plain SQL)
    candidates = con.execute(
        """select count(*) from conversions c where not exists (
             select 1 from postbacks p where p.click_id = c.click_id
               and nullif(p.ct, '') is not distinct from nullif(c.ct, '') and not p.is_error)"""
    ).fetchone()[0]
    m = result.manifest
    assert m["candidates"] == candidates == m["included"] + sum(e["conversions"] for e in m["excluded"].values())
    assert len(set(keys)) == len(keys)
    # the money at stake (duplicates aside) is what was recovered plus what was left out for a reason
    from cfanalytics.diagnose.at_stake import at_stake

    stake = at_stake(cf.diagnose.gap_rows(cf.diagnose.conversions(store), postback_outcomes(store)), currency="USD")
    accounted = m["included_payout"]["USD"] + sum(
        e["payout"]["USD"] for reason, e in m["excluded"].items() if reason != "duplicate"
    )
    assert stake["payout"].to_list() == [pytest.approx(accounted)]
    assert stake["conversions"].to_list() == [m["candidates"] - m["excluded"]["duplicate"]["conversions"]]


def test_cli_recover_json_then_second_run(tmp_path):
    store = _hand_made(tmp_path)
    args = ("recover", "--store", str(store.path), "--now", "2026-11-20T12:00:00Z", "--json")
    first = run_cli(*args, "--out", str(tmp_path / "one"))
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["included"] == 5
    assert SECRET not in first.stdout
    second = run_cli(*args, "--out", str(tmp_path / "two"))
    assert json.loads(second.stdout)["included"] == 0
    again = run_cli(*args, "--out", str(tmp_path / "one"))
    assert again.returncode == 2
    assert "already holds a recovery run" in again.stderr
