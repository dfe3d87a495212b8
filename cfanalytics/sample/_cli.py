"""``python -m cfanalytics.sample OUT``: write a sample account from the command line.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     main([tmp, "--visits", "500", "--days", "2"])  # doctest: +ELLIPSIS
visits          .../visits.csv
...
truth           .../truth.json
0
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cfanalytics.sample._generate import generate
from cfanalytics.sample._write import TRUTH_FILE

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cfanalytics.sample OUT``: write the sample account into OUT."""
    parser = argparse.ArgumentParser(prog="python -m cfanalytics.sample", description=main.__doc__)
    parser.add_argument("out", type=Path, help="folder to write the exports and truth.json into")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--visits", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--start", default="2026-11-16", help="first local day, YYYY-MM-DD")
    parser.add_argument("--timezone", default="America/New_York", help="account time zone (IANA)")
    args = parser.parse_args(argv)
    try:
        account = generate(
            args.out, seed=args.seed, visits=args.visits, days=args.days, start=args.start, timezone=args.timezone
        )
    except ValueError as exc:
        parser.error(str(exc))
    for role, path in account.files.items():
        print(f"{role:<15} {path}")
    print(f"{'truth':<15} {account.folder / TRUTH_FILE}")
    return 0
