"""Shared fixtures: small hand-made exports and fresh stores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CFANALYTICS_LOCK_TIMEOUT", "120")


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
