"""The scheduled HTML report in a real browser, offline, with hostile data in the store.

The sample account plus postbacks and activity whose messages, URLs, names and
authors carry script tags, ``onerror`` handlers, ``javascript:`` URLs and
credentials. The report must draw its charts without the network, run none of
that data as code, and show no credential.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import copy_store, local_only, save_png, update_screenshots

META_TOKEN = "EAAGsecretTOKEN123456789"
API_KEY = "cfkeySECRET0123456789abcdef"
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
JS_URL = "javascript:window.__pwned=1"
EVIL_SOURCE = "e0e0e0e0e0e0e0e0e0e0e0e1"
EVIL_INTEGRATION = "e0e0e0e0e0e0e0e0e0e0e0e2"
#: Plots the report draws at least (error rate ×2, kinds, classes, signatures, gaps, lags, funnel).
MIN_PLOTS = 6

POSTBACK_HEADER = (
    "Postback ID", "Click ID", "Postback Time", "Is Error", "Error Message", "Status Code", "Postback URL",
    "Custom Conversion (ct)", "Integration ID", "Traffic Source ID", "Traffic Source", "Campaign ID",
)  # fmt: skip
ACTIVITY_HEADER = ("Date", "User", "Entity Type", "Entity ID", "Entity Name", "Action", "Old Value", "New Value")


def hostile_postbacks(path: Path) -> Path:
    """Postbacks of a traffic source named with markup, failing with hostile messages and URLs."""
    messages = [
        f"{SCRIPT} rejected access_token={META_TOKEN}",
        f"{IMG} invalid api_key={API_KEY}",
        f"{JS_URL} Unauthorized",
        f'"><svg onload="window.__pwned=1"> token expired access_token={META_TOKEN}',
    ]
    urls = [
        f"https://evil.test/pb?cid={{clickid}}&access_token={META_TOKEN}&x={SCRIPT}",
        f"{JS_URL}//https://evil.test/pb?api_key={API_KEY}",
        f"https://evil.test/pb?cid=1&api_key={API_KEY}&next={IMG}",
    ]
    rows = []
    for i in range(24):
        failed = i % 3 != 2
        rows.append(
            (
                f"evil-pb-{i:03d}",
                f"e0e0e0e0-0000-4000-8000-{i:012d}",
                f"2026-11-19 {8 + i // 4:02d}:{(i * 7) % 60:02d}:00",
                "1" if failed else "0",
                messages[i % len(messages)] if failed else "",
                "401" if failed else "200",
                urls[i % len(urls)],
                SCRIPT if i % 4 == 0 else "sale",
                EVIL_INTEGRATION,
                EVIL_SOURCE,
                f"{SCRIPT}Evil Ads{IMG}",
                "7f15052434b9b5df9e7769b1",
            )
        )
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(POSTBACK_HEADER)
        writer.writerows(rows)
    return path


def hostile_activity(path: Path) -> Path:
    """Edits by an author named with markup, whose old and new values hold a script URL and credentials."""
    new_value = (
        f'{{"postback_url": "https://evil.test/pb?access_token={META_TOKEN}", "api_key": "{API_KEY}", '
        f'"note": "{SCRIPT.replace(chr(34), "")}"}}'
    )
    rows = [
        (
            "2026-11-19 07:30:00",
            f"{IMG}@evil.test",
            "Traffic Source",
            EVIL_SOURCE,
            f"{SCRIPT}Evil Ads",
            "Updated",
            f'{{"postback_url": "{JS_URL}"}}',
            new_value,
        ),
        (
            "2026-11-19 09:45:00",
            f"{SCRIPT}@evil.test",
            "Integration",
            EVIL_INTEGRATION,
            f"{IMG} CAPI",
            "Updated",
            f'{{"access_token": "{META_TOKEN}"}}',
            f'{{"url": "{JS_URL}", "api_key": "{API_KEY}"}}',
        ),
    ]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(ACTIVITY_HEADER)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def hostile_report(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of the sample store plus the hostile postbacks and activity."""
    from cfanalytics.report import run
    from cfanalytics.store import LogStore

    root = tmp_path_factory.mktemp("hostile")
    store_path = copy_store(sample_store, root / "store")
    store = LogStore(store_path, create=False)
    result = store.ingest(
        [hostile_postbacks(root / "evil_postbacks.csv"), hostile_activity(root / "evil_activity.csv")]
    )
    assert not result.failures, result.failures
    out = root / "report.html"
    run(store_path, out)
    return out


def open_offline(browser: Any, html: Path) -> tuple[Any, Any, dict[str, list[Any]]]:
    """``html`` opened in an offline context whose every non-file request is aborted and recorded."""
    seen: dict[str, list[Any]] = {"blocked": [], "dialogs": [], "errors": []}
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 1000})
    local_only(context, seen["blocked"])
    page = context.new_page()

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.goto(html.as_uri(), wait_until="load", timeout=60_000)
    return context, page, seen


def test_report_is_inert_and_offline(
    browser: Any, hostile_report: Path, sample_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    context, page, seen = open_offline(browser, hostile_report)
    try:
        wait_for_plots(page)
        drawn = page.locator(".js-plotly-plot .main-svg").count()
        plots = page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(g => g.data && g.data.length).length"
        )
        page.wait_for_timeout(500)  # let any injected handler (onerror, onload) fire before checking
        save_png(page.screenshot(), "report_top.png")
        save_png(page.locator(".js-plotly-plot").first.screenshot(), "report_chart.png")

        assert drawn >= MIN_PLOTS
        assert plots >= MIN_PLOTS, f"only {plots} plots have data"
        assert seen["blocked"] == [], f"the report tried to reach the network: {seen['blocked']}"
        assert seen["dialogs"] == [], f"a dialog opened: {seen['dialogs']}"
        assert page.evaluate("() => typeof window.__pwned") == "undefined"
        made_from_data = page.evaluate(
            """() => ({
              img_x: document.querySelectorAll('img[src="x"], img[onerror]').length,
              svg_onload: document.querySelectorAll('svg[onload]').length,
              js_urls: document.querySelectorAll('a[href^="javascript:" i], [src^="javascript:" i]').length,
              data_scripts: Array.from(document.scripts).filter(s => s.text.trim().startsWith('window.__pwned')).length,
            })"""
        )
        assert made_from_data == {"img_x": 0, "svg_onload": 0, "js_urls": 0, "data_scripts": 0}
        # the hostile traffic source is charted, its name shown as text (a legend entry or a row title)
        legend = page.locator(".js-plotly-plot .legendtext, .js-plotly-plot .annotation-text").all_text_contents()
        assert any("Evil Ads" in text for text in legend), legend
    finally:
        context.close()
    if update_screenshots():
        doc_screenshot(browser, sample_store, tmp_path_factory.mktemp("report"))


def test_report_html_holds_no_secret_and_no_raw_payload(hostile_report: Path) -> None:
    text = hostile_report.read_text(encoding="utf-8")
    for secret in (META_TOKEN, API_KEY):
        assert secret not in text
    assert "<script>window.__pwned" not in text
    assert '<img src=x onerror="window.__pwned' not in text
    sidecar = hostile_report.with_suffix(".json").read_text(encoding="utf-8")
    assert META_TOKEN not in sidecar
    assert API_KEY not in sidecar


def wait_for_plots(page: Any) -> None:
    """Wait until at least :data:`MIN_PLOTS` Plotly charts are drawn."""
    page.wait_for_function(
        "(n) => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(g => g.querySelector('.main-svg'))"
        ".length >= n",
        arg=MIN_PLOTS,
        timeout=60_000,
    )


def doc_screenshot(browser: Any, sample_store: Path, folder: Path) -> None:
    """docs/screenshots/report.png: the top of the sample account's report (no hostile rows)."""
    from cfanalytics.report import run

    out = folder / "report.html"
    run(sample_store, out)
    context, page, seen = open_offline(browser, out)
    try:
        page.set_viewport_size({"width": 1280, "height": 1500})
        wait_for_plots(page)
        page.wait_for_timeout(500)
        save_png(page.screenshot(), "report.png", doc=True)
        assert seen["blocked"] == []
    finally:
        context.close()
