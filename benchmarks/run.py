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
#: From this many visits on, a size is a point of the scale curve only: the kit's ingest (once), diagnose,
#: incidents and lookup, DuckDB's and Polars' bare conversions (DuckDB's same work, pandas, the panels and the
#: report would take too long or not fit).
SCALE_ONLY_FROM: Final = 20_000_000
#: Disk an account takes per visit: its CSV exports (all five files: 0.63 KB per visit at 2M) and, while
#: measured, the stores and Parquet copies of one size (0.34 KB per visit at 200k: the kit's store and
#: DuckDB's); plus a margin.
CSV_BYTES_PER_VISIT: Final = 650
WORK_BYTES_PER_VISIT: Final = 350
DISK_MARGIN: Final = 5 * 2**30
#: gen.py streams visits and clicks to disk but holds the conversions and postbacks until the end: its peak RSS
#: was 0.82 GB at 2M visits and 1.10 GB at 4M (≈ 0.55 GB + 145 bytes per visit; ≈ 7.5 GB at 50M).
GEN_BASE_BYTES: Final = 600 * 2**20
GEN_BYTES_PER_VISIT: Final = 150
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
        ("ingest", "polars_bare"): "ingest_polars_bare",
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
        ("doctor", "kit"): "doctor_kit",
        ("browser", "kit"): "panel_browser",
        ("report", "kit"): "report_cli",
        ("report_png", "kit"): "report_cli",
        ("lookup", "kit"): "lookup_kit",
        ("lookup", "duckdb"): "lookup_duckdb",
        ("lookup_scan", "kit"): "lookup_kit_scan",
        ("lookup_maintained_scan", "kit"): "lookup_kit_scan",
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
    scale_only: bool = False  # a point of the scale curve only (see SCALE_ONLY_FROM)

    def get(self, step: str, engine: str) -> Measurement | None:
        return next((m for m in self.measurements if m.step == step and m.engine == engine), None)


def bench_size(
    label: str,
    visits: int,
    work: Path,
    *,
    kit_timeout: float,
    skip_pandas: bool,
    scale_from: int = SCALE_ONLY_FROM,
) -> SizeResult:
    """Generate (or reuse) the account of ``visits`` and run every step on it."""
    data_dir = work / f"data-{label}"
    _log(f"[{label}] data in {data_dir}")
    check_disk(work, data_dir, visits)
    scale_only = visits >= scale_from
    manifest = gen.ensure(data_dir, visits=visits)
    doc = json.loads((data_dir / gen.MANIFEST).read_text())
    res = SizeResult(label, doc, scale_only=scale_only)
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
        reps=1 if scale_only else 3,
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
    add(
        measure(
            label,
            "ingest",
            "polars_bare",
            lambda rep: {"csv": csv, "out": str(run_dir / f"plbare-{rep}")},
            before=fresh("plbare"),
        )
    )
    for old in [*run_dir.glob("bare-*"), *run_dir.glob("plbare-*")]:
        shutil.rmtree(old, ignore_errors=True)
    if scale_only:
        return _scale_rest(res, kit, run_dir, manifest, kit_timeout=kit_timeout)
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
    for old in run_dir.glob("d2gb-*"):
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
    add(measure(label, "doctor", "kit", lambda rep: {"store": str(store)}))
    add(measure(label, "browser", "kit", lambda rep: {"store": str(store), "changes": PANEL_CHANGES}, reps=1))
    add(measure(label, "report", "kit", lambda rep: {"store": str(store), "out": str(run_dir / "report.html")}))
    # --- click-id lookup right after the ingests, then maintain (click-id layout), then the lookup again
    ids = manifest.lookup_click_ids[:LOOKUPS]
    for engine in ("kit", "duckdb"):  # DuckDB on the same files, listed from the Delta log
        add(measure(label, "lookup", engine, lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    add(measure(label, "lookup_scan", "kit", lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    add(measure(label, "maintain", "kit", lambda rep: {"store": str(store)}, reps=1))
    for engine in ("kit", "duckdb"):
        add(measure(label, "lookup_maintained", engine, lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    add(measure(label, "lookup_maintained_scan", "kit", lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    res.notes.extend(_agreement(res))
    return res


def _scale_rest(
    res: SizeResult, kit: Measurement, run_dir: Path, manifest: gen.Manifest, *, kit_timeout: float
) -> SizeResult:
    """A point of the scale curve: the rest of the account into the kit's store (one run of the ingest is kept),
    then diagnose, incidents and the click-id lookup right after the ingest (no ``maintain``)."""
    label, add = res.size, res.measurements.append
    res.notes.append(
        f"Scale point ({res.manifest['counts']['visits']:,} visits): the kit's ingest once, diagnose, incidents, "
        "lookup; DuckDB and Polars bare. DuckDB's same work, pandas, the panels and the report are not run."
    )
    if not kit.ok:
        res.notes.append(f"The kit's ingest of visits.csv was {kit.runs[-1].status} ({kit.runs[-1].error}).")
        return res
    store = run_dir / f"kit-{len(kit.runs) - 1}"
    rest = [str(manifest.path(r)) for r in ("clicks", "conversions", "postbacks", "activity")]
    add(measure(label, "ingest_rest", "kit", lambda rep: {"store": str(store), "files": rest}, reps=1,
                timeout=kit_timeout))  # fmt: skip
    add(measure(label, "diagnose", "kit", lambda rep: {"store": str(store)}, reps=1))
    add(measure(label, "incidents", "kit", lambda rep: {"store": str(store)}, reps=1))
    ids = manifest.lookup_click_ids[:LOOKUPS]
    add(measure(label, "lookup", "kit", lambda rep: {"store": str(store), "click_ids": ids}, reps=1))
    return res


def check_disk(work: Path, data_dir: Path, visits: int) -> None:
    """Stop with a clear message when the disk under ``work`` cannot hold this size's account and stores (or the
    memory cannot hold its generation)."""
    have = (data_dir / gen.MANIFEST).exists()
    need = (0 if have else visits * CSV_BYTES_PER_VISIT) + visits * WORK_BYTES_PER_VISIT + DISK_MARGIN
    free = shutil.disk_usage(work).free
    csv_gb = visits * CSV_BYTES_PER_VISIT / 2**30
    if need > free:
        raise SystemExit(
            f"not enough disk under {work} for {visits:,} visits: about {need / 2**30:.0f} GB needed "
            + ("(the CSV exports are there; " if have else f"(CSV exports ≈ {csv_gb:.0f} GB, ")
            + f"stores and Parquet copies ≈ {visits * WORK_BYTES_PER_VISIT / 2**30:.0f} GB, margin "
            f"{DISK_MARGIN / 2**30:.0f} GB), {free / 2**30:.0f} GB free. Free some space or pass another --workdir."
        )
    _log(f"disk: about {need / 2**30:.0f} GB needed for {visits:,} visits, {free / 2**30:.0f} GB free")
    memory = GEN_BASE_BYTES + visits * GEN_BYTES_PER_VISIT
    if not have and memory > 0.9 * _mem_available():
        raise SystemExit(
            f"not enough memory to generate {visits:,} visits: benchmarks/gen.py holds the conversions and "
            f"postbacks until the end (about {memory / 2**30:.1f} GB), {_mem_available() / 2**30:.1f} GB available"
        )


def bench_sample(work: Path) -> list[Measurement]:
    """The whole ``cfanalytics report`` command on the built-in 20k-visit sample account (built once in ``work``
    with ``workspace.build_sample_store``, as ``cfanalytics demo`` builds it), without and with ``--png``."""
    folder = work / "sample"
    store = folder / "store"
    if not (store / "cfanalytics.json").exists():
        built = run_step("sample_store", {"folder": str(folder)})
        if built.status != "ok":
            raise SystemExit(f"the sample account could not be built: {built.error}")
    out = work / "report-sample"
    shutil.rmtree(out, ignore_errors=True)
    return [
        measure("sample", "report", "kit", lambda rep: {"store": str(store), "out": str(out / "report.html")}),
        measure(
            "sample",
            "report_png",
            "kit",
            lambda rep: {"store": str(store), "out": str(out / "report-png.html"), "png": str(out / "png")},
        ),
    ]


def _comparable(answers: dict[str, Any]) -> dict[str, Any]:
    """The answers every engine computes: the gap counts, not the kit's lists per source and its money at
    stake (DuckDB and pandas are not asked those)."""
    gaps = answers.get("gaps")
    if not isinstance(gaps, dict):
        return answers
    return {**answers, "gaps": {k: v for k, v in gaps.items() if not isinstance(v, (list, dict))}}


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
        a, b = _comparable(kit.info["answers"]), _comparable(other.info["answers"])
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
    if m.step in ("panel", "browser"):
        return f"{_s(m.info['p50'])} / {_s(m.info['p95'])}"
    if m.step in ("lookup", "lookup_maintained", "lookup_scan", "lookup_maintained_scan"):
        return f"{_s(m.info['p50'])} / {_s(m.info['cold'])}"
    return _s(m.seconds)


STEP_TITLES: Final = {
    "ingest": "ingest visits.csv (empty store)",
    "reingest": "re-ingest visits.csv (all already stored)",
    "ingest_rest": "ingest clicks, conversions, postbacks, activity",
    "diagnose": "diagnose (error rates, kinds, gaps)",
    "incidents": "incidents",
    "panel": "panel update in Python, 50 filter changes (p50 / p95)",
    "doctor": "postback doctor, first load (`postback_doctor(store)` + its display)",
    "browser": "postback doctor in Chromium (Voila), 50 filter changes (p50 / p95)",
    "report": "`cfanalytics report` (whole command, wall)",
    "report_png": "`cfanalytics report --png` (whole command, wall)",
    "lookup": "click-id lookup, before maintain (warm p50 / first)",
    "lookup_scan": "click-id lookup through `scan_delta` (other readers), before maintain (warm p50 / first)",
    "maintain": "maintain (sort by click id, compact, vacuum)",
    "lookup_maintained": "click-id lookup, after maintain (warm p50 / first)",
    "lookup_maintained_scan": "click-id lookup through `scan_delta` (other readers), after maintain (warm p50 / first)",
}
#: The engines compared with the kit, in the order of the tables' columns.
OTHERS: Final = ("duckdb", "duckdb_2gb", "duckdb_bare", "polars_bare", "pandas")


def results_table(results: list[SizeResult]) -> list[str]:
    """The main table: medians, ratios, peak RSS."""
    lines = [
        "| Size | Step | Kit | DuckDB | DuckDB, 2 GB limit | DuckDB bare | Polars bare | pandas | kit/DuckDB "
        "| kit/DuckDB 2 GB | kit/DuckDB bare | kit/Polars bare | kit/pandas | RSS kit | RSS DuckDB | RSS DuckDB 2 GB "
        "| RSS Polars bare | RSS pandas | Kit runs |",
        "|---|---|" + "---:|" * 17,
    ]
    for res in results:
        for step, title in STEP_TITLES.items():
            kit = res.get(step, "kit")
            if kit is None:
                continue
            others = [res.get(step, e) for e in OTHERS]
            if step == "panel" and kit.ok:
                lines.append(
                    f"| {res.size} | panel first load: enriched postbacks collected "
                    f"({kit.info['frame_rows']:,} rows) | {_s(kit.info['load_seconds'])} " + "| — " * 16 + "| 1 |"
                )
            if step == "browser" and kit.ok:
                lines.append(
                    f"| {res.size} | postback doctor in Chromium (Voila), first load (page open → filters, chart and "
                    f"status shown; kernel start included) | {_s(kit.info['first_load'])} " + "| — " * 16 + "| 1 |"
                )
            duck, d2, _, plb, pandas = others
            lines.append(
                f"| {res.size} | {title} | {_cell(kit)} | "
                + " | ".join(_cell(m) for m in others)
                + " | "
                + " | ".join(_ratio(kit.seconds, m.seconds if m else None) for m in others)
                + " | "
                + " | ".join(_mb(m.rss_mb if m else None) for m in (kit, duck, d2, plb, pandas))
                + f" | {len(kit.runs)} |"
            )
    return lines


def report_table(sample: list[Measurement], results: list[SizeResult]) -> list[str]:
    """The whole ``cfanalytics report`` command: the sample account (with and without ``--png``) and each size."""
    lines = [
        "| Account | Report (wall, median) | with `--png` | charts | added per chart | Runs |",
        "|---|---:|---:|---:|---:|---|",
    ]
    plain = next((m for m in sample if m.step == "report"), None)
    png = next((m for m in sample if m.step == "report_png"), None)
    if plain is not None:
        charts = png.info.get("charts") if png is not None and png.ok else None
        per = _per_chart(plain, png)
        runs = ", ".join(f"{r.seconds:.1f}" if r.status == "ok" else r.status for r in plain.runs)
        if png is not None:
            runs += " / --png " + ", ".join(f"{r.seconds:.1f}" if r.status == "ok" else r.status for r in png.runs)
        lines.append(
            f"| sample (20k visits) | {_cell(plain)} | {_cell(png)} | {charts if charts is not None else '—'} "
            f"| {_s(per)} | {runs} |"
        )
    for res in results:
        m = res.get("report", "kit")
        if m is not None:
            runs = ", ".join(f"{r.seconds:.1f}" if r.status == "ok" else r.status for r in m.runs)
            lines.append(f"| {res.size} | {_cell(m)} | — | — | — | {runs} |")
    return lines


def _per_chart(plain: Measurement | None, png: Measurement | None) -> float | None:
    """Seconds ``--png`` adds per chart: (with − without) / charts."""
    if plain is None or png is None or plain.seconds is None or png.seconds is None:
        return None
    charts = png.info.get("charts") or 0
    return (png.seconds - plain.seconds) / charts if charts else None


def scale_table(results: list[SizeResult]) -> list[str]:
    """Time and peak RSS per step at each size, and the growth from the largest size to the one before it
    (against linear growth: the ratio of the visits)."""
    if len(results) < 2:
        return []
    ordered = sorted(results, key=lambda r: r.manifest["counts"]["visits"])
    last, prev = ordered[-1], ordered[-2]
    linear = last.manifest["counts"]["visits"] / prev.manifest["counts"]["visits"]
    head = " | ".join(f"{r.size} time | {r.size} RSS" for r in ordered)
    lines = [
        f"| Step | Engine | {head} | {last.size}/{prev.size} time | {last.size}/{prev.size} CPU "
        f"| {last.size}/{prev.size} RSS | linear |",
        "|---|---|" + "---:|" * (2 * len(ordered) + 4),
    ]
    steps = [
        ("ingest", "kit"),
        ("ingest", "duckdb_bare"),
        ("ingest", "polars_bare"),
        ("ingest_rest", "kit"),
        ("diagnose", "kit"),
        ("incidents", "kit"),
        ("lookup", "kit"),
    ]
    for step, engine in steps:
        ms = [r.get(step, engine) for r in ordered]
        if ms[-1] is None:
            continue
        cells = " | ".join(f"{_cell(m) if m else '—'} | {_mb(m.rss_mb if m else None)}" for m in ms)
        a, b = ms[-1], ms[-2]
        t = _ratio(a.seconds if a else None, b.seconds if b else None)
        c = _ratio(a.cpu if a and a.ok else None, b.cpu if b and b.ok else None)
        r = _ratio(a.rss_mb if a else None, b.rss_mb if b else None)
        lines.append(f"| {STEP_TITLES[step].split(' (')[0]} | {engine} | {cells} | {t} | {c} | {r} | {linear:.1f} |")
    return lines


def targets(results: list[SizeResult], imports: dict[str, float], sample: list[Measurement] | None = None) -> list[str]:
    """The issue's targets, with the measured value and ✅/❌ (at the largest size measured up to 10M; the scale
    targets at the largest size)."""
    full = [r for r in results if not r.scale_only]
    big = max(full, key=lambda r: r.manifest["counts"]["visits"], default=None)
    largest = max(results, key=lambda r: r.manifest["counts"]["visits"], default=None)
    lines = ["| Target (at 10M visits unless said) | Size | Measured | Met |", "|---|---|---|:-:|"]

    def row(text: str, size: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {text} | {size} | {measured} | {'—' if ok is None else ('✅' if ok else '❌')} |")

    def get(res: SizeResult | None, step: str, engine: str = "kit") -> Measurement | None:
        return res.get(step, engine) if res is not None else None

    def ratio(res: SizeResult | None, step: str, engine: str, *, cpu: bool = False, base: str = "kit",
              base_step: str | None = None) -> tuple[float | None, str]:  # fmt: skip
        kit, other = get(res, step, base), get(res, base_step or step, engine)
        if kit is None or other is None:
            return None, "not measured"
        if not kit.ok:
            return None, f"kit {_cell(kit)}"
        if not other.ok:
            return None, f"{engine} {_cell(other)}"
        a, b = (kit.cpu, other.cpu) if cpu else (kit.seconds, other.seconds)
        assert a is not None
        assert b is not None
        r = a / b
        return r, f"{r:.2f} ({_s(a)} vs {_s(b)}{' CPU' if cpu else ''})"

    def judged(r: float | None, limit: float, failed: bool = False) -> bool | None:
        return False if failed else (None if r is None else r <= limit)

    def met(m: Measurement | None, value: float | None, limit: float) -> bool | None:
        """A measured value against its limit; a step that ran and failed (or was stopped) misses its target."""
        if m is not None and m.runs and not m.ok:
            return False
        return None if value is None else value <= limit

    label = big.size if big else "—"
    kit_ing = get(big, "ingest")
    failed = bool(kit_ing is not None and not kit_ing.ok and kit_ing.runs)
    # --- ingest
    r, text = ratio(big, "ingest", "duckdb_bare", cpu=True)
    row("ingest visits.csv: CPU kit/DuckDB bare CSV → Parquet ≤ 1.5", label, text, judged(r, 1.5, failed))
    r, text = ratio(big, "ingest", "duckdb_bare")
    row("… the same on wall time (not a target)", label, text, None)
    r, text = ratio(big, "ingest", "polars_bare", cpu=True)
    row("ingest visits.csv: CPU kit/Polars bare scan → sink (same time parsing) ≤ 2.0", label, text,
        judged(r, 2.0, failed))  # fmt: skip
    r, text = ratio(big, "ingest", "polars_bare")
    row("… the same on wall time (not a target)", label, text, None)
    rss = kit_ing.rss_mb if kit_ing and kit_ing.runs else None
    row("ingest visits.csv: peak RSS ≤ 2 GB", label, _mb(rss), None if rss is None else rss <= 2048)
    r, text = ratio(big, "reingest", "kit", base_step="ingest")
    row("re-ingest (all stored) / fresh ingest ≤ 1.0, wall", label, text, judged(r, 1.0))
    r, text = ratio(big, "reingest", "kit", cpu=True, base_step="ingest")
    row("re-ingest (all stored) / fresh ingest ≤ 1.0, CPU", label, text, judged(r, 1.0))
    r, text = ratio(big, "ingest", "duckdb")
    row("ingest visits.csv: kit/DuckDB doing the same work ≤ 1.0", label, text, judged(r, 1.0, failed))
    # --- lookup
    for step, limit, when in (("lookup", 0.050, "right after the ingest, before `maintain`"),
                              ("lookup_maintained", 0.030, "after `maintain`")):  # fmt: skip
        lk = get(big, step)
        lv = lk.seconds if lk and lk.ok else None
        cold = lk.info.get("cold") if lk and lk.ok else None
        row(
            f"click-id lookup {when} ≤ {limit * 1000:.0f} ms (warm p50; first lookup in brackets)",
            label,
            f"{_s(lv)} ({_s(cold)})" if lv is not None else (_cell(lk) if lk else "not measured"),
            met(lk, lv, limit),
        )
    # --- report
    plain = next((m for m in sample or [] if m.step == "report"), None)
    png = next((m for m in sample or [] if m.step == "report_png"), None)
    sv = plain.seconds if plain else None
    row("`cfanalytics report`, sample account (20k visits) ≤ 8 s", "sample", _cell(plain) if plain else "not measured",
        met(plain, sv, 8.0))  # fmt: skip
    rp = get(big, "report")
    rv = rp.seconds if rp else None
    row("`cfanalytics report` ≤ 20 s", label, _cell(rp) if rp else "not measured", met(rp, rv, 20.0))
    per = _per_chart(plain, png)
    charts = png.info.get("charts") if png is not None and png.ok else None
    row(
        "`--png` adds ≤ 2 s per chart (sample account)",
        "sample",
        f"{_s(per)} (({_s(png.seconds if png else None)} − {_s(sv)}) / {charts})" if per is not None
        else (_cell(png) if png else "not measured"),
        met(png, per, 2.0) if plain is None or plain.ok else None,
    )  # fmt: skip
    # --- panels
    d = get(big, "doctor")
    dv = d.seconds if d else None
    row("postback doctor first load (`postback_doctor(store)` + display) ≤ 1 s", label,
        _cell(d) if d else "not measured", met(d, dv, 1.0))  # fmt: skip
    # the browser at the largest size where it worked (a failure at a larger size is said in the row)
    tried = sorted((r for r in full if r.get("browser", "kit")), key=lambda r: r.manifest["counts"]["visits"])
    worked = [r for r in tried if (m := r.get("browser", "kit")) is not None and m.ok]
    where = worked[-1] if worked else (tried[-1] if tried else None)
    b = get(where, "browser")
    p95 = b.info.get("p95") if b and b.ok else None
    failed_at = [f"{r.size}: {_cell(r.get('browser', 'kit'))}" for r in tried if where is not None and r is not where
                 and r.manifest["counts"]["visits"] > where.manifest["counts"]["visits"]]  # fmt: skip
    row(
        "postback doctor filter change in the browser until the page settles, p95 ≤ 50 ms (p50 in brackets)",
        where.size if where is not None else label,
        (f"{_s(p95)} ({_s(b.info.get('p50'))})" if b and b.ok and p95 is not None
         else (_cell(b) if b else "not measured"))
        + (f"; not measured at {', '.join(failed_at)}" if failed_at else ""),
        False if failed_at else met(b, p95, 0.050),
    )  # fmt: skip
    status = b.info.get("status_p95") if b and b.ok else None
    if status is not None:
        shown = f"{_s(status)} ({_s(b.info.get('status_p50'))})"
        row("… until the status line shows the new totals (charts may still be drawing), p95 (not a target)",
            where.size if where is not None else label, shown, None)  # fmt: skip
    kernel = d.info.get("change_p95") if d and d.ok else None
    kernel50 = d.info.get("change_p50") if d and d.ok else None
    if kernel is not None:
        row("… the kernel's side: `doctor.set_filters(…)`, p95 (p50 in brackets; not a target)", label,
            f"{_s(kernel)} ({_s(kernel50)})", None)  # fmt: skip
    p = get(big, "panel")
    pv = p.info.get("p95") if p and p.ok else None
    row("… filtered frame + hourly error rates only (`panel` step), p95 (not a target)", label, _s(pv), None)
    # --- diagnose
    r, text = ratio(big, "diagnose", "duckdb")
    row("diagnose: kit/DuckDB (same questions) ≤ 1.0", label, text, judged(r, 1.0))
    dg = get(big, "diagnose")
    rss = dg.rss_mb if dg and dg.runs else None
    row("diagnose: peak RSS ≤ 2 GB", label, _mb(rss), None if rss is None else rss <= 2048)
    # --- scale
    if largest is not None and largest is not big and big is not None:
        linear = largest.manifest["counts"]["visits"] / big.manifest["counts"]["visits"]
        for step, name in (("ingest", "ingest visits.csv"), ("ingest_rest", "ingest of the other files"),
                           ("diagnose", "diagnose"), ("incidents", "incidents")):  # fmt: skip
            m = get(largest, step)
            rss = m.rss_mb if m and m.runs else None
            row(f"scale: {name} peak RSS ≤ 2 GB", largest.size, _mb(rss), met(m, rss, 2048))
            a, b2 = get(largest, step), get(big, step)
            grow = a.seconds / b2.seconds if a and b2 and a.seconds and b2.seconds else None
            cpu = _ratio(a.cpu if a and a.ok else None, b2.cpu if b2 and b2.ok else None)
            row(
                f"scale: {name} time {largest.size}/{big.size} ≤ {linear:.1f} (linear)",
                largest.size,
                f"{grow:.2f} ({_s(a.seconds if a else None)} vs {_s(b2.seconds if b2 else None)}; CPU ratio {cpu})"
                if grow is not None else (_cell(a) if a else "not measured"),
                met(a, grow, linear),
            )  # fmt: skip
    it = imports.get("seconds")
    row("`import cfanalytics` ≤ 0.5 s", "—", _s(it), None if it is None else it <= 0.5)
    return lines


def cpu_table(results: list[SizeResult]) -> list[str]:
    """The same comparison on CPU time (user + system of the whole process), less sensitive to a busy machine."""
    lines = [
        "| Size | Step | Kit CPU | DuckDB CPU | DuckDB 2 GB CPU | DuckDB bare CPU | Polars bare CPU | pandas CPU "
        "| kit/DuckDB | kit/DuckDB 2 GB | kit/DuckDB bare | kit/Polars bare | kit/pandas |",
        "|---|---|" + "---:|" * 11,
    ]
    for res in results:
        for step in ("ingest", "reingest", "diagnose"):
            kit = res.get(step, "kit")
            if kit is None:
                continue
            others = [res.get(step, e) for e in OTHERS]
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


def render(
    results: list[SizeResult],
    imports: dict[str, float],
    info: dict[str, str],
    started: str,
    sample: list[Measurement] | None = None,
) -> str:
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
        "### Report",
        "",
        "The whole `cfanalytics report --store S --out FILE.html` command as a scheduler runs it (a subprocess: "
        "interpreter start, the kernel, the notebook, nbconvert; wall time, median of 3 under 60 s). The sample "
        "account is the built-in one (`cfanalytics demo`'s, 20k visits); `--png` writes every chart as a PNG, "
        "the time it adds is divided by the charts written.",
        "",
        *report_table(sample or [], results),
        "",
    ]
    scale = scale_table(results)
    if scale:
        lines += [
            "### Scale",
            "",
            "Time (median, or the one run) and peak RSS per step at each size; the growth of time, CPU time and "
            "peak RSS from the size before to the largest, against linear growth (the ratio of the visits).",
            "",
            *scale,
            "",
        ]
    lines += [
        "### Targets",
        "",
        *targets(results, imports, sample),
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
    extra = [SizeResult("sample", {}, list(sample))] if sample else []
    lines += ["### All runs", "", *details(extra + results), "", END]
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
    ap.add_argument(
        "--scale-from",
        type=lambda t: parse_sizes(t)[0][1],
        default=SCALE_ONLY_FROM,
        help="sizes from this one on are scale points only (default 20M: 50M is one)",
    )
    ap.add_argument("--skip-sample", action="store_true", help="no report on the 20k-visit sample account")
    ap.add_argument("--render", action="store_true", help="only rewrite --out from the saved results of --sizes")
    args = ap.parse_args(argv)
    sizes = parse_sizes("200k") if args.quick else args.sizes
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = [json.loads((args.workdir / f"results-{label}.json").read_text()) for label, _ in sizes]
        results = [load_result(doc) for doc in saved]
        first = saved[0]
        sample = [load_measurement(m) for m in first.get("sample", [])]
        write_results(args.out, render(results, first["imports"], first["machine"], first["started"], sample))
        return 0
    started = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M")
    info = machine()
    _log(f"machine: {info}")
    imports = import_time()
    _log(f"import cfanalytics: {imports}")
    sample = [] if args.skip_sample else bench_sample(args.workdir)
    results = []
    for label, visits in sizes:
        res = bench_size(
            label,
            visits,
            args.workdir,
            kit_timeout=args.kit_timeout * 60,
            skip_pandas=args.skip_pandas,
            scale_from=args.scale_from,
        )
        results.append(res)
        doc = {
            "size": label,
            "started": started,
            "machine": info,
            "imports": imports,
            "manifest": res.manifest,
            "notes": res.notes,
            "scale_only": res.scale_only,
            "measurements": [m.to_json() for m in res.measurements],
            "sample": [m.to_json() for m in sample],
        }
        after = package_snapshot()
        if after != info["package"]:
            info["package_after"] = after  # someone changed the package during the run
        (args.workdir / f"results-{label}.json").write_text(json.dumps(doc, indent=1, default=str))
        write_results(args.out, render(results, imports, info, started, sample))
        _log(f"[{label}] results written to {args.out}")
    return 0


def load_result(doc: dict[str, Any]) -> SizeResult:
    """A :class:`SizeResult` from its saved JSON; whether the engines agree is judged again (the rule may have
    changed since the run)."""
    engines = tuple(f"{engine}: {verdict}" for engine in ("duckdb", "pandas") for verdict in ("same", "answers"))
    notes = [n for n in doc["notes"] if not n.startswith(engines)]
    res = SizeResult(doc["size"], doc["manifest"], notes=notes, scale_only=doc.get("scale_only", False))
    res.measurements.extend(load_measurement(m) for m in doc["measurements"])
    res.notes.extend(_agreement(res))
    return res


def load_measurement(m: dict[str, Any]) -> Measurement:
    """A :class:`Measurement` from its saved JSON."""
    runs = [Run(**r) for r in m["runs"]]
    return Measurement(m["size"], m["step"], m["engine"], runs, m["note"], m["skipped"])


if __name__ == "__main__":
    raise SystemExit(main())
