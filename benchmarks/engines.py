"""The whole diagnosis on each engine: Polars over the store, and Spark via ``cf.on_spark``.

Times ``cf.diagnose.diagnose(reader)`` (the document ``cfanalytics diagnose --json`` computes, incidents
included) on the same store with every engine asked for::

    python benchmarks/engines.py --store /data/store                      # Polars only
    python benchmarks/engines.py --store s3://lake/store --remote sc://127.0.0.1:50051 --server-pid 4242

A store on ``s3://`` is reached with the ``AWS_*`` environment variables (or ``--options FILE``: a JSON
object of storage options, or a document with them under ``"options"``); a Spark server reads the store's
tables with its own credentials.

Each engine runs in a process of its own (so that one's memory does not count for the other): the store is
opened, the reader made (for Spark: the session connected), then the diagnosis is run ``--repeat`` times in a
row. The first run is reported apart (cold: the first reads of the Delta logs and files, the server's first
plans), the others as their median (warm). CPU seconds and peak RSS are those of the engine's process
(``getrusage``); for Spark, ``--server-pid`` adds the server's CPU seconds per run (``/proc/PID/stat``) and
its resident memory (``VmRSS`` after the runs, and ``VmHWM``: its peak since it started, or since
``--reset-server-peak``). At the end the engines' documents are compared (``json.dumps(sort_keys=True)``).

``--engine NAME`` runs one engine in this process instead (no child process). ``--documents DIR`` keeps each
engine's document (``DIR/ENGINE.json``, indented) to compare them by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ENGINES: Final = ("polars", "spark")
#: Differences between two documents listed when they are not equal.
MAX_DIFFERENCES: Final = 8


@dataclass
class EngineResult:
    """What one engine measured: the set-up, then every run of the diagnosis."""

    engine: str
    store: str
    open_seconds: float  # opening the store (and, for Spark, connecting the session)
    seconds: list[float] = field(default_factory=list)  # wall seconds of each run
    cpu: list[float] = field(default_factory=list)  # user + system seconds of this process in each run
    maxrss_mb: float = 0.0  # peak RSS of this process, set-up and every run included
    server_cpu: list[float] = field(default_factory=list)  # the server's user + system seconds in each run
    server_rss_mb: float | None = None  # VmRSS of the server after the runs
    server_hwm_mb: float | None = None  # VmHWM of the server after the runs
    document: str = ""  # the last run's document, json.dumps(sort_keys=True)
    stable: bool = True  # every run gave the same document

    @property
    def cold(self) -> float:
        return self.seconds[0]

    @property
    def warm(self) -> float | None:
        return statistics.median(self.seconds[1:]) if len(self.seconds) > 1 else None


# ------------------------------------------------------------------------ one engine
def _storage_options(path: Path | None) -> dict[str, str] | None:
    """Storage options from ``--options FILE`` (a JSON object, or a document with them under ``options``)."""
    if path is None:
        return None
    doc = json.loads(path.read_text())
    options = doc.get("options", doc)
    return {str(k): str(v) for k, v in options.items()}


def _server_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_memory(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of process ``pid`` in MB (``/proc/PID/status``)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB
    return out


def _reset_peak(pid: int) -> None:
    """Start the server's ``VmHWM`` again from its current RSS (``echo 5 > /proc/PID/clear_refs``)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _spark_reader(store: Any, remote: str) -> Any:
    """``cf.on_spark(store, remote)`` (pyspark is imported by it, only when Spark is asked for)."""
    import cfanalytics as cf

    make: Any = getattr(cf, "on_spark", None)
    if make is None:
        from cfanalytics.engines import on_spark as make
    return make(store, remote)


def _stop_session(reader: Any) -> None:
    """End the Spark Connect session of a reader from ``on_spark`` (nothing for Polars)."""
    session = getattr(getattr(reader, "engine", None), "session", None)
    stop = getattr(session, "stop", None)
    if callable(stop):
        stop()


def run_engine(
    engine: str,
    store_uri: str,
    *,
    repeat: int,
    remote: str | None = None,
    options: dict[str, str] | None = None,
    server_pid: int | None = None,
    reset_server_peak: bool = False,
) -> EngineResult:
    """Open the store, make ``engine``'s reader, and run the whole diagnosis ``repeat`` times in this process.

    >>> import tempfile, cfanalytics as cf
    >>> folder = tempfile.mkdtemp() + "/s"
    >>> _ = cf.LogStore(folder, timezone="UTC")
    >>> result = run_engine("polars", folder, repeat=2)
    >>> len(result.seconds), result.stable
    (2, True)
    """
    import cfanalytics as cf
    from cfanalytics.diagnose import diagnose

    t0 = time.perf_counter()
    store = cf.LogStore(store_uri, create=False, storage_options=options)
    if engine == "spark":
        if not remote:
            raise SystemExit("the Spark engine needs --remote sc://HOST:PORT")
        reader = _spark_reader(store, remote)
    else:
        reader = store
    result = EngineResult(engine, store.uri, time.perf_counter() - t0)
    watch = server_pid if engine == "spark" else None
    if watch is not None and reset_server_peak:
        _reset_peak(watch)
    first = ""
    try:
        for _ in range(repeat):
            server0 = _server_cpu(watch) if watch is not None else 0.0
            cpu0 = _cpu_self()
            t0 = time.perf_counter()
            doc = diagnose(reader)
            result.seconds.append(time.perf_counter() - t0)
            result.cpu.append(_cpu_self() - cpu0)
            if watch is not None:
                result.server_cpu.append(_server_cpu(watch) - server0)
            result.document = json.dumps(doc, sort_keys=True, default=str)
            first = first or result.document
            result.stable = result.stable and result.document == first
            _log(f"  {engine}: run {len(result.seconds)} {result.seconds[-1]:.2f} s, cpu {result.cpu[-1]:.2f} s")
    finally:
        _stop_session(reader)
    result.maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if watch is not None:
        memory = _server_memory(watch)
        result.server_rss_mb, result.server_hwm_mb = memory.get("VmRSS"), memory.get("VmHWM")
    return result


def run_child(engine: str, args: argparse.Namespace) -> EngineResult:
    """:func:`run_engine` in a child process (``--engine``), its result read back from a file."""
    with tempfile.TemporaryDirectory(prefix="cfa-engines-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--store", args.store, "--engine", engine]
        argv += ["--repeat", str(args.repeat), "--result-file", str(out)]
        for flag in ("remote", "options", "server_pid"):
            value = getattr(args, flag)
            if value is not None:
                argv += [f"--{flag.replace('_', '-')}", str(value)]
        if args.reset_server_peak:
            argv.append("--reset-server-peak")
        done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"the {engine} run failed (exit code {done.returncode})")
        doc = json.loads(out.read_text())
    return EngineResult(**doc)


# --------------------------------------------------------------------------- report
def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mb(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def table(results: Sequence[EngineResult]) -> str:
    """The markdown table of the engines' results."""
    lines = [
        "| Engine | Open s | Cold s | Warm s (median) | Runs | CPU s cold | CPU s warm | Peak RSS "
        "| Server CPU s cold | Server CPU s warm | Server RSS / peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        server = r.server_cpu
        memory = f"{_mb(r.server_rss_mb)} / {_mb(r.server_hwm_mb)}" if r.server_rss_mb is not None else "—"
        lines.append(
            f"| {r.engine} | {_s(r.open_seconds)} | {_s(r.cold)} | {_s(r.warm)} | {len(r.seconds)} "
            f"| {_s(r.cpu[0])} | {_s(_median(r.cpu[1:]))} | {_mb(r.maxrss_mb)} "
            f"| {_s(server[0] if server else None)} | {_s(_median(server[1:]))} | {memory} |"
        )
    return "\n".join(lines)


def differences(a: Any, b: Any, path: str = "$") -> Iterator[str]:
    """Where two JSON values differ (JSONPath-like paths).

    >>> list(differences({"x": [1, 2], "y": 1}, {"x": [1, 3], "z": 1}))
    ['$.x[1]: 2 != 3', '$.y: only in the first', '$.z: only in the second']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            if key not in b:
                yield f"{path}.{key}: only in the first"
            elif key not in a:
                yield f"{path}.{key}: only in the second"
            else:
                yield from differences(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"


def agreement(results: Sequence[EngineResult]) -> list[str]:
    """``equal: yes/no`` and, when not, where the documents differ."""
    if len(results) < 2:
        return ["equal: n/a (one engine)"]
    base = results[0]
    lines = []
    same = all(r.document == base.document for r in results[1:])
    lines.append(f"equal: {'yes' if same else 'no'}")
    for other in results[1:]:
        if other.document != base.document:
            found = differences(json.loads(base.document), json.loads(other.document))
            for i, text in enumerate(found):
                if i == MAX_DIFFERENCES:
                    lines.append("  …")
                    break
                lines.append(f"  {base.engine} vs {other.engine}: {text}")
    return lines


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Time the diagnosis on each engine, print the table and whether the documents are equal."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="the store: a folder or an s3:// URI")
    ap.add_argument("--remote", help="a Spark Connect URL (sc://HOST:PORT): adds the Spark engine")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the diagnosis per engine (default 3)")
    ap.add_argument("--server-pid", type=int, help="PID of the Spark Connect server: its CPU and memory too")
    ap.add_argument("--reset-server-peak", action="store_true", help="reset the server's VmHWM before the runs")
    ap.add_argument("--options", type=Path, help="JSON file of storage options for an s3:// store")
    ap.add_argument("--engine", choices=ENGINES, help="run only this engine, in this process")
    ap.add_argument("--json", type=Path, dest="json_out", help="also write the results (documents left out) here")
    ap.add_argument("--documents", type=Path, help="write each engine's document to DIR/ENGINE.json")
    ap.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)  # a child's result, for its parent
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.engine is not None:
        result = run_engine(
            args.engine,
            args.store,
            repeat=args.repeat,
            remote=args.remote,
            options=_storage_options(args.options),
            server_pid=args.server_pid,
            reset_server_peak=args.reset_server_peak,
        )
        if args.result_file is not None:
            args.result_file.write_text(json.dumps(asdict(result)))
            return 0
        results = [result]
    else:
        results = [run_child(engine, args) for engine in ENGINES if engine == "polars" or args.remote]
    print(f"store: {results[0].store}; `cf.diagnose.diagnose(reader)`, {args.repeat} run(s) per engine\n")
    print(table(results))
    print()
    print("\n".join(agreement(results)))
    for r in results:
        if not r.stable:
            print(f"{r.engine}: the documents of its runs differ")
    if args.json_out is not None:
        rows = [{k: v for k, v in asdict(r).items() if k != "document"} for r in results]
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.documents is not None:
        args.documents.mkdir(parents=True, exist_ok=True)
        for r in results:
            (args.documents / f"{r.engine}.json").write_text(json.dumps(json.loads(r.document), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
