"""Postback error rates: overall and by any grouping, top signatures, the ``postbacks`` summary (pure).

error rate = postbacks with ``is_error`` / all postbacks, in the group; null when
the group is empty. The functions take enriched postbacks
(:func:`~cfanalytics.diagnose.frames.postbacks`) and never read a store.

>>> import polars as pl
>>> from datetime import UTC, datetime
>>> rows = pl.DataFrame({"traffic_source_id": ["t1", "t1", "t2"], "is_error": [True, False, False],
...     "postback_time": [datetime(2026, 11, 20, 10, tzinfo=UTC)] * 3})
>>> error_rates(rows, by="traffic_source_id", timezone="UTC").rows()
[('t1', 2, 1, 0.5), ('t2', 1, 0, 0.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import polars as pl

from cfanalytics._time import iso
from cfanalytics.diagnose.error_kinds import KIND_ACTIONS
from cfanalytics.diagnose.names import Names
from cfanalytics.exceptions import UsageError
from cfanalytics.redaction import redact

#: Groupings :func:`error_rates` understands.
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
#: Signatures the ``postbacks`` summary lists.
TOP_SIGNATURES: Final = 10

Frame = pl.DataFrame | pl.LazyFrame


def grouping(by: Sequence[str] | str | None) -> list[str]:
    """``by`` as a list of keys, checked against :data:`GROUPINGS`."""
    keys = [by] if isinstance(by, str) else list(by or [])
    unknown = [k for k in keys if k not in GROUPINGS]
    if unknown:
        raise UsageError(f"cannot group postbacks by {', '.join(unknown)}; use {', '.join(GROUPINGS)}")
    return keys


def _time_groups(rows: pl.LazyFrame, by: Sequence[str], timezone: str) -> pl.LazyFrame:
    local = pl.col("postback_time").dt.convert_time_zone(timezone)
    extra: list[pl.Expr] = []
    if "hour" in by:
        extra.append(local.dt.truncate("1h").alias("hour"))
    if "day" in by:
        extra.append(local.dt.date().alias("day"))
    return rows.with_columns(extra) if extra else rows


def error_rates(postbacks: Frame, by: Sequence[str] | str | None = None, timezone: str = "UTC") -> pl.DataFrame:
    """Postbacks, errors and error rate per group (sorted by errors descending, then the keys).

    ``by`` is any of :data:`GROUPINGS` (``hour`` and ``day`` are local to ``timezone``);
    no grouping gives one row of totals. Names are not added (:meth:`Names.add`).
    """
    keys = grouping(by)
    rows = _time_groups(postbacks.lazy(), keys, timezone)
    agg = [pl.len().alias("postbacks"), pl.col("is_error").sum().cast(pl.Int64).alias("errors")]
    out = (rows.group_by(keys).agg(agg) if keys else rows.select(agg)).collect()
    out = out.with_columns(
        pl.when(pl.col("postbacks") > 0).then(pl.col("errors") / pl.col("postbacks")).alias("error_rate")
    )
    if keys:
        out = out.sort(["errors", *keys], descending=[True, *([False] * len(keys))], nulls_last=True)
    return out


def error_kind_counts(postbacks: Frame) -> pl.DataFrame:
    """Failing postbacks per ``error_kind`` (errors descending, then kind).

    >>> error_kind_counts(pl.DataFrame({"is_error": [True, True, False], "error_kind": ["auth", "auth", None]})).rows()
    [('auth', 2)]
    """
    return (
        postbacks.lazy()
        .filter(pl.col("is_error"))
        .group_by("error_kind")
        .agg(pl.len().alias("errors"))
        .collect()
        .sort(["errors", "error_kind"], descending=[True, False])
    )


def top_signatures(postbacks: Frame, top: int = TOP_SIGNATURES) -> pl.DataFrame:
    """The ``top`` error signatures of the failing postbacks: ``signature``, ``errors`` and the earliest
    message as ``example`` (errors descending, then signature; a null signature last); with the
    earliest row's ``error_kind``, ``action`` and ``retryable`` when the postbacks carry them."""
    lf = postbacks.lazy()
    present = lf.collect_schema().names()
    meaning = [c for c in ("error_kind", "action", "retryable") if c in present]
    return (
        lf.filter(pl.col("is_error"))
        .group_by("signature")
        .agg(
            pl.len().alias("errors"),
            pl.col("error_message").sort_by("postback_time").first().alias("example"),
            *(pl.col(c).sort_by("postback_time").first() for c in meaning),
        )
        .collect()
        .sort(["errors", "signature"], descending=[True, False], nulls_last=True)
        .head(top)
    )


def postback_summary(postbacks: Frame, names: Names, *, top: int = TOP_SIGNATURES) -> dict[str, Any]:
    """The ``postbacks`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5) of enriched
    postbacks; ``names`` label traffic sources and integrations."""
    rows = postbacks.lazy()
    total = error_rates(rows)
    n, e = int(total.item(0, "postbacks")), int(total.item(0, "errors"))
    unattributed = rows.filter(~pl.col("attributed")).select(pl.len()).collect().item()
    by_source = names.add(error_rates(rows.filter(pl.col("attributed")), ["traffic_source_id"]), "traffic_source_id")
    by_integration = names.add(
        error_rates(rows.filter(pl.col("integration_id").is_not_null()), ["integration_id"]), "integration_id"
    )
    kinds = error_kind_counts(rows)
    signatures = top_signatures(rows, top)
    last = rows.select(pl.col("postback_time").max()).collect().item()
    return {
        "last_postback_time": iso(last),
        "total": n,
        "errors": e,
        "error_rate": (e / n) if n else None,
        "unattributed": int(unattributed),
        "by_traffic_source": _records(by_source, ["traffic_source_id", "traffic_source_name"]),
        "by_integration": _records(by_integration, ["integration_id", "integration_name"]),
        "by_error_kind": [
            {"error_kind": k, "errors": int(v), **_advice(k)}
            for k, v in kinds.select("error_kind", "errors").iter_rows()
        ],
        "top_signatures": [
            {
                "signature": r["signature"] or "(no message)",
                "errors": int(r["errors"]),
                "example": redact(r["example"]) if r["example"] else None,
                "error_kind": r.get("error_kind"),
                "action": r.get("action") or _advice(r.get("error_kind"))["action"],
                "retryable": r["retryable"]
                if r.get("retryable") is not None
                else _advice(r.get("error_kind"))["retryable"],
            }
            for r in signatures.iter_rows(named=True)
        ],
    }


def _advice(kind: str | None) -> dict[str, Any]:
    """What to do about an error kind, and whether a re-send later can succeed (``KIND_ACTIONS``)."""
    action, retryable, fix_owner = KIND_ACTIONS.get(kind or "other", KIND_ACTIONS["other"])
    return {"action": action, "retryable": retryable, "fix_owner": fix_owner}


def _records(frame: pl.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    cols = [*keys, "postbacks", "errors", "error_rate"]
    return [dict(zip(cols, row, strict=True)) for row in frame.select(cols).iter_rows()]
