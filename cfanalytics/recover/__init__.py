"""Recovery files: conversions that never reached their traffic source, in each destination's upload format.

:func:`recover` selects the conversions of a store that were never posted, or whose
every postback failed with a retryable error (rate limit, no response, server error)
or a fixable one (unreplaced macro, missing click id), and writes one file per
destination into ``out``:

- ``google_ads_offline_conversions.csv`` — Google Ads offline click conversions;
- ``microsoft_offline_conversions.csv`` — Microsoft Advertising offline conversions;
- ``meta_capi_events.json`` — Meta Conversions API request bodies;
- ``tiktok_events.json`` — TikTok Events API request bodies;
- ``s2s_postbacks.jsonl`` — postback URLs to fire again (``cfanalytics refire``);
  real URLs, secrets included: mode 0600.

Left out, with a reason per conversion (``excluded.csv``): those accepted by another
postback, duplicates, those already in a recovery file (the ledger in the store
folder), those that failed with an error that sending again cannot fix, those without
a destination or a usable click id, and those outside the platform's upload window at
``now``. ``manifest.json`` gives counts and payout — summed per currency, never mixed —
per file and per reason. Selection rules: :mod:`cfanalytics.recover._select`.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> recover(store, out=tempfile.mkdtemp() + "/out").manifest["included"]
0
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from cfanalytics.diagnose.error_kinds import ERROR_KINDS
from cfanalytics.exceptions import UsageError
from cfanalytics.recover import _ledger, google_ads, meta, microsoft, s2s, tiktok
from cfanalytics.recover._files import write_atomic, write_json_atomic
from cfanalytics.recover._platforms import WINDOWS
from cfanalytics.recover._select import REASONS, select
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = ["FORMATS", "MANIFEST_FILE", "RecoveryResult", "recover", "run_recover"]

MANIFEST_FILE: Final = "manifest.json"
EXCLUDED_FILE: Final = "excluded.csv"

#: destination → (module writing its format, file mode)
FORMATS: Final[dict[str, tuple[Any, int]]] = {
    "google_ads": (google_ads, 0o644),
    "meta": (meta, 0o644),
    "tiktok": (tiktok, 0o644),
    "microsoft": (microsoft, 0o644),
    "s2s": (s2s, s2s.FILE_MODE),
}


@dataclass
class RecoveryResult:
    """What :func:`recover` wrote: file paths by destination, the manifest, the per-conversion decisions."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    decisions: pl.DataFrame = field(default_factory=pl.DataFrame)


def _payout(frame: pl.DataFrame) -> dict[str, float]:
    """Payout summed per currency (``unknown`` for none); null payouts add nothing."""
    sums: dict[str, list[float]] = {}
    for cur, pay in frame.select("currency", "payout").iter_rows():
        sums.setdefault(cur or "unknown", []).append(0.0 if pay is None else float(pay))
    return {cur: round(math.fsum(v), 10) for cur, v in sorted(sums.items())}


def _as_utc(value: datetime | str | None, tz: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--now {value!r}: expected an ISO time such as 2026-11-30T12:00 or …Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC)


def recover(
    store: LogStore,
    *,
    start: date | str | None = None,
    end: date | str | None = None,
    now: datetime | str | None = None,
    out: str | Path,
    currency: str | None = None,
    fixed: Sequence[str] = (),
) -> RecoveryResult:
    """Write the recovery files of conversions in ``[start, end]`` (local dates) into ``out``; see the module doc.

    ``now`` (default: the wall clock; naive = the store's time zone) decides the upload
    windows. ``currency`` is the currency of conversions that carry none (default: the
    store's ``currency`` setting). ``fixed`` names error kinds whose cause was fixed since
    (e.g. ``auth`` after renewing a token; see ``select``). ``out`` must not hold an earlier
    run's manifest. The ledger is updated under the store lock, after the files are written.
    """
    from cfanalytics.filters import LogFilter
    from cfanalytics.recover._load import load

    out = Path(out)
    if (out / MANIFEST_FILE).exists():
        raise UsageError(f"{out}: already holds a recovery run ({MANIFEST_FILE}); choose another --out")
    tz = store.timezone or "UTC"
    at = _as_utc(now, tz)
    if currency is not None and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise UsageError(f"--currency {currency!r}: expected an ISO 4217 code such as USD")
    currency = (currency or store.metadata.get("currency") or "").upper() or None
    unknown = sorted(set(fixed) - set(ERROR_KINDS))
    if unknown:
        raise UsageError(f"--fixed {unknown[0]!r}: not an error kind (one of {', '.join(ERROR_KINDS)})")
    with store.lock():
        recovered = _ledger.read(store.location)
        conversions, postbacks, visits = load(store, LogFilter(start=start, end=end))
        decisions = select(conversions, postbacks, visits, now=at, recovered=recovered, currency=currency, fixed=fixed)
        result = RecoveryResult(out=out, decisions=decisions)
        included = decisions.filter(pl.col("reason").is_null())
        files: dict[str, dict[str, Any]] = {}
        entries: dict[str, dict[str, Any]] = {}
        for dest, (module, mode) in FORMATS.items():
            rows = included.filter(pl.col("destination") == dest)
            if rows.height == 0:
                continue
            path = out / module.FILE_NAME
            write_atomic(path, module.render(rows), mode=mode)
            result.files[dest] = path
            files[module.FILE_NAME] = {
                "destination": dest,
                "conversions": rows.height,
                "payout": _payout(rows),
                "holds_secrets": dest == "s2s",
                "mode": f"{mode:04o}",
                **({"window": _window_text(dest)} if dest in WINDOWS else {}),
            }
            for r in rows.iter_rows(named=True):
                entries[r["key"]] = {
                    "destination": dest,
                    "file": str(path.resolve()),
                    "click_id": r["click_id"],
                    "conversion_time": r["conversion_time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
        excluded = decisions.filter(pl.col("reason").is_not_null())
        write_atomic(out / EXCLUDED_FILE, _excluded_csv(excluded))
        result.manifest = _manifest(
            store, start=start, end=end, at=at, currency=currency, decisions=decisions, files=files, fixed=fixed
        )
        write_json_atomic(out / MANIFEST_FILE, result.manifest)
        if entries:
            _ledger.add(store.location, entries)
    return result


def _window_text(dest: str) -> str:
    basis, longest, doc = WINDOWS[dest]
    return f"{basis} at most {longest.days} days before --now ({doc})"


def _manifest(
    store: LogStore,
    *,
    start: Any,
    end: Any,
    at: datetime,
    currency: str | None,
    decisions: pl.DataFrame,
    files: Mapping[str, Any],
    fixed: Sequence[str],
) -> dict[str, Any]:
    included = decisions.filter(pl.col("reason").is_null())
    reasons: dict[str, Any] = {}
    for reason in REASONS:
        rows = decisions.filter(pl.col("reason") == reason)
        if rows.height:
            reasons[reason] = {"conversions": rows.height, "payout": _payout(rows)}
    return {
        "store": store.uri,
        "range": {"from": str(start) if start else None, "to": str(end) if end else None},
        "now": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "default_currency": currency,
        "fixed_kinds": sorted(set(fixed)),
        "candidates": decisions.height,
        "included": included.height,
        "included_payout": _payout(included),
        "files": dict(files),
        "excluded": reasons,
        "excluded_file": EXCLUDED_FILE,
        "notes": [
            "payout is summed per currency; 'unknown' = conversions without a currency",
            "Conversion Name (Google, Microsoft) is the ct: rename it to the account's conversion action or goal",
            "s2s_postbacks.jsonl holds the real postback URLs, secrets included (mode 0600): "
            "send it with 'cfanalytics refire', do not share it",
            "Meta asks website events for event_source_url (the page of the conversion), which the logs do not "
            "hold: add your landing page's URL to each event if the Events Manager flags it",
        ],
    }


def _excluded_csv(rows: pl.DataFrame) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ("key", "click_id", "conversion_time", "ct", "txid", "payout", "currency", "traffic_source_id", "gap")
    w.writerow([*cols, "destination", "reason", "detail"])
    for r in rows.iter_rows(named=True):
        when = r["conversion_time"].strftime("%Y-%m-%dT%H:%M:%SZ")
        values = [when if c == "conversion_time" else r[c] for c in cols]
        w.writerow([*("" if v is None else v for v in values), r["destination"] or "", r["reason"], r["detail"] or ""])
    return buf.getvalue()


def _conversions(n: int) -> str:
    """``"1 conversion"``, ``"2 conversions"``.

    >>> _conversions(1), _conversions(0)
    ('1 conversion', '0 conversions')
    """
    return f"{n} conversion" if n == 1 else f"{n} conversions"


def summary_text(result: RecoveryResult) -> str:
    """The run's summary for a terminal: files, counts and payout per currency, reasons (redacted)."""
    m = result.manifest

    def money(p: Mapping[str, float]) -> str:
        return ", ".join(f"{v:,.2f} {c}" for c, v in p.items()) or "0"

    lines = [
        f"recovery run at {m['now']} into {result.out}",
        f"{m['candidates']} conversions never reached their traffic source; "
        f"{m['included']} recoverable ({money(m['included_payout'])})",
    ]
    for name, f in m["files"].items():
        note = "  [real URLs, secrets inside: mode 0600]" if f["holds_secrets"] else ""
        lines.append(f"  {name}: {_conversions(f['conversions'])}, {money(f['payout'])}{note}")
    if m["excluded"]:
        lines.append(f"left out (one line each in {m['excluded_file']}):")
        for reason, e in m["excluded"].items():
            lines.append(f"  {reason}: {_conversions(e['conversions'])}, {money(e['payout'])}")
    return redact("\n".join(lines))


def run_recover(
    store_dir: str,
    *,
    start: date | None,
    end: date | None,
    now: str | None,
    out: str,
    currency: str | None = None,
    fixed: Sequence[str] = (),
    as_json: bool = False,
) -> int:
    """Body of ``cfanalytics recover``: run :func:`recover`, print the summary (or the manifest as JSON)."""
    from cfanalytics.store import LogStore

    store = LogStore(store_dir, create=False)
    result = recover(store, start=start, end=end, now=now, out=out, currency=currency, fixed=fixed)
    if as_json:
        print(redact(json.dumps(result.manifest, indent=2, ensure_ascii=False)))
    else:
        print(summary_text(result))
    return 0
