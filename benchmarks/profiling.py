"""Profile one kit step with py-spy and list where its time goes.

    python benchmarks/profiling.py ingest_kit '{"store": "/tmp/s", "files": ["visits.csv"]}'
    python benchmarks/profiling.py --parse benchmarks/.work/profile-ingest_kit.txt
    python benchmarks/profiling.py --memory ingest_kit '{"store": "/tmp/s", "files": ["visits.csv"]}'

Needs ``py-spy`` (``pip install py-spy``; not a dependency of the package). The step
runs as in :mod:`steps`; samples are taken of wall time (``--idle``: a Python thread
waiting for Polars' or DuckDB's worker threads counts at the line that waits), written
as collapsed stacks (``-f raw``) and summed two ways:

- **by kit line**: the innermost ``cfanalytics`` frame of each sample (``function
  (file:line)``), i.e. which line of the kit was running, native work it called included;
- **by kit function**: inclusive share of every ``cfanalytics`` function on the stack.

``--memory`` instead samples the step's anonymous memory (``RssAnon``) every second together
with the kit line it is at (``py-spy dump``), and lists the lines where memory peaked.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
FRAME: Final = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+):(?P<line>\d+)\)$")
KIT: Final = "cfanalytics/"


def record(step: str, params: str, out: Path, rate: int) -> None:
    """Run ``steps.py STEP PARAMS`` under ``py-spy record``."""
    py_spy = Path(sys.executable).with_name("py-spy")
    spy = [str(py_spy), "record", "--idle", "-r", str(rate), "-f", "raw", "-o", str(out)]
    subprocess.run(
        [*spy, "--", sys.executable, str(HERE / "steps.py"), step, params],
        check=True,
    )


def memory(step: str, params: str, every: float = 1.0) -> str:
    """Run the step; every ``every`` s read its RssAnon and the innermost kit line of its main thread."""
    py_spy = Path(sys.executable).with_name("py-spy")
    proc = subprocess.Popen([sys.executable, str(HERE / "steps.py"), step, params], stdout=subprocess.DEVNULL)
    samples: list[tuple[float, int, str]] = []
    t0 = time.perf_counter()
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            anon = int(re.search(r"RssAnon:\s+(\d+)", status)[1])  # type: ignore[index]
        except (OSError, TypeError):
            break
        dump = subprocess.run(
            [str(py_spy), "dump", "--pid", str(proc.pid)], capture_output=True, text=True, check=False
        )
        line = next((ln.strip() for ln in dump.stdout.splitlines() if KIT in ln), "(outside the kit)")
        samples.append((time.perf_counter() - t0, anon, line))
        time.sleep(every)
    proc.wait()
    if not samples:
        return "no samples"
    peak = max(a for _, a, _ in samples)
    rows = ["| t (s) | RssAnon | Innermost kit frame |", "|---:|---:|---|"]
    for t, anon, line in samples:
        if anon >= 0.5 * peak:
            rows.append(f"| {t:.0f} | {anon / 2**20:.2f} GB | {line} |")
    return f"Peak RssAnon {peak / 2**20:.2f} GB; samples at ≥ 50 % of it:\n\n" + "\n".join(rows)


def _frames(stack: str) -> list[tuple[str, str, int]]:
    out = []
    for text in stack.split(";"):
        m = FRAME.match(text.strip())
        if m:
            out.append((m["func"], m["file"], int(m["line"])))
    return out


def summarise(path: Path, top: int = 15) -> str:
    """Markdown tables of the heaviest kit lines and kit functions in a py-spy raw profile.

    Shares are of the main thread's samples (its wall time). Kit code run by another thread
    (a writer pulling the kit's batch generator) is listed too, marked *other thread*: it
    overlaps the main-thread line that waits for that thread.
    """
    by_line: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        main_thread = bool(frames) and frames[0][0] == "<module>"
        total += n if main_thread else 0
        kit = [(f, file[file.index(KIT) :], line) for f, file, line in frames if KIT in file]
        mark = "" if main_thread else " *other thread*"
        if kit:
            func, file, line = kit[-1]
            by_line[f"`{func}` ({file}:{line}){mark}"] += n
        elif main_thread:
            by_line["(outside the kit: interpreter start, imports)"] += n
        for func, file in dict.fromkeys((f, file) for f, file, _ in kit):
            by_function[f"`{func}` ({file}){mark}"] += n
    lines = [f"{total} samples of the main thread.", "", "| Kit line (innermost) | Share |", "|---|---:|"]
    lines += [f"| {k} | {v / total:.1%} |" for k, v in by_line.most_common(top)]
    lines += ["", "| Kit function (inclusive) | Share |", "|---|---:|"]
    lines += [f"| {k} | {v / total:.1%} |" for k, v in by_function.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Record (unless ``--parse``) and print the summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", nargs="?")
    ap.add_argument("params", nargs="?", default="{}")
    ap.add_argument("--rate", type=int, default=50, help="samples per second")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parse", type=Path, help="only summarise an existing raw profile")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--memory", action="store_true", help="sample memory by kit line instead of time")
    args = ap.parse_args(argv)
    if args.memory:
        print(memory(args.step, args.params))
        return 0
    if args.parse:
        print(summarise(args.parse, args.top))
        return 0
    if not args.step:
        ap.error("a step is required (see benchmarks/steps.py)")
    out = args.out or HERE / ".work" / f"profile-{args.step}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    record(args.step, args.params, out, args.rate)
    print(summarise(out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
