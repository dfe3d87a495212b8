"""Postback error rates: overall and by any grouping, with names (docs/contract.md §6).

error rate = postbacks with ``is_error`` / all postbacks, in the group; null when
the group is empty.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> postback_errors(store, by=["traffic_source_id"]).columns
['traffic_source_id', 'traffic_source_name', 'postbacks', 'errors', 'error_rate']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from cfanalytics.diagnose.frames import postbacks, with_names
from cfanalytics.exceptions import UsageError
from cfanalytics.filters import LogFilter

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: Groupings :func:`postback_errors` understands.
GROUPINGS: Final = (
    "traffic_source_id",
    "integration_id",
    "campaign_id",
    "ct",
    "status_class",
    "status_code",
    "error_kind",
    "signature",
    "hour",
    "day",
    "attributed",
)


def _time_groups(lf: pl.LazyFrame, by: Sequence[str], timezone: str) -> pl.LazyFrame:
    local = pl.col("postback_time").dt.convert_time_zone(timezone)
    extra: list[pl.Expr] = []
    if "hour" in by:
        extra.append(local.dt.truncate("1h").alias("hour"))
    if "day" in by:
        extra.append(local.dt.date().alias("day"))
    return lf.with_columns(extra) if extra else lf


def postback_errors(
    store: LogStore,
    by: Sequence[str] | str | None = None,
    where: LogFilter | None = None,
    *,
    frame: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Postbacks, errors and error rate per group (sorted by errors descending, then the keys).

    ``by`` is any of :data:`GROUPINGS`; id columns get their display name beside them.
    ``hour`` and ``day`` are in the display time zone (the filter's, else the store's).
    ``frame`` lets callers pass an already enriched :func:`~cfanalytics.diagnose.frames.postbacks` frame.
    """
    keys = [by] if isinstance(by, str) else list(by or [])
    unknown = [k for k in keys if k not in GROUPINGS]
    if unknown:
        raise UsageError(f"cannot group postbacks by {', '.join(unknown)}; use {', '.join(GROUPINGS)}")
    lf = frame if frame is not None else postbacks(store, where)
    tz = (where.timezone if where else None) or store.timezone or "UTC"
    lf = _time_groups(lf, keys, tz)
    agg = [pl.len().alias("postbacks"), pl.col("is_error").sum().cast(pl.Int64).alias("errors")]
    out = (lf.group_by(keys).agg(agg) if keys else lf.select(agg)).collect()
    out = out.with_columns(
        pl.when(pl.col("postbacks") > 0).then(pl.col("errors") / pl.col("postbacks")).alias("error_rate")
    )
    if keys:
        out = out.sort(["errors", *keys], descending=[True, *([False] * len(keys))], nulls_last=True)
        out = with_names(out, store, *keys)
    return out


def postback_summary(
    store: LogStore, where: LogFilter | None = None, *, top: int = 10, frame: pl.DataFrame | None = None
) -> dict[str, Any]:
    """The ``postbacks`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5).

    ``frame`` lets callers pass the already collected ``postbacks(store, where)``.
    """
    lf = (frame if frame is not None else postbacks(store, where).collect()).lazy()
    total = postback_errors(store, frame=lf, where=where)
    n, e = int(total.item(0, "postbacks")), int(total.item(0, "errors"))
    unattributed = lf.filter(~pl.col("attributed")).select(pl.len()).collect().item()
    by_ts = postback_errors(store, ["traffic_source_id"], where, frame=lf.filter(pl.col("attributed")))
    by_int = postback_errors(store, ["integration_id"], where, frame=lf.filter(pl.col("integration_id").is_not_null()))
    kinds = (
        lf.filter(pl.col("is_error"))
        .group_by("error_kind")
        .agg(pl.len().alias("errors"))
        .collect()
        .sort(["errors", "error_kind"], descending=[True, False])
    )
    sigs = (
        lf.filter(pl.col("is_error"))
        .group_by("signature")
        .agg(pl.len().alias("errors"), pl.col("error_message").sort_by("postback_time").first().alias("example"))
        .collect()
        .sort(["errors", "signature"], descending=[True, False], nulls_last=True)
        .head(top)
    )
    from cfanalytics.diagnose.document import iso
    from cfanalytics.redaction import redact

    last = lf.select(pl.col("postback_time").max()).collect().item()
    return {
        "last_postback_time": iso(last),
        "total": n,
        "errors": e,
        "error_rate": (e / n) if n else None,
        "unattributed": int(unattributed),
        "by_traffic_source": _records(by_ts, ["traffic_source_id", "traffic_source_name"]),
        "by_integration": _records(by_int, ["integration_id", "integration_name"]),
        "by_error_kind": [{"error_kind": k, "errors": int(v)} for k, v in kinds.iter_rows()],
        "top_signatures": [
            {"signature": s or "(no message)", "errors": int(c), "example": redact(x) if x else None}
            for s, c, x in sigs.iter_rows()
        ],
    }


def _records(frame: pl.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    cols = [*keys, "postbacks", "errors", "error_rate"]
    return [dict(zip(cols, row, strict=True)) for row in frame.select(cols).iter_rows()]
