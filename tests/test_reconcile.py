"""Reconciliation of an affiliate network's export with the store (docs/contract.md §5 ``cfanalytics reconcile``).

The fixture is a hand-made UTC store and a network export with one row of every
bucket; the expected numbers are worked out by hand next to each row.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from cfanalytics import InputError, LogStore, UsageError
from cfanalytics.diagnose.reconcile import REASONS, Reconciliation, reconcile

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schemas" / "reconcile.schema.json"


def uuid(n: int) -> str:
    """A UUID-shaped click id, distinct per ``n``."""
    return f"aaaaaaaa-0000-4000-8000-{n:012d}"


A, B, C, D, E, F, G, H, J = (uuid(i) for i in range(1, 10))

VISITS = f"""Click ID,Visit Time,Campaign ID
{A},2026-11-20 07:00:00,cmp1
{B},2026-11-20 07:10:00,cmp1
{C},2026-11-20 07:20:00,cmp1
{D},2026-11-20 07:30:00,cmp1
{E},2026-11-20 07:40:00,cmp1
{F},2026-11-20 07:50:00,cmp1
{H},2026-11-20 08:00:00,cmp1
{J},2026-11-23 15:00:00,cmp1
"""

CONVERSIONS = f"""Click ID,Conversion Date,Custom Conversion (ct),Transaction ID,Payout
{A},2026-11-20 08:05:00,lead,TX-A,10.00
{A},2026-11-20 12:00:00,sale,TX-A2,40.00
{B},2026-11-20 09:05:00,lead,,5.00
{C},2026-11-20 10:05:00,lead,TX-C,10.00
{D},2026-11-20 11:05:00,lead,TX-D,7.50
{H},2026-11-20 13:00:00,lead,TX-H,3.00
{H},2026-11-20 13:00:04,lead,TX-H,3.00
{J},2026-11-23 16:00:00,lead,TX-J,9.00
"""

# One row per bucket; the file's span is 2026-11-20 08:00 … 16:00 UTC.
NETWORK = f"""Sub ID,Transaction ID,Payout,Conversion Time
{A},TX-A,10.00,2026-11-20 08:00:00
{B},NET-B,5.00,2026-11-20 09:00:00
{C},TX-C,10.50,2026-11-20 10:00:00
{D},TX-D,7.505,2026-11-20 11:00:00
{{clickid}},NET-M,4.00,2026-11-20 12:00:00
{E[:20]},NET-E,4.00,2026-11-20 13:00:00
abc,NET-X,4.00,2026-11-20 14:00:00
{F},NET-F,4.00,2026-11-20 15:00:00
{G},NET-G,4.00,2026-11-20 16:00:00
"""

EXPECTED = {
    # A: same click and txid, 10.00 = 10.00.  B: the tracker has no txid → matched on click id; 5.00 = 5.00.
    # D: |7.505 − 7.50| = 0.005 ≤ 0.01.
    "matched": 3,
    # C: same click and txid, |10.50 − 10.00| = 0.50 > 0.01.
    "payout_mismatch": 1,
    "missing_in_tracker": {
        "total": 5,
        "by_reason": {
            "unreplaced_macro": 1,  # {clickid}
            "truncated_click_id": 1,  # E's first 20 characters; E is a stored visit
            "malformed_click_id": 1,  # abc: not UUID-shaped, not a prefix of 8+ characters
            "postback_not_received": 1,  # F: a stored visit, no stored conversion
            "unknown_click": 1,  # G: UUID-shaped, never seen
        },
    },
    # A's sale (TX-A2): A's network row took the lead (same txid). H: fired twice, one distinct
    # (click_id, ct, txid). J is 3 days after the span: outside the default window.
    "missing_in_network": 2,
    # span ± 1 day
    "window": {"start": "2026-11-19T08:00:00Z", "end": "2026-11-21T16:00:00Z"},
    "network_rows": 9,
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    """A UTC store holding the visits and conversions above."""
    s = LogStore(tmp_path / "s", timezone="UTC")
    result = s.ingest([write(tmp_path / "visits.csv", VISITS), write(tmp_path / "conversions.csv", CONVERSIONS)])
    assert not result.failures
    return s


@pytest.fixture
def network_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "network.csv", NETWORK)


def validate(summary: dict) -> None:
    """Check a summary against docs/schemas/reconcile.schema.json (and its sums)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(summary)
    missing = summary["missing_in_tracker"]
    assert missing["total"] == sum(missing["by_reason"].values())
    assert summary["network_rows"] == summary["matched"] + summary["payout_mismatch"] + missing["total"]
    json.dumps(summary)  # plain JSON types only


def test_every_bucket(store: LogStore, network_csv: Path) -> None:
    rec = reconcile(store, network_csv)
    assert isinstance(rec, Reconciliation)
    assert rec.summary == EXPECTED
    validate(rec.summary)
    assert rec.columns["click_id"] == "Sub ID"
    assert rec.columns["txid"] == "Transaction ID"

    net = rec.network
    assert net.columns[:8] == [
        "record", "click_id", "txid", "payout", "conversion_time", "status", "reason", "tracker_payout",
    ]  # fmt: skip
    assert net.schema["conversion_time"] == pl.Datetime("us", "UTC")
    assert net.get_column("record").to_list() == list(range(2, 11))  # header = record 1
    assert net.get_column("status").to_list() == [
        "matched", "matched", "payout_mismatch", "matched", *["missing_in_tracker"] * 5,
    ]  # fmt: skip
    assert net.get_column("reason").to_list() == [None] * 4 + list(REASONS)
    assert net.get_column("tracker_payout").to_list() == [10.0, 5.0, 10.0, 7.5, None, None, None, None, None]
    assert net.get_column("tracker_ct").to_list()[:4] == ["lead"] * 4
    assert net.get_column("conversion_time")[0] == datetime(2026, 11, 20, 8, tzinfo=UTC)

    missing = rec.missing_in_network
    assert missing.select("click_id", "ct", "txid").rows() == [(A, "sale", "TX-A2"), (H, "lead", "TX-H")]
    # the earliest of H's two rows
    assert missing.get_column("conversion_time").to_list()[1] == datetime(2026, 11, 20, 13, tzinfo=UTC)


def test_explicit_window_takes_in_the_late_conversion(store: LogStore, network_csv: Path) -> None:
    rec = reconcile(store, network_csv, start=date(2026, 11, 19), end=date(2026, 11, 23))
    # J (2026-11-23 16:00, the end date is inclusive) joins A's sale and H.
    assert rec.summary["missing_in_network"] == 3
    assert rec.summary["window"] == {"start": "2026-11-19T00:00:00Z", "end": "2026-11-23T23:59:59.999999Z"}
    assert rec.summary["network_rows"] == 9
    validate(rec.summary)


def test_one_bound_comes_from_the_span(store: LogStore, network_csv: Path) -> None:
    rec = reconcile(store, network_csv, end=date(2026, 11, 23))
    assert rec.summary["window"]["start"] == "2026-11-19T08:00:00Z"  # first network time − 1 day
    assert rec.summary["missing_in_network"] == 3


def test_explicit_window_leaves_out_network_rows_outside_it(store: LogStore, network_csv: Path) -> None:
    rec = reconcile(store, network_csv, start=date(2026, 11, 21), end=date(2026, 11, 21))
    # Every network row is on the 20th; the store has nothing on the 21st.
    assert rec.summary["network_rows"] == 0
    assert rec.summary["matched"] == rec.summary["missing_in_network"] == 0
    assert rec.network.height == 0
    validate(rec.summary)


def test_window_dates_are_local_to_the_zone(store: LogStore, network_csv: Path) -> None:
    rec = reconcile(store, network_csv, timezone="America/New_York", start=date(2026, 11, 20), end=date(2026, 11, 20))
    # New York is UTC−5 in November: the 20th runs 05:00Z … 05:00Z next day.
    assert rec.summary["window"] == {"start": "2026-11-20T05:00:00Z", "end": "2026-11-21T04:59:59.999999Z"}
    # Local export times are read in New York: 08:00 → 13:00Z; all nine rows fall on the 20th.
    assert rec.network.get_column("conversion_time")[0] == datetime(2026, 11, 20, 13, tzinfo=UTC)
    assert rec.summary["network_rows"] == 9


def test_start_after_end_is_a_usage_error(store: LogStore, network_csv: Path) -> None:
    with pytest.raises(UsageError, match="after"):
        reconcile(store, network_csv, start=date(2026, 11, 21), end=date(2026, 11, 20))


def test_no_click_id_column(store: LogStore, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "Offer,Payout,Date\nX,1.00,2026-11-20\n")
    with pytest.raises(InputError) as info:
        reconcile(store, path)
    message = str(info.value)
    assert "\n" not in message
    assert "bad.csv" in message
    for column in ("Offer", "Payout", "Date"):
        assert column in message


def test_click_id_column_override(store: LogStore, tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", f"Ref,Payout,Date\n{A},10.00,2026-11-20 08:00:00\n")
    rec = reconcile(store, path, click_id_column="ref")
    assert rec.summary["matched"] == 1
    with pytest.raises(UsageError, match="Nope"):
        reconcile(store, path, click_id_column="Nope")


def test_no_time_needs_a_window(store: LogStore, tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", f"clickid,amount\n{A},10.00\n")
    with pytest.raises(InputError, match=r"n\.csv"):
        reconcile(store, path)
    rec = reconcile(store, path, start=date(2026, 11, 20), end=date(2026, 11, 20))
    # No txid in the export: matched on click id; A has two conversions, the 10.00 lead wins on payout.
    assert rec.summary["matched"] == 1
    assert rec.network.get_column("tracker_ct").to_list() == ["lead"]
    assert rec.summary["missing_in_network"] == 5  # A's sale, B, C, D, H


def test_spellings_separators_and_time_formats(store: LogStore, tmp_path: Path) -> None:
    # ;-delimited, decimal comma, a network's own "Click ID" next to our "aff_sub", mixed time formats.
    text = (
        "Click ID;aff_sub;Order ID;Commission;Timestamp\n"
        f"N1;{A};TX-A;10,00;2026-11-20T03:00:00-05:00\n"  # offset wins → 08:00Z
        f"N2;{B};;5,00;1795165200\n"  # Unix seconds → 2026-11-20 09:00:00Z
        f"N3;{C};TX-C;10,00;1795168800000\n"  # Unix ms → 10:00Z
        f"N4;{D};TX-D;7,50;2026-11-20T11:00:00Z\n"
    )
    rec = reconcile(store, write(tmp_path / "n.csv", text))
    assert rec.columns["click_id"] == "aff_sub"  # it holds the store's click ids
    assert rec.columns["payout"] == "Commission"
    assert rec.summary["matched"] == 4
    assert rec.network.get_column("payout").to_list() == [10.0, 5.0, 10.0, 7.5]
    assert [t.hour for t in rec.network.get_column("conversion_time")] == [8, 9, 10, 11]


def test_matching_rules(store: LogStore, tmp_path: Path) -> None:
    text = (
        "SubID,txid,Revenue,Date,Time\n"
        f"{A},,$10.00,2026-11-20,08:00:00\n"  # no txid: click id only; the 10.00 lead (equal payout) wins
        f"{A},,$40.00,2026-11-20,12:00:00\n"  # the sale is left: matched
        f"{A},,$40.00,2026-11-20,12:00:01\n"  # the network repeats it: the tracker's ones are used up
        f"{C},TX-OTHER,10.00,2026-11-20,10:00:00\n"  # both sides have a txid and they differ: no match
        f"{B},NET-B,,2026-11-20,09:00:00\n"  # null payout against 5.00: mismatch
    )
    rec = reconcile(store, write(tmp_path / "n.csv", text))
    net = rec.network
    assert net.get_column("status").to_list() == [
        "matched", "matched", "missing_in_tracker", "missing_in_tracker", "payout_mismatch",
    ]  # fmt: skip
    assert net.get_column("tracker_txid").to_list()[:2] == ["TX-A", "TX-A2"]
    assert net.get_column("reason").to_list()[2:4] == ["postback_not_received", "postback_not_received"]
    assert net.get_column("conversion_time")[0] == datetime(2026, 11, 20, 8, tzinfo=UTC)  # Date + Time joined
    assert rec.summary["missing_in_network"] == 3  # C, D, H
    validate(rec.summary)


def test_null_payouts_on_both_sides_match(tmp_path: Path) -> None:
    s = LogStore(tmp_path / "s", timezone="UTC")
    s.ingest(write(tmp_path / "c.csv", f"Click ID,Conversion Date,Payout\n{A},2026-11-20 08:00:00,\n"))
    rec = reconcile(s, write(tmp_path / "n.csv", f"Sub ID,Payout,Date\n{A},,2026-11-20 08:00:00\n"))
    assert rec.summary["matched"] == 1


def test_export_without_payout_column_is_not_compared_on_payout(store: LogStore, tmp_path: Path) -> None:
    rec = reconcile(store, write(tmp_path / "n.csv", f"s1,Conversion Date\n{C},2026-11-20 10:00:00\n"))
    assert rec.columns["payout"] is None
    assert rec.summary["matched"] == 1


def test_xlsx_export(store: LogStore, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    rows = [line.split(",") for line in NETWORK.strip().splitlines()]
    ws.append(rows[0])
    for click_id, txid, payout, when in rows[1:]:
        ws.append([click_id, txid, float(payout), datetime.strptime(when, "%Y-%m-%d %H:%M:%S")])
    path = tmp_path / "network.xlsx"
    wb.save(path)
    rec = reconcile(store, path)
    assert rec.summary == EXPECTED
    assert rec.network.get_column("record").to_list() == list(range(2, 11))  # sheet rows


def test_store_path_is_accepted(store: LogStore, network_csv: Path) -> None:
    assert reconcile(str(store.path), network_csv).summary == EXPECTED


def test_empty_store(tmp_path: Path, network_csv: Path) -> None:
    rec = reconcile(LogStore(tmp_path / "empty", timezone="UTC"), network_csv)
    by_reason = rec.summary["missing_in_tracker"]["by_reason"]
    # Nothing known: E's prefix and "abc" are malformed; the UUID-shaped ones unknown.
    assert by_reason == {
        "unreplaced_macro": 1,
        "truncated_click_id": 0,
        "malformed_click_id": 2,
        "postback_not_received": 0,
        "unknown_click": 6,
    }
    assert rec.summary["missing_in_network"] == 0
    validate(rec.summary)


def test_sample_account_truth(tmp_path: Path) -> None:
    """The generated account's network export (truncated and macro click ids, payout changes) against its truth."""
    from cfanalytics.sample import generate

    account = generate(tmp_path / "sample", visits=2000, seed=7, days=2)
    truth = account.truth["reconcile"]
    s = LogStore(tmp_path / "s", timezone=account.truth["timezone"])
    s.ingest([account.files["visits"], account.files["conversions"]])
    rec = reconcile(s, account.files["network_export"])
    validate(rec.summary)
    assert rec.summary["network_rows"] == truth["rows"]
    for key in ("matched", "payout_mismatch", "missing_in_tracker", "missing_in_network"):
        assert rec.summary[key] == truth[key], key
