"""Shared fixtures: fresh stores and the sample account (built once per run)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cfanalytics.sample import SampleAccount
    from cfanalytics.store import LogStore

os.environ.setdefault("CFANALYTICS_LOCK_TIMEOUT", "120")


@dataclass(frozen=True)
class Sample:
    """The sample account (seed 7, 20k visits) ingested once per test run: read it, never write it."""

    folder: Path
    store: LogStore
    account: SampleAccount


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Sample:
    """The sample account built as ``cfanalytics demo`` builds it (``workspace.build_sample_store``).

    Read-only: a test that writes copies ``sample.folder`` first (``shutil.copytree``).
    """
    from cfanalytics.workspace import build_sample_store

    folder = tmp_path_factory.mktemp("sample-store")
    store, account, result = build_sample_store(folder)
    assert result.ok, result.failures
    return Sample(folder, store, account)


@pytest.fixture(scope="session")
def sample_store(sample: Sample) -> LogStore:
    """The store of :func:`sample` (read-only)."""
    return sample.store


@pytest.fixture
def store(tmp_path):
    """A fresh store in UTC."""
    from cfanalytics import LogStore

    return LogStore(tmp_path / "store", timezone="UTC")


@pytest.fixture
def ny_store(tmp_path):
    """A fresh store whose account time zone is America/New_York."""
    from cfanalytics import LogStore

    return LogStore(tmp_path / "store", timezone="America/New_York")


# Hypothesis: "ci" bounds property tests (CI=1), "dev" keeps local runs quick; --hypothesis-profile overrides.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True)
_hypothesis_settings.register_profile("dev", max_examples=20, deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")
