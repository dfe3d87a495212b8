"""Every panel notebook, opened again and again in a 1280×800 window while every core is busy.

Each open is a new page (so the browser loads JupyterLab and every widget again,
as after a reload; one browser profile per notebook, so its cache is warm after
the first open) on one JupyterLab server; the kernel is kept between opens, with
its widgets closed, so an open costs seconds, not a kernel start. No request may
leave the machine. After Run All,
every chart of the notebook must show its traces (data in Plotly's graph div and
drawn SVG traces), and, in a panel, follow a filter change picked in the UI: the
main chart must show exactly the chosen group, every chart must change, the
status line must change, and the busy indicator must be gone. The time from the
click to that state is the end-to-end latency of a filter change; the numbers
are written to ``test-artifacts/panel_latency.json``.

``CF_PANEL_OPENS`` sets the opens per notebook (default 10); ``CF_PANEL_COLD=1`` gives
every open a new browser profile (an empty cache), which is slower and stresses the
widgets' loading most.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Server, choose, http_get, save_png
from tests.browser.test_lab_browser import accept_dialogs, all_cells_ran, assert_no_error, kernel_state

OPENS = int(os.environ.get("CF_PANEL_OPENS", "10"))
WIDTH, HEIGHT = 1280, 800
#: Longest wait for Run All to finish on a busy machine (seconds).
RUN_SECONDS = 150
#: Longest wait for the charts to draw once every cell has run, and for a filter change (ms).
DRAW_MS = 25_000
SOURCE = "PropellerAds"

#: Every Plotly graph of the open notebook: title, trace names, points, drawn SVG traces, a checksum.
CHARTS_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook') || document;
  return Array.from(nb.querySelectorAll('.js-plotly-plot')).map(gd => {
    const data = Array.isArray(gd.data) ? gd.data : [];
    let points = 0, sum = 0;
    const cats = new Set();
    for (const t of data) {
      const xs = Array.from(t.x || []), ys = Array.from(t.y || []);
      points += Math.max(xs.length, ys.length);
      for (const v of xs.concat(ys)) {
        if (typeof v === 'number' && isFinite(v)) sum += v;
        else if (typeof v === 'string') cats.add(v);
      }
    }
    const title = gd.layout && gd.layout.title ? String(gd.layout.title.text || '') : '';
    return {
      title, points, sum,
      names: data.map(t => (t.name === undefined || t.name === null) ? '' : String(t.name)),
      cats: Array.from(cats),
      drawn: gd.querySelectorAll('.main-svg .trace').length,
    };
  });
}"""

#: The state a filter change must reach: main chart as expected, status changed, busy indicator gone.
DONE_JS = (
    """(want) => {
  const charts = ("""
    + CHARTS_JS
    + """)();
  if (charts.length < want.charts) return false;
  const main = charts[0];
  if (!(main.points > 0 && main.drawn > 0)) return false;
  if (want.names) {
    // the lines only: not the change markers, nor the volume bars under each line
    const names = main.names.filter(n => !['Changes', 'Failed postbacks', 'Accepted postbacks'].includes(n)).sort();
    if (JSON.stringify(names) !== JSON.stringify(want.names)) return false;
  }
  if (want.only) {
    const shown = main.cats.filter(c => want.universe.includes(c));
    if (JSON.stringify(shown) !== JSON.stringify([want.only])) return false;
  }
  const status = Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-html-content'))
    .map(e => e.innerText.trim()).find(t => new RegExp(want.status).test(t));
  if (!status || status === want.before) return false;
  return !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .cf-busy');
}"""
)

#: Remember whether the busy indicator showed at any time after this call.
BUSY_WATCH_JS = """() => {
  window.__cfBusySeen = false;
  if (window.__cfBusyObserver) window.__cfBusyObserver.disconnect();
  window.__cfBusyObserver = new MutationObserver(() => {
    if (document.querySelector('.cf-busy')) window.__cfBusySeen = true;
  });
  window.__cfBusyObserver.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@dataclass(frozen=True)
class Case:
    """A notebook, its charts, and the filter change a panel must follow."""

    notebook: str
    charts: int
    status: str | None = None  # regex of the status line
    label: str | None = None  # filter title
    option: str | None = None  # option label picked
    names: tuple[str, ...] | None = None  # main chart's trace names afterwards
    only: str | None = None  # the one traffic source the main chart shows afterwards


CASES = (
    Case("01_event_logs.ipynb", 1, r"^[\d,]+ events ·", "Event type", "conversion", names=("conversion",)),
    Case("02_postback_doctor.ipynb", 4, r"^[\d,]+ postbacks ·", "Traffic sources", SOURCE, names=(SOURCE,)),
    Case("03_conversion_gaps.ipynb", 1, r"^[\d,]+ conversions ·", "Traffic sources", SOURCE, only=SOURCE),
    Case("04_activity_audit.ipynb", 1, r"^[\d,]+ changes$", "Action", "updated", names=("updated",)),
    Case("05_ad_hoc_error_rates.ipynb", 1),
)
LATENCY: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def cpu_load() -> Iterator[list[int]]:
    """One busy-loop process per core for the whole module (stopped by pid at the end)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def sources(store: Path) -> list[str]:
    """Every traffic source name of the store."""
    import polars as pl

    frame = pl.scan_delta(str(store / "tables" / "visits")).select("traffic_source_name").unique().collect()
    return [str(n) for n in frame.to_series().drop_nulls().to_list()]


def close_widgets(lab: Server, notebook: str) -> None:
    """Close every widget of the notebook's kernel (what a fresh kernel would have), through its connection file."""
    from jupyter_client import BlockingKernelClient

    _status, body = _sessions(lab)
    kernel = next((s["kernel"]["id"] for s in body if s.get("path") == notebook and s.get("kernel")), None)
    if kernel is None:
        return
    client = BlockingKernelClient(connection_file=str(lab.log.parent / "runtime" / f"kernel-{kernel}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive("import ipywidgets; ipywidgets.Widget.close_all()", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()


def _sessions(lab: Server) -> tuple[int, list[dict[str, Any]]]:
    status, body = http_get(lab.port, "/api/sessions", token=lab.token)
    return status, json.loads(body)


def run_all(page: Any, lab: Server, notebook: str) -> float:
    """Run All in ``notebook`` (loaded in ``page``) once the page is connected to its kernel; the seconds it took.

    On a busy machine the menu may be clicked before the page is ready to run
    cells: when no cell has started 20 s after a click, Run All is clicked again.
    """
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=RUN_SECONDS * 1000)
    deadline = time.monotonic() + RUN_SECONDS
    # the page's own view of the kernel (status bar "… | Idle"), not only the server's
    status = page.locator("#jp-main-statusbar, .jp-StatusBar-Widget").get_by_text(re.compile(r"\|\s*Idle"))
    status.first.wait_for(timeout=RUN_SECONDS * 1000)
    start = time.monotonic()
    clicked = 0.0
    while True:
        accept_dialogs(page)
        if not clicked or (time.monotonic() - clicked > 20 and not _any_cell_started(page)):
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            clicked = time.monotonic()
            page.wait_for_timeout(500)
        elif kernel_state(lab, notebook) == "idle" and all_cells_ran(page):
            return time.monotonic() - start
        assert time.monotonic() < deadline, f"{notebook}: Run All not done after {RUN_SECONDS} s"
        time.sleep(0.3)


def _any_cell_started(page: Any) -> bool:
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    return any(p.strip() not in ("", "[ ]:") for p in prompts)


def charts(page: Any) -> list[dict[str, Any]]:
    """:data:`CHARTS_JS` on the page."""
    return list(page.evaluate(CHARTS_JS))


def wait_drawn(page: Any, expected: int) -> list[dict[str, Any]]:
    """Scroll to each chart and wait (bounded) until ``expected`` charts show traces; return their states."""
    deadline = time.monotonic() + DRAW_MS / 1000
    states: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        for graph in page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot").all():
            with contextlib.suppress(Exception):
                graph.scroll_into_view_if_needed(timeout=1_000)
        states = charts(page)
        if len(states) >= expected and all(s["points"] > 0 and s["drawn"] > 0 for s in states[:expected]):
            return states
        page.wait_for_timeout(250)
    return states


@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_panel_draws_and_follows_filters_under_load(
    browser: Any, lab: Server, sample_store: Path, cpu_load: list[int], case: Case
) -> None:
    assert cpu_load, "no busy-loop processes"
    universe = sources(sample_store)
    failures: list[str] = []
    runs: list[float] = []
    latencies: list[float] = []
    workspace = f"load-{case.notebook.split('_')[0]}"
    steps: list[dict[str, float]] = []
    outside: list[str] = []
    # one browser profile per notebook (its cache warm after the first open, as for a user), a new page per open;
    # CF_PANEL_COLD=1: a new profile per open (slower; every open loads JupyterLab from an empty cache)
    cold = os.environ.get("CF_PANEL_COLD") == "1"

    def new_context() -> Any:
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        context.on("request", lambda r: None if _local(r.url, lab) else outside.append(r.url))
        return context

    context = new_context()
    try:
        for attempt in range(1, OPENS + 1):
            if cold and attempt > 1:
                context.close()
                context = new_context()
            step: dict[str, float] = {}
            steps.append(step)
            failure = _open_once(context, lab, case, universe=universe, workspace=workspace, step=step)
            if failure:
                failures.append(f"open {attempt}: {failure}")
            elif "filter" in step:
                latencies.append(step["filter"])
            if "run" in step:
                runs.append(step["run"])
            close_widgets(lab, case.notebook)
    finally:
        context.close()
    LATENCY[case.notebook] = {
        "opens": OPENS,
        "run_all_seconds": [round(r, 2) for r in runs],
        "filter_change_seconds": [round(v, 3) for v in latencies],
        "filter_change_median": round(statistics.median(latencies), 3) if latencies else None,
        "filter_change_max": round(max(latencies), 3) if latencies else None,
        "steps_seconds": [{k: round(v, 2) for k, v in step.items()} for step in steps],
        "failures": failures,
    }
    _write_latency()
    assert outside == [], f"JupyterLab tried to reach the network: {outside[:5]}"
    assert not failures, f"{case.notebook}: {len(failures)} of {OPENS} opens failed:\n" + "\n".join(failures)


def _local(url: str, lab: Server) -> bool:
    return url.startswith(("file:", "data:", "blob:", "about:", f"http://{lab.host}/", f"ws://{lab.host}/"))


def _write_latency() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "panel_latency.json").write_text(json.dumps(LATENCY, indent=2) + "\n")


def _open_once(
    context: Any, lab: Server, case: Case, *, universe: list[str], workspace: str, step: dict[str, float]
) -> str | None:
    """Open the notebook in a new page, Run All, check the charts and a filter change; the failure, or None."""
    page = context.new_page()
    try:
        begin = time.monotonic()
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{case.notebook}?token={lab.token}", timeout=90_000)
        step["page"] = time.monotonic() - begin
        try:
            step["run"] = run_all(page, lab, case.notebook)
        except Exception as exc:  # Run All not done in time, or the page never connected
            shot_name = f"load_{case.notebook.split('_')[0]}_{int(time.time())}_run.png"
            save_png(page.screenshot(), shot_name)
            return f"{str(exc).splitlines()[0]} (test-artifacts/{shot_name})"
        assert_no_error(page)
        begin = time.monotonic()
        states = wait_drawn(page, case.charts)
        step["draw"] = time.monotonic() - begin
        empty = [
            f"{i} {s['title'][:40]!r}: {s['points']} points, {s['drawn']} drawn"
            for i, s in enumerate(states[: case.charts])
            if not (s["points"] > 0 and s["drawn"] > 0)
        ]
        if len(states) < case.charts or empty:
            first = next((i for i, s in enumerate(states) if not (s["points"] > 0 and s["drawn"] > 0)), 0)
            with contextlib.suppress(Exception):
                graphs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot")
                graphs.nth(first).scroll_into_view_if_needed(timeout=2_000)
            shot_name = f"load_{case.notebook.split('_')[0]}_{len(LATENCY)}_{int(time.time())}_blank.png"
            save_png(page.screenshot(), shot_name)
            return f"{len(states)} of {case.charts} charts, empty: {empty} (test-artifacts/{shot_name})"
        if case.label is None:
            return None
        status_before = _status_text(page, case.status)
        if not status_before:
            return f"no status line matching {case.status!r}"
        page.evaluate(BUSY_WATCH_JS)
        want = {
            "charts": case.charts,
            "names": sorted(case.names) if case.names else None,
            "only": case.only,
            "universe": universe,
            "status": case.status,
            "before": status_before,
        }
        begin = time.monotonic()
        choose(page, case.label, case.option)
        try:
            page.wait_for_function(DONE_JS, arg=want, timeout=DRAW_MS, polling=20)
        except Exception:
            return f"the panel did not follow {case.label} = {case.option}"
        step["filter"] = time.monotonic() - begin
        after = wait_drawn(page, case.charts)
        unchanged = [
            i
            for i, (b, a) in enumerate(zip(states[: case.charts], after[: case.charts], strict=True))
            if (b["names"], b["points"], b["sum"], b["cats"]) == (a["names"], a["points"], a["sum"], a["cats"])
            or not (a["points"] > 0 and a["drawn"] > 0)
        ]
        if unchanged:
            return f"charts {unchanged} did not follow {case.label} = {case.option}"
        if page.locator(".cf-busy-box").count() and not page.evaluate("() => window.__cfBusySeen"):
            return "no busy indicator during the update"
        return None
    finally:
        page.close()


def _status_text(page: Any, pattern: str | None) -> str | None:
    if pattern is None:
        return None
    return page.evaluate(
        """(pattern) => Array.from(document.querySelectorAll(
             '.jp-NotebookPanel:not(.lm-mod-hidden) .widget-html-content'))
           .map(e => e.innerText.trim()).find(t => new RegExp(pattern).test(t)) || null""",
        pattern,
    )
