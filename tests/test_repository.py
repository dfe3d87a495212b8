"""The repository stands alone: a clone with nothing beside it has every file its tests, code and docs use."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import ROOT

#: A path that climbs out of the repository, or names a folder that only exists beside it.
OUTSIDE = re.compile(r"\.\./shared|parents\[[2-9]\]\s*/\s*[\"']shared|/work/shared|\bSPEC\.md\b")


THIS = ROOT / "tests" / "test_repository.py"


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def test_no_tracked_file_reaches_outside_the_repository():
    offenders = []
    for name in _tracked():
        path = ROOT / name
        if path.suffix in {".png", ".jpg", ".gz", ".parquet", ".xlsx"} or not path.is_file() or path == THIS:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert offenders == []


def test_docs_cited_by_the_code_exist():
    cited: set[str] = set()
    for name in _tracked():
        if name.endswith((".py", ".md", ".json", ".ipynb")):
            cited |= set(re.findall(r"\bdocs/[\w./-]+\.(?:md|json)\b", (ROOT / name).read_text(errors="replace")))
    assert cited, "the code cites docs/ pages"
    assert sorted(c for c in cited if not (ROOT / c).exists()) == []


def test_the_worked_example_is_inside_the_repository():
    example = ROOT / "tests" / "data" / "examples" / "gaps"
    assert sorted(p.name for p in example.iterdir()) == [
        "conversions.csv",
        "expected.json",
        "postbacks.csv",
        "visits.csv",
    ]
