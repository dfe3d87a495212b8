"""The whole diagnosis as one JSON-ready document (``cfanalytics diagnose --json``, docs/contract.md §5).

Times are ISO 8601 UTC with ``Z``; rates are null when the denominator is 0;
lists are sorted by errors descending, then id.

>>> import tempfile, cfanalytics as cf
>>> doc = diagnose(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))
>>> doc["postbacks"]["error_rate"], doc["incidents"]
(None, [])
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from cfanalytics.diagnose.error_rates import postback_summary
from cfanalytics.diagnose.frames import enrich_postbacks, postback_rows, visit_lookup
from cfanalytics.diagnose.gaps import conversion_rows, gap_summary
from cfanalytics.diagnose.incidents import activity_log_until, history_filter, incidents
from cfanalytics.filters import LogFilter

if TYPE_CHECKING:
    from cfanalytics.store import LogStore


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with ``Z`` (microseconds only when present)."""
    if value is None:
        return None
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def diagnose(
    store: LogStore, where: LogFilter | None = None, *, grace_minutes: float = 0, with_incidents: bool = True
) -> dict[str, Any]:
    """Postback errors, conversion gaps and incidents with their suspected change.

    Each table is read once: the visits of the postbacks' and conversions' click ids
    (:func:`~cfanalytics.diagnose.frames.visit_lookup`) and one enriched postbacks frame
    serve every section. ``with_incidents=False`` leaves incidents out (``[]``).
    """
    flt = where or LogFilter()
    # Incidents read the range extended back by their baseline; the other sections read the
    # filter's own range of it (time filters are row-wise).
    wide = history_filter(store, flt) if with_incidents else flt
    rows = postback_rows(store, wide).collect()
    unattributed = rows.lazy().filter(pl.col("traffic_source_id").is_null() | pl.col("campaign_id").is_null())
    keys = pl.concat([unattributed.select("click_id"), conversion_rows(store, flt).select("click_id")])
    visits = visit_lookup(store, keys)
    history = enrich_postbacks(store, rows.lazy(), wide, visits=visits).collect()
    in_range = LogFilter(start=flt.start, end=flt.end, timezone=flt.timezone)
    frame = in_range.apply(history.lazy(), "postbacks", timezone=store.timezone).collect()
    found = incidents(store, flt, frame=history) if with_incidents else None
    out: list[dict[str, Any]] = []
    for inc in found.to_dicts() if found is not None else ():
        change = inc.pop("suspected_change")
        if change is not None:
            change["changed_at"] = iso(change["changed_at"])
        inc["start"], inc["end"] = iso(inc["start"]), iso(inc["end"])
        inc["suspected_change"] = change
        out.append(inc)
    until = activity_log_until(store)
    lo, hi = flt.time_bounds(store.timezone)
    pb = postback_summary(store, flt, frame=frame)
    return {
        "window": {"from": iso(lo), "to": iso(hi)},
        "timezone": store.timezone,
        "data_until": pb.pop("last_postback_time"),
        "postbacks": pb,
        "gaps": gap_summary(store, flt, grace_minutes=grace_minutes, postbacks_frame=frame, visits=visits),
        "incidents": out,
        "activity_log_until": iso(until),
    }
