"""Where notebooks find their store: one place for the path, the sample store by default.

The order: an explicit path; else ``$CFANALYTICS_STORE``; else the sample store
(``data/sample/store`` in a source checkout, ``~/.cache/cfanalytics/sample/store``
otherwise), generated and ingested on first use. A path or ``$CFANALYTICS_STORE`` may
name a store on object storage, ``s3://bucket/prefix`` (endpoint and credentials from
the ``AWS_*`` variables, see :mod:`cfanalytics.storage`).

>>> sample_folder().name
'sample'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cfanalytics.ingest import IngestResult
    from cfanalytics.sample import SampleAccount
    from cfanalytics.store import LogStore

SAMPLE_SEED = 7
SAMPLE_VISITS = 20_000


def sample_folder() -> Path:
    """Folder of the sample account (exports + store)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "cfanalytics").is_dir():
        return root / "data" / "sample"
    return Path.home() / ".cache" / "cfanalytics" / "sample"


def build_sample_store(
    folder: Path | None = None, *, seed: int = SAMPLE_SEED, visits: int = SAMPLE_VISITS, progress: bool = False
) -> tuple[LogStore, SampleAccount, IngestResult]:
    """Generate the sample account into ``folder/exports`` and ingest it into a fresh ``folder/store``."""
    import shutil

    from cfanalytics.sample import generate
    from cfanalytics.store import LogStore

    folder = folder or sample_folder()
    account = generate(folder / "exports", seed=seed, visits=visits)
    shutil.rmtree(folder / "store", ignore_errors=True)
    store = LogStore(folder / "store", timezone=account.truth["timezone"])
    result = store.ingest(
        [p for role, p in sorted(account.files.items()) if role != "network_export"], progress=progress
    )
    return store, account, result


def open_store(path: str | os.PathLike[str] | None = None) -> LogStore:
    """The store a notebook works on (see the module docstring)."""
    from cfanalytics.store import META_FILE, LogStore

    chosen = path or os.environ.get("CFANALYTICS_STORE")
    if chosen:
        return LogStore(chosen, create=False)
    folder = sample_folder()
    if not (folder / "store" / META_FILE).exists():
        return build_sample_store(folder)[0]
    return LogStore(folder / "store", create=False)
