"""`cfanalytics demo`: the sample account ingested; stored and quarantined rows equal truth.json."""

from __future__ import annotations

import json

import pytest

from cfanalytics.cli import main
from tests.helpers import gap_counts_of


def test_demo_matches_the_generators_truth(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "sample"), "--json", "--no-report"]) == 0
    doc = json.loads(capsys.readouterr().out)
    truth = json.loads((tmp_path / "sample" / "exports" / "truth.json").read_text())
    assert doc["store"] == str(tmp_path / "sample" / "store")
    for kind, expected in truth["ingest"].items():
        batches = [b for b in doc["batches"] if b["kind"] == kind]
        for key in ("rows_read", "rows_stored", "already_stored", "quarantined"):
            assert sum(b[key] for b in batches) == expected[key], (kind, key)
        assert doc["rows"][kind] == expected["rows_stored"]
    assert doc["rows"]["quarantine"] == sum(e["quarantined"] for e in truth["ingest"].values())
    gaps = doc["diagnosis"]["gaps"]
    assert gap_counts_of(gaps) == truth["gaps"]
    # the money at stake, as the generator counted it
    (total,) = gaps["at_stake"]["total"]
    (expected,) = truth["at_stake"]["total"]
    assert {k: total[k] for k in ("conversions", "posted_failed", "not_posted")} == {
        k: expected[k] for k in ("conversions", "posted_failed", "not_posted")
    }
    assert total["payout"] == pytest.approx(expected["payout"], abs=1e-6)
    assert {r["traffic_source_id"]: r["conversions"] for r in gaps["at_stake"]["by_traffic_source"]} == {
        r["id"]: r["conversions"] for r in truth["at_stake"]["by_traffic_source"]
    }
    # the source with no postback configured is named in the classes per traffic source
    (nativex,) = [f for f in truth["faults"] if f["fault"] == "no_postback_configured"]
    (row,) = [r for r in gaps["by_traffic_source"] if r["traffic_source_id"] == nativex["traffic_source_id"]]
    assert (row["traffic_source_name"], row["not_posted"]) == ("NativeX", nativex["conversions"])
    # the text run rebuilds the store from scratch and names where it is
    assert main(["demo", "--dir", str(tmp_path / "sample"), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert f"store:   {(tmp_path / 'sample' / 'store').resolve()}" in out
    assert "Incidents: 4" in out
