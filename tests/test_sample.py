"""The sample account generator: determinism, scale, and a truth that agrees with its files."""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from cfanalytics import schemas
from cfanalytics.sample import FILES, TRUTH_FILE, SampleAccount, generate, main

MACRO = re.compile(r"\{[^}]*\}|\[[A-Za-z_]+\]|%7[Bb].*%7[Dd]")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def default_account(tmp_path_factory: pytest.TempPathFactory) -> SampleAccount:
    return generate(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> SampleAccount:
    return generate(tmp_path_factory.mktemp("small"), seed=3, visits=3000)


# --- reading the files back, with nothing but csv / json / polars ----------------------


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def _utc(text: str, tz: ZoneInfo = NY) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).astimezone(UTC)


def _z(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _stored_visits(account: SampleAccount) -> dict[str, dict[str, str]]:
    """Visits a correct loader stores: the first of each click id among well-formed rows."""
    header, rows = _csv(account.files["visits"])
    stored: dict[str, dict[str, str]] = {}
    for row in rows:
        if len(row) != len(header):
            continue
        record = dict(zip(header, row, strict=True))
        if not record["Click ID"] or record["Visit Time"].startswith("2026-02-30"):
            continue
        stored.setdefault(record["Click ID"], record)
    return stored


def _stored_postbacks(account: SampleAccount) -> list[dict[str, Any]]:
    """Both postback files as stored rows: UTC time, bool is_error, int-or-None status."""
    header, rows = _csv(account.files["postbacks"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        r = dict(zip(header, row, strict=True))
        if r["Is Error"] not in ("0", "1") or r["Postback ID"] in seen:
            continue
        seen.add(r["Postback ID"])
        status = int(r["Status Code"]) if r["Status Code"].isdigit() else None
        out.append(
            {
                "click_id": r["Click ID"],
                "time": _utc(r["Postback Time"]),
                "is_error": r["Is Error"] == "1",
                "status": status if status and 100 <= status <= 599 else None,
                "message": r["Error Message"],
                "url": r["Postback URL"],
                "ct": r["Custom Conversion (ct)"],
                "integration_id": r["Integration ID"],
                "traffic_source_id": r["Traffic Source ID"],
            }
        )
    for item in json.loads(account.files["postbacks_api"].read_text("utf-8"))["items"]:
        out.append(
            {
                "click_id": item["ClickID"],
                "time": datetime.fromisoformat(item["PostbackTime"]).astimezone(UTC),
                "is_error": item["IsError"],
                "status": item["StatusCode"],
                "message": item["ErrorMessage"] or "",
                "url": item["PostbackUrl"],
                "ct": item["Ct"],
                "integration_id": item["IntegrationID"] or "",
                "traffic_source_id": "",
            }
        )
    return out


def _conversion_items(account: SampleAccount) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(account.files["conversions"].read_text("utf-8"))["items"]
    return items


def _attributed(account: SampleAccount) -> list[dict[str, Any]]:
    """Stored postbacks with their traffic source: own column, else the visit's."""
    visits = _stored_visits(account)
    out = _stored_postbacks(account)
    for p in out:
        visit = visits.get(p["click_id"])
        p["source"] = p["traffic_source_id"] or (visit["Traffic Source ID"] if visit else "")
    return out


# --- determinism and scale ---------------------------------------------------------------


def test_same_parameters_give_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", seed=11, visits=3000)
    b = generate(tmp_path / "b", seed=11, visits=3000)
    c = generate(tmp_path / "c", seed=12, visits=3000)
    names = [*FILES.values(), TRUTH_FILE]
    for name in names:
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes(), name
    for name in FILES.values():
        assert (a.folder / name).read_bytes() != (c.folder / name).read_bytes(), name
    assert a.truth == json.loads((a.folder / TRUTH_FILE).read_text("utf-8"))


def test_output_does_not_depend_on_the_hash_seed(tmp_path: Path, small_account: SampleAccount) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    args = [sys.executable, "-m", "cfanalytics.sample", str(tmp_path), "--seed", "3", "--visits", "3000"]
    subprocess.run(args, check=True, env=env, capture_output=True)
    for name in [*FILES.values(), TRUTH_FILE]:
        assert (tmp_path / name).read_bytes() == (small_account.folder / name).read_bytes(), name


#: SHA-256 over each file's name and bytes (sorted by name), recorded from the single-module
#: generator before it became the ``cfanalytics.sample`` package: the split changed no byte.
#: ``truth.json`` is hashed without the sections added to it since (:data:`TRUTH_ADDED`), written
#: as the generator writes it: the exports and every earlier truth stay byte for byte.
TRUTH_ADDED = ("at_stake",)
GOLDEN = {
    (7, 1000, 2, "2026-11-16", "America/New_York"): "19536896572c662a9b5f868e7c4df14c3cf19f415ad6c23647abf75428d55b04",
    (11, 2000, 4, "2026-03-06", "Asia/Kolkata"): "497cf0cefb17fdd65695f7c6918408966a642cbe117f0741314a0b6cb08c1afc",
    (5, 800, 3, "2026-10-31", "America/New_York"): "784a8128f865d2420426100b624ed6ae1f6fb5c731ef7cb81921097e3ecaf702",
}


@pytest.mark.parametrize("params", list(GOLDEN), ids=lambda p: f"seed{p[0]}-{p[1]}v-{p[4]}")
def test_output_matches_the_recorded_digest(tmp_path: Path, params: tuple[int, int, int, str, str]) -> None:
    seed, visits, days, start, timezone = params
    generate(tmp_path, seed=seed, visits=visits, days=days, start=start, timezone=timezone)
    digest = hashlib.sha256()
    for path in sorted(tmp_path.iterdir()):
        digest.update(path.name.encode())
        data = path.read_bytes()
        if path.name == TRUTH_FILE:
            truth = json.loads(data)
            assert set(TRUTH_ADDED) <= set(truth)
            earlier = {k: v for k, v in truth.items() if k not in TRUTH_ADDED}
            data = (json.dumps(earlier, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
        digest.update(data)
    assert digest.hexdigest() == GOLDEN[params]


def test_the_generator_imports_nothing_else_from_the_package() -> None:
    """Every import under ``cfanalytics/sample/`` is the standard library or the sample package itself."""
    folder = Path(__file__).resolve().parents[1] / "cfanalytics" / "sample"
    modules = sorted(folder.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "_account.py", "_simulate.py", "_truth.py", "_write.py"}
    seen: list[str] = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}:{node.lineno}: relative import"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                seen.append(name)
                top = name.partition(".")[0]
                ours = name == "cfanalytics.sample" or name.startswith("cfanalytics.sample.")
                assert ours or (top != "cfanalytics" and top in sys.stdlib_module_names), f"{path.name}: {name}"
    assert "cfanalytics.sample._simulate" in seen, "the walk saw the package's own imports"


def test_row_counts_scale_with_visits(tmp_path: Path, default_account: SampleAccount) -> None:
    small = generate(tmp_path, visits=2000).truth["ingest"]
    big = default_account.truth["ingest"]
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        assert 8 < big[kind]["rows_stored"] / small[kind]["rows_stored"] < 12.5, kind
    visits = big["visits"]["rows_stored"]
    assert 0.40 < big["clicks"]["rows_stored"] / visits < 0.50
    assert 0.07 < big["conversions"]["rows_stored"] / visits < 0.09
    assert 0.7 < big["postbacks"]["rows_stored"] / big["conversions"]["rows_stored"] < 1.0


def test_bad_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="visits"):
        generate(tmp_path, visits=10)
    with pytest.raises(ValueError, match="days"):
        generate(tmp_path, days=1)


# --- the truth agrees with itself ----------------------------------------------------------


@pytest.mark.parametrize("which", ["small_account", "default_account"])
def test_truth_is_internally_consistent(which: str, request: pytest.FixtureRequest) -> None:
    truth = request.getfixturevalue(which).truth
    for kind, counts in truth["ingest"].items():
        assert counts["rows_read"] == counts["rows_stored"] + counts["already_stored"] + counts["quarantined"]
        assert counts["quarantined"] == sum(counts["quarantined_by_reason"].values())
        assert set(counts["quarantined_by_reason"]) <= set(schemas.REASONS)
        assert set(counts["flagged_by_flag"]) <= set(schemas.flags(kind))
    gaps = truth["gaps"]
    classes = gaps["posted_ok"] + gaps["posted_failed"] + gaps["not_posted"] + gaps["pending"]
    assert classes == gaps["conversions"] == truth["ingest"]["conversions"]["rows_stored"]
    assert gaps["pending"] == 0
    assert gaps["orphan_postbacks"] >= gaps["ct_mismatch"] > 0
    assert gaps["unknown_click"] >= gaps["unknown_click_malformed"] > 0
    assert gaps["duplicate_conversions"] > 0
    pbs = truth["postbacks"]
    assert pbs["total"] == truth["ingest"]["postbacks"]["rows_stored"]
    assert sum(s["postbacks"] for s in pbs["by_traffic_source"].values()) + pbs["unattributed"] == pbs["total"]
    assert sum(s["errors"] for s in pbs["by_traffic_source"].values()) <= pbs["errors"]
    rec = truth["reconcile"]
    assert rec["rows"] == rec["matched"] + rec["payout_mismatch"] + rec["missing_in_tracker"]["total"]
    assert rec["missing_in_tracker"]["total"] == sum(rec["missing_in_tracker"]["by_reason"].values())
    assert all(n > 0 for n in rec["missing_in_tracker"]["by_reason"].values())
    assert rec["payout_mismatch"] > 0
    assert rec["missing_in_network"] >= rec["missing_in_network_same_network"] > 0
    modes = {ts["name"]: ts["mode"] for ts in truth["entities"]["traffic_sources"]}
    assert modes == {
        "Meta Ads": "capi",
        "Google Ads": "capi",
        "TikTok Ads": "capi",
        "PropellerAds": "s2s",
        "ZeroPark": "s2s",
        "NativeX": "none",
    }
    sources = {ts["id"] for ts in truth["entities"]["traffic_sources"]}
    assert all(c["traffic_source_id"] in sources for c in truth["entities"]["campaigns"])
    injected = [f["fault"] for f in truth["faults"]]
    assert injected[:4] == ["postback_url_edit", "receiver_timeout", "rate_limit", "token_expired"]
    assert sorted(i["fault"] for i in truth["incidents"]) == sorted(
        f["fault"] for f in truth["faults"] if f["incident"]
    )
    if truth["visits_param"] >= 20_000:  # incidents are big enough for the default rule from the default size up
        assert len(truth["incidents"]) == 4


# --- the truth agrees with the files ----------------------------------------------------------


def test_visit_file_matches_ingest_truth(small_account: SampleAccount) -> None:
    truth = small_account.truth["ingest"]["visits"]
    header, rows = _csv(small_account.files["visits"])
    assert header[-2:] == ["Tracking Field 1", "Tracking Field 2"]
    assert len(rows) == truth["rows_read"]
    well_formed = [r for r in rows if len(r) == len(header)]
    assert len(rows) - len(well_formed) == truth["quarantined_by_reason"]["ragged_row"]
    assert sum(r[0] == "" for r in well_formed) == truth["quarantined_by_reason"]["missing_required"] == 2
    assert (
        sum(r[1] == "2026-02-30 10:00:00" for r in well_formed)
        == truth["quarantined_by_reason"]["unparseable_required"]
    )
    first: dict[str, list[str]] = {}
    repeats, conflicts = 0, 0
    for r in well_formed:
        if r[0] and r[0] in first:
            repeats += r == first[r[0]]
            conflicts += r != first[r[0]]
        first.setdefault(r[0], r)
    assert repeats == truth["already_stored"] == 1
    assert conflicts == truth["quarantined_by_reason"]["conflicting_key"] == 1
    assert sum(r[14] == "Narnia" for r in well_formed) == truth["flagged_by_flag"]["flag_invalid_country"]
    assert sum(bool(MACRO.search(r[0])) for r in well_formed) == truth["flagged_by_flag"]["flag_click_id_macro"]
    assert all(UUID.match(r[0]) for r in well_formed if r[0] and not MACRO.search(r[0]))


def test_event_files_match_ingest_truth(small_account: SampleAccount) -> None:
    truth = small_account.truth["ingest"]
    document = json.loads(small_account.files["conversions"].read_text("utf-8"))
    items = document["items"]
    assert document["totals"]["counter"] == len(items) == truth["conversions"]["rows_read"]
    events = Counter(i["EventType"] for i in items)
    assert events["Refund"] == truth["conversions"]["quarantined_by_reason"]["unknown_event_type"] == 2
    flags = truth["conversions"]["flagged_by_flag"]
    assert sum(i["ConversionPayout"] == "abc" for i in items) == flags["flag_invalid_payout"] == 1
    assert sum(str(i["ConversionPayout"]) == "-5" for i in items) == flags["flag_negative_payout"] == 1
    kept = [i for i in items if i["EventType"] == "Conversion"]
    assert sum(bool(MACRO.search(i["ClickID"])) for i in kept) == flags["flag_click_id_macro"]
    malformed = sum(not MACRO.search(i["ClickID"]) and not UUID.match(i["ClickID"]) for i in kept)
    assert malformed == flags["flag_click_id_malformed"]
    kinds = Counter(type(i["ConversionDate"]).__name__ for i in items)
    assert abs(kinds["int"] - kinds["str"]) <= 1

    clicks = pl.read_ndjson(gzip.decompress(small_account.files["clicks"].read_bytes()))
    assert clicks.height == truth["clicks"]["rows_read"] == truth["clicks"]["rows_stored"]
    assert clicks.columns == [
        "clickID",
        "clickTime",
        "campaignID",
        "trafficSourceID",
        "landerID",
        "offerID",
        "cta",
        "locationCountry",
        "deviceBrowser",
        "connectionIP",
    ]
    assert clicks["clickTime"].str.ends_with("Z").all()
    activity = pl.read_csv(small_account.files["activity"], infer_schema=False)
    assert activity.height == truth["activity"]["rows_stored"]
    assert set(activity["Action"]) <= {"Created", "Updated", "Deleted"}


def test_postback_files_match_ingest_truth(small_account: SampleAccount) -> None:
    truth = small_account.truth["ingest"]["postbacks"]
    header, rows = _csv(small_account.files["postbacks"])
    api = json.loads(small_account.files["postbacks_api"].read_text("utf-8"))["items"]
    assert "PostbackID" not in api[0]
    assert len(rows) + len(api) == truth["rows_read"]
    assert truth["flagged_by_flag"]["flag_derived_postback_id"] == len(api)
    records = [dict(zip(header, r, strict=True)) for r in rows]
    assert sum(r["Is Error"] == "maybe" for r in records) == truth["quarantined_by_reason"]["unparseable_required"]
    ids = Counter(r["Postback ID"] for r in records)
    assert sum(n - 1 for n in ids.values()) == truth["quarantined_by_reason"]["conflicting_key"] == 1
    bad_status = sum(r["Status Code"] in ("abc", "999") for r in records)
    assert bad_status == truth["flagged_by_flag"]["flag_invalid_status_code"] == 3
    mismatch = sum(
        r["Is Error"] == "0" and r["Status Code"].isdigit() and 400 <= int(r["Status Code"]) <= 599 for r in records
    )
    assert mismatch == truth["flagged_by_flag"]["flag_error_status_mismatch"] == 1
    assert {r["Status Code"] for r in records if r["Is Error"] == "1" and not r["Status Code"].isdigit()} <= {""}
    last_day = small_account.truth["window"]["end"][:10]
    assert all(_utc(r["Postback Time"]) < _z(small_account.truth["window"]["end"]) for r in records)
    assert all(i["PostbackTime"][:10] < last_day or i["PostbackTime"].endswith("-05:00") for i in api)
    assert any(not r["Traffic Source ID"] for r in records)


@pytest.mark.parametrize("which", ["small_account", "default_account"])
def test_gaps_recomputed_from_the_files(which: str, request: pytest.FixtureRequest) -> None:
    account: SampleAccount = request.getfixturevalue(which)
    visits = _stored_visits(account)
    postbacks = _stored_postbacks(account)
    conversions = [i for i in _conversion_items(account) if i["EventType"] == "Conversion"]
    posted: dict[tuple[str, str | None], bool] = {}
    for p in postbacks:
        key = (p["click_id"], p["ct"] or None)
        posted[key] = posted.get(key, False) or not p["is_error"]
    got: Counter[str] = Counter(conversions=len(conversions))
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in conversions:
        key = (c["ClickID"], c["Ct"] or None)
        got["posted_ok" if posted.get(key) else "posted_failed" if key in posted else "not_posted"] += 1
        triple = (*key, c["ConversionTransaction"] or None)
        got["duplicate_conversions"] += triple in seen
        seen.add(triple)
        if c["ClickID"] not in visits:
            got["unknown_click"] += 1
            got["unknown_click_malformed"] += bool(MACRO.search(c["ClickID"]) or not UUID.match(c["ClickID"]))
    keys = {(c["ClickID"], c["Ct"] or None) for c in conversions}
    clicks = {c["ClickID"] for c in conversions}
    for p in postbacks:
        if (p["click_id"], p["ct"] or None) not in keys:
            got["orphan_postbacks"] += 1
            got["ct_mismatch"] += p["click_id"] in clicks
    expected = account.truth["gaps"]
    assert {k: got[k] for k in expected} == expected

    nativex = next(ts["id"] for ts in account.truth["entities"]["traffic_sources"] if ts["mode"] == "none")
    attributed = _attributed(account)
    assert not any(p["source"] == nativex for p in attributed)
    by_source = Counter(p["source"] for p in attributed)
    truth_pb = account.truth["postbacks"]
    assert {k: v["postbacks"] for k, v in truth_pb["by_traffic_source"].items()} == {
        k: n for k, n in by_source.items() if k
    }
    assert by_source[""] == truth_pb["unattributed"]


def test_network_export_holds_each_kind_of_miss(small_account: SampleAccount) -> None:
    export = pl.read_csv(small_account.files["network_export"], infer_schema=False)
    assert export.columns == ["Sub ID", "Transaction ID", "Payout", "Conversion Time"]
    assert export.height == small_account.truth["reconcile"]["rows"]
    visits = set(_stored_visits(small_account))
    converted = {i["ClickID"] for i in _conversion_items(small_account) if i["EventType"] == "Conversion"}
    subs = export["Sub ID"].to_list()
    truncated = [s for s in subs if s not in visits and any(v.startswith(s) for v in visits)]
    assert truncated
    assert all(len(s) == 20 for s in truncated)
    assert "{clickid}" in subs
    assert any(s in visits and s not in converted for s in subs)  # a visit whose conversion never arrived
    assert any(UUID.match(s) and s not in visits for s in subs)  # an unknown click


# --- incidents --------------------------------------------------------------------------


def test_incidents_sit_in_the_window_with_their_suspected_change(default_account: SampleAccount) -> None:
    truth = default_account.truth
    lo, hi = _z(truth["window"]["start"]), _z(truth["window"]["end"])
    header, rows = _csv(default_account.files["activity"])
    activity = [dict(zip(header, r, strict=True)) for r in rows]
    by_fault = {i["fault"]: i for i in truth["incidents"]}
    for incident in truth["incidents"]:
        start, end = _z(incident["start"]), _z(incident["end"])
        assert lo + timedelta(days=1) <= start <= end < hi  # a clean day of baseline first
    for fault in ("token_expired", "receiver_timeout"):
        assert by_fault[fault]["suspected_change"] is None
    assert by_fault["token_expired"]["scope"] == by_fault["rate_limit"]["scope"] == "integration"
    # the rate limit's cause is the budget raise that starts its traffic push, on a campaign of its source;
    # the same raise before the other faults is a decoy
    push = by_fault["rate_limit"]["suspected_change"]
    assert push["entity_type"] == "campaign"
    assert push["author"] == "ben@acme.test"
    assert by_fault["rate_limit"]["decoys"] == []
    for fault in ("token_expired", "receiver_timeout", "postback_url_edit"):
        (decoy,) = by_fault[fault]["decoys"]
        assert (decoy["entity_type"], decoy["author"]) == ("campaign", "ben@acme.test")
        assert _z(decoy["changed_at"]) < _z(by_fault[fault]["start"])
    raises = {
        (_utc(a["Date"]), a["Entity ID"])
        for a in activity
        if json.loads(a["Old Value"] or "null") == {"daily_budget": 200}
        and json.loads(a["New Value"] or "null") == {"daily_budget": 800}
    }
    named = [push, *(by_fault[f]["decoys"][0] for f in ("token_expired", "receiver_timeout", "postback_url_edit"))]
    assert raises == {(_z(c["changed_at"]), c["entity_id"]) for c in named}
    # what ended the URL edit and the expired token: ben's URL fix, mia's reconnect; the others ended alone
    assert by_fault["postback_url_edit"]["resolved_by"]["author"] == "ben@acme.test"
    assert by_fault["token_expired"]["resolved_by"]["author"] == "mia@acme.test"
    assert by_fault["rate_limit"]["resolved_by"] is None
    assert by_fault["receiver_timeout"]["resolved_by"] is None
    edit = by_fault["postback_url_edit"]
    change = edit["suspected_change"]
    assert edit["scope"] == "traffic_source"
    assert change["entity_type"] == "traffic_source"
    assert change["entity_id"] == edit["id"]
    assert _z(change["changed_at"]) <= _z(edit["start"])
    matching = [
        a
        for a in activity
        if _utc(a["Date"]) == _z(change["changed_at"])
        and a["User"] == change["author"]
        and a["Entity ID"] == change["entity_id"]
        and a["Action"] == "Updated"
    ]
    assert len(matching) == 1
    assert "postback_url" in json.loads(matching[0]["New Value"])
    assert "{clickid}" in matching[0]["New Value"]
    # Benign edits: nothing touches a failing scope's source or integration in the 24 h before its start.
    for incident in truth["incidents"]:
        start = _z(incident["start"])
        scope_ids = {incident["id"], incident["traffic_source_id"]}
        suspects = [
            a
            for a in activity
            if start - timedelta(hours=24) <= _utc(a["Date"]) <= start and a["Entity ID"] in scope_ids
        ]
        change = incident["suspected_change"]
        assert len(suspects) == (change is not None and change["entity_id"] in scope_ids)


def test_failing_postbacks_bound_each_incident(default_account: SampleAccount) -> None:
    postbacks = _attributed(default_account)
    for incident in default_account.truth["incidents"]:
        key = "integration_id" if incident["scope"] == "integration" else "source"
        scope = sorted((p for p in postbacks if p[key] == incident["id"]), key=lambda p: p["time"])
        start, end = _z(incident["start"]), _z(incident["end"])
        first_hour = start.replace(minute=0)
        last_hour = end.replace(minute=0)
        failing = [p for p in scope if p["is_error"] and first_hour <= p["time"] < last_hour + timedelta(hours=1)]
        assert failing[0]["time"] == start
        assert failing[-1]["time"] == end
        during = [p for p in failing if start <= p["time"] <= end]
        match incident["fault"]:
            case "postback_url_edit":
                assert all(p["status"] == 400 and "{clickid}" in p["url"] for p in during)
            case "token_expired":
                assert all(p["status"] == 401 and "OAuthException" in p["message"] for p in during)
                assert all("access_token=EAAG" in p["url"] for p in during)
            case "rate_limit":
                assert all(p["status"] == 429 for p in during)
            case "receiver_timeout":
                assert all(p["status"] is None and "timed out" in p["message"] for p in during)


def _binomial_sf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _flagged_hours(hours: dict[datetime, list[int]]) -> set[datetime]:
    """The default incident rule, simply: n ≥ 10, rate ≥ baseline + 0.2, binomial p < 1e-4."""
    flagged: set[datetime] = set()
    errors, total = 0, 0
    for hour in sorted(hours):
        n, k = hours[hour]
        baseline = (errors + 1) / (total + 50)
        if n >= 10 and k / n >= baseline + 0.2 and _binomial_sf(k, n, baseline) < 1e-4:
            flagged.add(hour)
        else:
            errors, total = errors + k, total + n
    return flagged


def test_injected_incidents_are_exactly_what_the_default_rule_flags(default_account: SampleAccount) -> None:
    truth = default_account.truth
    scopes: dict[tuple[str, str], dict[datetime, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for p in _attributed(default_account):
        hour = p["time"].replace(minute=0, second=0)
        for scope in (("traffic_source", p["source"]), ("integration", p["integration_id"])):
            if scope[1]:
                scopes[scope][hour][0] += 1
                scopes[scope][hour][1] += p["is_error"]
    expected: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    for incident in truth["incidents"]:
        spanned = {_z(h["hour"]) for h in incident["hours"]}
        expected[(incident["scope"], incident["id"])] |= spanned
        if incident["scope"] == "integration":  # the same failing postbacks, seen at source scope
            expected[("traffic_source", incident["traffic_source_id"])] |= spanned
        for h in incident["hours"]:
            assert h["postbacks"] >= 10
            assert h["errors"] / h["postbacks"] >= 0.4
    for scope, hours in scopes.items():
        assert _flagged_hours(hours) == expected.get(scope, set()), scope


def test_missing_gclid_is_a_steady_low_rate(default_account: SampleAccount) -> None:
    truth = default_account.truth
    fault = next(f for f in truth["faults"] if f["fault"] == "missing_external_id")
    visits = _stored_visits(default_account)
    google = [v for v in visits.values() if v["Traffic Source ID"] == fault["traffic_source_id"]]
    assert sum(not v["External ID"] for v in google) == fault["visits"] > 0
    failed = [p for p in _stored_postbacks(default_account) if "UNPARSEABLE_GCLID" in p["message"]]
    assert len(failed) == fault["postbacks_failed"] > 0
    assert all(p["status"] == 400 and "gclid=&" not in p["url"] and p["url"].endswith("gclid=") for p in failed)
    assert len({p["time"].date() for p in failed}) >= 2  # spread out, not a burst


# --- other parameters ------------------------------------------------------------------------


def test_local_times_never_fall_in_a_repeated_hour(tmp_path: Path) -> None:
    account = generate(tmp_path, visits=1500, days=3, start="2026-10-31", timezone="America/New_York")
    assert account.truth["window"] == {"start": "2026-10-31T04:00:00Z", "end": "2026-11-03T05:00:00Z"}
    texts = [r[1] for r in _csv(account.files["visits"])[1]]
    texts += [r[2] for r in _csv(account.files["postbacks"])[1]]
    texts += [r[0] for r in _csv(account.files["activity"])[1]]
    texts += [i["ConversionDate"] for i in _conversion_items(account) if isinstance(i["ConversionDate"], str)]
    assert texts
    assert not [t for t in texts if t.startswith("2026-11-01 01:")]
    assert len(account.truth["faults"]) == 7


def test_command_line_writes_the_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "--seed", "5", "--visits", "1000", "--days", "2"]) == 0
    printed = capsys.readouterr().out
    for name in [*FILES.values(), TRUTH_FILE]:
        assert (tmp_path / "out" / name).is_file()
        assert name in printed
    truth = json.loads((tmp_path / "out" / TRUTH_FILE).read_text("utf-8"))
    assert (truth["seed"], truth["visits_param"], truth["days"]) == (5, 1000, 2)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad"), "--visits", "10"])
