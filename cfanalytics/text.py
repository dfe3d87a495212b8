"""Plain-text rendering of diagnoses for terminals and log files (no colors, no markup).

Every string that came from data goes through :func:`cfanalytics.redaction`.

>>> print(rate(3, 4), rate(0, 0))
75.0% n/a
"""

from __future__ import annotations

from typing import Any

from cfanalytics.redaction import redact


def rate(errors: int, total: int) -> str:
    """``errors / total`` as a percentage, ``n/a`` when total is 0."""
    return f"{errors / total:.1%}" if total else "n/a"


def _label(name: str | None, ident: str | None) -> str:
    if name and ident:
        return f"{redact(name)} ({ident})"
    return redact(name or ident or "(none)") or "(none)"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return ["  " + fmt.format(*header), *("  " + fmt.format(*r) for r in rows)]


def _wait(retryable: bool | None) -> str:
    """Whether waiting helps, in words."""
    return "n/a" if retryable is None else ("may succeed" if retryable else "will fail again")


def _rates_table(records: list[dict[str, Any]], entity: str) -> list[str]:
    """Postbacks, errors and rate per traffic source or integration (``entity``), labelled by name and id."""
    rows = [
        [
            _label(r[f"{entity}_name"], r[f"{entity}_id"]),
            str(r["postbacks"]),
            str(r["errors"]),
            rate(r["errors"], r["postbacks"]),
        ]
        for r in records
    ]
    return _table(rows, [entity.replace("_", " "), "postbacks", "errors", "rate"])


_GAP_COLUMNS = (
    ("conversions", "conversions"),
    ("posted_ok", "posted ok"),
    ("posted_failed", "failed"),
    ("not_posted", "not posted"),
    ("pending", "pending"),
)
#: Suspects shown per incident (the JSON has them all).
SHOWN_SUSPECTS = 3


def _gaps_table(records: list[dict[str, Any]], entity: str) -> list[str]:
    """Gap classes per traffic source or integration (``entity``); a null id is "no traffic source found" or
    "no integration"."""
    none = "(no traffic source found)" if entity == "traffic_source" else "(no integration)"
    rows = [
        [
            _label(r[f"{entity}_name"], r[f"{entity}_id"]) if r[f"{entity}_id"] is not None else none,
            *(str(r[key]) for key, _ in _GAP_COLUMNS),
        ]
        for r in records
    ]
    return _table(rows, [entity.replace("_", " "), *(title for _, title in _GAP_COLUMNS)])


def _change(change: dict[str, Any]) -> str:
    """One activity row: when, who, what."""
    return (
        f"{change['changed_at']} {redact(change['author'])} {change['action']} "
        f"{change['entity_type']} {_label(change['entity_name'], change['entity_id'])}"
    )


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _mix(before: str | None, after: str | None) -> str:
    """The most frequent error kind before → after a change, when it moved."""
    if after is None or before == after:
        return ""
    return f", mostly {before} → {after}" if before else f", mostly {after} after"


def _suspect(s: dict[str, Any]) -> list[str]:
    """A ranked suspect and its evidence, on two lines."""
    fields = "; ".join(
        f"{redact(f['field'])} {redact(f['old']) or '∅'} → {redact(f['new']) or '∅'}" for f in s["fields"]
    )
    kind = s["family"] + (f" {s['direction']}" if s.get("direction") else "")
    verdict = "explains it" if s["explains"] else "does not explain it"
    after = []
    if s["volume_changed"]:
        after.append(f"volume {s['postbacks_per_hour_before']:g} → {s['postbacks_per_hour_after']:g}/h")
    if s["error_mix_changed"]:
        after.append(
            f"error rate {_ratio(s['error_rate_before'])} → {_ratio(s['error_rate_after'])}"
            + _mix(s.get("top_error_kind_before"), s.get("top_error_kind_after"))
        )
    return [
        f"        {s['rank']}. {s['minutes_before']:g} min before: {_change(s)} ({kind} change; {verdict})",
        f"           {fields or 'no field changed'}; after it: {', '.join(after) or 'no change of volume or errors'}",
    ]


def _explanation(incident: dict[str, Any]) -> list[str]:
    """The incident's suspected change, what resolved it and its top suspects."""
    change, fix = incident["suspected_change"], incident.get("resolved_by")
    suspects = incident.get("suspects") or []
    none = "none of the changes before explains it" if suspects else "no change found"
    lines = [f"      suspected change: {_change(change) if change else none}"]
    if fix:
        lines.append(f"      resolved by: {_change(fix)} (error rate after: {_ratio(fix.get('error_rate_after'))})")
    if suspects:
        more = f" (top {SHOWN_SUSPECTS} of {len(suspects)})" if len(suspects) > SHOWN_SUSPECTS else ""
        lines.append(f"      suspects{more}:")
        for s in suspects[:SHOWN_SUSPECTS]:
            lines += _suspect(s)
    return lines


def money(payout: float, currency: str | None) -> str:
    """An amount with its currency (none when the conversions carry none).

    >>> money(1234.5, "USD"), money(3, None)
    ('1,234.50 USD', '3.00')
    """
    return f"{payout:,.2f} {currency}" if currency else f"{payout:,.2f}"


def _at_stake_lines(at_stake: dict[str, Any] | None) -> list[str]:
    """The money at stake: totals per currency, then per traffic source and integration (top 10 each)."""
    if not at_stake:
        return []
    total = at_stake.get("total") or []
    if not total:
        return ["  at stake: nothing (every conversion reached its traffic source or is pending)"]
    sums = "; ".join(
        f"{money(r['payout'], r['currency']) if r['currency'] else money(r['payout'], None) + ' (no currency)'} "
        f"in {r['conversions']} conversions "
        f"({r['posted_failed']} failed, {r['not_posted']} not posted)"
        for r in total
    )
    lines = [f"  at stake (never reached the traffic source, duplicates aside): {sums}"]
    for section, entity in (("by_traffic_source", "traffic_source"), ("by_integration", "integration")):
        records = at_stake.get(section) or []
        if entity == "integration" and all(r.get("integration_id") is None for r in records):
            continue
        rows = [
            [
                _label(r.get(f"{entity}_name"), r.get(f"{entity}_id"))
                if r.get(f"{entity}_id") is not None
                else ("(no integration: S2S or never posted)" if entity == "integration" else "(none)"),
                str(r["conversions"]),
                money(r["payout"], r["currency"]),
            ]
            for r in records[:10]
        ]
        more = [f"  … and {len(records) - 10} more"] if len(records) > 10 else []
        lines += ["", f"At stake by {entity.replace('_', ' ')}:"]
        lines += [*_table(rows, [entity.replace("_", " "), "conversions", "payout"]), *more]
    return lines


def diagnosis_text(doc: dict[str, Any]) -> str:
    """The ``cfanalytics diagnose`` document as readable text."""
    postbacks, gaps = doc["postbacks"], doc["gaps"]
    window = doc.get("window") or {}
    lines = [
        f"Postbacks {window.get('from') or 'start'} → {window.get('to') or 'end'} ({doc.get('timezone')})",
        f"  {postbacks['total']} sent, {postbacks['errors']} failed ({rate(postbacks['errors'], postbacks['total'])}); "
        f"{postbacks['unattributed']} with no traffic source found",
        "",
        "By traffic source:",
        *_rates_table(postbacks["by_traffic_source"], "traffic_source"),
    ]
    if postbacks["by_integration"]:
        lines += ["", "By integration:", *_rates_table(postbacks["by_integration"], "integration")]
    if postbacks["by_error_kind"]:
        lines += [
            "",
            "Errors by kind:",
            *_table(
                [[r["error_kind"], str(r["errors"]), _wait(r.get("retryable"))] for r in postbacks["by_error_kind"]],
                ["kind", "errors", "a re-send later"],
            ),
        ]
        lines += [f"  {r['error_kind']}: {r['action']}" for r in postbacks["by_error_kind"] if r.get("action")]
    if postbacks["top_signatures"]:
        lines += ["", "Top errors:"]
        for s in postbacks["top_signatures"][:5]:
            lines.append(f"  {s['errors']:>6}  {(redact(s['signature']) or '')[:110]}")
            if s.get("action"):
                lines.append(f"          → {s['action']} ({_wait(s.get('retryable'))})")
    lines += [
        "",
        f"Conversions: {gaps['conversions']} — posted ok {gaps['posted_ok']}, failed {gaps['posted_failed']}, "
        f"not posted {gaps['not_posted']}, pending {gaps['pending']}",
        f"  duplicates {gaps['duplicate_conversions']}, unknown clicks {gaps['unknown_click']} "
        f"({gaps['unknown_click_malformed']} malformed); orphan postbacks {gaps['orphan_postbacks']} "
        f"({gaps['ct_mismatch']} with another ct)",
        *_at_stake_lines(gaps.get("at_stake")),
    ]
    for key, entity in (("by_traffic_source", "traffic_source"), ("by_integration", "integration")):
        if gaps.get(key):
            lines += ["", f"Conversions by {entity.replace('_', ' ')}:", *_gaps_table(gaps[key], entity)]
    lines.append("")
    incidents = doc["incidents"]
    lines.append(f"Incidents: {len(incidents)}" if incidents else "Incidents: none")
    for incident in incidents:
        lines.append(
            f"  {incident['incident_id']}  {incident['scope']} {_label(incident['name'], incident['id'])}: "
            f"{incident['start']} → {incident['end']}, {incident['errors']}/{incident['postbacks']} failed "
            f"({rate(incident['errors'], incident['postbacks'])} vs "
            f"{incident['error_rate_before']:.1%} before), mostly {incident['top_error_kind']}"
        )
        lines += _explanation(incident)
    until = doc.get("activity_log_until")
    if until is None:
        lines += ["", "Activity log: none loaded — changes cannot be matched to incidents."]
    elif doc.get("data_until") and until < doc["data_until"]:
        lines += [
            "",
            f"Warning: the activity log reaches only {until}; postbacks go on until {doc['data_until']}. "
            "Changes after that are not seen (export the activity log and ingest it).",
        ]
    else:
        lines += ["", f"Activity log: loaded until {until}."]
    return "\n".join(lines)


def reconcile_text(summary: dict[str, Any]) -> str:
    """The ``cfanalytics reconcile`` summary as readable text."""
    missing = summary["missing_in_tracker"]
    by_reason = ", ".join(f"{k} {v}" for k, v in missing["by_reason"].items() if v) or "none"
    window = summary.get("window") or {}
    return "\n".join(
        [
            f"Network export vs tracker ({window.get('start')} → {window.get('end')})",
            f"  matched {summary['matched']}, payout mismatch {summary['payout_mismatch']}",
            f"  missing in tracker {missing['total']}: {by_reason}",
            f"  missing in network {summary['missing_in_network']}",
        ]
    )
