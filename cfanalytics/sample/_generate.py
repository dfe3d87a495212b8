"""Generate one sample account: simulate it, write its files and its truth.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     account = generate(tmp, visits=500, days=2)
...     sorted(p.name for p in account.folder.iterdir())[:3]
['activity.csv', 'clicks.ndjson.gz', 'conversions.json']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cfanalytics.sample._simulate import Simulation
from cfanalytics.sample._truth import truth as score
from cfanalytics.sample._write import write, write_truth

__all__ = ["SampleAccount", "generate"]


@dataclass
class SampleAccount:
    """A generated sample account: its folder, its files by role, and its truth."""

    folder: Path
    files: dict[str, Path]
    truth: dict[str, Any] = field(repr=False)


def generate(
    folder: str | Path,
    *,
    seed: int = 7,
    visits: int = 20_000,
    days: int = 4,
    start: str = "2026-11-16",
    timezone: str = "America/New_York",
) -> SampleAccount:
    """Write the sample account's exports and ``truth.json`` into ``folder``.

    ``visits`` sizes everything (clicks ≈ 45 %, conversions ≈ 8 % of it);
    ``start`` is the first local day, ``days`` ≥ 2 (the first day is clean
    baseline). Incidents are detectable by the default rule from about
    20 000 visits up. Same arguments, byte-identical files.
    """
    if visits < 500:
        raise ValueError(f"visits must be at least 500, got {visits}")
    if days < 2:
        raise ValueError(f"days must be at least 2 (one clean day precedes the faults), got {days}")
    sim = Simulation(seed=seed, visits=visits, days=days, start=date.fromisoformat(start), tz=ZoneInfo(timezone))
    sim.run()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = write(sim, out)
    document = score(sim, seed=seed, start=start, timezone=timezone)
    write_truth(out, document)
    return SampleAccount(folder=out, files=files, truth=document)
