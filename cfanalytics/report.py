"""Scheduled reports: the period summary, ``--fail-on`` thresholds, and the HTML run.

:func:`summary` is the numbers on top of the report (error rate, open and new
incidents, gap counts — each with the previous period of the same length);
:func:`report_figures` the report's charts; :func:`check_thresholds` evaluates
``--fail-on`` expressions against the summary; :func:`run` executes
``report.ipynb`` (papermill's parameter cell, run with nbclient on a kernel
started while the summary is computed) and writes one self-contained HTML file
(no code, plotly.js inline, works offline). Each period's postbacks, conversions
and activity are loaded once and every number and chart is computed from them.

``--fail-on`` grammar: ``METRIC OP NUMBER[%]``, several separated by commas or
given as several flags; any that holds fails the run (exit code 3). ``OP`` is one
of ``> >= < <= == !=``; ``5%`` means ``0.05``. Metrics: see :data:`METRICS`.
``at_stake`` is money, kept per currency and never added across currencies:
``at_stake>=100`` holds when the payout at stake in *any one* currency is 100 or more
(0 when nothing is at stake), ``at_stake[USD]>=100`` looks at US dollars only
(``at_stake[unknown]``: conversions without a currency).

``new_incidents`` counts the period's incidents no report of the store listed
before (:mod:`cfanalytics.alerts`): :func:`run` records the period's incidents as
reported once the HTML and its JSON summary are written, so a second run over the
same data finds none new. With a webhook (``notify``) it then sends a notice for
each incident and breached rule still due, once.

>>> parse_fail_on(["error_rate>5%", "new_incidents >= 1", "at_stake[usd]>=100"])
[('error_rate', '>', 0.05), ('new_incidents', '>=', 1.0), ('at_stake[USD]', '>=', 100.0)]
"""

from __future__ import annotations

import operator
import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from cfanalytics import charts
from cfanalytics.diagnose.error_rates import error_rates
from cfanalytics.diagnose.frames import (
    activity,
    campaign_links,
    conversions,
    latest_time,
    postback_outcomes,
    postbacks,
)
from cfanalytics.diagnose.gaps import funnel_counts, gap_rows, gap_table, lag_distributions
from cfanalytics.diagnose.incidents import SCOPES, find_incidents, history_filter
from cfanalytics.diagnose.names import Names
from cfanalytics.diagnose.queries import gap_summary, money_at_stake
from cfanalytics.exceptions import CfError, UsageError
from cfanalytics.filters import LogFilter, StoreReader, display_timezone
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from jupyter_client.manager import KernelManager

    from cfanalytics.alerts import NotifyResult
    from cfanalytics.store import LogStore

#: Metrics ``--fail-on`` understands (all from :func:`summary`'s ``current`` period).
METRICS: Final = (
    "error_rate",
    "errors",
    "postbacks",
    "unattributed",
    "incidents",
    "open_incidents",
    "new_incidents",
    "conversions",
    "posted_ok",
    "posted_failed",
    "not_posted",
    "not_posted_rate",
    "pending",
    "orphan_postbacks",
    "ct_mismatch",
    "duplicate_conversions",
    "unknown_click",
    "at_stake",
    "at_stake_conversions",
)
#: The money metric: payout at stake per currency (``--fail-on 'at_stake[USD]>=100'``).
MONEY_METRICS: Final = ("at_stake",)
#: The key of conversions without a currency in per-currency sums (as in the recovery manifest).
NO_CURRENCY: Final = "unknown"
_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_EXPR: Final = re.compile(r"^\s*([a-z_]+)(?:\[\s*([A-Za-z]+)\s*\])?\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*(%?)\s*$")
#: The notebook the report runs (shipped with the package; ``notebooks/report.ipynb`` links to it).
REPORT_NOTEBOOK: Final = Path(__file__).resolve().parent / "notebooks" / "report.ipynb"


def parse_fail_on(items: Sequence[str] | str | None) -> list[tuple[str, str, float]]:
    """Parse ``--fail-on`` expressions; raise ``UsageError`` naming a bad one."""
    if not items:
        return []
    parts = [p for item in ([items] if isinstance(items, str) else items) for p in item.split(",") if p.strip()]
    out: list[tuple[str, str, float]] = []
    for part in parts:
        m = _EXPR.match(part)
        if not m:
            raise UsageError(f"--fail-on {part.strip()!r}: expected METRIC OP NUMBER, e.g. 'error_rate>0.05'")
        metric, currency, op, number, pct = m.groups()
        if metric not in METRICS:
            raise UsageError(f"--fail-on {part.strip()!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if metric in MONEY_METRICS:
            if pct:
                raise UsageError(f"--fail-on {part.strip()!r}: {metric} is an amount of money, not a rate (no %)")
            if currency is not None:
                code = NO_CURRENCY if currency.lower() == NO_CURRENCY else currency.upper()
                if code != NO_CURRENCY and len(code) != 3:
                    raise UsageError(
                        f"--fail-on {part.strip()!r}: {currency!r} is not a currency code such as USD (or 'unknown')"
                    )
                metric = f"{metric}[{code}]"
        elif currency is not None:
            raise UsageError(f"--fail-on {part.strip()!r}: only {', '.join(MONEY_METRICS)} takes a [CURRENCY]")
        out.append((metric, op, float(number) / (100 if pct else 1)))
    return out


def _money_values(current: dict[str, Any], metric: str) -> list[tuple[str, float]]:
    """``(label, amount)`` pairs a money rule is checked against: the one currency it names (0 when that
    currency has nothing at stake), else each currency with money at stake (0 when none has)."""
    name, _, code = metric.partition("[")
    per_currency: dict[str, float] = current.get(name) or {}
    if code:
        code = code.rstrip("]")
        return [(f"{name}[{code}]", float(per_currency.get(code, 0.0)))]
    if not per_currency:
        return [(name, 0.0)]
    return [(f"{name}[{cur}]", float(value)) for cur, value in sorted(per_currency.items())]


def check_thresholds(current: dict[str, Any], rules: list[tuple[str, str, float]]) -> list[str]:
    """The rules that hold (each as text), given the current period's metrics."""
    breached: list[str] = []
    for metric, op, value in rules:
        if metric.partition("[")[0] in MONEY_METRICS:
            breached += [
                f"{label} {op} {value:g} (is {amount:,.2f})"
                for label, amount in _money_values(current, metric)
                if _OPS[op](amount, value)
            ]
            continue
        actual = current.get(metric)
        if actual is not None and _OPS[op](actual, value):
            breached.append(f"{metric} {op} {value:g} (is {actual:.4g})")
    return breached


def default_period(reader: StoreReader, days: int = 7) -> tuple[date, date]:
    """The last ``days`` local days ending on the last day with postbacks (or events)."""
    last = latest_time(reader, "postbacks", "postback_time")
    if last is None:
        last = reader.events().select(pl.col("event_time").max()).collect().item()
    end = last.astimezone(ZoneInfo(reader.timezone or "UTC")).date() if last is not None else date.today()
    return end - timedelta(days=days - 1), end


@dataclass(frozen=True)
class _Shared:
    """What both periods of a summary use: the activity log, the visits' campaigns, scope names."""

    activity: pl.DataFrame
    campaigns: pl.LazyFrame
    names: Names

    @classmethod
    def load(cls, reader: StoreReader) -> _Shared:
        return cls(activity(reader), campaign_links(reader), Names.load(reader, SCOPES))


def _period_metrics(reader: StoreReader, where: LogFilter, grace_minutes: float, shared: _Shared) -> dict[str, Any]:
    history = postbacks(reader, history_filter(where, reader.timezone)).collect()
    rows = where.apply(history.lazy(), "postbacks", timezone=reader.timezone).collect()
    total = error_rates(rows)
    n, e = int(total.item(0, "postbacks")), int(total.item(0, "errors"))
    unattributed = rows.filter(~pl.col("attributed")).height
    gaps = gap_summary(reader, where, grace_minutes=grace_minutes)
    stake = money_at_stake(reader, where, grace_minutes=grace_minutes)
    found = find_incidents(history, shared.activity, shared.names, shared.campaigns, where.time_bounds(reader.timezone))
    return {
        "postbacks": n,
        "errors": e,
        "error_rate": (e / n) if n else None,
        "unattributed": int(unattributed),
        **gaps,
        "not_posted_rate": (gaps["not_posted"] / gaps["conversions"]) if gaps["conversions"] else None,
        # payout per currency, never added across currencies (NO_CURRENCY: conversions without one)
        "at_stake": {(r["currency"] or NO_CURRENCY): r["payout"] for r in stake.sort("currency").iter_rows(named=True)},
        "at_stake_conversions": int(stake.get_column("conversions").sum()) if stake.height else 0,
        "incidents": found.height,
        "open_incidents": int(found.get_column("open").sum()) if found.height else 0,
        "incident_ids": found.get_column("incident_id").to_list(),
    }


def summary(
    reader: StoreReader,
    start: date | None = None,
    end: date | None = None,
    *,
    grace_minutes: float = 0,
    reported: Collection[str] | None = None,
) -> dict[str, Any]:
    """Metrics of the period [start, end] (local dates, inclusive) and of the period before it.

    ``new_incidents`` counts incidents of this period whose ``incident_id`` is not
    among ``reported`` (default: those a report of the store already listed,
    :func:`reported_incidents`).
    """
    if start is None or end is None:
        first, last = default_period(reader)
        start, end = start or first, end or last
    if start > end:
        raise UsageError(f"--from {start} is after --to {end}")
    length = (end - start).days + 1
    prev_end = start - timedelta(days=1)
    prev_start = prev_end - timedelta(days=length - 1)
    shared = _Shared.load(reader)
    current = _period_metrics(reader, LogFilter(start=start, end=end), grace_minutes, shared)
    previous = _period_metrics(reader, LogFilter(start=prev_start, end=prev_end), grace_minutes, shared)
    known = reported_incidents(reader) if reported is None else set(reported)
    new = [i for i in current["incident_ids"] if i not in known]
    current["new_incidents"] = len(new)
    current["new_incident_ids"] = new
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat(), "timezone": reader.timezone},
        "previous_period": {"from": prev_start.isoformat(), "to": prev_end.isoformat()},
        "current": current,
        "previous": previous,
    }


def reported_incidents(reader: StoreReader) -> set[str]:
    """Ids of the incidents a report of this store already listed (none for a reader without a folder).

    >>> import tempfile, cfanalytics as cf
    >>> reported_incidents(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"))
    set()
    """
    from cfanalytics.alerts import read_state

    folder = getattr(reader, "location", None) or getattr(reader, "path", None)  # a store's (S3 too)
    return set(read_state(folder)["incidents"]) if folder is not None else set()


#: The report's charts, in order: name → title.
FIGURES: Final = {
    "error_rate_traffic_source": "Postback error rate by traffic source",
    "error_rate_integration": "Postback error rate by integration",
    "errors_by_kind": "Failed postbacks by error kind",
    "status_classes": "Postbacks by HTTP status class",
    "top_signatures": "Top error messages",
    "gap_classes": "Conversions by postback outcome",
    "lags": "Lags",
    "funnel": "Visits → postbacks accepted",
}


@dataclass(frozen=True)
class ReportFrames:
    """What the report's charts and incident list are computed from, read once for a range."""

    where: LogFilter
    #: Display time zone (the filter's, else the store's).
    timezone: str
    names: Names
    #: Enriched postbacks of the range and of the baseline days before it (incidents need them).
    history: pl.DataFrame
    #: Enriched postbacks of the range.
    postbacks: pl.DataFrame
    #: Activity rows of the range.
    changes: pl.DataFrame
    #: Incidents overlapping the range.
    incidents: pl.DataFrame
    #: Attributed conversions of the range, stored postback outcomes, visits and clicks of the range.
    conversions: pl.LazyFrame
    outcomes: pl.LazyFrame
    visits: pl.LazyFrame
    clicks: pl.LazyFrame

    @classmethod
    def load(cls, reader: StoreReader, where: LogFilter) -> ReportFrames:
        """Read the range's frames (visits, clicks and postback outcomes stay lazy: one aggregation each)."""
        names = Names.load(reader, SCOPES)
        history = postbacks(reader, history_filter(where, reader.timezone)).collect()
        log = activity(reader)
        timezone = display_timezone(where, reader.timezone)
        return cls(
            where=where,
            timezone=timezone,
            names=names,
            history=history,
            postbacks=where.apply(history.lazy(), "postbacks", timezone=reader.timezone).collect(),
            changes=where.apply(log.lazy(), "activity", timezone=timezone).collect(),
            incidents=find_incidents(history, log, names, campaign_links(reader), where.time_bounds(reader.timezone)),
            conversions=conversions(reader, where).collect().lazy(),
            outcomes=postback_outcomes(reader),
            visits=where.apply(reader.scan("visits"), "visits", timezone=reader.timezone),
            clicks=where.apply(reader.scan("clicks"), "clicks", timezone=reader.timezone),
        )


def report_figures(frames: ReportFrames, *, grace_minutes: float = 0) -> dict[str, go.Figure]:
    """The report's charts (:data:`FIGURES`) computed from a range's frames, times in their display zone.

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> frames = ReportFrames.load(store, LogFilter(start="2026-11-20", end="2026-11-20"))
    >>> list(report_figures(frames)) == list(FIGURES)
    True
    """
    names, rows, timezone = frames.names, frames.postbacks, frames.timezone
    errors = rows.filter(pl.col("is_error"))

    def error_rate_figure(scope: str) -> go.Figure:
        by = SCOPES[scope]
        rates = names.add(error_rates(rows, ["hour", by], timezone), by)
        if scope == "integration":  # postbacks sent through no integration are no integration's
            rates = rates.filter(pl.col(by).is_not_null())
        return charts.error_rate_over_time(
            rates,
            by=by,
            changes=frames.changes,
            incidents=frames.incidents.filter(pl.col("scope") == scope),
            timezone=timezone,
            title=FIGURES[f"error_rate_{scope}"],
        )

    gaps = gap_table(gap_rows(frames.conversions, frames.outcomes, grace_minutes), "traffic_source_id")
    funnel = funnel_counts(frames.visits, frames.clicks, frames.conversions, rows.lazy(), "traffic_source_id")
    return {
        "error_rate_traffic_source": error_rate_figure("traffic_source"),
        "error_rate_integration": error_rate_figure("integration"),
        "errors_by_kind": charts.errors_by_kind(
            error_rates(errors, "error_kind").select("error_kind", "errors"), title=FIGURES["errors_by_kind"]
        ),
        "status_classes": charts.errors_by_status_class(
            error_rates(rows, "status_class"), title=FIGURES["status_classes"]
        ),
        "top_signatures": charts.top_signatures(
            error_rates(errors, "signature"), top=10, title=FIGURES["top_signatures"]
        ),
        "gap_classes": charts.gap_classes(
            names.add(gaps, "traffic_source_id"), by="traffic_source_id", title=FIGURES["gap_classes"]
        ),
        "lags": charts.lag_histograms(lag_distributions(frames.conversions, frames.outcomes), title=FIGURES["lags"]),
        "funnel": charts.funnel_chart(
            names.add(funnel, "traffic_source_id"), by="traffic_source_id", title=FIGURES["funnel"]
        ),
    }


def open_period(
    store: str,
    start: str,
    end: str,
    timezone: str,
    *,
    grace_minutes: float = 0,
    summary_json: str = "",
    engine: str = "polars",
) -> tuple[StoreReader, dict[str, Any], LogFilter]:
    """What the report notebook starts from, given its parameters (``""`` = default): the store
    (:func:`~cfanalytics.workspace.open_store`; with ``engine="spark"``, read on the Spark Connect
    server of ``SPARK_REMOTE``: :func:`~cfanalytics.engines.on_spark`), the period's :func:`summary`
    and its filter.

    ``summary_json`` is that summary when the caller computed it already (``cfanalytics report`` does, for
    its thresholds and its JSON file): it is then read, not computed again.

    >>> import json, tempfile, cfanalytics as cf
    >>> path = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="Asia/Tokyo").path
    >>> _, period, where = open_period(str(path), "2026-11-20", "2026-11-21", "")
    >>> period["previous_period"], where.timezone
    ({'from': '2026-11-18', 'to': '2026-11-19'}, 'Asia/Tokyo')
    >>> open_period(str(path), "", "", "", summary_json=json.dumps(period))[1] == period
    True
    """
    import json

    from cfanalytics.workspace import open_store

    opened = open_store(store or None)
    reader: StoreReader = opened
    if engine == "spark":
        from cfanalytics.engines import on_spark

        reader = on_spark(opened)
    if summary_json:
        period = json.loads(summary_json)
    else:
        period = summary(
            reader,
            date.fromisoformat(start) if start else None,
            date.fromisoformat(end) if end else None,
            grace_minutes=grace_minutes,
        )
    zone = timezone or reader.timezone or "UTC"
    where = LogFilter(start=period["period"]["from"], end=period["period"]["to"], timezone=zone)
    return reader, period, where


def save_pngs(figures: dict[str, go.Figure], folder: str | os.PathLike[str] | None) -> list[Path]:
    """Write each figure as ``<name>.png`` (1100 wide, its own height, else 500) into ``folder``; nothing when
    ``folder`` is empty. One headless browser draws them all: the one :func:`notebook_mode` started, else
    one started here."""
    if not folder:
        return []
    import kaleido
    import plotly.io as pio

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = [target / f"{name}.png" for name in figures]
    try:
        with warnings.catch_warnings():  # plotly's options: those the early browser was started with
            warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
            if figures:
                pio.write_images(
                    list(figures.values()),
                    written,
                    width=1100,
                    height=[figure.layout.height or 500 for figure in figures.values()],
                )
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    return written


def notebook_mode(png_dir: str = "") -> None:
    """Set up plotly for a notebook whose HTML export must work offline: figures stay plotly JSON,
    drawn by plotly.js inlined once (renderer ``plotly_mimetype+notebook``).

    With ``png_dir`` (charts also written as PNG by :func:`save_pngs`), the headless browser that draws
    them starts now, in the background, while the data is read.
    """
    _skip_iri_grammar()
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"
    if png_dir:
        import kaleido

        # the options plotly's write_images passes to a browser it starts itself
        options = {k: getattr(pio.defaults, k) for k in ("plotlyjs", "mathjax", "headers") if getattr(pio.defaults, k)}
        kaleido.start_sync_server(silence_warnings=True, **options)


@dataclass
class ReportResult:
    """What :func:`run` produced."""

    html: Path
    summary: dict[str, Any]
    breached: list[str]
    pngs: list[Path]
    #: What the webhook was sent (None without one).
    notified: NotifyResult | None = None


def run(
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    start: date | None = None,
    end: date | None = None,
    timezone: str | None = None,
    grace_minutes: float = 0,
    fail_on: Sequence[str] | None = None,
    png_dir: str | os.PathLike[str] | None = None,
    notebook: str | os.PathLike[str] | None = None,
    notify: str | None = None,
    notify_options: Mapping[str, Any] | None = None,
    record: bool = True,
    engine: str = "polars",
    spark_remote: str | None = None,
) -> ReportResult:
    """Execute the report notebook (its kernel starting while the summary is computed) and export it to one
    self-contained HTML file. ``engine="spark"`` reads the tables on a Spark Connect server
    (``spark_remote``, else ``SPARK_REMOTE``; see :mod:`cfanalytics.engines`), in this process and in the
    notebook's kernel alike; the URL reaches the kernel through its environment, never the notebook.

    Once the HTML and its JSON summary are written, the period's incidents count as
    reported (``record=False`` leaves the alert state alone); then, with a webhook URL
    ``notify``, each incident and breached rule still due gets one notice
    (:func:`cfanalytics.alerts.notify`; ``notify_options`` go to its ``post_webhook``).
    A failed notice stays due: the result's ``notified`` says what failed.
    """
    import json
    import tempfile

    from cfanalytics.store import LogStore

    rules = parse_fail_on(fail_on)
    store = LogStore(store_path, create=False)
    reader: StoreReader = store
    kernel_env: dict[str, str] = {}
    if engine == "spark":
        from cfanalytics.engines import on_spark

        remote = spark_remote or os.environ.get("SPARK_REMOTE") or ""
        reader = on_spark(store, remote)  # a bad or unreachable URL fails here, in one line
        kernel_env["SPARK_REMOTE"] = remote
    source = Path(notebook) if notebook else REPORT_NOTEBOOK
    with tempfile.TemporaryDirectory(prefix="cfanalytics-report-") as tmp:
        # boots and imports the notebook's modules meanwhile
        kernel = _start_kernel(source.parent, Path(tmp), env=kernel_env)
        try:
            period = summary(reader, start, end, grace_minutes=grace_minutes)
            out_path = Path(out)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            params = {
                "store": store.uri if store.remote else str(Path(store_path).resolve()),
                "start": period["period"]["from"],
                "end": period["period"]["to"],
                "timezone": timezone or store.timezone or "UTC",
                "grace_minutes": float(grace_minutes),
                "fail_on": list(fail_on or []),
                "png_dir": str(Path(png_dir).resolve()) if png_dir else "",
                "summary_json": json.dumps(period, default=str),
                "engine": engine,
            }
            executed = _execute(source, params, kernel)
        finally:
            if kernel.has_kernel:  # not run, or not stopped by the run
                kernel.shutdown_kernel(now=True)
    out_path.write_text(_to_html(executed), encoding="utf-8")
    pngs = sorted(Path(png_dir).glob("*.png")) if png_dir else []
    breached = check_thresholds(period["current"], rules)
    (out_path.with_suffix(".json")).write_text(json.dumps({**period, "breached": breached}, indent=2, default=str))
    if record:
        from cfanalytics.alerts import record as record_reported

        record_reported(store, reported=period["current"]["incident_ids"])
    notified = (
        _notify(store, notify, period, rules, timezone=params["timezone"], options=notify_options or {})
        if notify
        else None
    )
    return ReportResult(out_path, period, breached, pngs, notified)


def _notify(
    store: LogStore,
    url: str,
    period: dict[str, Any],
    rules: list[tuple[str, str, float]],
    *,
    timezone: str,
    options: Mapping[str, Any],
) -> NotifyResult:
    """Send the notices still due for a report's period: its incidents and each breached rule."""
    from cfanalytics.alerts import due_incidents, incident_notices, notify, read_state
    from cfanalytics.diagnose.queries import incidents

    ids = period["current"]["incident_ids"]
    found: list[dict[str, Any]] = []
    if due_incidents(read_state(store.location), ids):  # read the incidents' details only when a notice is owed
        where = LogFilter(start=period["period"]["from"], end=period["period"]["to"])
        found = incident_notices(incidents(store, where).to_dicts(), timezone)
    breached = [
        (f"{metric}{op}{value:g}", line)
        for metric, op, value in rules
        for line in check_thresholds(period["current"], [(metric, op, value)])
    ]
    return notify(store, url, found, breached, period["period"], **options)


def _skip_iri_grammar() -> None:
    """Make jsonschema's optional ``rfc3987_syntax`` import fail, unless jsonschema is already loaded.

    nbformat loads jsonschema (so do plotly's notebook renderer, nbclient and nbconvert), and jsonschema
    imports ``rfc3987_syntax`` when it is installed, which builds a Lark grammar: 2–3 s per process, for
    IRI format checks that notebook validation never runs.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def warm_imports() -> None:
    """Load what the report notebook's first cell needs (run by its kernel as it starts)."""
    import importlib

    _skip_iri_grammar()
    # the renderers module imports nbformat, and leaves the default renderer unactivated (nothing is displayed)
    for module in ("plotly.graph_objects", "plotly.io._renderers"):
        importlib.import_module(module)


def _start_kernel(cwd: Path, sockets: Path, env: Mapping[str, str] | None = None) -> KernelManager:
    """Start the report's Python kernel in ``cwd``, warming its imports, talking over local sockets in the
    folder ``sockets`` (IPC: no TCP port, no plain-text network traffic); ``env`` adds to its environment.

    Starting returns at once: the kernel boots while the caller computes the summary.
    """
    _skip_iri_grammar()
    try:
        from jupyter_client.manager import KernelManager
    except ImportError:  # pragma: no cover - depends on extras
        raise UsageError("reports need the report extra: pip install 'cfanalytics[report]'") from None

    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "kernel"))
    kernel.start_kernel(
        cwd=str(cwd),
        env={**os.environ, **(env or {})},
        extra_arguments=["--IPKernelApp.exec_lines=from cfanalytics.report import warm_imports; warm_imports()"],
    )
    return kernel


def _inject_parameters(nb: Any, params: dict[str, Any]) -> None:
    """Insert papermill's ``injected-parameters`` cell (``name = value`` lines) after the ``parameters`` cell."""
    import nbformat

    lines = "".join(f"{name} = {value!r}\n" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(f"# Parameters\n{lines}")
    cell.metadata["tags"] = ["injected-parameters"]
    if nb.nbformat_minor < 5:  # cell ids came with nbformat 4.5
        cell.pop("id", None)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(tagged[0] + 1 if tagged else 0, cell)


def _execute(source: Path, params: dict[str, Any], kernel: KernelManager) -> Any:
    """Run ``source`` with ``params`` injected (as papermill would) on ``kernel``; the executed notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(source), as_version=4)
    _inject_parameters(nb, params)
    try:
        # cleanup_kc: the client's channels are closed and the kernel stopped when the run ends
        NotebookClient(nb, km=kernel, kernel_name="python3", shutdown_kernel="immediate").execute(cleanup_kc=True)
    except CellExecutionError as exc:
        index = next(
            (i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            "?",
        )
        raise CfError(f"report notebook failed in cell {index}: {exc.ename}: {exc.evalue}") from None
    return nb


def _to_html(nb: Any) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return offline(body)


_REMOTE_SCRIPT: Final = re.compile(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", re.IGNORECASE)
_MODULE_SCRIPT: Final = re.compile(r"<script type=\"module\">.*?</script>", re.DOTALL)


def offline(page: str) -> str:
    """Drop scripts loaded from the network (require.js, MathJax, mermaid): the report needs none of them;
    plotly.js is inline.

    >>> offline('<p>x</p><script src="https://cdn.example/a.js"></script>')
    '<p>x</p>'
    """
    page = _REMOTE_SCRIPT.sub("", page)
    return _MODULE_SCRIPT.sub(lambda m: "" if "https://" in m.group(0) else m.group(0), page)


_SUMMARY_ROWS: Final = (
    ("Postbacks sent", "postbacks", "count"),
    ("Postbacks failed", "errors", "count"),
    ("Error rate", "error_rate", "rate"),
    ("No traffic source found", "unattributed", "count"),
    ("Incidents", "incidents", "count"),
    ("Open incidents", "open_incidents", "count"),
    ("Conversions", "conversions", "count"),
    ("Posted, accepted", "posted_ok", "count"),
    ("Posted, all failed", "posted_failed", "count"),
    ("Never posted", "not_posted", "count"),
    ("Pending", "pending", "count"),
    ("Duplicate conversions", "duplicate_conversions", "count"),
    ("Unknown clicks", "unknown_click", "count"),
    ("Orphan postbacks", "orphan_postbacks", "count"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:.1%}" if kind == "rate" else f"{int(value):,}"


def _delta(cur: Any, prev: Any, kind: str) -> str:
    if cur is None or prev is None:
        return ""
    diff = cur - prev
    if kind == "rate":
        return f"{diff * 100:+.1f} pt"
    if kind == "money":
        return f"{diff:+,.2f}"
    return f"{int(diff):+,}"


def _at_stake_rows(cur: dict[str, Any], prev: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """Summary rows of the money at stake: the conversions, then the payout of each currency seen in either
    period (0 where a period has none of it; currencies are never added together)."""
    rows: list[tuple[str, Any, Any, str]] = [
        ("Conversions at stake", cur.get("at_stake_conversions"), prev.get("at_stake_conversions"), "count")
    ]
    now, before = cur.get("at_stake") or {}, prev.get("at_stake") or {}
    for code in sorted(set(now) | set(before)):
        label = "Payout at stake (no currency)" if code == NO_CURRENCY else f"Payout at stake ({code})"
        rows.append((label, now.get(code, 0.0), before.get(code, 0.0), "money"))
    if not (now or before):
        rows.append(("Payout at stake", 0.0, 0.0, "money"))
    return rows


def _empty(metrics: dict[str, Any]) -> bool:
    """A period with no postbacks and no conversions: nothing to compare with."""
    return not (metrics.get("postbacks") or metrics.get("conversions"))


def _local_time(value: Any, timezone: str) -> str:
    """A stored instant as the store's wall-clock time with its zone, e.g. ``2026-11-17 10:04 EST``.

    >>> from datetime import datetime, UTC
    >>> _local_time(datetime(2026, 11, 17, 15, 4, tzinfo=UTC), "America/New_York")
    '2026-11-17 10:04 EST'
    >>> _local_time("2026-11-17T15:04:10Z", "UTC")
    '2026-11-17 15:04 UTC'
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        return "n/a"
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def summary_html(period: dict[str, Any], incidents: pl.DataFrame | None = None) -> str:
    """The summary block on top of the report: this period vs the previous one, and incidents.

    Every string from data is redacted and HTML-escaped; times are in the period's zone and say so.
    A previous period without postbacks or conversions reads "no data", not a change.
    """
    import html

    cur, prev = period["current"], period["previous"]
    p, pp = period["period"], period["previous_period"]
    zone = str(p.get("timezone") or "UTC")
    esc = html.escape
    no_previous = _empty(prev)
    values = [(label, cur.get(key), prev.get(key), kind) for label, key, kind in _SUMMARY_ROWS]
    values += _at_stake_rows(cur, prev)
    rows = "".join(
        f"<tr><th scope='row'>{esc(label)}</th><td>{_fmt(now, kind)}</td>"
        + (
            "<td>no data</td><td>no data</td></tr>"
            if no_previous
            else f"<td>{_fmt(before, kind)}</td><td>{_delta(now, before, kind)}</td></tr>"
        )
        for label, now, before, kind in values
    )
    out = [
        "<div class='cf-summary'>",
        f"<p>Period {esc(p['from'])} → {esc(p['to'])} ({esc(str(p.get('timezone')))}), "
        f"compared with {esc(pp['from'])} → {esc(pp['to'])}. Filtered (bot) traffic excluded.</p>",
        "<table><thead><tr><th></th><th>this period</th><th>previous</th><th>change</th></tr></thead>",
        f"<tbody>{rows}</tbody></table>",
    ]
    new = set(cur.get("new_incident_ids") or [])
    if incidents is not None and incidents.height:
        items = []
        for incident in incidents.to_dicts():
            change, fix = incident.get("suspected_change"), incident.get("resolved_by")
            suspects = incident.get("suspects") or []
            cause = (
                f"suspected change: {_change_html(change, zone)}"
                if change
                else ("none of the changes before explains it" if suspects else "no change found")
            )
            if fix:
                cause += f"; resolved by: {_change_html(fix, zone)}"
            badge = " <strong>NEW</strong>" if incident["incident_id"] in new else ""
            state = " (open)" if incident.get("open") else ""
            items.append(
                f"<li><code>{esc(incident['incident_id'])}</code>{badge}{state} — "
                f"{esc(incident['scope'].replace('_', ' '))} "
                f"<b>{esc(redact(incident['name'] or incident['id']) or '')}</b>: "
                f"{esc(_local_time(incident['start'], zone))} → {esc(_local_time(incident['end'], zone))}, "
                f"{incident['errors']}/{incident['postbacks']} failed, mostly "
                f"{esc(incident['top_error_kind'] or 'n/a')}; {cause}{_suspects_html(suspects, zone)}</li>"
            )
        out.append(f"<h3>Incidents</h3><ul>{''.join(items)}</ul>")
    else:
        out.append("<p>No incidents in this period.</p>")
    out.append("</div>")
    return "".join(out)


#: Suspects the summary lists per incident (the diagnose JSON has them all).
SHOWN_SUSPECTS: Final = 3


def _change_html(change: dict[str, Any], zone: str) -> str:
    """An activity row (when, who, what), redacted and escaped."""
    import html

    esc = html.escape
    return (
        f"{esc(_local_time(change['changed_at'], zone))} {esc(redact(change['author']) or '')} "
        f"{esc(change['action'] or '')} {esc((change['entity_type'] or '').replace('_', ' '))} "
        f"{esc(redact(change['entity_name'] or change['entity_id'] or '') or '')}"
    )


def _suspects_html(suspects: list[dict[str, Any]], zone: str) -> str:
    """The top suspects of an incident with their evidence, as a ranked list (what diagnose found)."""
    import html

    if not suspects:
        return ""
    esc = html.escape

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    items = []
    for s in suspects[:SHOWN_SUSPECTS]:
        fields = "; ".join(
            f"{esc(redact(f['field']) or '')} {esc(redact(f['old']) or '∅')} → {esc(redact(f['new']) or '∅')}"
            for f in s["fields"]
        )
        after = []
        if s["volume_changed"]:
            after.append(f"postbacks/h {s['postbacks_per_hour_before']:g} → {s['postbacks_per_hour_after']:g}")
        if s["error_mix_changed"]:
            after.append(f"error rate {rate(s['error_rate_before'])} → {rate(s['error_rate_after'])}")
        kind = s["family"] + (f" {s['direction']}" if s.get("direction") else "")
        items.append(
            f"<li>{s['minutes_before']:g} min before: {_change_html(s, zone)} — {esc(kind)} change, "
            f"{'<b>explains it</b>' if s['explains'] else 'does not explain it'}"
            + (f"; {fields}" if fields else "")
            + (f"; after it: {esc(', '.join(after))}" if after else "")
            + "</li>"
        )
    more = f" (top {SHOWN_SUSPECTS} of {len(suspects)})" if len(suspects) > SHOWN_SUSPECTS else ""
    return f"<br>Suspects{more}:<ol class='cf-suspects'>{''.join(items)}</ol>"
