"""A seeded random sample of mutmut's mutants per module, and its score with a 95 % Wilson interval.

mutmut 3 writes, for each mutated file, ``mutants/<path>.meta`` (JSON) whose ``exit_code_by_key`` maps every mutant
name to the exit code of its test run (``null`` while not checked). This script reads those files only:

- ``generate``: has mutmut write the mutants and the ``.meta`` files, without running any test;
- ``sample``: prints the names of ``--n`` mutants per module, the first of the module's sorted names shuffled with
  ``random.Random(f"{seed}:{module}")`` (the same sample for the same seed, whatever the other modules);
- ``report``: the table of the sample (killed, survived, equivalent, score, Wilson interval) and the pooled score;
  equivalent mutants are read from ``docs/mutation-equivalent.txt`` (``name  reason`` per line).

Example (what ``make mutation SAMPLE=80 SEED=1`` runs)::

    python benchmarks/mutation_sample.py generate
    mutmut run $(python benchmarks/mutation_sample.py sample --n 80 --seed 1 cfanalytics/store.py)
    python benchmarks/mutation_sample.py report --n 80 --seed 1 cfanalytics/store.py
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, 37, -11}  # a failing test, pytest internal error, time-out, type checker, crash
EQUIVALENT_FILE = Path("docs/mutation-equivalent.txt")


def module_name(path: str) -> str:
    """Dotted module of a source path.

    >>> module_name("cfanalytics/diagnose/gaps.py")
    'cfanalytics.diagnose.gaps'
    """
    return path.removesuffix(".py").replace("/", ".")


def exit_codes(path: str) -> dict[str, int | None]:
    """Mutant name -> exit code of its run (None: not checked) of one source file, from mutmut's meta file."""
    meta = json.loads((Path("mutants") / f"{path}.meta").read_text())
    codes: dict[str, int | None] = meta["exit_code_by_key"]
    return codes


def sample(path: str, n: int, seed: int) -> list[str]:
    """The first ``n`` of a seeded shuffle of one file's mutant names (a larger ``n`` extends a smaller one), sorted."""
    names = sorted(exit_codes(path))
    random.Random(f"{seed}:{module_name(path)}").shuffle(names)
    return sorted(names[:n])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n trials.

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.49, 0.943]
    """
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def equivalents() -> dict[str, str]:
    """Mutant name -> reason it cannot change a result, from docs/mutation-equivalent.txt."""
    out: dict[str, str] = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.strip().partition(" ")
                out[name] = reason.strip()
    return out


def report(paths: list[str], n: int, seed: int) -> str:
    """Markdown table of the sampled mutants of each file, then the pooled score (weighted by module size)."""
    eq = equivalents()
    rows = ["| module | sampled / total | killed | survived | equivalent | not run | score | 95 % interval |"]
    rows.append("|---|---|---|---|---|---|---|---|")
    weighted, weights, var = 0.0, 0, 0.0
    tk = tn = 0
    for path in paths:
        codes = exit_codes(path)
        names = sample(path, n, seed)
        killed = sum(codes[m] in KILLED for m in names)
        unrun = sum(codes[m] is None for m in names)
        n_eq = sum(m in eq and codes[m] not in KILLED and codes[m] is not None for m in names)
        survived = len(names) - killed - unrun
        scored = len(names) - unrun - n_eq
        lo, hi = wilson(killed, scored)
        score = killed / scored if scored else 0.0
        rows.append(
            f"| `{path.removeprefix('cfanalytics/')}` | {len(names)} / {len(codes)} | {killed} | {survived} | {n_eq} "
            f"| {unrun} | **{100 * score:.1f} %** ({killed} / {scored}) | {100 * lo:.1f}–{100 * hi:.1f} % |"
        )
        if scored:
            weighted += len(codes) * score
            weights += len(codes)
            var += len(codes) ** 2 * score * (1 - score) / scored
            tk, tn = tk + killed, tn + scored
    if weights:
        p = weighted / weights
        se = math.sqrt(var) / weights
        lo, hi = wilson(tk, tn)
        rows.append(
            f"\npooled, weighted by each module's mutants: **{100 * p:.1f} %** "
            f"(± {196 * se:.1f} points, 95 %); unweighted {tk} / {tn} = {100 * tk / tn:.1f} % "
            f"(Wilson {100 * lo:.1f}–{100 * hi:.1f} %)"
        )
    return "\n".join(rows)


def generate() -> None:
    """Write mutants/ and its .meta files as ``mutmut run`` does before testing (mutmut 3.8.1)."""
    import os

    from mutmut.__main__ import (  # type: ignore[import-not-found]
        copy_also_copy_files,
        copy_src_dir,
        create_mutants,
        set_mutant_under_test,
        setup_source_paths,
        store_lines_covered_by_tests,
    )

    set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    store_lines_covered_by_tests()
    create_mutants(1)


def main() -> None:
    """Command line: generate | sample | report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "sample", "report"])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_intermixed_args()
    if args.command == "generate":
        generate()
    elif args.command == "sample":
        print(" ".join(name for path in args.paths for name in sample(path, args.n, args.seed)))
    else:
        print(report(args.paths, args.n, args.seed))


if __name__ == "__main__":
    main()
