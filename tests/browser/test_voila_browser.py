"""The postback doctor served as a Voila dashboard: pick a traffic source in the page.

One page load serves every test here (a module fixture): the panel renders, the
traffic-source pick reaches the kernel (the status line shows that source's
numbers, computed from the store's tables with plain Polars), and the error-rate
chart should show the same hourly rates.

Each chart's figure is part of its widget's opening state, and plotly.js is
loaded once per page, so the chart draws on page load and follows the filter
whatever the time the browser takes to load the widgets; no page error is allowed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.browser.conftest import (
    RENDER_MS,
    Server,
    choice_labels,
    choose,
    expected_points,
    expected_rates,
    filter_choice,
    local_only,
    panel_dates,
    rate_traces,
    save_png,
    source_id,
    trace_points,
    wait_for_rate_traces,
)

SOURCE = "PropellerAds"
#: What Voila's page template loads from a CDN (Font Awesome CSS); blocked, and nothing else may be tried.
TEMPLATE_CDN = "https://cdn.jsdelivr.net/npm/@fortawesome/"
#: How long the chart gets to show data (the panel's other widgets are already up to date by then).
CHART_MS = 15_000


@dataclass
class VoilaRun:
    """What the page showed: before and after picking :data:`SOURCE`."""

    dates: tuple[date, date]
    options: list[str]
    status_before: str
    status_after: str
    traces_before: list[dict[str, Any]] | None
    traces_after: list[dict[str, Any]] | None
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def status_text(page: Any) -> str:
    """The doctor's status line (``N postbacks · E errors (r%) · …``)."""
    return page.locator(".widget-html-content", has_text="postbacks ·").first.inner_text().replace(",", "")


def traces_within(page: Any, names: list[str] | None, timeout: float) -> list[dict[str, Any]] | None:
    """The chart's traces once they are ``names`` (any, when None), or as they are after ``timeout`` ms."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # keep what the page shows
        wait_for_rate_traces(page, names, timeout=timeout)
    return rate_traces(page)


@pytest.fixture(scope="module")
def voila_run(browser: Any, voila: Server) -> VoilaRun:
    """Open the dashboard, wait for the panel, pick :data:`SOURCE` in the traffic-source list."""
    blocked: list[str] = []
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    local_only(context, blocked, host=voila.host)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{voila.url}/", timeout=RENDER_MS)
        filter_choice(page, "Traffic sources").wait_for(timeout=RENDER_MS)
        page.locator(".js-plotly-plot").first.wait_for(state="attached", timeout=RENDER_MS)
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        dates = panel_dates(page)
        options = choice_labels(page, "Traffic sources")
        status_before = status_text(page)
        traces_before = traces_within(page, None, CHART_MS)
        save_png(page.screenshot(full_page=True), "voila_postback_doctor.png")

        choose(page, "Traffic sources", SOURCE)
        deadline = time.monotonic() + RENDER_MS / 1000
        while status_text(page) == status_before and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        status_after = status_text(page)
        traces_after = traces_within(page, [SOURCE], CHART_MS)
        save_png(page.screenshot(full_page=True), "voila_postback_doctor_filtered.png")
    finally:
        context.close()
    return VoilaRun(dates, options, status_before, status_after, traces_before, traces_after, blocked, errors)


@pytest.fixture(scope="module")
def propeller(voila_run: VoilaRun, sample_store: Path) -> pl.DataFrame:
    """:data:`SOURCE`'s hourly numbers over the dates the panel shows, from the store's tables."""
    first, last = voila_run.dates
    return expected_rates(sample_store, source_id(sample_store, SOURCE), first, last)


def test_voila_filter_reaches_the_panel(voila_run: VoilaRun, propeller: pl.DataFrame) -> None:
    assert SOURCE in voila_run.options, voila_run.options
    assert voila_run.status_before != voila_run.status_after
    totals = f"{propeller['postbacks'].sum()} postbacks · {propeller['errors'].sum()} errors"
    assert voila_run.status_after.startswith(totals), voila_run.status_after
    assert voila_run.errors == []
    assert [url for url in voila_run.blocked if not url.startswith(TEMPLATE_CDN)] == []


def test_voila_chart_drawn_on_load(voila_run: VoilaRun, propeller: pl.DataFrame) -> None:
    traces = voila_run.traces_before or []
    names = [t["name"] for t in traces]
    assert SOURCE in names, names
    assert trace_points(next(t for t in traces if t["name"] == SOURCE)) == expected_points(propeller)


def test_voila_chart_follows_traffic_source_filter(voila_run: VoilaRun, propeller: pl.DataFrame) -> None:
    traces = voila_run.traces_after or []
    assert [t["name"] for t in traces] == [SOURCE]
    assert trace_points(traces[0]) == expected_points(propeller)
