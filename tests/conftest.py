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


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A SeaweedFS S3 server on free 127.0.0.1 ports with bucket ``lake``, for the session (stopped by PID)."""
    from tests import s3server

    server = s3server.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch):
    """:func:`s3` with its ``AWS_*`` variables set for this test (and the processes it starts)."""
    for key, value in s3.options.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture
def s3_uri(s3, request) -> str:
    """A fresh ``s3://lake/<test>-<token>`` prefix for one store."""
    import re
    import secrets

    name = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name)[:40].strip("-")
    return f"s3://{s3.bucket}/{name}-{secrets.token_hex(3)}"


# Hypothesis: "ci" bounds property tests (CI=1), "dev" keeps local runs quick; --hypothesis-profile overrides.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True)
_hypothesis_settings.register_profile("dev", max_examples=20, deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")
