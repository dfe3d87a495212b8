"""A click id's rows read straight from the Parquet files and row groups that can hold it (the journey's fast path).

:func:`cfanalytics.diagnose.journey.journey` on a plain local
:class:`~cfanalytics.store.LogStore` reads here instead of through ``scan_delta``,
which lists the table, plans and prunes again on every call:

- a **snapshot** per table (cached by table version): its data files in scan
  order, each with the ``click_id`` min/max of its Delta ``add`` statistics. The
  version is checked on every lookup by two ``stat`` calls (the commit file of
  the cached version, and the absence of the next one), so a new ingest,
  ``maintain`` or ``forget`` is seen at once;
- the files whose ``[min, max]`` can hold the id; in each, the row groups whose
  footer statistics can hold it (footers cached by path, size and mtime);
- only those row groups are read (the requested columns), filtered on
  ``click_id == id``, on up to :data:`THREADS` threads, and cast to the types
  ``scan_delta`` gives, in its file order: the same rows, columns, dtypes and order.

:func:`click_frames` answers ``None`` when it does not apply, and the caller scans
as before: another reader (a wrapper, a store on object storage, one not created
yet), a table with deletion vectors, column mapping or another protocol feature
read here without support, a partition column requested, or a file that vanished
under the read (a concurrent ``forget`` or vacuum).

Footers of files that left a table are dropped when its snapshot is reloaded, so
a forgotten click's id survives in no cached statistic.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> [f.height for f in click_frames(store, "x", [("visits", ["click_id"]), ("postbacks", ["postback_id"])])]
[0, 0]
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

#: Threads reading row groups at once (each file read is one task).
THREADS: Final = 2
#: Cached table snapshots / file footers at most (least recently used go first).
MAX_SNAPSHOTS: Final = 64
MAX_FOOTERS: Final = 4096
#: Reader features a snapshot is read under here; any other (deletion vectors, column mapping …) means a scan.
_READER_FEATURES: Final = frozenset({"timestampNtz"})
#: String statistics this long or longer may be truncated: not used to skip anything.
_STAT_BYTES: Final = 64
_KEY: Final = "click_id"


@dataclass(frozen=True)
class DataFile:
    """One data file of a snapshot: absolute path, size, and its ``click_id`` bounds (None: unknown)."""

    path: str
    size: int
    low: str | None
    high: str | None

    def may_hold(self, click_id: str) -> bool:
        """Whether the file's Delta statistics allow a row with this click id.

        >>> DataFile("f", 1, "b", "d").may_hold("c"), DataFile("f", 1, "b", "d").may_hold("e")
        (True, False)
        >>> DataFile("f", 1, None, None).may_hold("e")
        True
        """
        return self.low is None or self.high is None or self.low <= click_id <= self.high


@dataclass(frozen=True)
class Snapshot:
    """A table at one version as the fast path reads it (``supported`` False: always scan)."""

    folder: str
    version: int
    stamp: tuple[int, int, int] | None  # (inode, size, mtime ns) of the version's commit file
    files: tuple[DataFile, ...]  # in scan order (``DeltaTable.file_uris``)
    schema: pl.Schema  # what ``scan_delta`` gives
    partitions: frozenset[str]
    supported: bool


@dataclass(frozen=True)
class _Footer:
    meta: pq.FileMetaData
    # per row group: click-id bounds (None: unknown), and whether every value is null
    lows: tuple[str | None, ...]
    highs: tuple[str | None, ...]
    empty: tuple[bool, ...]


_snapshots: OrderedDict[str, Snapshot] = OrderedDict()
_footers: OrderedDict[tuple[str, int, int], _Footer] = OrderedDict()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _open(path: str) -> pa.NativeFile:
    """Open a data file for reading (every read of a data file goes through here).

    An Arrow file: its reads release the GIL, so the reading threads run at once.
    """
    import pyarrow as pa

    return pa.OSFile(path, "r")


def clear() -> None:
    """Forget every cached snapshot and footer (the next lookup reads them again).

    >>> clear(); len(_snapshots), len(_footers)
    (0, 0)
    """
    with _lock:
        _snapshots.clear()
        _footers.clear()


def drop(folder: str | Path) -> None:
    """Forget the cached snapshot of the table in ``folder`` and the footers of its files (after an erasure).

    >>> drop("/no/such/table")
    """
    key = os.path.abspath(folder)
    prefix = key + os.sep
    with _lock:
        _snapshots.pop(key, None)
        for k in [k for k in _footers if k[0].startswith(prefix)]:
            del _footers[k]


def _commit_file(folder: str, version: int) -> str:
    return os.path.join(folder, "_delta_log", f"{version:020d}.json")


def _stamp(folder: str, version: int) -> tuple[int, int, int] | None:
    try:
        st = os.stat(_commit_file(folder, version))
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _fresh(snap: Snapshot) -> bool:
    """Whether ``snap`` is still the table's newest version (no later commit; its own commit file unchanged)."""
    return (
        snap.stamp is not None
        and _stamp(snap.folder, snap.version) == snap.stamp
        and not os.path.exists(_commit_file(snap.folder, snap.version + 1))
    )


def snapshot(folder: str | Path) -> Snapshot:
    """The cached snapshot of the Delta table in ``folder``, reloaded when the table has a newer version.

    >>> import tempfile
    >>> from deltalake import write_deltalake
    >>> t = tempfile.mkdtemp() + "/t"
    >>> write_deltalake(t, pl.DataFrame({"click_id": ["a", "c"], "n": [1, 2]}).to_arrow())
    >>> snap = snapshot(t)
    >>> snap.version, [(f.low, f.high) for f in snap.files], snapshot(t) is snap
    (0, [('a', 'c')], True)
    >>> write_deltalake(t, pl.DataFrame({"click_id": ["x"], "n": [3]}).to_arrow(), mode="append")
    >>> snapshot(t).version
    1
    """
    key = os.path.abspath(folder)
    with _lock:
        snap = _snapshots.get(key)
        if snap is not None:
            _snapshots.move_to_end(key)
    if snap is not None and _fresh(snap):
        return snap
    snap = _load(key)
    with _lock:
        _snapshots[key] = snap
        _snapshots.move_to_end(key)
        while len(_snapshots) > MAX_SNAPSHOTS:
            _snapshots.popitem(last=False)
        live = {f.path for s in _snapshots.values() for f in s.files}
        prefix = key + os.sep
        for k in [k for k in _footers if k[0].startswith(prefix) and k[0] not in live]:
            del _footers[k]  # a file that left the table: its statistics may hold erased values
    return snap


def _load(folder: str) -> Snapshot:
    """Read the table's newest version from its Delta log."""
    from deltalake import DeltaTable

    dt = DeltaTable(folder)
    version = dt.version()
    stamp = _stamp(folder, version)
    protocol = dt.protocol()
    features = set(protocol.reader_features or ())
    config = dt.metadata().configuration
    supported = (
        protocol.min_reader_version == 1 or (protocol.min_reader_version == 3 and features <= _READER_FEATURES)
    ) and config.get("delta.columnMapping.mode", "none") == "none"
    partitions = frozenset(dt.metadata().partition_columns)
    schema = pl.Schema(dt.schema())
    if not supported:
        return Snapshot(folder, version, stamp, (), schema, partitions, False)
    actions = dt.get_add_actions(flatten=True)
    names = actions.schema.names
    paths = [unquote(p) for p in actions.column("path").to_pylist()]
    sizes = actions.column("size_bytes").to_pylist()
    n = len(paths)
    lows = actions.column(f"min.{_KEY}").to_pylist() if f"min.{_KEY}" in names else [None] * n
    highs = actions.column(f"max.{_KEY}").to_pylist() if f"max.{_KEY}" in names else [None] * n
    by_path = {
        os.path.normpath(os.path.join(folder, p)): (int(size), _bound(lo), _bound(hi))
        for p, size, lo, hi in zip(paths, sizes, lows, highs, strict=True)
    }
    files = []
    for uri in dt.file_uris():  # the order scan_delta reads them in
        path = os.path.normpath(uri.removeprefix("file://"))
        if path not in by_path:  # cannot pair the log's paths with the files: never guess
            return Snapshot(folder, version, stamp, (), schema, partitions, False)
        size, lo, hi = by_path[path]
        files.append(DataFile(path, size, lo, hi))
    return Snapshot(folder, version, stamp, tuple(files), schema, partitions, True)


def _bound(value: Any) -> str | None:
    """A string statistic usable as a bound (None when absent, not text, or long enough to be truncated)."""
    if not isinstance(value, str) or len(value.encode()) >= _STAT_BYTES:
        return None
    return value


def footer(path: str) -> _Footer:
    """The Parquet footer of ``path`` with its row groups' click-id bounds, cached by path, size and mtime."""
    import pyarrow.parquet as pq

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _lock:
        found = _footers.get(key)
        if found is not None:
            _footers.move_to_end(key)
            return found
    with _open(path) as f:
        meta = pq.read_metadata(f)
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    col = names.index(_KEY) if _KEY in names else None
    lows: list[str | None] = []
    highs: list[str | None] = []
    empty: list[bool] = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if col is None:  # a file written before the column existed: every value is null
            lows.append(None)
            highs.append(None)
            empty.append(True)
            continue
        stats = group.column(col).statistics
        nulls = stats.null_count if stats is not None and stats.has_null_count else None
        empty.append(nulls is not None and nulls == group.num_rows)
        ranged = stats is not None and stats.has_min_max
        lows.append(_bound(stats.min) if ranged else None)
        highs.append(_bound(stats.max) if ranged else None)
    found = _Footer(meta, tuple(lows), tuple(highs), tuple(empty))
    with _lock:
        _footers[key] = found
        while len(_footers) > MAX_FOOTERS:
            _footers.popitem(last=False)
    return found


def row_groups(path: str, click_id: str) -> list[int]:
    """The row groups of the file ``path`` whose footer statistics allow a row with this click id.

    >>> import tempfile
    >>> f = tempfile.mkdtemp() + "/f.parquet"
    >>> pl.DataFrame({"click_id": ["a", "b", "c", "d"]}).write_parquet(f, row_group_size=2)
    >>> row_groups(f, "c"), row_groups(f, "e")
    ([1], [])
    """
    foot = footer(path)
    out = []
    for g, (lo, hi, empty) in enumerate(zip(foot.lows, foot.highs, foot.empty, strict=True)):
        if empty or (lo is not None and click_id < lo) or (hi is not None and click_id > hi):
            continue
        out.append(g)
    return out


def plan(store: Any, kind: str, click_id: str) -> list[tuple[str, list[int]]] | None:
    """The ``(file, row groups)`` a lookup of ``click_id`` in ``kind`` reads, in scan order; None: scan instead.

    >>> import tempfile, cfanalytics as cf
    >>> plan(cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC"), "visits", "x")
    []
    """
    snap = _store_snapshot(store, kind)
    if snap is None:
        return None
    out = []
    for f in snap.files:
        if f.may_hold(click_id):
            groups = row_groups(f.path, click_id)
            if groups:
                out.append((f.path, groups))
    return out


def _store_snapshot(store: Any, kind: str) -> Snapshot | None:
    """The snapshot of ``kind`` when ``store`` is a plain local, created LogStore (or a reader whose
    ``direct_store`` is one) and the table is read here."""
    from cfanalytics.store import LogStore

    inner = getattr(store, "direct_store", None)  # a wrapper that only counts scans (the panels' reader)
    if isinstance(inner, LogStore):
        store = inner
    if (
        not isinstance(store, LogStore)
        or type(store).scan is not LogStore.scan
        or store.remote
        or store._pending
        or not store._has_table(kind)
    ):
        return None
    snap = snapshot(store.table_path(kind))
    return snap if snap.supported else None


def click_frames(store: Any, click_id: str, wanted: Sequence[tuple[str, Sequence[str]]]) -> list[pl.DataFrame] | None:
    """For each ``(kind, columns)``, its rows with this click id: the ``columns`` its table has, as ``scan_delta``
    gives them (dtypes, file and row order). None when the fast path does not apply: the caller scans instead.

    Columns a table lacks are left out, as :func:`cfanalytics.diagnose.journey.click_rows` does.
    """
    import pyarrow as pa

    jobs: list[tuple[int, str, list[str]]] = []
    shapes: list[tuple[pl.Schema, list[str]]] = []
    for i, (kind, columns) in enumerate(wanted):
        snap = _store_snapshot(store, kind)
        if snap is None:
            return None
        cols = [c for c in dict.fromkeys(columns) if c in snap.schema]
        if any(c in snap.partitions for c in cols) or _KEY not in snap.schema:
            return None
        shapes.append((snap.schema, cols))
        jobs.extend((i, f.path, cols) for f in snap.files if f.may_hold(click_id))

    def job(path: str, cols: list[str]) -> pa.Table | None:
        groups = row_groups(path, click_id)  # the footer is read here the first time: in parallel
        return _read(path, groups, cols, click_id) if groups else None

    try:
        if len(jobs) > 1:
            read = list(_executor().map(lambda j: job(j[1], j[2]), jobs))
        else:
            read = [job(path, cols) for _, path, cols in jobs]
    except (OSError, pa.ArrowException):  # a file left the table under us (forget, vacuum): scan
        return None
    out = []
    for i, (schema, cols) in enumerate(shapes):
        parts = [t for (j, *_), t in zip(jobs, read, strict=True) if j == i and t is not None]
        out.append(_as_scanned(parts, schema, cols))
    return out


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="cfanalytics-lookup")
        return _pool


def _read(path: str, groups: list[int], columns: list[str], click_id: str) -> pa.Table | None:
    """The rows of these row groups of ``path`` whose click id is ``click_id`` (the ``columns`` the file holds),
    or None when there are none.

    The click ids are read first; the other columns only of the row groups that hold a match.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    foot = footer(path)
    have = set(foot.meta.schema.names)
    if _KEY not in have:
        return None
    with _open(path) as f:
        reader = pq.ParquetFile(f, metadata=foot.meta)
        ids = reader.read_row_groups(groups, columns=[_KEY], use_threads=False).column(_KEY)
        hits = pc.indices_nonzero(pc.equal(ids, click_id)).to_pylist()
        if not hits:
            return None
        # the row groups holding a hit (positions in ``groups``), and each hit's row once only they are read
        sizes = [foot.meta.row_group(g).num_rows for g in groups]
        starts = list(itertools.accumulate(sizes, initial=0))
        where = [bisect.bisect_right(starts, h) - 1 for h in hits]
        holding = sorted(set(where))
        base = dict(zip(holding, itertools.accumulate((sizes[k] for k in holding), initial=0), strict=False))
        local = [base[k] + h - starts[k] for h, k in zip(hits, where, strict=True)]
        cols = [c for c in dict.fromkeys(columns) if c in have]
        table = reader.read_row_groups([groups[k] for k in holding], columns=cols, use_threads=False)
    return table.take(pa.array(local, pa.int64()))


def _as_scanned(parts: list[pa.Table], schema: pl.Schema, columns: list[str]) -> pl.DataFrame:
    """The tables read, one frame in the scan's types; columns a file lacks are null, as the scan inserts them."""
    frames = []
    for t in parts:
        frame = pl.DataFrame(pl.from_arrow(t))
        frames.append(
            frame.select(
                pl.col(c).cast(schema[c]) if c in frame.columns else pl.lit(None, schema[c]).alias(c) for c in columns
            )
        )
    if not frames:
        return pl.DataFrame(schema={c: schema[c] for c in columns})
    return pl.concat(frames, how="vertical")
