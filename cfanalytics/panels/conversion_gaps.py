"""Conversion gaps panel: which conversions never reached the traffic source, and a network reconciliation.

Gap classes (posted OK, posted but failed, not posted, pending) per traffic
source or campaign (toggle), the conversions behind any class and group (pick
them, click a bar, or call :meth:`ConversionGapsPanel.drill`), the money at stake
(payout of conversions that never reached their traffic source, per currency and
group, by :func:`cfanalytics.diagnose.at_stake.at_stake`), orphan postbacks, the
recovery files of the lost conversions (a button; the same files as
``cfanalytics recover``, see :mod:`cfanalytics.recover`), and the reconciliation of
an affiliate network's export: upload it (CSV, Excel …) and it is compared with the
store by :func:`cfanalytics.diagnose.reconcile`.

The classified conversions and orphan postbacks of a date range are read once
and kept; other filters and the grouping are applied in memory.

>>> from cfanalytics.panels import conversion_gaps
>>> panel = conversion_gaps(store)                             # doctest: +SKIP
>>> panel.drill("not_posted").height                           # doctest: +SKIP
>>> panel.reconcile_file("exports/maxbounty.csv").summary      # doctest: +SKIP
>>> panel.write_recovery().manifest["included"]                # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Unpack

import polars as pl

from cfanalytics.charts import GAP_LABELS, gap_classes
from cfanalytics.diagnose.at_stake import at_stake
from cfanalytics.diagnose.frames import conversions, postback_outcomes, store_currency
from cfanalytics.diagnose.gaps import GAP_CLASSES, gap_rows, gap_summary_of_rows, gap_table
from cfanalytics.diagnose.queries import orphan_postbacks
from cfanalytics.diagnose.reconcile import Reconciliation, reconcile
from cfanalytics.exceptions import CfError
from cfanalytics.filters import LogFilter, as_date
from cfanalytics.panels._base import Panel, PanelOptions
from cfanalytics.redaction import safe_text

if TYPE_CHECKING:
    from cfanalytics.recover import RecoveryResult
    from cfanalytics.store import LogStore

GROUPS: Final[dict[str, str]] = {"traffic_source_id": "Traffic source", "campaign_id": "Campaign"}
#: Row sets the drill-down offers: the gap classes, then other gap facts.
DRILLS: Final[dict[str, str]] = {
    **{c: GAP_LABELS.get(c, c) for c in GAP_CLASSES},
    "duplicate": "Duplicate conversions",
    "unknown_click": "Unknown click",
    "malformed_click": "Unknown click, malformed",
}
CONVERSION_COLUMNS: Final = (
    "conversion_time",
    "gap",
    "click_id",
    "ct",
    "txid",
    "payout",
    "currency",
    "traffic_source_name",
    "traffic_source_id",
    "campaign_name",
    "campaign_id",
    "offer_id",
    "visit_time",
    "postbacks",
    "postback_errors",
    "duplicate",
    "unknown_click",
    "malformed_click",
    "status",
)
#: Reconciliation rows first shown: those that did not match, then by record.
UPLOAD_TYPES: Final = ".csv,.tsv,.txt,.xlsx,.json,.ndjson,.parquet,.gz"
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")
MISSING: Final = ("missing",)
#: Where the recovery button writes by default: ``<the store's folder>/../recovery/<UTC time>``.
RECOVERY_FOLDER: Final = "recovery"


def recovery_root(store: LogStore) -> Path:
    """Where the recovery button's folders go: ``recovery/`` beside a store folder; for a store on object
    storage (the files are for you to upload, so they stay on this machine), ``recovery/`` in the working
    directory, never the store's scratch space.

    >>> import tempfile, cfanalytics as cf
    >>> recovery_root(cf.LogStore(tempfile.mkdtemp() + "/acme/store")).parts[-2:]
    ('acme', 'recovery')
    """
    return (Path.cwd() if store.remote else store.path.parent) / RECOVERY_FOLDER


def default_recovery_dir(root: Path, at: datetime | None = None) -> Path:
    """A new folder in ``root`` (:func:`recovery_root`) for one recovery run, named by the UTC time
    (``-2`` … when taken).

    >>> default_recovery_dir(Path("/data/acme/recovery"), datetime(2026, 11, 20, 12, 0, 5, tzinfo=UTC)).as_posix()
    '/data/acme/recovery/20261120T120005Z'
    """
    base = root / (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


@dataclass(frozen=True)
class GapData:
    """What the panel reads for one date range."""

    conversions: pl.DataFrame
    orphans: pl.DataFrame


class ConversionGapsPanel(Panel[GapData]):
    """Gap classes by traffic source or campaign, the conversions behind them, and a reconciliation.

    Attributes
    ----------
    conversions
        The filtered conversions, each with its ``gap`` class and gap facts.
    gaps
        Classes per group behind :attr:`figure` (``posted_ok`` … ``pending``, ``conversions``).
    summary
        Counts of the selection: conversions, each class, orphan postbacks, ct mismatches, duplicates, unknown clicks.
    orphans
        Postbacks with no conversion on the same click id and ct.
    table_frame
        The conversions of the chosen class and group, as shown.
    reconciliation
        The last :class:`~cfanalytics.diagnose.Reconciliation` (``None`` before an upload).
    at_stake
        Payout and count of the lost conversions (posted but all failed, never posted; duplicates aside)
        per group of the current grouping and currency; :attr:`at_stake_total` per currency.
    recovery
        The last :class:`~cfanalytics.recover.RecoveryResult` written by the button (``None`` before).
    recovery_now
        The time the platforms' upload windows are judged at when the button writes (``None``: the
        clock), as ``cfanalytics recover --now``.
    figure
        The gap-class chart (:class:`~cfanalytics.panels._figures.Chart`).
    """

    title = "Conversion gaps"
    latest_kinds = ("conversions", "postbacks")

    def __init__(self, store: LogStore, *, by: str = "traffic_source_id", **options: Unpack[PanelOptions]) -> None:
        super().__init__(store, **options)
        import ipywidgets as widgets

        from cfanalytics.panels._figures import figure_widget
        from cfanalytics.panels._widgets import FilterBar

        if by not in GROUPS:
            raise ValueError(f"by must be one of {', '.join(GROUPS)}")
        self._filters = FilterBar(("start", "end", "traffic_sources", "campaigns", "cts"), self._initial)
        self.by = widgets.ToggleButtons(options=[(v, k) for k, v in GROUPS.items()], value=by)
        empty = pl.DataFrame()
        self.conversions = empty
        self.orphans = empty
        self.gaps = empty
        self.summary: dict[str, int] = {}
        self.drilled: tuple[str | None, Any] = ("not_posted", None)
        self.reconciliation: Reconciliation | None = None
        self.reconciles = 0
        self.at_stake = empty
        self.at_stake_total = empty
        self.recovery: RecoveryResult | None = None
        self.recovery_now: datetime | str | None = None
        self.at_stake_html = widgets.HTML()
        self.recover_button = widgets.Button(
            description="Write recovery files", icon="save", layout=widgets.Layout(width="auto")
        )
        self.recover_folder = widgets.Text(
            description="into",
            placeholder=str(recovery_root(self.store) / "<time>"),
            layout=widgets.Layout(width="60%"),
        )
        self.recover_html = widgets.HTML(
            "<small>Upload files (Google Ads, Microsoft Advertising, Meta, TikTok, S2S postbacks) of the lost "
            "conversions of the panel's dates, as <code>cfanalytics recover</code> writes them; each conversion "
            "is written once across runs.</small>"
        )
        self.figure = figure_widget(height=380)
        self.summary_html = widgets.HTML()
        self.drill_class = widgets.Dropdown(
            description="Conversions",
            options=[("all", None), *((v, k) for k, v in DRILLS.items())],
            value="not_posted",
        )
        self.drill_group = widgets.Dropdown(description="of", options=[("all groups", None)], value=None)
        self.table = self._new_table(
            "conversions",
            columns=CONVERSION_COLUMNS,
            sort="conversion_time",
        )
        self.upload = widgets.FileUpload(
            accept=UPLOAD_TYPES, multiple=False, description="Network export", layout=widgets.Layout(width="auto")
        )
        self.reconcile_html = widgets.HTML(
            "<small>Upload an affiliate network's conversion export (CSV, Excel, JSON …) to compare it "
            "with the tracker's conversions.</small>"
        )
        self.reconcile_view = widgets.Dropdown(
            description="Show",
            options=[("network rows (not matched first)", "network"), ("missing in network", "missing_in_network")],
            value="network",
        )
        self.reconcile_table = self._new_table(
            "reconciliation",
            sort=None,
            empty="No reconciliation yet.",
        )
        self._assemble(
            widgets.HBox([self.by, self.busy.widget]),
            self.summary_html,
            self.at_stake_html,
            self.figure.widget,
            widgets.HBox([self.drill_class, self.drill_group]),
            self.table.widget,
            widgets.HTML("<h4>Recover lost conversions</h4>"),
            widgets.HBox([self.recover_button, self.recover_folder]),
            self.recover_html,
            widgets.HTML("<h4>Reconcile a network export</h4>"),
            self.upload,
            self.reconcile_html,
            self.reconcile_view,
            self.reconcile_table.widget,
        )
        self.by.observe(lambda _c: self._by_changed(), names="value")
        self.drill_class.observe(lambda c: self._drill_changed(c["new"], self.drill_group.value), names="value")
        self.drill_group.observe(lambda c: self._drill_changed(self.drill_class.value, c["new"]), names="value")
        self.upload.observe(self._uploaded, names="value")
        self.recover_button.on_click(lambda _b: self._recover_clicked())
        self.reconcile_view.observe(lambda _c: self._show_reconciliation(), names="value")
        self.refresh()

    # ---------------------------------------------------------------- data
    def _load(self, where: LogFilter) -> GapData:
        rows = gap_rows(conversions(self.reader, where), postback_outcomes(self.reader))
        rows = self.names.add(rows, "traffic_source_id", "campaign_id")
        return GapData(rows, orphan_postbacks(self.reader, where))

    def _update(self) -> None:
        from cfanalytics.panels._figures import show
        from cfanalytics.panels._widgets import option_pairs

        where = self.filter
        data = self.base(where)
        loaded = data.conversions
        for field, column in (("traffic_sources", "traffic_source_id"), ("campaigns", "campaign_id")):
            ids = loaded.get_column(column).unique().to_list() if column in loaded.columns else []
            self._filters.set_options(field, option_pairs(ids, self.names.lookup(column)))
        cts = loaded.get_column("ct").unique().to_list() if "ct" in loaded.columns else []
        self._filters.set_options(
            "cts", [(safe_text(c) if c else "(no ct)", c or "") for c in sorted({c or "" for c in cts})]
        )
        self.conversions = self.in_memory(loaded, where)
        self.orphans = self.in_memory(data.orphans, where)
        by = self.by.value
        self.gaps = self.names.add(gap_table(self.conversions, by), by)
        show(self.figure, gap_classes(self.gaps, by=by), on_click=self._bar_clicked)
        self.summary = gap_summary_of_rows(self.conversions, self.orphans)
        self.summary_html.value = _summary_html(self.summary)
        currency = store_currency(self.reader)
        self.at_stake_total = at_stake(self.conversions, currency=currency)
        groups = self.names.add(at_stake(self.conversions, by=[by], currency=currency), by)
        self.at_stake = groups.sort(["payout", by, "currency"], descending=[True, False, False], nulls_last=True)
        self.at_stake_html.value = _at_stake_html(self.at_stake_total, self.at_stake, by, GROUPS[by])
        self._group_options()
        self._show_rows()

    # ------------------------------------------------------------- drilling
    def drill(self, gap: str | None = "not_posted", group: Any = None) -> pl.DataFrame:
        """Show the conversions of one class (``None``: all; also ``duplicate``, ``unknown_click``,
        ``malformed_click``) in one group of the current grouping (``None``: all); returns :attr:`table_frame`."""
        if gap is not None and gap not in DRILLS:
            raise ValueError(f"unknown gap class {gap!r}; use one of {', '.join(DRILLS)}")
        with self._updating():
            self.drill_class.value = gap
            self._group_options()
            values = [v for _, v in self.drill_group.options]
            self.drill_group.value = group if group in values else None
        self.drilled = (gap, self.drill_group.value)
        self._show_rows()
        return self.table_frame

    def _drill_changed(self, gap: str | None, group: Any) -> None:
        if not self._busy:
            self.drill(gap, group)

    def _by_changed(self) -> None:
        self.drilled = (self.drilled[0], None)
        self.refresh()

    def _group_options(self) -> None:
        by = self.by.value
        options: list[tuple[str, Any]] = [("all groups", None)]
        if self.gaps.height:
            lookup = self.names.lookup(by)
            gap = self.drill_class.value  # counts of the class chosen, not the group's total
            count = gap if gap in GAP_CLASSES and gap in self.gaps.columns else "conversions"
            for value, n in self.gaps.select(by, count).iter_rows():
                text = (lookup.get(value) or value) if value is not None else "(none)"
                options.append((f"{safe_text(text, 80)} ({n:,})", MISSING if value is None else value))
        with self._updating():
            current = self.drill_group.value
            if list(self.drill_group.options) != options:
                self.drill_group.options = options
            values = [v for _, v in options]
            self.drill_group.value = current if current in values else None
        self.drilled = (self.drilled[0], self.drill_group.value)

    def _show_rows(self) -> None:
        gap, group = self.drilled
        rows = self.conversions
        if gap in GAP_CLASSES:
            rows = rows.filter(pl.col("gap") == gap)
        elif gap is not None and gap in rows.columns:
            rows = rows.filter(pl.col(gap))
        by = self.by.value
        if group is not None and by in rows.columns:
            rows = rows.filter(pl.col(by).is_null() if group is MISSING else pl.col(by) == group)
        self.table.set_frame(rows)

    def _bar_clicked(self, trace_index: int, points: Any) -> None:
        present = [c for c in GAP_LABELS if c in self.gaps.columns]
        index = next(iter(points.point_inds))
        if trace_index < len(present) and index < self.gaps.height:
            value = self.gaps.item(index, self.by.value)
            self.drill(present[trace_index], MISSING if value is None else value)

    # ------------------------------------------------------------- recovery
    def write_recovery(self, out: str | Path | None = None, *, now: datetime | str | None = None) -> RecoveryResult:
        """Write the recovery files of the panel's date range (all traffic sources) into ``out`` (default: a
        new ``recovery/<UTC time>`` folder, :func:`recovery_root`), as ``cfanalytics recover`` does, and show the
        manifest's counts and payout."""
        from cfanalytics.recover import recover, summary_text

        where = self.filter
        folder = Path(out) if out else default_recovery_dir(recovery_root(self.store))
        result = recover(self.store, start=as_date(where.start), end=as_date(where.end), now=now, out=folder)
        self.recovery = result
        self.recover_html.value = f"<pre>{html.escape(summary_text(result))}</pre>"
        return result

    def _recover_clicked(self) -> None:
        try:
            self.write_recovery(self.recover_folder.value.strip() or None, now=self.recovery_now)
        except CfError as exc:
            self.recover_html.value = f"<b>Could not write the recovery files:</b> {safe_text(exc, 300)}"

    # ------------------------------------------------------------ reconcile
    def reconcile_file(self, path: str | Path, **options: Any) -> Reconciliation:
        """Reconcile a network export file with the store (``options`` go to :func:`reconcile`) and show it."""
        self.reconciles += 1
        rec = reconcile(self.store, path, **options)
        self.reconciliation = rec
        self._show_reconciliation()
        return rec

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        name = _SAFE_NAME.sub("_", Path(str(item.get("name") or "export.csv")).name) or "export.csv"
        folder = Path(tempfile.mkdtemp(prefix="cfanalytics-upload-"))
        path = folder / name
        path.write_bytes(bytes(item["content"]))
        try:
            self.reconcile_file(path)
        except CfError as exc:
            self.reconcile_html.value = f"<b>Could not reconcile {safe_text(name)}:</b> {safe_text(exc, 300)}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _show_reconciliation(self) -> None:
        rec = self.reconciliation
        if rec is None:
            return
        self.reconcile_html.value = _reconcile_html(rec.summary)
        if self.reconcile_view.value == "network":
            rows = rec.network
            if "status" in rows.columns:
                order = [pl.col("status") == "matched", *(["record"] if "record" in rows.columns else [])]
                rows = rows.sort(order)
        else:
            rows = rec.missing_in_network
        self.reconcile_table.set_frame(rows)


def _summary_html(summary: dict[str, int]) -> str:
    n = summary.get("conversions", 0)

    def part(key: str, label: str) -> str:
        value = summary.get(key, 0)
        share = f" ({value / n:.1%})" if n and key in GAP_CLASSES else ""
        return f"{label}: <b>{value:,}</b>{share}"

    classes = " · ".join(part(c, GAP_LABELS.get(c, c)) for c in GAP_CLASSES)
    facts = " · ".join(
        part(k, label)
        for k, label in (
            ("orphan_postbacks", "orphan postbacks"),
            ("ct_mismatch", "of them ct mismatch"),
            ("duplicate_conversions", "duplicate conversions"),
            ("unknown_click", "unknown clicks"),
            ("unknown_click_malformed", "of them malformed"),
        )
    )
    return f"<b>{n:,}</b> conversions · {classes}<br><small>{facts}</small>"


def _money(payout: float, currency: str | None) -> str:
    return f"{payout:,.2f} {safe_text(currency)}" if currency else f"{payout:,.2f}"


def _at_stake_html(total: pl.DataFrame, groups: pl.DataFrame, by: str, label: str, top: int = 5) -> str:
    """The money at stake: per currency (never added together), then the groups with the most."""
    if total.height == 0:
        return "<small>Nothing at stake: every conversion reached its traffic source (or is pending).</small>"
    sums = " · ".join(
        f"<b>{_money(r['payout'], r['currency'])}</b>{'' if r['currency'] else ' (no currency)'} in "
        f"{r['conversions']:,} conversions ({r['posted_failed']:,} failed, {r['not_posted']:,} not posted)"
        for r in total.iter_rows(named=True)
    )
    name_col = by.removesuffix("_id") + "_name"
    worst = []
    for r in groups.head(top).iter_rows(named=True):
        text = r.get(name_col) or r.get(by) or "(none)"
        worst.append(f"{safe_text(text, 60)} {_money(r['payout'], r['currency'])} ({r['conversions']:,})")
    more = f" … {groups.height - top:,} more" if groups.height > top else ""
    return (
        f"At stake (never reached the traffic source, duplicates aside): {sums}"
        f"<br><small>{safe_text(label)}: {' · '.join(worst)}{more}</small>"
    )


def _reconcile_html(summary: dict[str, Any]) -> str:
    missing = summary.get("missing_in_tracker", {})
    reasons = ", ".join(f"{safe_text(k)}: {int(v):,}" for k, v in (missing.get("by_reason") or {}).items() if v)
    window = summary.get("window") or {}
    return (
        f"Network rows <b>{int(summary.get('network_rows', 0)):,}</b>"
        f" · matched <b>{int(summary.get('matched', 0)):,}</b>"
        f" · payout mismatch <b>{int(summary.get('payout_mismatch', 0)):,}</b>"
        f" · missing in tracker <b>{int(missing.get('total', 0)):,}</b>{f' ({reasons})' if reasons else ''}"
        f" · missing in network <b>{int(summary.get('missing_in_network', 0)):,}</b>"
        f"<br><small>window {safe_text(window.get('start'))} → {safe_text(window.get('end'))}</small>"
    )


def conversion_gaps(
    store: LogStore, *, by: str = "traffic_source_id", **options: Unpack[PanelOptions]
) -> ConversionGapsPanel:
    """Open the conversion gaps panel on ``store`` (last 7 days of data unless ``start``/``end`` are given)."""
    return ConversionGapsPanel(store, by=by, **options)
