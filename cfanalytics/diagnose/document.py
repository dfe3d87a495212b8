"""The whole diagnosis as one JSON-ready document (``cfanalytics diagnose --json``, docs/contract.md §5).

Times are ISO 8601 UTC with ``Z``; rates are null when the denominator is 0;
lists are sorted by errors descending, then id.

>>> import tempfile, cfanalytics as cf
>>> doc = diagnose(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))
>>> doc["postbacks"]["error_rate"], doc["incidents"]
(None, [])
"""

from __future__ import annotations

from typing import Any, Final

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._time import iso
from cfanalytics.diagnose.at_stake import AT_STAKE_GROUPINGS, at_stake_summary, lost_conversions
from cfanalytics.diagnose.error_rates import postback_summary
from cfanalytics.diagnose.frames import (
    activity,
    activity_log_until,
    diagnosis_frames,
    store_currency,
)
from cfanalytics.diagnose.gaps import GAP_BREAKDOWNS, classify, gap_breakdowns, gap_counts, orphans, with_ct_mismatch
from cfanalytics.diagnose.incidents import SCOPES, find_incidents, history_filter
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import engine_of
from cfanalytics.filters import LogFilter, StoreReader


def diagnose(
    reader: StoreReader, where: LogFilter | None = None, *, grace_minutes: float = 0, with_incidents: bool = True
) -> dict[str, Any]:
    """Postback errors, conversion gaps and incidents with their suspected change.

    Each table is read once (:func:`~cfanalytics.diagnose.frames.diagnosis_frames`), on the reader's
    engine, and one enriched postbacks frame serves every section; the aggregates run in that engine
    and only their results come to Polars. ``with_incidents=False`` leaves incidents out (``[]``).
    """
    where = where or LogFilter()
    timezone = reader.timezone
    # Incidents read the range extended back by their baseline; the other sections read the
    # filter's own range of it (time filters are row-wise).
    wide = history_filter(where, timezone) if with_incidents else where
    read = diagnosis_frames(reader, where, wide)
    names = Names.load(reader, SCOPES)  # one scan per kind
    found = (
        find_incidents(read.history, activity(reader), names, read.campaign_links, where.time_bounds(timezone))
        if with_incidents
        else None
    )
    out: list[dict[str, Any]] = []
    for incident in found.to_dicts() if found is not None else ():
        out.append(_incident_json(incident))
    lo, hi = where.time_bounds(timezone)
    engine = engine_of(reader)
    frame = _native(read.postbacks)  # Polars' own frames stay Polars (the fastest path); another engine's stay there
    summary = postback_summary(frame, names)
    keys = _native(read.conversion_keys)
    # classified once, with only the columns the counts, the breakdowns and the money at stake read
    classified = classify(_native(read.conversions), _native(read.outcomes), grace_minutes)
    present = classified.collect_schema().names()
    classified = classified.select([c for c in _GAP_COLUMNS if c in present])
    classified = _native(engine.keep(nw.from_native(classified)))  # large: spilled to disk (Polars' keep)
    gaps: dict[str, Any] = dict(gap_counts(classified, with_ct_mismatch(orphans(frame, keys), keys)))
    gaps.update(gap_breakdowns(classified, names))
    gaps["at_stake"] = _at_stake(reader, classified, names)
    return {
        "window": {"from": iso(lo), "to": iso(hi)},
        "timezone": timezone,
        "data_until": summary.pop("last_postback_time"),
        "postbacks": summary,
        "gaps": gaps,
        "incidents": out,
        "activity_log_until": iso(activity_log_until(reader)),
    }


#: Where the names of the campaigns at stake come from first (besides the activity log): the lost
#: conversions' own kinds, not a scan of every visit and click for a label (see :func:`_campaign_names`).
CAMPAIGN_NAME_KINDS: Final = ("conversions", "postbacks")

#: What the gaps section reads of the classified conversions (the rest of a conversion is not read at all).
_GAP_COLUMNS: Final = tuple(
    dict.fromkeys(
        (
            *("click_id", "_ct", "_tx", "ct", "txid", "_row_id", "conversion_time", "payout", "currency"),
            *("gap", "unknown_click", "malformed_click", *GAP_BREAKDOWNS, *AT_STAKE_GROUPINGS.values()),
        )
    )
)


def _incident_json(incident: dict[str, Any]) -> dict[str, Any]:
    """One row of :func:`~cfanalytics.diagnose.incidents.find_incidents` with ISO times; its ``suspects``,
    ``suspected_change`` and ``resolved_by`` last."""
    explained = {k: incident.pop(k) for k in ("suspects", "suspected_change", "resolved_by")}
    incident["start"], incident["end"] = iso(incident["start"]), iso(incident["end"])
    for change in (*explained["suspects"], explained["suspected_change"], explained["resolved_by"]):
        if change is not None:
            change["changed_at"] = iso(change["changed_at"])
    return {**incident, **explained}


def _native(frame: nw.LazyFrame[Any]) -> Any:
    """A Polars engine's frame as the Polars frame it is; another engine's as it is (a narwhals frame)."""
    native = frame.to_native()
    return native if isinstance(native, pl.LazyFrame) else frame


def _at_stake(reader: StoreReader, classified: Any, names: Names) -> dict[str, Any]:
    """``gaps.at_stake``: only the lost conversions are materialized."""
    lost = lost_conversions(classified)  # classify gave each its integration (that of with_integrations)
    names = names | _campaign_names(reader, lost)
    return at_stake_summary(lost, timezone=reader.timezone or "UTC", currency=store_currency(reader), names=names)


def _campaign_names(reader: StoreReader, lost: pl.DataFrame) -> Names:
    """Names of the campaigns at stake, as their conversions and postbacks (and the activity log) say; every
    kind, visits and clicks too, is read only when one of them is named by none of these."""
    named = Names.load(reader, ["campaign"], kinds=CAMPAIGN_NAME_KINDS)
    wanted = set(lost.get_column("campaign_id").drop_nulls().to_list()) if "campaign_id" in lost.columns else set()
    return Names.load(reader, ["campaign"]) if wanted - named.lookup("campaign_id").keys() else named
