"""The notebooks' panels in JupyterLab, driven like a user: open, Run All, pick a traffic source.

The postback doctor's error-rate chart is read from the page (Plotly's graph div)
and compared with the same numbers computed from the store's tables with plain
Polars. The other panel notebooks must run and draw their chart.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    RENDER_MS,
    UPDATE_MS,
    Server,
    choice_labels,
    choose,
    expected_points,
    expected_rates,
    filter_choice,
    http_get,
    local_only,
    panel_dates,
    rate_traces,
    shot,
    source_id,
    trace_points,
    wait_for_rate_traces,
)

SOURCE = "PropellerAds"
#: Longest wait for a notebook's kernel to be ready or done (seconds).
KERNEL_SECONDS = RENDER_MS / 1000


def kernel_state(lab: Server, notebook: str) -> str | None:
    """Execution state of the kernel of the notebook's session (None while there is none)."""
    with contextlib.suppress(OSError, ValueError):
        _status, body = http_get(lab.port, "/api/sessions", token=lab.token)
        for session in json.loads(body):
            if session.get("path") == notebook and session.get("kernel"):
                return str(session["kernel"].get("execution_state"))
    return None


def accept_dialogs(page: Any) -> None:
    """Accept a dialog JupyterLab may show (kernel selection, …): its default button keeps the kernel."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        with contextlib.suppress(Exception):
            dialog.locator(".jp-mod-accept").first.click(timeout=2_000)


def wait_kernel_idle(page: Any, lab: Server, notebook: str, *, run_done: bool = False) -> None:
    """Wait (bounded) until the notebook's kernel is idle (and, with ``run_done``, every code cell has run)."""
    deadline = time.monotonic() + KERNEL_SECONDS
    state = None
    while time.monotonic() < deadline:
        accept_dialogs(page)
        state = kernel_state(lab, notebook)
        if state == "idle" and (not run_done or all_cells_ran(page)):
            return
        time.sleep(0.5)
    raise AssertionError(f"kernel of {notebook} not idle after {KERNEL_SECONDS:.0f} s (state {state})")


def all_cells_ran(page: Any) -> bool:
    """True when every code cell shows an execution count (``[n]:``), none pending (``[*]:``)."""
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    return bool(prompts) and all(p.strip() not in ("", "[ ]:", "[*]:") for p in prompts)


def open_and_run(browser: Any, lab: Server, notebook: str, *, height: int = 1000) -> tuple[Any, Any, list[str]]:
    """Open ``notebook`` in a fresh workspace, wait for its kernel, and Run All Cells from the menu."""
    blocked: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": height})
    local_only(context, blocked, host=lab.host)
    page = context.new_page()
    workspace = Path(notebook).stem.replace("_", "-")
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{notebook}?token={lab.token}", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=RENDER_MS)
    wait_kernel_idle(page, lab, notebook)
    with contextlib.suppress(Exception):  # more room for the panel: fold the file browser
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click(timeout=2_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    return context, page, blocked


def assert_no_error(page: Any) -> None:
    """No cell output is an error (traceback)."""
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()[:2000]


def panel_output(page: Any) -> Any:
    """The output holding the panel (a widget box)."""
    return page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-vbox")).first


def test_postback_doctor_follows_traffic_source_filter(browser: Any, lab: Server, sample_store: Path) -> None:
    notebook = "02_postback_doctor.ipynb"
    context, page, blocked = open_and_run(browser, lab, notebook, height=1800)
    try:
        filter_choice(page, "Traffic sources").wait_for(timeout=RENDER_MS)
        panel = panel_output(page)
        panel.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        wait_for_rate_traces(page, timeout=RENDER_MS)
        wait_kernel_idle(page, lab, notebook, run_done=True)
        assert_no_error(page)

        first, last = panel_dates(panel)
        rates = expected_rates(sample_store, source_id(sample_store, SOURCE), first, last)
        expected = expected_points(rates)
        assert expected, f"the sample has no {SOURCE} postbacks from {first} to {last}"

        before = rate_traces(page) or []
        names = [t["name"] for t in before]
        assert SOURCE in names, names
        assert len(names) > 1, names
        assert trace_points(next(t for t in before if t["name"] == SOURCE)) == expected
        shot(page, panel, "postback_doctor.png", doc=True, max_height=1500)

        # pick the source in the UI: its box's label is the name, its value the id
        labels = choice_labels(page, "Traffic sources")
        assert SOURCE in labels, labels
        choose(page, "Traffic sources", SOURCE)
        wait_for_rate_traces(page, [SOURCE])
        after = rate_traces(page) or []
        assert [t["name"] for t in after] == [SOURCE]
        assert trace_points(after[0]) == expected
        totals = f"{rates['postbacks'].sum()} postbacks · {rates['errors'].sum()} errors"
        status, deadline = "", time.monotonic() + UPDATE_MS / 1000
        while time.monotonic() < deadline:  # the status line may settle a moment after the chart
            status = panel.locator(".widget-html-content", has_text="postbacks ·").first.inner_text().replace(",", "")
            if status.startswith(totals):
                break
            page.wait_for_timeout(100)
        assert status.startswith(totals), status
        shot(page, panel, "postback_doctor_filtered.png", max_height=1500)
        assert blocked == [], f"JupyterLab tried to reach the network: {blocked}"
    finally:
        context.close()


@pytest.mark.parametrize(
    ("notebook", "screenshot", "title"),
    [
        ("01_event_logs.ipynb", "event_logs.png", "Event logs"),
        ("03_conversion_gaps.ipynb", "conversion_gaps.png", "Conversion gaps"),
        ("04_activity_audit.ipynb", "activity_log.png", "Activity"),
    ],
)
def test_panel_notebook_renders(browser: Any, lab: Server, notebook: str, screenshot: str, title: str) -> None:
    context, page, blocked = open_and_run(browser, lab, notebook, height=1600)
    try:
        panel = panel_output(page)
        panel.locator("h3", has_text=title).wait_for(timeout=RENDER_MS)
        chart = panel.locator(".js-plotly-plot").first
        chart.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot'))"
            ".some(g => g.data && g.data.length > 0 && g.querySelector('.main-svg'))",
            timeout=RENDER_MS,
        )
        wait_kernel_idle(page, lab, notebook, run_done=True)
        assert_no_error(page)
        shot(page, panel, screenshot, doc=True, max_height=1500)
        assert blocked == [], f"JupyterLab tried to reach the network: {blocked}"
    finally:
        context.close()
