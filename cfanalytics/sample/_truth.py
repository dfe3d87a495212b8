"""``truth.json``: what was injected, and what a correct ingest and diagnosis must find.

Computed from the simulated records with code of its own (nothing else of the
package is used), so the tests can hold the loaders and diagnostics to it.

>>> _detectable({"hours": [{"postbacks": 12, "errors": 6}, {"postbacks": 10, "errors": 3}]})
False
>>> _z(datetime(2026, 11, 16, 5, tzinfo=UTC))
'2026-11-16T05:00:00Z'
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cfanalytics.sample._records import (
    ALREADY_STORED,
    MACRO_RE,
    STORED,
    UUID_RE,
    Activity,
    Conversion,
    Fault,
    Postback,
    Visit,
)
from cfanalytics.sample._write import FILES

if TYPE_CHECKING:
    from cfanalytics.sample._simulate import Simulation

__all__ = ["truth"]


def truth(sim: Simulation, *, seed: int, start: str, timezone: str) -> dict[str, Any]:
    """What was injected and what a correct ingest and diagnosis must find."""
    stored_visits = {v.click_id: v for v in sim.visits} | {v.click_id: v for v in sim.junk_visits}
    conversions = [c for c in sim.conversions if c.fate == STORED]
    postbacks = [p for p in sim.postbacks if p.fate == STORED]
    return {
        "seed": seed,
        "visits_param": sim.n_visits,
        "timezone": timezone,
        "start": start,
        "days": sim.days,
        "window": {"start": _z(sim.window_start), "end": _z(sim.window_end)},
        "files": dict(FILES),
        "ingest": _ingest_truth(sim),
        "incidents": _incident_truth(sim, postbacks),
        "faults": _fault_truth(sim, conversions, postbacks),
        "gaps": _gaps(conversions, postbacks, set(stored_visits)),
        "at_stake": _at_stake(conversions, postbacks, timezone),
        "postbacks": _postback_truth(sim, postbacks, stored_visits, conversions),
        "reconcile": _reconcile_truth(sim, conversions, set(stored_visits)),
        "entities": _entity_truth(sim),
    }


def _ingest_truth(sim: Simulation) -> dict[str, Any]:
    """What a correct ingest of each kind reports."""
    return {
        "visits": _ingest_counts((r.fate, r.flags) for r in sim.visit_rows),
        "clicks": _ingest_counts((STORED, ()) for _ in sim.clicks),
        "conversions": _ingest_counts((c.fate, c.flags) for c in sim.conversions),
        "postbacks": _ingest_counts((p.fate, p.flags) for p in sim.postbacks),
        "activity": _ingest_counts((STORED, ()) for _ in sim.activity),
    }


def _incident_truth(sim: Simulation, postbacks: list[Postback]) -> list[dict[str, Any]]:
    """Faults that are incidents by the default rule: every hour of them has n ≥ 10 and mostly errors."""
    incidents = [i for f in sim.faults if (i := _incident(f, postbacks)) and _detectable(i)]
    return sorted(incidents, key=lambda i: (i["start"], i["id"]))


def _incident(f: Fault, postbacks: list[Postback]) -> dict[str, Any] | None:
    """The incident ``f`` caused: its failing postbacks, hour by hour, and the change behind it."""
    capi = f.source.integration_id is not None
    in_scope = [p for p in postbacks if p.source_id == f.source.id]
    failing = [p for p in in_scope if p.is_error and f.begin <= p.time < f.end]
    if not failing:
        return None
    first, last = failing[0].time, failing[-1].time
    hours = []
    bucket = first.replace(minute=0, second=0)
    while bucket <= last:
        n = [p for p in in_scope if bucket <= p.time < bucket + timedelta(hours=1)]
        hours.append({"hour": _z(bucket), "postbacks": len(n), "errors": sum(p.is_error for p in n)})
        bucket += timedelta(hours=1)
    return {
        "scope": "integration" if capi else "traffic_source",
        "id": f.source.integration_id if capi else f.source.id,
        "name": f.source.integration_name if capi else f.source.name,
        "traffic_source_id": f.source.id,
        "fault": f.name,
        "top_error_kind": f.error_kind,
        "start": _z(first),
        "end": _z(last),
        "postbacks": sum(h["postbacks"] for h in hours),
        "errors": sum(h["errors"] for h in hours),
        "hours": hours,
        "suspected_change": _change(f.cause),
        "resolved_by": _change(f.fix),
        "decoys": [_change(d) for d in f.decoys],
    }


def _change(edit: Activity | None) -> dict[str, Any] | None:
    """An activity row as the diagnosis names it (``suspected_change``, ``resolved_by``)."""
    if edit is None:
        return None
    return {
        "changed_at": _z(edit.time),
        "author": edit.author,
        "entity_type": edit.entity_type.lower().replace(" ", "_"),
        "entity_id": edit.entity_id,
        "entity_name": edit.entity_name,
        "action": edit.action.lower(),
    }


def _fault_truth(sim: Simulation, conversions: list[Conversion], postbacks: list[Postback]) -> list[dict[str, Any]]:
    """Every injected fault, the incidents and the ones that are not."""
    faults: list[dict[str, Any]] = []
    for f in sim.faults:
        incident = _incident(f, postbacks)
        faults.append(
            {
                "fault": f.name,
                "traffic_source_id": f.source.id,
                "incident": incident is not None and _detectable(incident),
                "failing_from": _z(f.begin),
                "failing_until": _z(f.end),
                "share_failing": f.fail_share,
                "failed_postbacks": 0
                if incident is None
                else len(
                    [p for p in postbacks if p.source_id == f.source.id and p.is_error and f.begin <= p.time < f.end]
                ),
                "traffic_push": {"start": _z(f.push[0]), "end": _z(f.push[1])},
                "fixed_by": None if f.fix is None else {"changed_at": _z(f.fix.time), "author": f.fix.author},
            }
        )
    google = sim.account.source("Google Ads")
    nativex = sim.account.source("NativeX")
    stored = [*sim.visits, *sim.junk_visits]
    missing = [v for v in stored if v.source.id == google.id and not v.external_id]
    faults.append(
        {
            "fault": "missing_external_id",
            "traffic_source_id": google.id,
            "incident": False,
            "visits": len(missing),
            "error_kind": "missing_click_id",
            "postbacks_failed": sum(p.is_error and "UNPARSEABLE_GCLID" in p.message for p in postbacks),
        }
    )
    faults.append(
        {
            "fault": "no_postback_configured",
            "traffic_source_id": nativex.id,
            "incident": False,
            "conversions": sum(c.source_id == nativex.id for c in conversions),
        }
    )
    faults.append({"fault": "double_fired_conversions", "incident": False, "click_ids": sim.double_fired})
    return faults


def _postback_truth(
    sim: Simulation, postbacks: list[Postback], visits: dict[str, Visit], conversions: list[Conversion]
) -> dict[str, Any]:
    """Postback totals by traffic source (own column, else visit, else conversion) and integration."""
    by_conversion: dict[str, str] = {}
    for c in conversions:
        if c.source_id:
            by_conversion.setdefault(c.click_id, c.source_id)
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    by_integration: dict[str, Counter[str]] = defaultdict(Counter)
    unattributed = 0
    for p in postbacks:
        own = p.source_id if p.source_column and not sim.in_api(p) else ""
        visit = visits.get(p.click_id)
        source = own or (visit.source.id if visit else "") or by_conversion.get(p.click_id, "")
        if source:
            by_source[source].update(postbacks=1, errors=int(p.is_error))
        else:
            unattributed += 1
        if p.integration_id:
            by_integration[p.integration_id].update(postbacks=1, errors=int(p.is_error))
    return {
        "total": len(postbacks),
        "errors": sum(p.is_error for p in postbacks),
        "unattributed": unattributed,
        "by_traffic_source": {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
        "by_integration": {k: dict(sorted(v.items())) for k, v in sorted(by_integration.items())},
    }


def _reconcile_truth(sim: Simulation, conversions: list[Conversion], visit_ids: set[str]) -> dict[str, Any]:
    """The network export against stored conversions (docs/contract.md §5 reconcile)."""
    times = [_parse_local(r["Conversion Time"], sim.tz) for r in sim.network_rows]
    lo, hi = min(times) - timedelta(days=1), max(times) + timedelta(days=1)
    tracker: dict[tuple[str, str, str], Conversion] = {}
    for c in conversions:
        if lo <= c.time <= hi:
            tracker.setdefault((c.click_id, c.ct, c.txid), c)
    by_click: dict[str, list[tuple[tuple[str, str, str], Conversion]]] = defaultdict(list)
    for key, c in tracker.items():
        by_click[c.click_id].append((key, c))
    matched = mismatched = 0
    reasons: Counter[str] = Counter()
    hit: set[tuple[str, str, str]] = set()
    for row in sim.network_rows:
        sub, txid = row["Sub ID"], row["Transaction ID"]
        found = [(k, c) for k, c in by_click.get(sub, []) if not (txid and c.txid) or c.txid == txid]
        if found:
            key, c = found[0]
            hit.add(key)
            same = c.payout is not None and abs(c.payout - float(row["Payout"])) <= 0.01
            matched, mismatched = matched + same, mismatched + (not same)
        elif MACRO_RE.search(sub):
            reasons["unreplaced_macro"] += 1
        elif any(v != sub and v.startswith(sub) for v in visit_ids):
            reasons["truncated_click_id"] += 1
        elif not UUID_RE.match(sub):
            reasons["malformed_click_id"] += 1
        elif sub in visit_ids:
            reasons["postback_not_received"] += 1
        else:
            reasons["unknown_click"] += 1
    network = sim.account.networks[0]
    names = (
        "unreplaced_macro",
        "truncated_click_id",
        "malformed_click_id",
        "postback_not_received",
        "unknown_click",
    )
    return {
        "network_id": network.id,
        "network_name": network.name,
        "conversion_time_zone": str(sim.tz),
        "rows": len(sim.network_rows),
        "matched": matched,
        "payout_mismatch": mismatched,
        "missing_in_tracker": {"total": sum(reasons.values()), "by_reason": {n: reasons[n] for n in names}},
        "missing_in_network": sum(key not in hit for key in tracker),
        "missing_in_network_same_network": sum(
            key not in hit and c.network_id == network.id for key, c in tracker.items()
        ),
        "note": "rows = matched + payout_mismatch + missing_in_tracker.total; missing_in_network counts every "
        "distinct stored (click_id, ct, txid) in the file's span ± 1 day, "
        "missing_in_network_same_network only this network's",
    }


def _entity_truth(sim: Simulation) -> dict[str, Any]:
    """The account's entities."""
    acc = sim.account
    return {
        "traffic_sources": [
            {"id": ts.id, "name": ts.name, "mode": ts.mode, "integration_id": ts.integration_id}
            for ts in acc.traffic_sources
        ],
        "integrations": [
            {"id": ts.integration_id, "name": ts.integration_name, "traffic_source_id": ts.id}
            for ts in acc.traffic_sources
            if ts.integration_id
        ],
        "campaigns": [{"id": c.id, "name": c.name, "traffic_source_id": c.traffic_source_id} for c in acc.campaigns],
        "offers": [
            {
                "id": o.id,
                "name": o.name,
                "affiliate_network_id": o.affiliate_network_id,
                "steps": [{"ct": ct, "payout": payout} for ct, payout in o.steps],
            }
            for o in acc.offers
        ],
        "landers": [{"id": lp.id, "name": lp.name} for lp in acc.landers],
        "affiliate_networks": [{"id": n.id, "name": n.name} for n in acc.networks],
    }


def _gaps(conversions: list[Conversion], postbacks: list[Postback], visit_ids: set[str]) -> dict[str, int]:
    """Conversion gaps of docs/contract.md §6 with grace 0, over stored rows."""

    def norm(v: str) -> str | None:
        """``""`` is null."""
        return v or None

    outcome: dict[tuple[str, str | None], bool] = {}  # (click_id, ct) → some postback succeeded
    for p in postbacks:
        key = (p.click_id, norm(p.ct))
        outcome[key] = outcome.get(key, False) or not p.is_error
    counts = Counter[str]()
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in conversions:
        key = (c.click_id, norm(c.ct))
        counts["posted_ok" if outcome.get(key) else "posted_failed" if key in outcome else "not_posted"] += 1
        dup_key = (c.click_id, norm(c.ct), norm(c.txid))
        counts["duplicate_conversions"] += dup_key in seen
        seen.add(dup_key)
        if c.click_id not in visit_ids:
            counts["unknown_click"] += 1
            counts["unknown_click_malformed"] += bool(MACRO_RE.search(c.click_id) or not UUID_RE.match(c.click_id))
    converted = {(c.click_id, norm(c.ct)) for c in conversions}
    converted_clicks = {c.click_id for c in conversions}
    for p in postbacks:
        if (p.click_id, norm(p.ct)) not in converted:
            counts["orphan_postbacks"] += 1
            counts["ct_mismatch"] += p.click_id in converted_clicks
    names = (
        "posted_ok",
        "posted_failed",
        "not_posted",
        "pending",
        "orphan_postbacks",
        "ct_mismatch",
        "duplicate_conversions",
        "unknown_click",
        "unknown_click_malformed",
    )
    return {"conversions": len(conversions)} | {n: counts[n] for n in names}


def _at_stake(conversions: list[Conversion], postbacks: list[Postback], timezone: str) -> dict[str, Any]:
    """Money at stake with grace 0: the first of each (click id, ct, txid) whose postbacks all failed or
    that has none; count and payout (unparsable = 0) in total, per traffic source, integration (that of
    its latest postback naming one), campaign and local day. The sample's conversions carry no currency."""

    def norm(v: str) -> str | None:
        return v or None

    ok: dict[tuple[str, str | None], bool] = {}
    integration: dict[tuple[str, str | None], tuple[datetime, str]] = {}
    for p in postbacks:
        key = (p.click_id, norm(p.ct))
        ok[key] = ok.get(key, False) or not p.is_error
        if p.integration_id and (key not in integration or integration[key] <= (p.time, p.integration_id)):
            integration[key] = (p.time, p.integration_id)
    zone = ZoneInfo(timezone)
    groups: dict[str, dict[str | None, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0]))
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in sorted(conversions, key=lambda c: c.time):
        key, dup_key = (c.click_id, norm(c.ct)), (c.click_id, norm(c.ct), norm(c.txid))
        if dup_key in seen or ok.get(key):
            seen.add(dup_key)
            continue
        seen.add(dup_key)
        failed = key in ok
        for group, value in (
            ("total", None),
            ("by_traffic_source", c.source_id),
            ("by_integration", integration[key][1] if key in integration else None),
            ("by_campaign", c.visit.campaign.id if c.visit else None),
            ("by_day", c.time.astimezone(zone).date().isoformat()),
        ):
            row = groups[group][value]
            row[0] += 1
            row[1 if failed else 2] += 1
            row[3] += c.payout or 0.0

    def rows(group: str) -> list[dict[str, Any]]:
        return [
            {"id": value, "conversions": n, "posted_failed": f, "not_posted": np_, "payout": round(pay, 6)}
            for value, (n, f, np_, pay) in sorted(groups[group].items(), key=lambda kv: (-kv[1][3], str(kv[0])))
        ]

    return {
        "currency": None,
        "total": [{k: v for k, v in r.items() if k != "id"} for r in rows("total")],
        **{group: rows(group) for group in ("by_traffic_source", "by_integration", "by_campaign", "by_day")},
    }


def _detectable(incident: dict[str, Any]) -> bool:
    """Every hour of the incident has enough postbacks (n ≥ 10) and mostly errors for the default rule."""
    return all(h["postbacks"] >= 10 and h["errors"] >= 0.4 * h["postbacks"] for h in incident["hours"])


def _ingest_counts(records: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    """Ingest counts of one kind from each record's (fate, flags)."""
    fates: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for fate, row_flags in records:
        fates[fate] += 1
        if fate == STORED:
            flags.update(row_flags)
    quarantined = {k: v for k, v in sorted(fates.items()) if k not in (STORED, ALREADY_STORED)}
    return {
        "rows_read": sum(fates.values()),
        "rows_stored": fates[STORED],
        "already_stored": fates[ALREADY_STORED],
        "quarantined": sum(quarantined.values()),
        "quarantined_by_reason": quarantined,
        "flagged_by_flag": dict(sorted(flags.items())),
    }


def _z(t: datetime) -> str:
    """ISO 8601 UTC with ``Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_local(text: str, tz: ZoneInfo) -> datetime:
    """A local ``YYYY-MM-DD HH:MM:SS`` as UTC."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).astimezone(UTC)
