"""Performance and scale benchmarks: the kit vs DuckDB vs pandas on the same files.

``make bench`` runs ``python benchmarks/run.py`` (not part of CI)::

    python benchmarks/run.py                    # 1M and 10M visits (10M takes long)
    python benchmarks/run.py --sizes 1M,10M,50M # 50M is opt-in
    python benchmarks/run.py --quick            # 200k-visit smoke run

For each size the account is generated once (:mod:`gen`, cached in ``--workdir``)
and every engine works on the same files. Each measured step runs in its own
process (:mod:`steps`); the time is measured inside it around the work only,
peak RSS and CPU time come from ``getrusage`` of a small launcher process. A step
is repeated three times when it takes less than 60 s (the median is reported),
else run once. The kit's ingest is stopped after ``--kit-timeout`` minutes.

Results go to ``--out`` (default ``benchmarks/RESULTS.md``) between the
``results`` markers; text outside them (profiles, notes) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402

STEPS_PY: Final = HERE / "steps.py"
BEGIN: Final = "<!-- results:begin -->"
END: Final = "<!-- results:end -->"
REPEAT_BELOW: Final = 60.0
KIT_INGEST_TIMEOUT: Final = 30 * 60.0
STEP_TIMEOUT: Final = 3 * 3600.0
LOOKUPS: Final = 20
PANEL_CHANGES: Final = 50
#: memory_limit of the "DuckDB, same work, 2 GB" variant (the kit's RSS target)
DUCKDB_LIMIT: Final = "2GB"
#: pandas needs about this many bytes of memory per byte of CSV (re-estimated from each run).
PANDAS_BYTES_PER_CSV_BYTE: Final = 3.0
#: pandas' diagnose holds visits' click id, traffic source, campaign and name: ≈ 0.95 KB per visit at 10M.
PANDAS_DIAGNOSE_BYTES_PER_VISIT: Final = 1000


# ------------------------------------------------------------------------ one process
@dataclass
class Run:
    """One execution of one step in its own process."""

    status: str  # ok | timeout | failed
    seconds: float  # the work, measured inside the process
    wall: float  # the whole process (interpreter start and imports included)
    cpu: float  # user + system seconds of the process
    rss_mb: float  # peak resident set size
    load: float  # 1-minute load average when it started
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    anon_mb: float = float("nan")  # sampled peak of anonymous memory (RssAnon)
    file_mb: float = float("nan")  # sampled peak of mapped files (RssFile)


def run_step(step: str, params: dict[str, Any], *, timeout: float = STEP_TIMEOUT) -> Run:
    """Run one step through ``steps.py --launch`` and read its result, peak RSS and CPU time."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(STEPS_PY), "--launch", step, json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        wall = time.perf_counter() - t0
        nan = float("nan")
        return Run("timeout", wall, wall, nan, nan, load, error=f"stopped after {timeout / 60:.0f} min")
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return Run("failed", float("nan"), time.perf_counter() - t0, 0.0, 0.0, load, error=stderr[-300:])
    rss = report["maxrss_kb"] / 1024  # KiB on Linux
    split = {"anon_mb": report["rss_anon_kb"] / 1024, "file_mb": report["rss_file_kb"] / 1024}
    if report["returncode"] != 0 or report["result"] is None:
        tail = report["stderr"].strip().splitlines()
        error = tail[-1][:300] if tail else f"exit code {report['returncode']}"
        return Run("failed", float("nan"), report["wall"], report["cpu"], rss, load, error=error, **split)
    info = dict(report["result"])
    return Run("ok", float(info.pop("seconds")), report["wall"], report["cpu"], rss, load, info=info, **split)


@dataclass
class Measurement:
    """Repetitions of one step by one engine at one size."""

    size: str
    step: str
    engine: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.status == "ok" for r in self.runs)

    @property
    def seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.ok else None

    @property
    def rss_mb(self) -> float | None:
        return max(r.rss_mb for r in self.runs) if self.runs else None

    @property
    def cpu(self) -> float | None:
        return statistics.median(r.cpu for r in self.runs) if self.runs else None

    @property
    def info(self) -> dict[str, Any]:
        return self.runs[-1].info if self.runs else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "step": self.step,
            "engine": self.engine,
            "seconds": self.seconds,
            "rss_mb": self.rss_mb,
            "note": self.note,
            "skipped": self.skipped,
            "runs": [r.__dict__ for r in self.runs],
        }


def measure(
    size: str,
    step: str,
    engine: str,
    params: Callable[[int], dict[str, Any]],
    *,
    reps: int = 3,
    timeout: float = STEP_TIMEOUT,
    before: Callable[[int], None] | None = None,
) -> Measurement:
    """Run a step ``reps`` times when it takes < 60 s (else once); ``params(rep)`` gives each run's input."""
    m = Measurement(size, step, engine)
    for rep in range(reps):
        if before is not None:
            before(rep)
        run = run_step(_step_name(step, engine), params(rep), timeout=timeout)
        m.runs.append(run)
        _log(
            f"  {size:>4} {step:<22} {engine:<12} {run.status:<7} {run.seconds:9.3f} s  "
            f"wall {run.wall:8.1f} s  cpu {run.cpu:8.1f} s  rss {run.rss_mb:7.0f} MB (anon {run.anon_mb:.0f})  "
            f"load {run.load:4.1f}" + (f"  {run.error}" if run.error else "")
        )
        if run.status != "ok" or run.seconds >= REPEAT_BELOW:
            break
    return m


def _step_name(step: str, engine: str) -> str:
    names = {
        ("ingest", "kit"): "ingest_kit",
        ("ingest", "duckdb_bare"): "ingest_duckdb_bare",
        ("ingest", "duckdb"): "ingest_duckdb",
        ("ingest", "duckdb_2gb"): "ingest_duckdb",
        ("ingest", "pandas"): "ingest_pandas",
        ("reingest", "kit"): "ingest_kit",
        ("reingest", "duckdb"): "ingest_duckdb",
        ("ingest_rest", "kit"): "ingest_kit",
        ("diagnose", "kit"): "diagnose_kit",
        ("diagnose", "duckdb"): "diagnose_duckdb",
        ("diagnose", "pandas"): "diagnose_pandas",
        ("incidents", "kit"): "incidents_kit",
        ("panel", "kit"): "panel_kit",
        ("lookup", "kit"): "lookup_kit",
        ("lookup", "duckdb"): "lookup_duckdb",
        ("maintain", "kit"): "maintain_kit",
        ("lookup_maintained", "kit"): "lookup_kit",
        ("lookup_maintained", "duckdb"): "lookup_duckdb",
    }
    return names[(step, engine)]


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- import time
def _import_seconds(code: str) -> tuple[float, float]:
    """``python -X importtime -c CODE``: cumulative seconds of the top-level imports from ``cfanalytics`` on,
    and the wall time of the whole process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    total, started = 0, False
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if not m or len(m.group(3)) != 1:  # nested imports are indented further
            continue
        started = started or m.group(4) == "cfanalytics"
        if started:
            total += int(m.group(2))
    return total / 1e6, wall


def import_time(reps: int = 3) -> dict[str, float]:
    """``import cfanalytics`` (the target), and with its first use (``cf.LogStore``, which loads Polars); medians."""
    plain = [_import_seconds("import cfanalytics") for _ in range(reps)]
    used = [_import_seconds("import cfanalytics; cfanalytics.LogStore") for _ in range(reps)]
    bare = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    return {
        "seconds": statistics.median(p[0] for p in plain),
        "process_wall": statistics.median(p[1] for p in plain),
        "first_use": statistics.median(u[0] for u in used),
        "first_use_wall": statistics.median(u[1] for u in used),
        "python_wall": statistics.median(bare),
    }


# ------------------------------------------------------------------------ one size
@dataclass
class SizeResult:
    """Everything measured at one size."""

    size: str
    manifest: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get(self, step: str, engine: str) -> Measurement | None:
        return next((m for m in self.measurements if m.step == step and m.engine == engine), None)


def bench_size(label: str, visits: int, work: Path, *, kit_timeout: float, skip_pandas: bool) -> SizeResult:
    """Generate (or reuse) the account of ``visits`` and run every step on it."""
    data_dir = work / f"data-{label}"
    _log(f"[{label}] data in {data_dir}")
    manifest = gen.ensure(data_dir, visits=visits)
    doc = json.loads((data_dir / gen.MANIFEST).read_text())
    res = SizeResult(label, doc)
    run_dir = work / f"run-{label}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    csv = str(manifest.path("visits"))
    add = res.measurements.append

    # --- ingest of visits.csv: every engine into an empty target, fresh per repetition
    def fresh(name: str) -> Callable[[int], None]:
        def clean(rep: int) -> None:
            for old in run_dir.glob(f"{name}-*"):
                shutil.rmtree(old, ignore_errors=True)
            del rep

        return clean

    kit = measure(
        label,
        "ingest",
        "kit",
        lambda rep: {"store": str(run_dir / f"kit-{rep}"), "files": [csv]},
        timeout=kit_timeout,
        before=fresh("kit"),
    )
    add(kit)
    add(
        measure(
            label,
            "ingest",
            "duckdb_bare",
            lambda rep: {"csv": csv, "out": str(run_dir / f"bare-{rep}")},
            before=fresh("bare"),
        )
    )
    duck = measure(
        label, "ingest", "duckdb", lambda rep: {"csv": csv, "out": str(run_dir / f"duck-{rep}")}, before=fresh("duck")
    )
    add(duck)
    add(
        measure(
            label,
            "ingest",
            "duckdb_2gb",
            lambda rep: {"csv": csv, "out": str(run_dir / f"d2gb-{rep}"), "memory_limit": DUCKDB_LIMIT},
            before=fresh("d2gb"),
        )
    )
    for old in [*run_dir.glob("bare-*"), *run_dir.glob("d2gb-*")]:
        shutil.rmtree(old, ignore_errors=True)
    csv_bytes = Path(csv).stat().st_size
    need = csv_bytes * _pandas_factor(work)
    avail = _mem_available()
    if skip_pandas:
        add(Measurement(label, "ingest", "pandas", skipped="skipped (--skip-pandas)"))
    elif need > 0.75 * avail:
        add(
            Measurement(
                label,
                "ingest",
                "pandas",
                skipped=f"skipped: needs ≈ {need / 2**30:.0f} GB (CSV {csv_bytes / 2**30:.1f} GB × "
                f"{_pandas_factor(work):.1f}), {avail / 2**30:.0f} GB available",
            )
        )
    else:
        pandas = measure(
            label,
            "ingest",
            "pandas",
            lambda rep: {"csv": csv, "out": str(run_dir / f"pandas-{rep}")},
            before=fresh("pandas"),
        )
        add(pandas)
        if pandas.ok and pandas.rss_mb:
            _save_pandas_factor(work, pandas.rss_mb * 2**20 / csv_bytes)
    for old in run_dir.glob("pandas-*"):
        shutil.rmtree(old, ignore_errors=True)

    if not kit.ok:
        res.notes.append(
            f"The kit's ingest of visits.csv was {kit.runs[-1].status} ({kit.runs[-1].error}); the store for the "
            "other steps is built without a time limit and not measured."
        )
        store = run_dir / "kit-store"
        shutil.rmtree(store, ignore_errors=True)
        build = run_step("ingest_kit", {"store": str(store), "files": [csv]})
        res.notes.append(
            f"Unmeasured store build: {build.status}, {build.wall / 60:.1f} min, peak RSS {build.rss_mb:.0f} MB."
        )
        if build.status != "ok":
            return res
    else:
        store = run_dir / f"kit-{len(kit.runs) - 1}"
    duck_dir = run_dir / f"duck-{len(duck.runs) - 1}"

    # --- re-ingest of the same file: every row already stored (dedupe against the store)
    add(measure(label, "reingest", "kit", lambda rep: {"store": str(store), "files": [csv]}, timeout=kit_timeout))
    add(measure(label, "reingest", "duckdb", lambda rep: {"csv": csv, "out": str(duck_dir)}))

    # --- the rest of the account into the kit's store
    rest = [str(manifest.path(r)) for r in ("clicks", "conversions", "postbacks", "activity")]
    add(measure(label, "ingest_rest", "kit", lambda rep: {"store": str(store), "files": rest}, reps=1))

    # --- diagnose (same questions), incidents, panel, lookup
    pandas_need = visits * PANDAS_DIAGNOSE_BYTES_PER_VISIT
    for engine in ("kit", "duckdb", "pandas"):
        if engine == "pandas" and (skip_pandas or pandas_need > 0.75 * _mem_available()):
            reason = "--skip-pandas" if skip_pandas else f"needs ≈ {pandas_need / 2**30:.0f} GB"
            add(Measurement(label, "diagnose", engine, skipped=f"skipped ({reason})"))
            continue
        add(measure(label, "diagnose", engine, lambda rep: {"store": str(store)}))
    add(measure(label, "incidents", "kit", lambda rep: {"store": str(store)}))
    add(
        measure(label, "panel", "kit", lambda rep: {"store": str(store), "changes": PANEL_CHANGES, "seed": rep}, reps=1)
    )
    # --- click-id lookup right after the ingests, then maintain (click-id layout), then the lookup again
    ids = manifest.lookup_click_ids[:LOOKUPS]
    for engine in ("kit", "duckdb"):  # DuckDB on the same files, listed from the Delta log
        add(measure(label, "lookup", engine, lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    add(measure(label, "maintain", "kit", lambda rep: {"store": str(store)}, reps=1))
    for engine in ("kit", "duckdb"):
        add(measure(label, "lookup_maintained", engine, lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    res.notes.extend(_agreement(res))
    return res


def _agreement(res: SizeResult) -> list[str]:
    """Do DuckDB and pandas give the kit's answers?"""
    kit = res.get("diagnose", "kit")
    if kit is None or not kit.ok:
        return []
    out = []
    for engine in ("duckdb", "pandas"):
        other = res.get("diagnose", engine)
        if other is None or not other.ok:
            continue
        a, b = kit.info["answers"], other.info["answers"]
        differ = sorted(k for k in a if a[k] != b.get(k))
        out.append(
            f"{engine}: same answers as the kit."
            if not differ
            else f"{engine}: answers differ from the kit's in {', '.join(differ)}."
        )
    return out


def _factor_file(work: Path) -> Path:
    return work / "pandas-factor.json"


def _pandas_factor(work: Path) -> float:
    try:
        return float(json.loads(_factor_file(work).read_text())["bytes_per_csv_byte"])
    except (OSError, ValueError, KeyError):
        return PANDAS_BYTES_PER_CSV_BYTE


def _save_pandas_factor(work: Path, factor: float) -> None:
    _factor_file(work).write_text(json.dumps({"bytes_per_csv_byte": round(factor, 2)}))


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- report
def package_snapshot() -> str:
    """sha256 (first 12 hex) of the package's Python files and the time of the newest one."""
    import hashlib

    root = HERE.parent / "cfanalytics"
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    when = datetime.fromtimestamp(newest, tz=UTC).strftime("%Y-%m-%d %H:%M")
    return f"{digest.hexdigest()[:12]} (newest file {when} UTC)"


def machine() -> dict[str, str]:
    """nproc, memory, CPU model, versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    versions = {}
    for dist in ("polars", "deltalake", "duckdb", "pandas", "pyarrow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "—"
    return {
        "package": package_snapshot(),
        "nproc": str(os.cpu_count()),
        "memory": f"{mem / 2**30:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def _s(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.1:
        return f"{value * 1000:.1f} ms"
    if value < 100:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def _mb(value: float | None) -> str:
    return "—" if value is None else (f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB")


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "—"
    if m.skipped:
        return "skipped"
    if not m.ok:
        last = m.runs[-1]
        return f"> {last.wall / 60:.0f} min (stopped)" if last.status == "timeout" else "failed"
    if m.step == "panel":
        return f"{_s(m.info['p50'])} / {_s(m.info['p95'])}"
    if m.step in ("lookup", "lookup_maintained"):
        return f"{_s(m.info['p50'])} / {_s(m.info['cold'])}"
    return _s(m.seconds)


STEP_TITLES: Final = {
    "ingest": "ingest visits.csv (empty store)",
    "reingest": "re-ingest visits.csv (all already stored)",
    "ingest_rest": "ingest clicks, conversions, postbacks, activity",
    "diagnose": "diagnose (error rates, kinds, gaps)",
    "incidents": "incidents",
    "panel": "panel update, 50 filter changes (p50 / p95)",
    "lookup": "click-id lookup, before maintain (warm p50 / first)",
    "maintain": "maintain (sort by click id, compact, vacuum)",
    "lookup_maintained": "click-id lookup, after maintain (warm p50 / first)",
}


def results_table(results: list[SizeResult]) -> list[str]:
    """The main table: medians, ratios, peak RSS."""
    lines = [
        "| Size | Step | Kit | DuckDB | DuckDB, 2 GB limit | DuckDB bare | pandas | kit/DuckDB | kit/DuckDB 2 GB "
        "| kit/DuckDB bare | kit/pandas | RSS kit | RSS DuckDB | RSS DuckDB 2 GB | RSS pandas | Kit runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for step, title in STEP_TITLES.items():
            kit = res.get(step, "kit")
            if kit is None:
                continue
            others = [res.get(step, e) for e in ("duckdb", "duckdb_2gb", "duckdb_bare", "pandas")]
            if step == "panel" and kit.ok:
                lines.append(
                    f"| {res.size} | panel first load: enriched postbacks collected "
                    f"({kit.info['frame_rows']:,} rows) | {_s(kit.info['load_seconds'])} " + "| — " * 13 + "| 1 |"
                )
            duck, d2, _, pandas = others
            lines.append(
                f"| {res.size} | {title} | {_cell(kit)} | "
                + " | ".join(_cell(m) for m in others)
                + " | "
                + " | ".join(_ratio(kit.seconds, m.seconds if m else None) for m in others)
                + f" | {_mb(kit.rss_mb)} | {_mb(duck.rss_mb if duck else None)} | {_mb(d2.rss_mb if d2 else None)} "
                f"| {_mb(pandas.rss_mb if pandas else None)} | {len(kit.runs)} |"
            )
    return lines


def targets(results: list[SizeResult], imports: dict[str, float]) -> list[str]:
    """The issue's targets, with the measured value and ✅/❌ (at the largest size measured ≥ 10M)."""
    big = max(results, key=lambda r: r.manifest["counts"]["visits"], default=None)
    lines = ["| Target (at 10M visits) | Size | Measured | Met |", "|---|---|---|:-:|"]

    def row(text: str, size: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {text} | {size} | {measured} | {'—' if ok is None else ('✅' if ok else '❌')} |")

    def ratio(res: SizeResult | None, step: str, engine: str) -> tuple[float | None, str]:
        if res is None:
            return None, "not measured"
        kit, other = res.get(step, "kit"), res.get(step, engine)
        if kit is None or other is None:
            return None, "not measured"
        if not kit.ok:
            return None, f"kit {_cell(kit)}"
        if not other.ok:
            return None, f"{engine} {_cell(other)}"
        assert kit.seconds is not None
        assert other.seconds is not None
        r = kit.seconds / other.seconds
        return r, f"{r:.2f} ({_s(kit.seconds)} vs {_s(other.seconds)})"

    label = big.size if big else "—"
    r, text = ratio(big, "diagnose", "duckdb")
    row("diagnose: kit/DuckDB (same questions) ≤ 1.0", label, text, None if r is None else r <= 1.0)
    d = big.get("diagnose", "kit") if big else None
    rss = d.rss_mb if d and d.runs else None
    row("diagnose: peak RSS ≤ 2 GB", label, _mb(rss), None if rss is None else rss <= 2048)
    r, text = ratio(big, "ingest", "duckdb")
    kit_ing = big.get("ingest", "kit") if big else None
    failed = kit_ing is not None and not kit_ing.ok and kit_ing.runs
    row(
        "ingest visits.csv: kit/DuckDB (same work) ≤ 1.0",
        label,
        text,
        False if failed else (None if r is None else r <= 1.0),
    )
    r, text = ratio(big, "ingest", "duckdb_2gb")
    if r is not None:
        row("… the same, DuckDB held to 2 GB (`memory_limit`)", label, text, r <= 1.0)
    r, text = ratio(big, "ingest", "duckdb_bare")
    row("ingest visits.csv: kit/DuckDB bare ≤ 3.0", label, text, False if failed else (None if r is None else r <= 3.0))
    rss = kit_ing.rss_mb if kit_ing and kit_ing.runs else None
    row("ingest visits.csv: peak RSS ≤ 2 GB", label, _mb(rss), None if rss is None else rss <= 2048)
    p = big.get("panel", "kit") if big else None
    p95 = p.info.get("p95") if p and p.ok else None
    row("panel update p95 ≤ 150 ms", label, _s(p95), None if p95 is None else p95 <= 0.150)
    # judged on the maintained store (the layout `cfanalytics maintain` gives); older results have only "lookup"
    after = big.get("lookup_maintained", "kit") if big else None
    lk = after or (big.get("lookup", "kit") if big else None)
    lv = lk.seconds if lk and lk.ok else None
    cold = lk.info.get("cold") if lk and lk.ok else None
    row(
        "click-id lookup ≤ 150 ms (warm p50; first lookup in brackets), "
        + ("after `maintain`" if after is not None else "store as ingested (no maintain step measured)"),
        label,
        f"{_s(lv)} ({_s(cold)})" if lv is not None else "not measured",
        None if lv is None else lv <= 0.150,
    )
    it = imports.get("seconds")
    row("`import cfanalytics` ≤ 0.5 s", "—", _s(it), None if it is None else it <= 0.5)
    return lines


def cpu_table(results: list[SizeResult]) -> list[str]:
    """The same comparison on CPU time (user + system of the whole process), less sensitive to a busy machine."""
    lines = [
        "| Size | Step | Kit CPU | DuckDB CPU | DuckDB 2 GB CPU | DuckDB bare CPU | pandas CPU "
        "| kit/DuckDB | kit/DuckDB 2 GB | kit/DuckDB bare | kit/pandas |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for step in ("ingest", "reingest", "diagnose"):
            kit = res.get(step, "kit")
            if kit is None:
                continue
            others = [res.get(step, e) for e in ("duckdb", "duckdb_2gb", "duckdb_bare", "pandas")]
            cpus = [m.cpu if m is not None and m.ok else None for m in (kit, *others)]
            lines.append(
                f"| {res.size} | {STEP_TITLES[step]} | "
                + " | ".join(_s(c) for c in cpus)
                + " | "
                + " | ".join(_ratio(cpus[0], c) for c in cpus[1:])
                + " |"
            )
    return lines


def details(results: list[SizeResult]) -> list[str]:
    """Per measurement: every run's time, CPU, RSS and load."""
    lines = [
        "| Size | Step | Engine | Runs (s) | CPU s (median) | Peak RSS | of it anon / files | Load avg at start "
        "| Facts |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for res in results:
        for m in res.measurements:
            facts = {k: v for k, v in m.info.items() if k not in ("answers", "polars")}
            runs = ", ".join(f"{r.seconds:.2f}" if r.status == "ok" else r.status for r in m.runs) or m.skipped
            loads = ", ".join(f"{r.load:.1f}" for r in m.runs)
            lines.append(
                f"| {res.size} | {m.step} | {m.engine} | {runs} | "
                f"{'' if m.cpu is None else f'{m.cpu:.1f}'} | {_mb(m.rss_mb)} | {_split(m)} | {loads} | "
                f"{json.dumps(_rounded(facts)) if facts else ''} |"
            )
    return lines


def _split(m: Measurement) -> str:
    """Sampled peaks of anonymous memory and mapped files of the run with the largest RSS."""
    runs = [r for r in m.runs if r.anon_mb == r.anon_mb]  # not NaN
    if not runs:
        return ""
    top = max(runs, key=lambda r: r.rss_mb)
    return f"{_mb(top.anon_mb)} / {_mb(top.file_mb)}"


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def data_table(results: list[SizeResult]) -> list[str]:
    lines = [
        "| Size | Visits | Clicks | Conversions | Postbacks (errors) | visits.csv | Generated in |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        c, b = res.manifest["counts"], res.manifest["bytes"]
        lines.append(
            f"| {res.size} | {c['visits']:,} | {c['clicks']:,} | {c['conversions']:,} | "
            f"{c['postbacks']:,} ({c['postback_errors']:,}) | {b['visits'] / 2**30:.2f} GB | "
            f"{_s(res.manifest['seconds'])} |"
        )
    return lines


def render(results: list[SizeResult], imports: dict[str, float], info: dict[str, str], started: str) -> str:
    """The results block of RESULTS.md."""
    lines = [
        BEGIN,
        f"Run of {started} (UTC), `python benchmarks/run.py --sizes {','.join(r.size for r in results)}`.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory; Python {info['python']}; "
        f"{info['versions']}.",
        "",
        f"Package code measured: `cfanalytics/**/*.py` sha256 {info.get('package', '?')}"
        + (f"; at the end of the run: {info['package_after']}." if info.get("package_after") else "."),
        "",
        "### Data",
        "",
        *data_table(results),
        "",
        "### Results",
        "",
        "Medians of 3 runs for steps under 60 s, else 1 run; the time is the work inside the process "
        "(interpreter start and imports excluded). Ratios > 1 mean the kit is slower. Peak RSS is the "
        "largest of the runs.",
        "",
        *results_table(results),
        "",
        f"`import cfanalytics`: {_s(imports.get('seconds'))} (cumulative of the top-level import in "
        f'`-X importtime`, median of 3); whole `python -c "import cfanalytics"` process: '
        f"{_s(imports.get('process_wall'))}"
        + (
            f" (`python -c pass`: {_s(imports['python_wall'])}). With its first use, `cfanalytics.LogStore` "
            f"(Polars and the store module load): {_s(imports['first_use'])} of imports, "
            f"{_s(imports['first_use_wall'])} for the process."
            if "first_use" in imports
            else "."
        ),
        "",
        "The machine is shared: the load average at the start of every run is listed under *All runs*. CPU "
        "time (user + system of the step's process, interpreter start included) is less sensitive to that:",
        "",
        *cpu_table(results),
        "",
        "### Targets",
        "",
        *targets(results, imports),
        "",
    ]
    notes = [f"- {res.size}: {n}" for res in results for n in res.notes]
    notes += [
        f"- {res.size}: {m.step} by {m.engine}: {m.note or m.skipped}"
        for res in results
        for m in res.measurements
        if m.note or m.skipped
    ]
    if notes:
        lines += ["### Notes", "", *notes, ""]
    lines += ["### All runs", "", *details(results), "", END]
    return "\n".join(lines)


def write_results(path: Path, block: str) -> None:
    """Replace the results block of ``path`` (keeping the text around it), or create the file."""
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            path.write_text(head + block + tail)
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.write_text("# Benchmarks\n\nSee `benchmarks/run.py` for what is measured and how.\n\n" + block + "\n")


# ----------------------------------------------------------------------------- main
def parse_sizes(text: str) -> list[tuple[str, int]]:
    """``"1M,10M"`` → ``[("1M", 1_000_000), ("10M", 10_000_000)]`` (also ``250k`` or plain numbers)."""
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", item)
        if not m:
            raise argparse.ArgumentTypeError(f"not a size: {item!r} (use 200k, 1M, 10M …)")
        n = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
        out.append((item, int(n)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and write RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1M,10M"), help="default 1M,10M (50M opt-in)")
    ap.add_argument("--quick", action="store_true", help="a 200k-visit smoke run")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--workdir", type=Path, default=HERE / ".work", help="generated data and stores (large)")
    ap.add_argument("--kit-timeout", type=float, default=KIT_INGEST_TIMEOUT / 60, help="minutes (default 30)")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite --out from the saved results of --sizes")
    args = ap.parse_args(argv)
    sizes = parse_sizes("200k") if args.quick else args.sizes
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = [json.loads((args.workdir / f"results-{label}.json").read_text()) for label, _ in sizes]
        results = [load_result(doc) for doc in saved]
        first = saved[0]
        write_results(args.out, render(results, first["imports"], first["machine"], first["started"]))
        return 0
    started = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M")
    info = machine()
    _log(f"machine: {info}")
    imports = import_time()
    _log(f"import cfanalytics: {imports}")
    results = []
    for label, visits in sizes:
        res = bench_size(label, visits, args.workdir, kit_timeout=args.kit_timeout * 60, skip_pandas=args.skip_pandas)
        results.append(res)
        doc = {
            "size": label,
            "started": started,
            "machine": info,
            "imports": imports,
            "manifest": res.manifest,
            "notes": res.notes,
            "measurements": [m.to_json() for m in res.measurements],
        }
        after = package_snapshot()
        if after != info["package"]:
            info["package_after"] = after  # someone changed the package during the run
        (args.workdir / f"results-{label}.json").write_text(json.dumps(doc, indent=1, default=str))
        write_results(args.out, render(results, imports, info, started))
        _log(f"[{label}] results written to {args.out}")
    return 0


def load_result(doc: dict[str, Any]) -> SizeResult:
    """A :class:`SizeResult` from its saved JSON."""
    res = SizeResult(doc["size"], doc["manifest"], notes=list(doc["notes"]))
    for m in doc["measurements"]:
        runs = [Run(**r) for r in m["runs"]]
        res.measurements.append(Measurement(m["size"], m["step"], m["engine"], runs, m["note"], m["skipped"]))
    return res


if __name__ == "__main__":
    raise SystemExit(main())
