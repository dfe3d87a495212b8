"""Error meanings stored at ingest: what each failing postback's answer means, as a table of the store.

The rules that read a failing postback (:mod:`cfanalytics.diagnose.error_kinds`) are Rust regular
expressions. Spark and other engines have regex dialects of their own, so the rules run once,
on the writer, in Polars: each ingest stores the error kind, detail, platform and its code, the
advice and the error signature of every failing postback it adds, in the table
``error_meanings`` (one row per failing postback, keyed by its ``postback_id``, unique in a store), with the version
of the rules that derived it (:data:`RULES_VERSION`). Diagnostics join these on any engine.

The table is derived data: a row missing from it (a store written before it existed, or an
ingest killed between its two commits) or derived by other rules is derived again on the fly
by the diagnostics, and for good by :meth:`LogStore.maintain <cfanalytics.store.LogStore.maintain>`
(:func:`refresh_meanings`). ``forget`` removes the meanings of the rows it deletes.

>>> import polars as pl
>>> rows = pl.LazyFrame(
...     {
...         "postback_id": ["r1", "r2"],
...         "is_error": [True, False],
...         "status_code": [429, 200],
...         "error_message": ["Too many requests", None],
...         "postback_url": ["https://ts.example/pb?cid=1", "https://ts.example/pb?cid=2"],
...     }
... )
>>> derive_meanings(rows).select("postback_id", "error_kind", "signature").rows()
[('r1', 'rate_limit', 'Too many requests')]
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import narwhals.stable.v2 as nw
import polars as pl

if TYPE_CHECKING:
    from cfanalytics._delta import Root
    from cfanalytics.store import LogStore

#: Folder (under ``tables/``) of the table of error meanings.
ERROR_MEANINGS: Final = "error_meanings"

#: What a row of the table holds: the postback's id, its meaning, and the rules' version.
MEANINGS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "postback_id": pl.String(),
    "error_kind": pl.String(),
    "error_detail": pl.String(),
    "platform": pl.String(),
    "platform_code": pl.String(),
    "retryable": pl.Boolean(),
    "fix_owner": pl.String(),
    "action": pl.String(),
    "signature": pl.String(),
    "rules": pl.String(),
}

#: Columns of a postback the rules read: the platform is told by the URL's host, the integration id and the answer.
RULE_INPUTS: Final = ("is_error", "status_code", "error_message", "postback_url", "integration_id")

# the modules whose code is the rules: any change to them is a new version
_RULE_MODULES: Final = ("diagnose/error_kinds.py", "diagnose/platform_errors.py", "redaction.py")


def _rules_version() -> str:
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in _RULE_MODULES:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


#: The version of the rules: a digest of their code (patterns, tables and the logic that applies them).
RULES_VERSION: Final = _rules_version()


def failing() -> pl.Expr:
    """Whether a postback failed (a null ``is_error`` is not a failure)."""
    return pl.col("is_error").cast(pl.Boolean, strict=False).fill_null(value=False)


def derive_meanings(postbacks: pl.LazyFrame) -> pl.DataFrame:
    """The meaning rows (:data:`MEANINGS_SCHEMA`) of the failing rows of ``postbacks``, by the current rules."""
    from cfanalytics.diagnose.error_kinds import ERROR_MEANING_COLUMNS, signature, with_error_meaning

    present = postbacks.collect_schema().names()
    rows = postbacks.filter(failing()).select("postback_id", *(c for c in RULE_INPUTS if c in present))
    explained = with_error_meaning(rows).with_columns(
        signature(pl.col("error_message")).alias("signature"), pl.lit(RULES_VERSION).alias("rules")
    )
    assert set(ERROR_MEANING_COLUMNS) < set(MEANINGS_SCHEMA)
    return explained.select(pl.col(c).cast(t) for c, t in MEANINGS_SCHEMA.items()).collect()


def current_meanings(rows: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """The meanings by the current rules among stored ones (``rows``: the table, on any engine), one per
    postback, without ``rules``."""
    return (
        rows.filter(nw.col("rules") == RULES_VERSION)
        .unique(subset=["postback_id"], keep="any")
        .select(c for c in MEANINGS_SCHEMA if c != "rules")
    )


def write_meanings(root: Root, meanings: pl.DataFrame, *, mode: str = "append") -> None:
    """Append ``meanings`` to the table at ``root`` (``mode="overwrite"``: replace its rows), creating it."""
    from deltalake import write_deltalake

    from cfanalytics._delta import TABLE_CONFIG, arrow_schema, as_location, commit_hooks, writer_properties

    if meanings.height == 0 and mode == "append":
        return
    where = as_location(root)
    schema = arrow_schema(MEANINGS_SCHEMA)
    write_deltalake(
        where.uri,
        meanings.select(list(MEANINGS_SCHEMA)).to_arrow().cast(schema),
        mode="overwrite" if mode == "overwrite" else "append",
        name=ERROR_MEANINGS,
        configuration=TABLE_CONFIG,
        writer_properties=writer_properties(),
        post_commithook_properties=commit_hooks(),
        storage_options=where.options,
    )


def meanings_of_batch(store: LogStore, batch_id: str) -> None:
    """Store the meanings of the failing postbacks an ingest batch just stored (the caller holds the lock).

    Files of one batch hold one ``_batch_id``, so the scan reads that batch's files only.
    A failure here loses nothing: the diagnostics derive missing meanings, and ``maintain`` stores them.
    """
    import pyarrow as pa
    from deltalake.exceptions import DeltaError

    rows = store.scan("postbacks").filter(pl.col("_batch_id") == batch_id)
    try:
        write_meanings(store.table_root(ERROR_MEANINGS), derive_meanings(rows))
    except (OSError, pl.exceptions.PolarsError, pa.ArrowException, DeltaError):
        return


def refresh_meanings(store: LogStore) -> dict[str, Any]:
    """Make the table hold the current meanings of every failing postback, and only those (under the lock).

    Meanings of other rules, or of rows no longer stored, mean a rewrite of the whole
    table (it holds failing postbacks only); else the missing ones are appended.
    Returns ``{"derived": rows written, "rules": RULES_VERSION}``.
    """
    root = store.table_root(ERROR_MEANINGS)
    postbacks = store.scan("postbacks")
    wanted = postbacks.filter(failing()).select("postback_id")
    have = store.scan(ERROR_MEANINGS).select("postback_id", "rules")
    stale = (
        have.join(wanted, on="postback_id", how="anti").select(pl.len()).collect().item()
        + have.filter(pl.col("rules") != RULES_VERSION).select(pl.len()).collect().item()
        + have.group_by("postback_id").len().filter(pl.col("len") > 1).select(pl.len()).collect().item()
    )
    if stale:
        derived = derive_meanings(postbacks)
        write_meanings(root, derived, mode="overwrite")
    else:
        derived = derive_meanings(postbacks.join(have.select("postback_id"), on="postback_id", how="anti"))
        write_meanings(root, derived)
    return {"derived": derived.height, "rules": RULES_VERSION}
