"""The error rules scored against real answers of the platforms (docs/contract.md §6).

Every file in ``tests/data/error_corpus/`` (NDJSON, or a JSON array) holds error answers taken from
the platforms' documentation and public issue threads, each with its source address and the labels
the platform's own documentation gives it. Each file is scored on its own: ``error_kind`` must be
right for at least 95 % of its records; the finer columns have their own floors. Run with ``-s`` to
see the scores per platform and per kind.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cfanalytics.diagnose.error_kinds import ERROR_KINDS, error_kind, with_error_meaning
from cfanalytics.diagnose.platform_errors import FIX_OWNERS, MEANINGS, PLATFORMS

CORPUS_DIR = Path(__file__).parent / "data" / "error_corpus"
FILES = sorted(p for p in CORPUS_DIR.iterdir() if p.suffix in {".ndjson", ".jsonl", ".json"})
LABELS = ("error_kind", "error_detail", "retryable", "fix_owner")
#: Share of records each label must get right, per file.
FLOORS = {"error_kind": 0.95, "error_detail": 0.85, "retryable": 0.90, "fix_owner": 0.85, "platform": 0.90}
#: Least share of right kinds within each platform and each expected kind of at least GROUP_MIN records.
GROUP_FLOOR, GROUP_MIN = 0.85, 15
#: Platforms the corpus must cover, with the fewest records each.
SPREAD = {
    "meta": 20,
    "google_ads": 20,
    "tiktok": 10,
    "microsoft_ads": 10,
    "x": 8,
    "snapchat": 4,
    "affiliate_network": 10,
    "s2s": 20,
}


def _first_of(record: dict[str, Any], *keys: str) -> Any:
    return next((record[k] for k in keys if k in record), None)


def _load(path: Path) -> list[dict[str, Any]]:
    """The records of one file, in the corpus's layout (labels under ``expected``; a few other spellings read too)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        raw = json.loads(text)
        raw = raw if isinstance(raw, list) else raw["records"]
    else:
        raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    records = []
    for n, r in enumerate(raw, start=1):
        expected = r.get("expected") or {k: r[k] for k in LABELS if k in r}
        records.append(
            {
                **r,
                "id": str(r.get("id", n)),
                "status_code": _first_of(r, "status_code", "status"),
                "body": _first_of(r, "body", "message", "error_message", "response"),
                "postback_url": _first_of(r, "postback_url", "url"),
                "integration": _first_of(r, "integration", "integration_name", "integration_hint"),
                "expected": expected,
            }
        )
    return records


def _frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "is_error": [True] * len(records),
            "status_code": [r.get("status_code") for r in records],
            "error_message": [r["body"] for r in records],
            "postback_url": [r.get("postback_url") for r in records],
            "integration_name": [r.get("integration") for r in records],
        },
        schema={
            "is_error": pl.Boolean,
            "status_code": pl.Int64,
            "error_message": pl.String,
            "postback_url": pl.String,
            "integration_name": pl.String,
        },
    )


#: Label → the values our rules can give; a file labelled in other words is not scored on that label.
VOCABULARY: dict[str, set[Any]] = {
    "error_kind": set(ERROR_KINDS),
    "error_detail": {m.detail for m in MEANINGS.values()},
    "retryable": {True, False},
    "fix_owner": set(FIX_OWNERS),
    "platform": set(PLATFORMS),
}


def _scores(records: list[dict[str, Any]]) -> tuple[pl.DataFrame, dict[str, float], dict[str, int]]:
    """The rules' answers for ``records``, the share right per label and the number of records scored on it
    (those whose expected value is in :data:`VOCABULARY`; every record for ``error_kind``)."""
    out = with_error_meaning(_frame(records).lazy()).collect()
    right: dict[str, float] = {}
    scored: dict[str, int] = {}
    for label in (*LABELS, "platform"):
        expected = [r.get("platform") if label == "platform" else r["expected"].get(label) for r in records]
        pairs = [
            (got, exp)
            for got, exp in zip(out[label], expected, strict=True)
            if label == "error_kind" or exp in VOCABULARY[label]
        ]
        scored[label] = len(pairs)
        right[label] = sum(got == exp for got, exp in pairs) / len(pairs) if pairs else 0.0
    return out, right, scored


def _by(records: list[dict[str, Any]], out: pl.DataFrame, key: str) -> dict[str, tuple[int, int]]:
    """(right, total) of ``error_kind`` per platform (``key="platform"``) or per expected kind."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record, got in zip(records, out["error_kind"], strict=True):
        group = str(record.get("platform")) if key == "platform" else record["expected"]["error_kind"]
        counts[group][0] += got == record["expected"]["error_kind"]
        counts[group][1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(counts.items())}


def _table(title: str, groups: dict[str, tuple[int, int]]) -> str:
    rows = [f"  {name:<18} {ok:>4}/{n:<4} {ok / n:6.1%}" for name, (ok, n) in groups.items()]
    return "\n".join([title, *rows])


def test_the_corpus_is_there():
    assert CORPUS_DIR / "corpus.ndjson" in FILES


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_records_are_well_formed(path):
    records = _load(path)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate ids"
    for r in records:
        where = f"{path.name} record {r['id']}"
        assert r["status_code"] is None or isinstance(r["status_code"], int), where
        assert isinstance(r["body"], str), where
        assert str(r.get("source", "")).startswith(("https://", "http://")), where
        assert r["expected"]["error_kind"] in ERROR_KINDS, where


def test_the_corpus_speaks_our_vocabulary():
    for r in _load(CORPUS_DIR / "corpus.ndjson"):
        assert r["platform"] in PLATFORMS, r["id"]
        for label in LABELS:
            assert r["expected"][label] in VOCABULARY[label], (r["id"], label)


def test_the_corpus_is_large_and_spread():
    records = _load(CORPUS_DIR / "corpus.ndjson")
    assert len(records) >= 150
    per_platform = defaultdict(int)
    for r in records:
        per_platform[r["platform"]] += 1
    for platform, least in SPREAD.items():
        assert per_platform[platform] >= least, (platform, per_platform[platform])
    assert sum(per_platform[p] for p in ("taboola", "outbrain", "mgid")) >= 6
    # networks answering HTTP 200 with an error body, and transport failures without any status
    assert sum(r["platform"] == "affiliate_network" and r["status_code"] == 200 for r in records) >= 10
    assert sum(r["status_code"] is None for r in records) >= 10
    assert {r["expected"]["error_kind"] for r in records} == set(ERROR_KINDS)
    assert len({r["source"] for r in records}) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_rules_score_on_the_corpus(path):
    records = _load(path)
    out, right, scored = _scores(records)
    report = "\n".join(
        [
            f"{path.name}: {len(records)} records; "
            + ", ".join(f"{k} {v:.1%} of {scored[k]}" for k, v in right.items()),
            _table("error_kind by platform:", _by(records, out, "platform")),
            _table("error_kind by kind:", _by(records, out, "kind")),
        ]
    )
    print(report)
    misses = [
        f"{r['id']}: {got!r} != {r['expected']['error_kind']!r}"
        for r, got in zip(records, out["error_kind"], strict=True)
        if got != r["expected"]["error_kind"]
    ]
    for label, floor in FLOORS.items():
        if scored[label] < len(records) / 2:  # labelled in other words: reported, not held to a floor
            continue
        assert right[label] >= floor, f"{label} {right[label]:.1%} < {floor:.0%}\n{report}\n" + "\n".join(misses)
    # no platform and no kind may be left behind: each group of 15 records or more gets 85 % of its kinds
    for key in ("platform", "kind"):
        for group, (ok, n) in _by(records, out, key).items():
            assert n < GROUP_MIN or ok / n >= GROUP_FLOOR, f"{key} {group}: {ok}/{n}\n{report}\n" + "\n".join(misses)


def test_the_kind_expression_agrees_with_the_frame_function():
    records = _load(CORPUS_DIR / "corpus.ndjson")
    frame = _frame(records)
    by_frame = with_error_meaning(frame.lazy()).collect()["error_kind"]
    by_expr = frame.select(
        error_kind(
            is_error=pl.col("is_error"),
            status_code=pl.col("status_code"),
            error_message=pl.col("error_message"),
            postback_url=pl.col("postback_url"),
        )
    ).to_series()
    # the expression has no integration name to go by, which only the platform column uses
    assert by_expr.to_list() == by_frame.to_list()


def test_every_failing_record_gets_every_column():
    records = _load(CORPUS_DIR / "corpus.ndjson")
    out = with_error_meaning(_frame(records).lazy()).collect()
    for column in ("error_kind", "error_detail", "platform", "retryable", "fix_owner", "action"):
        assert out[column].null_count() == 0, column
    # the platform's own code is read wherever a structured answer of an ad platform carries one
    apis = ["meta", "google_ads", "tiktok", "microsoft_ads", "x", "snapchat"]
    structured = [r["platform"] in apis and r["body"][:1] in "{<[" and r["body"] != "" for r in records]
    codes = out.filter(pl.Series(structured))["platform_code"]
    assert codes.len() >= 80
    assert codes.null_count() == 0
