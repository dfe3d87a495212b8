"""Reconcile an affiliate network's conversion export with the tracker's conversions (docs/contract.md §5).

The network's export (CSV or xlsx, also any other format the readers take; any
column spelling) lists the conversions the network paid for; the store holds the
conversions the tracker received. Each network row ends in exactly one status:

- ``matched`` — a tracker conversion was found and the payouts agree within 0.01;
- ``payout_mismatch`` — a tracker conversion was found, the payouts differ;
- ``missing_in_tracker`` — none was found, with the first ``reason`` that applies:
  ``unreplaced_macro`` (the click id is a ``{token}``, ``[TOKEN]`` or ``%7B…%7D``),
  ``truncated_click_id`` (a strict prefix, 8 characters or more, of a click id known
  from stored visits or conversions), ``malformed_click_id`` (not UUID-shaped; an
  empty click id too), ``postback_not_received`` (a stored visit, but no conversion
  matched) and ``unknown_click`` (everything else).

``missing_in_network`` counts the distinct tracker conversions
``(click_id, ct, txid)`` of the window that no network row matched.

Matching rules:

- **Columns** (by name, ignoring case and punctuation): click id ``Sub ID``, ``sub1``,
  ``s1``, ``aff_sub``, ``Click ID``, ``aff_click_id``, ``cid``, ``tid`` … (when several
  are present, the one holding most click ids known to the store; ``click_id_column``
  overrides); transaction id ``Transaction ID``, ``txid``, ``Order ID``,
  ``Conversion ID`` …; payout ``Payout``, ``Revenue``, ``Amount``, ``Commission`` …;
  time ``Conversion Time``, ``Conversion Date``, ``Timestamp``, ``Created``, ``Date``,
  ``Time`` … Only the click id is required.
- **Window.** The export's conversion-time span ± 1 day (closed interval), unless
  ``start`` / ``end`` (local dates in the zone, both inclusive) are given; a bound not
  given comes from the span. Tracker conversions are those of the window; with an
  explicit window, network rows timed outside it are left out (rows without a readable
  time are always kept).
- **Keys.** Where both sides have a transaction id the pair must agree on
  ``(click_id, txid)``; otherwise on ``click_id`` alone. Each tracker conversion
  (one per distinct ``(click_id, ct, txid)``; the earliest row of duplicates) is
  matched at most once.
- **Greedy order.** Network rows are taken in time order (rows without a time last,
  then by record). First every row with a transaction id takes an exact
  ``(click_id, txid)`` partner; then the rows still open take a same-click conversion
  where one side lacks a txid. Among candidates the row prefers an equal payout, then
  the conversion closest in time, then the earliest. A network row repeated beyond
  the tracker's conversions is therefore ``missing_in_tracker``.
- **Payouts.** Equal within 0.01. A null payout equals only a null payout: null
  against a number is a ``payout_mismatch``. An export without any payout column is
  not compared on payout (every found conversion is ``matched``).
- **Times** in the export: ``YYYY-MM-DD HH:MM:SS`` (also ``/``-dated and ``M/D/YYYY``,
  day first when a first field exceeds 12) local to ``timezone`` (default the store's;
  DST fall-back → the earlier instant, spring-forward → shifted by the gap), ISO 8601
  with an offset or ``Z`` (the offset wins), Unix seconds or milliseconds. Separate
  ``Date`` and ``Time`` columns are joined.
- **Payout text**: currency signs and codes are ignored; ``12,50`` is a decimal
  comma, ``1,250`` (groups of three) and ``1,250.00`` use thousands separators.

>>> import tempfile, pathlib, cfanalytics as cf
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> store = cf.LogStore(folder / "s", timezone="UTC")
>>> _ = (folder / "net.csv").write_text("Sub ID,Payout,Conversion Time\\n{clickid},5.00,2026-11-20 10:00:00\\n")
>>> rec = reconcile(store, folder / "net.csv")
>>> rec.summary["missing_in_tracker"]["by_reason"]["unreplaced_macro"], rec.summary["window"]
(1, {'start': '2026-11-19T10:00:00Z', 'end': '2026-11-21T10:00:00Z'})
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from cfanalytics._time import iso
from cfanalytics.columns import norm_key
from cfanalytics.exceptions import InputError, UsageError
from cfanalytics.filters import StoreReader
from cfanalytics.readers import RECORD, Batches, RowProblem, open_input
from cfanalytics.store import LogStore
from cfanalytics.values import (
    EXTRA_NAIVE_FORMATS,
    MACRO_PATTERN,
    NAIVE_FORMATS,
    SLASH_FORMATS,
    UUID_PATTERN,
    check_timezone,
    day_first,
    money_text,
    parse_number_expr,
    parse_time_expr,
)

__all__ = ["REASONS", "STATUSES", "Reconciliation", "reconcile"]

#: Status of a network row.
STATUSES: Final = ("matched", "payout_mismatch", "missing_in_tracker")
#: Why a network row is missing in the tracker, in the order the rules are tried.
REASONS: Final = (
    "unreplaced_macro",
    "truncated_click_id",
    "malformed_click_id",
    "postback_not_received",
    "unknown_click",
)
#: Payouts closer than this are equal (plus a hair for binary floats).
PAYOUT_TOLERANCE: Final = 0.01
#: A truncated click id has at least this many characters.
MIN_PREFIX: Final = 8

# Column spellings (compared by ``norm_key``), most specific first.
_CLICK_ID_NAMES: Final = (
    "Sub ID", "sub1", "s1", "aff_sub", "Sub ID 1", "aff_sub1", "Click ID", "click_id",
    "aff_click_id", "cid", "tid", "Tracking ID",
)  # fmt: skip
_TXID_NAMES: Final = (
    "Transaction ID", "txid", "txn_id", "tx_id", "Order ID", "Conversion ID", "adv_sub",
    "Transaction", "Order", "order_number",
)  # fmt: skip
_PAYOUT_NAMES: Final = (
    "Payout", "Revenue", "Amount", "Commission", "Payout Amount", "Conversion Payout", "Earnings",
)  # fmt: skip
_TIME_NAMES: Final = (
    "Conversion Time", "Conversion Date", "Conversion Datetime", "Conversion Timestamp", "Timestamp",
    "Datetime", "Date Time", "Created", "Created At", "Created Date", "Date", "Time",
)  # fmt: skip

_CLOCK: Final = r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(\s*[AaPp][Mm])?$"
#: Naive time formats of network exports: the store's, other systems' extras, then slash dates.
_EXPORT_FORMATS: Final = (*NAIVE_FORMATS, *EXTRA_NAIVE_FORMATS)
_MACRO_RE: Final = re.compile(MACRO_PATTERN)
_UUID_RE: Final = re.compile(UUID_PATTERN)
_TIME: Final = pl.Datetime("us", "UTC")
_TRACKER_EXTRAS: Final = (
    "affiliate_network_id", "affiliate_network_name", "offer_id", "offer_name", "campaign_id", "campaign_name",
    "traffic_source_id", "traffic_source_name",
)  # fmt: skip


@dataclass
class Reconciliation:
    """The outcome of :func:`reconcile`.

    ``summary`` is the JSON document of ``cfanalytics reconcile --json``
    (``docs/schemas/reconcile.schema.json``)::

        {"matched": 40, "payout_mismatch": 3,
         "missing_in_tracker": {"total": 7, "by_reason": {"unreplaced_macro": 1, ...}},
         "missing_in_network": 2,
         "window": {"start": "2026-11-19T05:00:00Z", "end": "2026-11-24T05:00:00Z"},
         "network_rows": 50}

    ``network`` has one row per compared network row: ``record`` (CSV record / sheet
    row, header = 1), ``click_id``, ``txid``, ``payout``, ``conversion_time`` (UTC),
    ``status``, ``reason`` (null unless missing), ``tracker_payout``,
    ``tracker_conversion_time``, ``tracker_ct``, ``tracker_txid``.
    ``missing_in_network`` has one row per unmatched distinct tracker conversion:
    ``click_id``, ``ct``, ``txid``, ``conversion_time``, ``payout`` and the
    conversion's network, offer, campaign and traffic source (ids and names).
    ``columns`` tells which export header fed each field; ``problems`` lists
    records the reader skipped (ragged rows).
    """

    summary: dict[str, Any]
    network: pl.DataFrame
    missing_in_network: pl.DataFrame
    columns: dict[str, str | None] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)


def reconcile(
    store: StoreReader | str | os.PathLike[str],
    network_export: str | os.PathLike[str],
    *,
    timezone: str | None = None,
    start: date | None = None,
    end: date | None = None,
    click_id_column: str | None = None,
) -> Reconciliation:
    """Compare a network's conversion export with the store's conversions (rules: module docstring).

    ``timezone`` reads the export's local times (default: the store's account zone,
    else UTC); ``start`` / ``end`` are local dates in that zone, both inclusive;
    ``click_id_column`` names the export's click-id header when the guess is wrong.
    Raises :class:`InputError` when the file cannot be read, has no click-id column,
    or has no readable times and no ``start`` / ``end``; :class:`UsageError` for a bad
    zone, ``start`` after ``end`` or an unknown ``click_id_column``.

    >>> import pathlib, tempfile, cfanalytics as cf
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> store = cf.LogStore(folder / "store", timezone="UTC")
    >>> export = folder / "network.csv"
    >>> _ = export.write_text("Sub ID,Payout,Date\\n{clickid},5,2026-11-20 10:00:00\\n")
    >>> rec = reconcile(store, export)
    >>> rec.summary["missing_in_tracker"]["by_reason"]["unreplaced_macro"]
    1
    >>> rec.network.get_column("status").to_list()
    ['missing_in_tracker']
    """
    if isinstance(store, str | os.PathLike):
        store = LogStore(store, create=False)
    timezone = check_timezone(timezone or store.timezone or "UTC")
    if start is not None and end is not None and start > end:
        raise UsageError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    name = os.fspath(network_export)
    raw = open_input(Path(name))
    frame, problems = _read_all(raw.batches(), raw.columns)

    visit_ids = _distinct_ids(store.scan("visits"))
    known_ids = pl.concat([visit_ids, _distinct_ids(store.scan("conversions"))]).unique().sort().rename("click_id")
    headers = _pick_columns(frame, raw.columns, name, click_id_column, known_ids)
    network = _network_rows(frame, headers, timezone)

    lo, hi = _window(network, timezone, start, end, name=name, header=headers["conversion_time"])
    if start is not None or end is not None:
        t = pl.col("conversion_time")
        network = network.filter(t.is_null() | t.is_between(lo, hi, closed="both"))

    tracker = _tracker(store, lo, hi)
    compare = headers["payout"] is not None
    matches = _match(network, tracker, compare_payout=compare)
    network = _with_status(network, tracker, matches, visit_ids, known_ids, compare_payout=compare)
    hit = sorted(matches.values())
    missing = (
        tracker.with_row_index("_i")
        .filter(~pl.col("_i").is_in(pl.Series(hit, dtype=pl.UInt32).implode()))
        .drop("_i", "_row_id")
        .sort("conversion_time", "click_id", "ct", "txid", nulls_last=True)
    )
    summary = _summary(network, missing.height, lo, hi)
    return Reconciliation(summary, network, missing, headers, problems)


# --------------------------------------------------------------------------- reading


def _read_all(batches: Batches, columns: list[str]) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Every batch of the export as one frame of text, plus the skipped records."""
    parts: list[pl.DataFrame] = []
    problems: list[RowProblem] = []
    for batch, found in batches:
        problems.extend(found)
        part = pl.from_arrow(batch)
        assert isinstance(part, pl.DataFrame)
        parts.append(part)
    schema = pl.Schema({**dict.fromkeys(columns, pl.String()), RECORD: pl.Int64()})
    if not parts:
        return pl.DataFrame(schema=schema), problems
    return pl.concat(parts, how="vertical_relaxed").cast(schema), problems


def _distinct_ids(lf: pl.LazyFrame) -> pl.Series:
    return lf.select(pl.col("click_id").drop_nulls().unique()).collect().to_series()


def _find(columns: list[str], spellings: tuple[str, ...], exclude: set[str] | None = None) -> list[str]:
    """Headers matching ``spellings`` by ``norm_key``, in the spellings' priority order."""
    out: list[str] = []
    for key in dict.fromkeys(norm_key(s) for s in spellings):
        out.extend(c for c in columns if norm_key(c) == key and c not in out and c not in (exclude or set()))
    return out


def _pick_columns(
    frame: pl.DataFrame, columns: list[str], name: str, override: str | None, known_ids: pl.Series
) -> dict[str, str | None]:
    """Export header of each field: ``click_id``, ``txid``, ``payout``, ``conversion_time`` (and ``time``)."""
    shown = ", ".join(repr(c) for c in columns[:20]) + (" …" if len(columns) > 20 else "")
    if override is not None:
        exact = [c for c in columns if c == override] or [c for c in columns if norm_key(c) == norm_key(override)]
        if not exact:
            raise UsageError(f"{name}: no column {override!r} (found: {shown or 'none'})")
        click = exact[0]
    else:
        found = _find(columns, _CLICK_ID_NAMES)
        if not found:
            raise InputError(f"{name}: no click id / sub id column (found: {shown or 'none'}); use --click-id-column")
        # Several candidates (a network's own "Click ID" next to "Sub ID"): the one holding most known ids.
        click = found[0]
        if len(found) > 1 and known_ids.len():
            hits = [int(frame.get_column(c).str.strip_chars().is_in(known_ids).sum()) for c in found]
            click = found[hits.index(max(hits))]
    used = {click}
    txid = next(iter(_find(columns, _TXID_NAMES, used)), None)
    used.add(txid or "")
    payout = next(iter(_find(columns, _PAYOUT_NAMES, used)), None)
    used.add(payout or "")
    when = next(iter(_find(columns, _TIME_NAMES, used)), None)
    clock = None
    if when is not None and norm_key(when) == "date":
        clock = next(iter(_find(columns, ("Time",), used)), None)
        if clock is not None:
            values = frame.get_column(clock).str.strip_chars().drop_nulls()
            values = values.filter(values != "")
            if not values.len() or not values.str.contains(_CLOCK).all():
                clock = None
    return {"click_id": click, "txid": txid, "payout": payout, "conversion_time": when, "time": clock}


def _network_rows(frame: pl.DataFrame, headers: dict[str, str | None], timezone: str) -> pl.DataFrame:
    """The export's rows with typed ``click_id``, ``txid``, ``payout`` and ``conversion_time`` (UTC)."""

    def text(header: str | None) -> pl.Expr:
        if header is None:
            return pl.lit(None, pl.String)
        s = pl.col(header).str.strip_chars()
        return pl.when(s != "").then(s)

    when: pl.Expr = text(headers["conversion_time"])
    if headers["time"] is not None:
        when = pl.concat_str([when, text(headers["time"])], separator=" ", ignore_nulls=True)
    out = frame.select(
        pl.col(RECORD).cast(pl.Int64).alias("record"),
        text(headers["click_id"]).alias("click_id"),
        text(headers["txid"]).alias("txid"),
        parse_number_expr(money_text(text(headers["payout"]))).alias("payout"),
        when.alias("_when"),
    )
    first = day_first(out.get_column("_when"))
    return out.with_columns(_parse_time(pl.col("_when"), timezone, day_first=first).alias("conversion_time")).drop(
        "_when"
    )


def _parse_time(s: pl.Expr, timezone: str, *, day_first: bool = False) -> pl.Expr:
    """Text → UTC instant (:func:`cfanalytics.values.parse_time_expr`), slash dates month- or day-first."""
    slash = tuple(f.replace("%m/%d", "%d/%m") for f in SLASH_FORMATS) if day_first else SLASH_FORMATS
    return parse_time_expr(s, timezone, formats=(*_EXPORT_FORMATS, *slash))


# --------------------------------------------------------------------------- window and tracker


def _local_midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _window(
    network: pl.DataFrame, timezone: str, start: date | None, end: date | None, *, name: str, header: str | None
) -> tuple[datetime, datetime]:
    """The closed UTC window: explicit local dates, else the export's span ± 1 day."""
    times = network.get_column("conversion_time").drop_nulls()
    if (start is None or end is None) and not times.len():
        what = f"no readable time in column {header!r}" if header else "no conversion time column"
        raise InputError(f"{name}: {what}; give --from and --to")
    if start is not None:
        lo = _local_midnight(start, timezone)
    else:
        first = times.min()
        assert isinstance(first, datetime)
        lo = first - timedelta(days=1)
    if end is not None:
        hi = _local_midnight(end + timedelta(days=1), timezone) - timedelta(microseconds=1)
    else:
        last = times.max()
        assert isinstance(last, datetime)
        hi = last + timedelta(days=1)
    if lo > hi:
        raise UsageError(f"{name}: empty window ({_utc(lo)} after {_utc(hi)})")
    return lo, hi


def _tracker(store: StoreReader, lo: datetime, hi: datetime) -> pl.DataFrame:
    """Distinct tracker conversions ``(click_id, ct, txid)`` of the window; the earliest row of each."""
    lf = store.scan("conversions")
    names = set(lf.collect_schema().names())
    extras = [c for c in _TRACKER_EXTRAS if c in names]
    return (
        lf.filter(pl.col("date").is_between(lo.date(), hi.date()))
        .filter(pl.col("conversion_time").is_between(lo, hi, closed="both"))
        .select(
            "click_id",
            pl.when(pl.col("ct") != "").then(pl.col("ct")).alias("ct"),
            pl.when(pl.col("txid") != "").then(pl.col("txid")).alias("txid"),
            "conversion_time",
            "payout",
            *extras,
            "_row_id",
        )
        .sort("conversion_time", "_row_id")
        .unique(subset=["click_id", "ct", "txid"], keep="first", maintain_order=True)
        .collect()
    )


# --------------------------------------------------------------------------- matching


def _same_payout(a: float | None, b: float | None) -> bool:
    """Payouts equal within 0.01; null equals only null."""
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= PAYOUT_TOLERANCE + 1e-9


_Candidate = tuple[int, str | None, datetime | None, float | None]  # tracker position, txid, time, payout
_LATEST: Final = datetime.max.replace(tzinfo=UTC)


def _rank(
    c: _Candidate, when: datetime | None, payout: float | None, *, compare_payout: bool
) -> tuple[bool, float, datetime, int]:
    """Sort key of a candidate: equal payout first, then closest in time, then earliest."""
    gap = abs((c[2] - when).total_seconds()) if c[2] is not None and when is not None else math.inf
    return (compare_payout and not _same_payout(c[3], payout), gap, c[2] or _LATEST, c[0])


def _match(network: pl.DataFrame, tracker: pl.DataFrame, *, compare_payout: bool) -> dict[int, int]:
    """Greedy matching: network row position → tracker row position (module docstring)."""
    clicks = set(network.get_column("click_id").drop_nulls().to_list())
    by_click: dict[str, list[_Candidate]] = {}
    for i, (cid, txid, when, payout) in enumerate(
        tracker.select("click_id", "txid", "conversion_time", "payout").rows()
    ):
        if cid in clicks:
            by_click.setdefault(cid, []).append((i, txid, when, payout))
    order = (
        network.with_row_index("_pos")
        .sort("conversion_time", "record", nulls_last=True)
        .select("_pos", "click_id", "txid", "conversion_time", "payout")
        .rows()
    )
    used: set[int] = set()
    out: dict[int, int] = {}
    for exact in (True, False):  # first (click_id, txid) pairs, then click id alone
        for pos, cid, txid, when, payout in order:
            if pos in out or cid is None or (exact and txid is None):
                continue
            candidates = [
                c
                for c in by_click.get(cid, ())
                if c[0] not in used and ((c[1] == txid) if exact else (txid is None or c[1] is None))
            ]
            if candidates:
                best = min(candidates, key=lambda c: _rank(c, when, payout, compare_payout=compare_payout))
                used.add(best[0])
                out[pos] = best[0]
    return out


def _with_status(
    network: pl.DataFrame,
    tracker: pl.DataFrame,
    matches: dict[int, int],
    visit_ids: pl.Series,
    known_ids: pl.Series,
    *,
    compare_payout: bool,
) -> pl.DataFrame:
    """Add ``status``, ``reason`` and the matched tracker conversion's fields."""
    partner = pl.Series("_partner", [matches.get(i) for i in range(network.height)], dtype=pl.UInt32)
    picked = tracker.with_row_index("_partner").select(
        "_partner",
        pl.col("payout").alias("tracker_payout"),
        pl.col("conversion_time").alias("tracker_conversion_time"),
        pl.col("ct").alias("tracker_ct"),
        pl.col("txid").alias("tracker_txid"),
    )
    out = network.with_columns(
        partner, pl.col("click_id").is_in(visit_ids.implode()).fill_null(False).alias("_visit")
    ).join(picked, on="_partner", how="left", maintain_order="left")
    statuses: list[str] = []
    reasons: list[str | None] = []
    rows = out.select("_partner", "click_id", "payout", "tracker_payout", "_visit").rows()
    for found, click_id, payout, tracker_payout, visit in rows:
        if found is not None:
            same = _same_payout(payout, tracker_payout) if compare_payout else True
            statuses.append("matched" if same else "payout_mismatch")
            reasons.append(None)
        else:
            statuses.append("missing_in_tracker")
            reasons.append(_reason(click_id, known_visit=visit, known_ids=known_ids))
    return out.with_columns(
        pl.Series("status", statuses, dtype=pl.String), pl.Series("reason", reasons, dtype=pl.String)
    ).select(
        "record", "click_id", "txid", "payout", "conversion_time", "status", "reason",
        "tracker_payout", "tracker_conversion_time", "tracker_ct", "tracker_txid",
    )  # fmt: skip


def _reason(click_id: str | None, *, known_visit: bool, known_ids: pl.Series) -> str:
    """The first missing-in-tracker rule that applies to a network click id."""
    if click_id is not None and _MACRO_RE.search(click_id):
        return "unreplaced_macro"
    if click_id is not None and len(click_id) >= MIN_PREFIX and _is_strict_prefix(click_id, known_ids):
        return "truncated_click_id"
    if click_id is None or not _UUID_RE.match(click_id):
        return "malformed_click_id"
    if known_visit:
        return "postback_not_received"
    return "unknown_click"


def _is_strict_prefix(prefix: str, known_sorted: pl.Series) -> bool:
    """Whether a sorted series holds a longer value starting with ``prefix``."""
    i = int(known_sorted.search_sorted(prefix, side="left"))
    for j in (i, i + 1):
        if j < known_sorted.len():
            value = known_sorted[j]
            if value != prefix and value.startswith(prefix):
                return True
            if value != prefix:
                return False
    return False


# --------------------------------------------------------------------------- summary


def _utc(t: datetime) -> str | None:
    return iso(t.astimezone(UTC))


def _summary(network: pl.DataFrame, missing_in_network: int, lo: datetime, hi: datetime) -> dict[str, Any]:
    status = network.get_column("status").value_counts()
    counts = dict(zip(status.get_column("status").to_list(), status.get_column("count").to_list(), strict=True))
    reason = network.get_column("reason").drop_nulls().value_counts()
    by_reason = dict(zip(reason.get_column("reason").to_list(), reason.get_column("count").to_list(), strict=True))
    return {
        "matched": int(counts.get("matched", 0)),
        "payout_mismatch": int(counts.get("payout_mismatch", 0)),
        "missing_in_tracker": {
            "total": int(counts.get("missing_in_tracker", 0)),
            "by_reason": {r: int(by_reason.get(r, 0)) for r in REASONS},
        },
        "missing_in_network": int(missing_in_network),
        "window": {"start": _utc(lo), "end": _utc(hi)},
        "network_rows": network.height,
    }
