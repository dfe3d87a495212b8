"""A disk that fills up during an ingest: one line, a readable store, each batch stored whole or not at all.

The store lives on a small tmpfs mounted by the test (root only). The disk runs
out either while the input is spilled to scratch (pyarrow: an ``OSError``) or
while the rows are written into the table (Polars' Parquet sink: a
``ComputeError``); both end as one :class:`StoreError` line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

import cfanalytics.ingest as ingest_module
from cfanalytics import LogStore
from cfanalytics.exceptions import CfError
from tests.helpers import check_store, run_cli, visits_frame, write_csv

SIZE_MB = 24


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (run as root to test a full disk)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command to mount a tmpfs"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a tmpfs of SIZE_MB megabytes, unmounted after the test."""
    if reason := _skip_reason():
        pytest.skip(reason)
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with a ballast file, then free ``leave`` bytes of it; the ballast."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    os.truncate(ballast, max(ballast.stat().st_size - leave, 0))
    return ballast


def _free(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def inputs(tmp_path):
    """A small first export and a bigger second one (outside the small disk)."""
    return (
        write_csv(visits_frame(2_000), tmp_path / "first.csv"),
        write_csv(visits_frame(60_000, start=2_000), tmp_path / "second.csv"),
    )


def _assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert "\n" not in text
    assert "no space left on device" in text


def test_disk_full_while_spilling_to_scratch_is_one_line_and_stores_nothing(small_disk, inputs):
    first, second = inputs
    store = LogStore(small_disk / "s", timezone="UTC")
    assert store.ingest([first]).ok
    before = check_store(store.path)
    ballast = _fill(small_disk, leave=256 << 10)  # room for the scratch folder, not for the scratch
    with pytest.raises(CfError) as caught:
        store.ingest([second])
    _assert_one_line(caught.value)
    assert f"while reading {second}; nothing of it was stored" in str(caught.value)
    assert check_store(store.path) == before  # readable, and none of the second batch
    assert not any((store.path / "_staging").iterdir())
    # the same through the command line: one line, no traceback
    r = run_cli("ingest", "--store", str(store.path), str(second))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"cfanalytics: {store.path}: no space left on device")
    assert "Traceback" not in r.stderr
    ballast.unlink()
    (again,) = store.ingest([second]).batches
    assert again.rows_stored == 60_000
    assert check_store(store.path)["visits"] == 62_000


def test_disk_full_while_writing_the_table_is_one_line_and_stores_all_or_none(small_disk, inputs, monkeypatch):
    first, second = inputs
    store = LogStore(small_disk / "s", timezone="UTC")
    assert store.ingest([first]).ok
    before = check_store(store.path)
    real = ingest_module.append_rows
    seen: list[BaseException] = []

    def fill_then_append(*args, **kwargs):  # the disk fills up between reading the input and writing the table
        _fill(small_disk)
        try:
            return real(*args, **kwargs)
        except BaseException as exc:
            seen.append(exc)
            raise

    monkeypatch.setattr(ingest_module, "append_rows", fill_then_append)
    with pytest.raises(CfError) as caught:
        store.ingest([second])
    _assert_one_line(caught.value)
    assert [type(e) for e in seen] == [pl.exceptions.ComputeError]  # Polars' sink said it
    assert check_store(store.path) == before
    # no data file of the failed batch is left in the table folder
    live = {Path(u).name for u in store.file_uris("visits")}
    assert {p.name for p in store.table_path("visits").rglob("*.parquet")} == live
    monkeypatch.undo()
    (small_disk / "ballast").unlink()
    assert _free(small_disk) > 8 << 20
    (again,) = store.ingest([second]).batches
    assert (again.rows_stored, again.already_stored) == (60_000, 0)
    assert check_store(store.path)["visits"] == 62_000


def test_disk_full_errors_are_recognised():
    assert ingest_module._disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert ingest_module._disk_full(pl.exceptions.ComputeError("underlying IO error: No space left on device (os 28)"))
    assert not ingest_module._disk_full(OSError(errno.EACCES, "Permission denied"))
