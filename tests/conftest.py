"""Shared fixtures: fresh stores and the sample account (built once per run)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cfanalytics.sample import SampleAccount
    from cfanalytics.store import LogStore

os.environ.setdefault("CFANALYTICS_LOCK_TIMEOUT", "120")


def _import_spark_connect() -> None:
    """Import pyspark's Spark Connect client as an interactive session would.

    pytest-xdist's workers run under a ``__main__`` with neither a spec nor a file, which the client's first
    import takes for one of pyspark's own doctest runs (it then looks for a Spark installation and exits);
    with ``sys.ps1`` set for that import, it does not. Nothing else about ``__main__`` changes (processes
    started by ``spawn`` rely on it).
    """
    had_ps1 = hasattr(sys, "ps1")
    if not had_ps1:
        sys.ps1 = ">>> "
    try:
        import pyspark.sql.connect.session  # noqa: F401
    except ImportError:
        pass
    finally:
        if not had_ps1:
            del sys.ps1


_import_spark_connect()


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


@pytest.fixture(scope="session")
def spark(tmp_path_factory, s3):
    """A Sail Spark Connect server (local-cluster mode, 2 workers) for the session, stopped by PID at the end.

    Its environment holds :func:`s3`'s ``AWS_*`` options, so it reads Delta tables both on local folders and on the
    session's S3 server. Connect with ``SparkSession.builder.remote(spark.remote)``.
    """
    from tests import sparkserver

    server = sparkserver.start(tmp_path_factory.mktemp("sail"), env=s3.options, workers=2)
    yield server
    from cfanalytics.engines import close_sessions

    close_sessions()  # while the server still answers
    server.stop()


@pytest.fixture(scope="session")
def spark_remote(spark) -> str:
    """The Spark Connect address of :func:`spark` (``sc://127.0.0.1:<port>``)."""
    return spark.remote


# Hypothesis: "ci" bounds property tests (CI=1), "dev" keeps local runs quick; --hypothesis-profile overrides.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True)
_hypothesis_settings.register_profile("dev", max_examples=20, deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")
