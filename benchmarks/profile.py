"""Profile one kit step with py-spy and list where its time goes.

    python benchmarks/profile.py ingest_kit '{"store": "/tmp/s", "files": ["visits.csv"]}'
    python benchmarks/profile.py --parse benchmarks/.work/profile-ingest_kit.txt

Needs ``py-spy`` (``pip install py-spy``; not a dependency of the package). The step
runs as in :mod:`steps`; samples are taken of wall time (``--idle``: a Python thread
waiting for Polars' or DuckDB's worker threads counts at the line that waits), written
as collapsed stacks (``-f raw``) and summed two ways:

- **by kit line**: the innermost ``cfanalytics`` frame of each sample (``function
  (file:line)``), i.e. which line of the kit was running, native work it called included;
- **by kit function**: inclusive share of every ``cfanalytics`` function on the stack.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
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
    args = ap.parse_args(argv)
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
