"""Browser tests: headless Chromium (Debian's, never a downloaded one), Jupyter servers on 127.0.0.1.

Fixtures start every server as a subprocess in its own process group, wait a
bounded time for it, and stop it (SIGTERM, then SIGKILL) in teardown. Servers
see a sample store built in a temporary folder (``$CFANALYTICS_STORE``) and
temporary Jupyter config, data and runtime folders, so neither the repository's
``data/`` nor the user's Jupyter settings are touched or used.

Screenshots go to ``test-artifacts/``; with ``CF_UPDATE_SCREENSHOTS=1`` the
documentation screenshots in ``docs/screenshots/`` are written too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from cfanalytics.charts import MIN_POSTBACKS

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts"
DOC_SCREENSHOTS = REPO / "docs" / "screenshots"
#: The project's virtualenv, else the one running the tests (a worktree without a .venv of its own).
VENV_BIN = REPO / ".venv" / "bin" if (REPO / ".venv" / "bin").is_dir() else Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
#: Longest wait for a server to answer.
STARTUP_SECONDS = 90
#: Longest wait for one notebook to run and its panel to render (the machine may be busy).
RENDER_MS = 180_000
#: Longest wait for a chart to follow a filter change.
UPDATE_MS = 60_000
#: URL schemes a page may load without leaving the machine.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


# ------------------------------------------------------------------------------------- helpers
def update_screenshots() -> bool:
    """True when the documentation screenshots should be rewritten."""
    return os.environ.get("CF_UPDATE_SCREENSHOTS") == "1"


def save_png(png: bytes, name: str, *, doc: bool = False) -> Path:
    """Write ``png`` to ``test-artifacts/name`` (and ``docs/screenshots/name`` when ``doc`` and updating)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    if doc and update_screenshots():
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (DOC_SCREENSHOTS / name).write_bytes(png)
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, *, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    """One request to ``127.0.0.1:port`` (no redirects followed); ``(status, body)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"token {token}"} if token else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def local_only(context: Any, blocked: list[str], *, host: str | None = None) -> None:
    """Abort and record every request of ``context`` that would leave the machine.

    ``host`` (``127.0.0.1:PORT``) is the one server the page may talk to; ``file:``,
    ``data:`` and ``blob:`` URLs are always allowed.
    """

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES) or (host is not None and url.startswith(f"http://{host}/")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", handle)


# ------------------------------------------------------------------------------------- servers
@dataclass
class Server:
    """A server process started by a fixture."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    log: Path

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{self.host}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_server(server: Server) -> None:
    """Stop the server's process group (kernels included): SIGTERM, a bounded wait, then SIGKILL."""
    import psutil

    proc = server.process
    children = _descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # kernels run in process groups of their own: end any that outlived the server, by pid
    _gone, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


def start_server(
    command: Sequence[str], *, env: dict[str, str], port: int, token: str, ready: str, log: Path
) -> Server:
    """Start ``command`` in a new process group and wait until ``GET ready`` answers (bounded)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=str(log.parent),
        )  # fmt: skip
    server = Server(process, port, token, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, ready, token=token)
            if status < 500:
                return server
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(
        f"{command[0]} did not answer on {server.url}{ready} within {STARTUP_SECONDS} s:\n{server.log_tail()}"
    )


def jupyter_env(root: Path, store: Path) -> dict[str, str]:
    """Environment for a Jupyter server: the given store, Jupyter folders of its own under ``root``."""
    config = root / "config"
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    plugins = {
        # never save the repository's notebooks (and no news / update pop-ups)
        "docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in plugins.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    dirs = {"JUPYTER_CONFIG_DIR": config, "JUPYTER_DATA_DIR": root / "data", "JUPYTER_RUNTIME_DIR": root / "runtime"}
    dirs["IPYTHONDIR"] = root / "ipython"
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "CF_"))}
    env.update({k: str(v) for k, v in dirs.items()})
    env["CFANALYTICS_STORE"] = str(store)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from /usr/bin/chromium; a missing one fails the browser tests with what to install."""
    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need Chromium at {CHROMIUM}: apt-get install chromium (make test does it as root)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("browser tests need the playwright package: pip install -e '.[test]'")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample account ingested into a store of its own (the repository's data/ is not used)."""
    from cfanalytics.workspace import build_sample_store

    store, _account, _result = build_sample_store(tmp_path_factory.mktemp("sample"))
    return Path(store.path)


@pytest.fixture(scope="module")
def lab(browser: Any, sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JupyterLab on 127.0.0.1 serving notebooks/ (never saving them), with the sample store."""
    del browser  # started first: a missing Chromium fails before any server starts
    root = tmp_path_factory.mktemp("lab")
    port, token = free_port(), secrets.token_hex(16)
    command = [
        str(VENV_BIN / "jupyter-lab"),
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={NOTEBOOKS}",
        # checkpoints (Lab writes one when a notebook is opened) go to the temporary folder
        f"--FileCheckpoints.checkpoint_dir={root / 'checkpoints'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    server = start_server(
        command, env=jupyter_env(root, sample_store), port=port, token=token, ready="/api/status", log=root / "lab.log"
    )
    try:
        yield server
    finally:
        shutdown_kernels(server)
        stop_server(server)


def shutdown_kernels(server: Server) -> None:
    """Shut down every kernel of a Jupyter server through its REST API (bounded)."""
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        _status, body = http_get(server.port, "/api/kernels", token=server.token)
        for kernel in json.loads(body):
            http_get(server.port, f"/api/kernels/{kernel['id']}", token=server.token, method="DELETE")


def start_voila(root: Path, store: Path) -> Server:
    """Voila on 127.0.0.1 serving notebooks/02_postback_doctor.ipynb on ``store`` (its files under ``root``)."""
    port = free_port()
    command = [
        str(VENV_BIN / "voila"),
        str(NOTEBOOKS / "02_postback_doctor.ipynb"),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
    ]
    # a static file answers once the server is up, without starting a kernel as "/" would
    return start_server(
        command, env=jupyter_env(root, store), port=port, token="", ready="/voila/static/voila.js",
        log=root / "voila.log",
    )  # fmt: skip


@pytest.fixture(scope="module")
def voila(browser: Any, sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Voila on 127.0.0.1 serving notebooks/02_postback_doctor.ipynb, with the sample store."""
    del browser
    server = start_voila(tmp_path_factory.mktemp("voila"), sample_store)
    try:
        yield server
    finally:
        stop_server(server)


# ------------------------------------------------------------------------------------- numbers
def store_timezone(store: Path) -> str:
    """The store's account zone, read from its metadata file."""
    return str(json.loads((store / "cfanalytics.json").read_text())["timezone"])


def source_id(store: Path, name: str) -> str:
    """The id of the traffic source displayed as ``name`` (from the visits' name column)."""
    ids = (
        pl.scan_delta(str(store / "tables" / "visits"))
        .filter(pl.col("traffic_source_name") == name)
        .select(pl.col("traffic_source_id").unique())
        .collect()
        .to_series()
        .to_list()
    )
    assert len(ids) == 1, f"expected one traffic source named {name!r}, found {ids}"
    return str(ids[0])


def expected_rates(store: Path, traffic_source_id: str, first: date, last: date) -> pl.DataFrame:
    """Hourly error rate (%) of one traffic source's postbacks, computed from the store's tables.

    A postback's traffic source is its own column, else its visit's, else its
    conversions' (smallest id); postbacks from local midnight of ``first`` to local
    midnight after ``last``; hours are UTC times converted to the store's zone and
    truncated to the hour. Columns: ``x`` (``YYYY-MM-DDTHH:MM:SS`` wall clock),
    ``postbacks``, ``errors``, ``rate`` (``errors / postbacks * 100``, 6 decimals).
    """
    tables = store / "tables"
    zone = store_timezone(store)
    visits = pl.scan_delta(str(tables / "visits")).select("click_id", pl.col("traffic_source_id").alias("visit_ts"))
    conversions = (
        pl.scan_delta(str(tables / "conversions"))
        .group_by("click_id")
        .agg(pl.col("traffic_source_id").min().alias("conversion_ts"))
    )
    lo = datetime.combine(first, datetime.min.time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    hi = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return (
        pl.scan_delta(str(tables / "postbacks"))
        .select("click_id", "postback_time", "is_error", "traffic_source_id")
        .join(visits, on="click_id", how="left")
        .join(conversions, on="click_id", how="left")
        .with_columns(pl.coalesce("traffic_source_id", "visit_ts", "conversion_ts").alias("source"))
        .filter(
            (pl.col("source") == traffic_source_id) & (pl.col("postback_time") >= lo) & (pl.col("postback_time") < hi)
        )
        .with_columns(pl.col("postback_time").dt.convert_time_zone(zone).dt.truncate("1h").alias("hour"))
        .group_by("hour")
        .agg(pl.len().alias("postbacks"), pl.col("is_error").sum().alias("errors"))
        .sort("hour")
        .select(
            pl.col("hour").dt.replace_time_zone(None).dt.strftime("%Y-%m-%dT%H:%M:%S").alias("x"),
            "postbacks",
            "errors",
            # the chart leaves the rate of a quieter hour out of its line
            pl.when(pl.col("postbacks") >= MIN_POSTBACKS)
            .then((pl.col("errors") / pl.col("postbacks") * 100).round(6))
            .alias("rate"),
        )
        .collect()
    )


# ------------------------------------------------------------------------------------- pages
#: The traces of the postback doctor's error-rate chart, read from Plotly's graph div.
RATE_TRACES_JS = """() => {
  const gd = Array.from(document.querySelectorAll('.js-plotly-plot')).find(
    g => g.layout && g.layout.title && String(g.layout.title.text || '').startsWith('Postback error rate'));
  if (!gd || !gd.data) return null;
  return gd.data.filter(t => t.type !== 'bar')  // the volume bars under the lines
    .map(t => ({name: t.name, x: Array.from(t.x || [], String), y: Array.from(t.y || [])}));
}"""


def rate_traces(page: Any) -> list[dict[str, Any]] | None:
    """The error-rate chart's line traces (the "Changes" markers left out), or None before it is drawn."""
    traces = page.evaluate(RATE_TRACES_JS)
    if traces is None:
        return None
    return [t for t in traces if t["name"] != "Changes"]


def wait_for_rate_traces(page: Any, names: Sequence[str] | None = None, *, timeout: float = UPDATE_MS) -> None:
    """Wait until the error-rate chart has line traces (exactly ``names``, in any order, when given)."""
    wanted = sorted(names) if names is not None else None
    page.wait_for_function(
        f"""(wanted) => {{
          const traces = ({RATE_TRACES_JS})();
          if (!traces) return false;
          const names = traces.map(t => t.name).filter(n => n !== 'Changes').sort();
          return wanted === null ? names.length > 0 : JSON.stringify(names) === JSON.stringify(wanted);
        }}""",
        arg=wanted,
        timeout=timeout,
    )


def wall_clock(x: str) -> str:
    """A Plotly x value (``2026-11-16T00:00:00Z``, ``2026-11-16 00:00``…) as ``YYYY-MM-DDTHH:MM:SS``."""
    text = x.replace(" ", "T").removesuffix("Z")
    return (text + ":00" * (2 - text.count(":")))[:19] if "T" in text else text


def trace_points(trace: dict[str, Any]) -> list[tuple[str, float | None]]:
    """``(wall-clock hour, rate rounded to 6 decimals)`` of a chart trace."""
    return [
        (wall_clock(x), None if y is None else round(float(y), 6)) for x, y in zip(trace["x"], trace["y"], strict=True)
    ]


def expected_points(frame: pl.DataFrame) -> list[tuple[str, float | None]]:
    """``(x, rate)`` pairs of :func:`expected_rates`."""
    return list(zip(frame["x"].to_list(), frame["rate"].to_list(), strict=True))


def filter_select(scope: Any, label: str) -> Any:
    """The ``<select>`` of a native multi-select labelled ``label`` (the panels' former filter widget)."""
    box = scope.locator(".widget-select-multiple").filter(has=scope.locator("label", has_text=label))
    return box.locator("select")


def filter_choice(scope: Any, label: str) -> Any:
    """The panel's searchable checkbox-list filter titled ``label``."""
    return scope.locator(".cf-multichoice").filter(has=scope.locator(".widget-html-content b", has_text=label))


def choice_labels(scope: Any, label: str) -> list[str]:
    """The option labels of the checkbox-list filter titled ``label``, in order."""
    boxes = filter_choice(scope, label).locator(".widget-checkbox label.widget-label-basic")
    return [t.strip() for t in boxes.all_inner_texts()]


def choose(scope: Any, label: str, option: str) -> None:
    """Pick ``option`` (its visible label) in the filter titled ``label``, as a user would.

    A checkbox-list filter gets the option's box ticked; a native multi-select (the
    panels before the checkbox lists) gets the option selected.
    """
    choice = filter_choice(scope, label)
    if choice.count():
        box = choice.locator(".widget-checkbox label.widget-label-basic").filter(
            has_text=re.compile(rf"^\s*{re.escape(option)}\s*$")
        )
        box.locator("input[type=checkbox]").check()
    else:
        filter_select(scope, label).select_option(label=option)


def panel_dates(scope: Any) -> tuple[date, date]:
    """The panel's From/To dates as shown in its date pickers."""
    values = scope.locator(".widget-datepicker input[type=date]").evaluate_all("els => els.map(e => e.value)")
    assert len(values) >= 2, f"no date pickers: {values}"
    assert all(values[:2]), f"date pickers not filled: {values}"
    return date.fromisoformat(values[0]), date.fromisoformat(values[1])


def shot(page: Any, locator: Any, name: str, *, doc: bool = False, max_height: int = 1600) -> Path:
    """Screenshot the top of ``locator`` (at most ``max_height`` pixels, within JupyterLab's notebook area)."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    box = locator.bounding_box()
    assert box is not None, f"{name}: nothing to screenshot"
    bottom = locator.evaluate(
        """e => {
          const p = e.closest('.jp-WindowedPanel-outer, .jp-Notebook');
          return p ? Math.min(p.getBoundingClientRect().bottom, window.innerHeight) : window.innerHeight;
        }"""
    )
    x, y = max(box["x"], 0), max(box["y"], 0)
    viewport = page.viewport_size or {"width": 1400, "height": 1000}
    clip = {
        "x": x,
        "y": y,
        "width": min(box["width"], viewport["width"] - x),
        "height": min(box["height"], max_height, bottom - y),
    }
    return save_png(page.screenshot(clip=clip), name, doc=doc)


def copy_store(store: Path, target: Path) -> Path:
    """A copy of a store folder (Delta tables are relative, so a copy is a store of its own)."""
    shutil.copytree(store, target)
    return target
