"""The sample account's files, in the spellings the loaders must accept.

Visits as the UI's CSV, clicks as report-style gzipped NDJSON, conversions and
API postbacks as the API's JSON envelope, UI postbacks, activity and the network's
export as CSV. Every writer is deterministic: gzip carries no time stamp.

>>> _json_text({"b": 1, "a": "é"})
'{"a": "é", "b": 1}'
>>> _json_text(None)
''
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cfanalytics.sample._simulate import Simulation

__all__ = ["FILES", "TRUTH_FILE", "write", "write_truth"]

#: Output file of each role.
FILES: Final[dict[str, str]] = {
    "visits": "visits.csv",
    "clicks": "clicks.ndjson.gz",
    "conversions": "conversions.json",
    "postbacks": "postbacks.csv",
    "postbacks_api": "postbacks_api.json",
    "activity": "activity.csv",
    "network_export": "network_export.csv",
}
TRUTH_FILE: Final = "truth.json"

#: Column headers of the CSV files, as the ClickFlare UI (or the network) spells them.
# fmt: off
VISIT_HEADER: Final = (
    "Click ID", "Visit Time", "Campaign ID", "Campaign", "Traffic Source ID", "Traffic Source", "Offer ID", "Offer",
    "Lander ID", "Lander", "Affiliate Network ID", "Affiliate Network", "External ID", "IP", "Country", "City",
    "Device Type", "OS", "Browser", "User Agent", "Referrer", "Tracking Field 1", "Tracking Field 2",
)
POSTBACK_HEADER: Final = (
    "Postback ID", "Click ID", "Postback Time", "Is Error", "Error Message", "Status Code", "Postback URL",
    "Custom Conversion (ct)", "Integration ID", "Integration", "Traffic Source ID", "Campaign ID",
)
# fmt: on
ACTIVITY_HEADER: Final = ("Date", "User", "Entity Type", "Entity ID", "Entity Name", "Action", "Old Value", "New Value")
NETWORK_HEADER: Final = ("Sub ID", "Transaction ID", "Payout", "Conversion Time")


def write(sim: Simulation, out: Path) -> dict[str, Path]:
    """Write every export into ``out``; return role → path."""
    paths = {role: out / name for role, name in FILES.items()}
    _write_csv(paths["visits"], VISIT_HEADER, [r.values for r in sim.visit_rows])
    _write_clicks(sim, paths["clicks"])
    _write_conversions(sim, paths["conversions"])
    _write_postbacks(sim, paths["postbacks"], paths["postbacks_api"])
    _write_csv(
        paths["activity"],
        ACTIVITY_HEADER,
        [
            [
                sim.local(a.time),
                a.author,
                a.entity_type,
                a.entity_id,
                a.entity_name,
                a.action,
                _json_text(a.old),
                _json_text(a.new),
            ]
            for a in sim.activity
        ],
    )
    rows = [[r[h] for h in NETWORK_HEADER] for r in sim.network_rows]
    _write_csv(paths["network_export"], NETWORK_HEADER, rows)
    return paths


def _write_clicks(sim: Simulation, path: Path) -> None:
    """clicks.ndjson.gz: report camelCase keys, UTC ``Z`` times, gzip without a time stamp."""
    lines = []
    for visit, when, cta in sim.clicks:
        record = {
            "clickID": visit.click_id,
            "clickTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "campaignID": visit.campaign.id,
            "trafficSourceID": visit.source.id,
            "landerID": visit.lander.id,
            "offerID": visit.offer.id,
            "cta": cta,
            "locationCountry": visit.country,
            "deviceBrowser": visit.device[2],
            "connectionIP": visit.ip,
        }
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))


def _write_conversions(sim: Simulation, path: Path) -> None:
    """conversions.json: the API envelope; times alternate Unix seconds and local text."""
    items = []
    for i, c in enumerate(sim.conversions):
        unix, v = i % 2 == 0, c.visit
        items.append(
            {
                "EventType": c.event_type,
                "ClickID": c.click_id,
                "ConversionDate": _stamp(sim, c.time, unix=unix),
                "VisitTime": _stamp(sim, v.time, unix=unix) if v else None,
                "CampaignID": v.campaign.id if v else None,
                "TrafficSourceID": v.source.id if v else None,
                "OfferID": v.offer.id if v else None,
                "AffiliateNetworkID": v.network.id if v else None,
                "ConversionPayout": c.payout_written,
                "ConversionTransaction": c.txid,
                "Ct": c.ct,
                "Status": "approved",
            }
        )
    _write_json(path, {"items": items, "totals": {"counter": len(items)}})


def _stamp(sim: Simulation, t: datetime, *, unix: bool) -> int | str:
    """Unix seconds, or local ``YYYY-MM-DD HH:MM:SS`` (the API returns either)."""
    return int(t.timestamp()) if unix else sim.local(t)


def _write_postbacks(sim: Simulation, ui_path: Path, api_path: Path) -> None:
    """postbacks.csv (UI, all days but the last) and postbacks_api.json (API, the last day)."""
    rows, items = [], []
    integration_names = {ts.integration_id: ts.integration_name for ts in sim.account.traffic_sources}
    for p in sim.postbacks:
        if sim.in_api(p):
            items.append(
                {
                    "ClickID": p.click_id,
                    "PostbackTime": p.time.astimezone(sim.tz).isoformat(timespec="seconds"),
                    "IsError": p.is_error,
                    "ErrorMessage": p.message or None,
                    "StatusCode": p.status,
                    "PostbackUrl": p.url,
                    "Ct": p.ct,
                    "IntegrationID": p.integration_id or None,
                    "Event": p.event,
                }
            )
            continue
        shown = p.source_column
        rows.append(
            [
                p.postback_id,
                p.click_id,
                sim.local(p.time),
                p.is_error_written or ("1" if p.is_error else "0"),
                p.message,
                p.status_written,
                p.url,
                p.ct,
                p.integration_id,
                integration_names.get(p.integration_id) or "",
                p.source_id if shown else "",
                p.campaign_id if shown else "",
            ]
        )
    _write_csv(ui_path, POSTBACK_HEADER, rows)
    _write_json(api_path, {"items": items, "totals": {"counter": len(items)}})


def write_truth(out: Path, truth: dict[str, Any]) -> Path:
    """Write ``truth.json`` into ``out`` (sorted keys, two-space indent, UTF-8)."""
    path = out / TRUTH_FILE
    path.write_text(json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path


def _json_text(value: dict[str, Any] | None) -> str:
    """JSON text of an activity value; empty when there is none."""
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a UTF-8 CSV with ``\n`` line ends."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_json(path: Path, document: Any) -> None:
    """Write a JSON document (UTF-8, one space indent)."""
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
