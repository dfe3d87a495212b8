"""Postback error rates: overall and by any grouping, top signatures, the ``postbacks`` summary (pure).

error rate = postbacks with ``is_error`` / all postbacks, in the group; null when
the group is empty. The functions take enriched postbacks
(:func:`~cfanalytics.diagnose.frames.postbacks`) and never read a store.

They run on any engine: the postbacks may be a Polars frame (lazy or not) or a narwhals
frame of any backend (Polars, a Spark Connect session's). The engine filters and
groups the stored columns; only the small aggregates come back to Polars
(:func:`~cfanalytics.engines.fetch`), where names, sorting and JSON are made. Local
``hour`` and ``day`` are made in Polars too: the engine counts per UTC minute, Polars
turns those minutes into local hours or days and adds them up (right in zones of
``:30`` and ``:45`` offsets, whatever the server's own time zone).

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

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._portable import one_of
from cfanalytics._time import iso
from cfanalytics.diagnose.error_kinds import KIND_ACTIONS
from cfanalytics.diagnose.names import Names
from cfanalytics.engines import fetch
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
#: Groupings by local time (``timezone``), made in Polars.
LOCAL_TIME: Final = ("hour", "day")

#: Enriched postbacks: a Polars frame, or a narwhals frame of any backend (Polars, Spark Connect).
Frame = pl.DataFrame | pl.LazyFrame | nw.DataFrame[Any] | nw.LazyFrame[Any]

_MINUTE: Final = "__minute"
_FIRST: Final = "__first_time"
_LAST: Final = "__last_time"
_ORDER: Final = "__order"


def grouping(by: Sequence[str] | str | None) -> list[str]:
    """``by`` as a list of keys, checked against :data:`GROUPINGS`."""
    keys = [by] if isinstance(by, str) else list(by or [])
    unknown = [k for k in keys if k not in GROUPINGS]
    if unknown:
        raise UsageError(f"cannot group postbacks by {', '.join(unknown)}; use {', '.join(GROUPINGS)}")
    return keys


def _lazy(postbacks: Frame) -> nw.LazyFrame[Any]:
    """``postbacks`` as a narwhals lazy frame of its own engine."""
    if isinstance(postbacks, nw.LazyFrame):
        return postbacks
    if isinstance(postbacks, nw.DataFrame):
        return postbacks.lazy()
    if isinstance(postbacks, pl.DataFrame):
        return nw.from_native(postbacks.lazy())
    return nw.from_native(postbacks).lazy()


def _counts() -> list[nw.Expr]:
    """Postbacks and failing postbacks of a group (``is_error`` as 1 or 0: Spark sums no booleans)."""
    return [nw.len().alias("postbacks"), nw.col("is_error").cast(nw.Int64).sum().alias("errors")]


def _counted(frame: pl.DataFrame) -> pl.LazyFrame:
    """Fetched counts with the types Polars gives whatever the engine."""
    return frame.lazy().with_columns(pl.col("postbacks").cast(pl.get_index_type()), pl.col("errors").cast(pl.Int64))


def _summed(counts: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """Counts of finer groups added up into groups of ``keys`` (one row of totals without keys)."""
    sums = [pl.col("postbacks").sum(), pl.col("errors").sum()]
    return counts.group_by(keys).agg(sums) if keys else counts.select(sums)


def _rates(counts: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """``keys``, ``postbacks``, ``errors`` and ``error_rate``, sorted by errors descending then the keys."""
    out = counts.select(*keys, "postbacks", "errors").with_columns(
        pl.when(pl.col("postbacks") > 0).then(pl.col("errors") / pl.col("postbacks")).alias("error_rate")
    )
    if keys:
        out = out.sort(["errors", *keys], descending=[True, *([False] * len(keys))], nulls_last=True)
    return out


def error_rates(postbacks: Frame, by: Sequence[str] | str | None = None, timezone: str = "UTC") -> pl.DataFrame:
    """Postbacks, errors and error rate per group (sorted by errors descending, then the keys).

    ``by`` is any of :data:`GROUPINGS` (``hour`` and ``day`` are local to ``timezone``: the
    engine counts per UTC minute, Polars makes the local hours or days of those minutes;
    Polars' own frames grouped by other keys too take each row's local time at once);
    no grouping gives one row of totals. Names are not added (:meth:`Names.add`).

    >>> import polars as pl
    >>> from datetime import UTC, datetime
    >>> # 09:50Z and 10:10Z: two UTC hours, one hour of India (UTC+05:30), 15:20 and 15:40
    >>> rows = pl.LazyFrame({"is_error": [True, False],
    ...     "postback_time": [datetime(2026, 11, 20, 9, 50, tzinfo=UTC), datetime(2026, 11, 20, 10, 10, tzinfo=UTC)]})
    >>> [(h.strftime("%H:%M"), n, e) for h, n, e, _ in error_rates(rows, "hour", "Asia/Kolkata").rows()]
    [('15:00', 2, 1)]
    """
    keys = grouping(by)
    rows = _lazy(postbacks)
    local = [k for k in keys if k in LOCAL_TIME]
    stored = [k for k in keys if k not in LOCAL_TIME]
    if not local:
        counts = _counted(fetch(rows.group_by(*keys).agg(*_counts()) if keys else rows.select(*_counts())))
    elif stored and rows.implementation is nw.Implementation.POLARS:
        # in this process, a count per minute and stored key is a larger group-by than each row's local time
        at = nw.col("postback_time").dt.convert_time_zone(timezone)
        made = {"hour": at.dt.truncate("1h").alias("hour"), "day": at.dt.date().alias("day")}
        counts = _counted(fetch(rows.with_columns(made[k] for k in local).group_by(*keys).agg(*_counts())))
    else:
        counts = _summed(_local_time(_per_minute(rows, stored), local, timezone), keys)
    return _rates(counts, keys).collect()


def _per_minute(rows: nw.LazyFrame[Any], keys: Sequence[str]) -> pl.LazyFrame:
    """Counts per ``keys`` and UTC minute (a column named :data:`_MINUTE`), made by the engine, fetched."""
    minute = nw.col("postback_time").dt.truncate("1m").alias(_MINUTE)
    return _counted(fetch(rows.with_columns(minute).group_by(*keys, _MINUTE).agg(*_counts())))


def _local_time(counts: pl.LazyFrame, local: Sequence[str], timezone: str) -> pl.LazyFrame:
    """Counts per UTC minute with the ``local`` ``hour`` and ``day`` of their minute in ``timezone``.

    Every zone's offset is a whole number of minutes, so a minute's local hour and day are
    those of each of its instants.
    """
    at = pl.col(_MINUTE).dt.convert_time_zone(timezone)
    made = {"hour": at.dt.truncate("1h").alias("hour"), "day": at.dt.date().alias("day")}
    return counts.with_columns(made[k] for k in local)


def _kinds(counts: pl.DataFrame) -> pl.DataFrame:
    """Failing postbacks per ``error_kind`` of finer fetched counts, errors descending then kind."""
    return (
        counts.lazy()
        .group_by("error_kind")
        .agg(pl.col("errors").sum().cast(pl.get_index_type()))
        .sort(["errors", "error_kind"], descending=[True, False])
        .collect()
    )


def error_kind_counts(postbacks: Frame) -> pl.DataFrame:
    """Failing postbacks per ``error_kind`` (errors descending, then kind).

    >>> error_kind_counts(pl.DataFrame({"is_error": [True, True, False], "error_kind": ["auth", "auth", None]})).rows()
    [('auth', 2)]
    """
    errors = _lazy(postbacks).filter(nw.col("is_error"))
    return _kinds(fetch(errors.group_by("error_kind").agg(nw.len().alias("errors"))))


def _failing(errors: nw.LazyFrame[Any], *keys: str) -> pl.DataFrame:
    """Failing postbacks and the first failure time per group of ``keys``, fetched."""
    return fetch(errors.group_by(*keys).agg(nw.len().alias("errors"), nw.col("postback_time").min().alias(_FIRST)))


def _top(counts: pl.DataFrame, top: int) -> pl.DataFrame:
    """The ``top`` signatures of finer fetched counts (``errors`` and first time per signature and maybe
    more keys) with their first time: errors descending, then signature, a null one last."""
    return (
        counts.lazy()
        .group_by("signature")
        .agg(pl.col("errors").sum().cast(pl.get_index_type()), pl.col(_FIRST).min())
        .sort(["errors", "signature"], descending=[True, False], nulls_last=True)
        .head(top)
        .collect()
    )


def _with_examples(errors: nw.LazyFrame[Any], top: pl.DataFrame, present: Sequence[str]) -> pl.DataFrame:
    """``top`` signatures (with their first failure time) and the earliest failing postback's message
    as ``example`` (and its ``error_kind``, ``action``, ``retryable`` when ``present``).

    The earliest postback of a signature: of its first time, the one of the smallest
    ``postback_id`` (postbacks without ids: the smallest message, then meaning). The engine
    returns the failing postbacks at any of the listed first times (a few rows); Polars
    keeps each signature's own and breaks the ties among them.
    """
    meaning = [c for c in ("error_kind", "action", "retryable") if c in present]
    ids = ["postback_id"] if "postback_id" in present else []
    at_first = one_of(nw.col("postback_time"), top.get_column(_FIRST).drop_nulls().unique().sort().to_list())
    tied = fetch(
        errors.filter(at_first).select(
            "signature", nw.col("postback_time").alias(_FIRST), *ids, nw.col("error_message").alias("example"), *meaning
        )
    )
    return (
        top.lazy()
        .with_row_index(_ORDER)
        .join(tied.lazy(), on=["signature", _FIRST], how="left", nulls_equal=True)
        .sort([_ORDER, *ids, "example", *meaning], nulls_last=True)
        .unique(_ORDER, keep="first", maintain_order=True)
        .drop(_ORDER, _FIRST, *ids)
        .collect()
    )


def top_signatures(postbacks: Frame, top: int = TOP_SIGNATURES) -> pl.DataFrame:
    """The ``top`` error signatures of the failing postbacks: ``signature``, ``errors`` and the earliest
    message as ``example`` (errors descending, then signature; a null signature last); with the
    earliest row's ``error_kind``, ``action`` and ``retryable`` when the postbacks carry them.

    The earliest row of a signature is the one of the smallest ``postback_time``; among rows
    of that same time, the one of the smallest ``postback_id`` (postbacks without ids: the
    smallest message, then meaning), so that every engine picks the same row.

    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    >>> rows = pl.DataFrame({"postback_id": ["p2", "p1"], "postback_time": [at, at], "is_error": [True, True],
    ...     "signature": ["Bad <n>", "Bad <n>"], "error_message": ["Bad 2", "Bad 1"]})
    >>> top_signatures(rows).rows()
    [('Bad <n>', 2, 'Bad 1')]
    """
    rows = _lazy(postbacks)
    errors = rows.filter(nw.col("is_error"))
    return _with_examples(errors, _top(_failing(errors, "signature"), top), rows.collect_schema().names())


def postback_summary(postbacks: Frame, names: Names, *, top: int = TOP_SIGNATURES) -> dict[str, Any]:
    """The ``postbacks`` section of ``cfanalytics diagnose --json`` (docs/contract.md §5) of enriched
    postbacks; ``names`` label traffic sources and integrations.

    Three aggregates come back from the engine: postbacks, errors and last time per
    (attributed, traffic source, integration); failing postbacks and first time per
    (error kind, signature); the earliest rows of the top signatures (as :func:`top_signatures`).
    The totals and breakdowns are made of those in Polars.
    """
    rows = _lazy(postbacks)
    last = nw.col("postback_time").max().alias(_LAST)
    counts = _counted(fetch(rows.group_by("attributed", "traffic_source_id", "integration_id").agg(*_counts(), last)))
    total, unattributed, by_source, by_integration = pl.collect_all(
        [
            counts.select(pl.col("postbacks").sum(), pl.col("errors").sum(), pl.col(_LAST).max()),
            counts.filter(~pl.col("attributed")).select(pl.col("postbacks").sum()),
            _rates(_summed(counts.filter(pl.col("attributed")), ["traffic_source_id"]), ["traffic_source_id"]),
            _rates(
                _summed(counts.filter(pl.col("integration_id").is_not_null()), ["integration_id"]), ["integration_id"]
            ),
        ]
    )
    n, e = int(total.item(0, "postbacks")), int(total.item(0, "errors"))
    errors = rows.filter(nw.col("is_error"))
    failing = _failing(errors, "error_kind", "signature")
    signatures = _with_examples(errors, _top(failing, top), rows.collect_schema().names())
    return {
        "last_postback_time": iso(total.item(0, _LAST)),
        "total": n,
        "errors": e,
        "error_rate": (e / n) if n else None,
        "unattributed": int(unattributed.item()),
        "by_traffic_source": _records(
            names.add(by_source, "traffic_source_id"), ["traffic_source_id", "traffic_source_name"]
        ),
        "by_integration": _records(names.add(by_integration, "integration_id"), ["integration_id", "integration_name"]),
        "by_error_kind": [
            {"error_kind": k, "errors": int(v), **_advice(k)}
            for k, v in _kinds(failing).select("error_kind", "errors").iter_rows()
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
