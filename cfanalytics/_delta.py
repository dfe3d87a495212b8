"""The store's Delta/Parquet writer: appends, click-id layout, file rewrites, and the Delta stats they carry.

Every Parquet file the store writes has row groups of at most
:data:`ROW_GROUP_ROWS` rows, zstd level 1, and Delta ``stats`` read back from
its own footer (:func:`_footer_stats`). Every commit keeps the old log entries
(:func:`commit_hooks`): the ingest ledger lives in their metadata.

- :func:`append_rows` writes an ingest's rows with Polars' streaming Parquet
  sink and commits them in one transaction.
- :func:`partitions_to_sort` and :func:`rewrite_sorted` lay a date partition
  out sorted by ``click_id`` (``maintain``).
- :func:`rewrite_files` rewrites files without some rows, or with changed
  values (``forget``), keeping the rows' order.
- :func:`scrub_log` removes values from the Delta log (file statistics,
  operation parameters) and rebuilds the checkpoint, so an erased value
  survives nowhere.

>>> writer_properties().max_row_group_size
65536
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import polars as pl

from cfanalytics.exceptions import StoreError
from cfanalytics.storage import LocalLocation, Location

if TYPE_CHECKING:  # deltalake and pyarrow load on first write, not when the store is opened
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, PostCommitHookProperties, WriterProperties
    from deltalake.transaction import AddAction
    from polars.io.partition import FileProviderArgs, SinkedPath

#: A table's root: a local folder (``Path``) or a :class:`~cfanalytics.storage.Location` (local or S3).
Root = Path | Location

#: Rows per Parquet row group of every file the store writes (see :func:`writer_properties`).
ROW_GROUP_ROWS: Final = 65_536
#: Parquet compression of every file the store writes, and its level.
COMPRESSION: Final = "ZSTD"
COMPRESSION_LEVEL: Final = 1
#: Size a data file written by ``maintain`` grows to before the next one starts.
TARGET_FILE_BYTES: Final = 100 * 2**20
#: Size (in memory) at which an ingest starts a new data file of a date partition; ``maintain`` compacts them later.
INGEST_FILE_BYTES: Final = 32 * 2**20
#: Date partitions an append writes at once (its memory grows with them; more dates take more passes).
SINK_PARTITIONS: Final = 16
#: An ingest writes the rows of click-id tables in runs of this many rows, each sorted by click id.
SORT_RUN_ROWS: Final = 4 * ROW_GROUP_ROWS
#: Row groups of those sorted runs: small, so that a click-id lookup decodes about one per run and date
#: (4k rather than 8k: a quarter less CPU per lookup at 10M visits for 1.5 % larger files).
RUN_ROW_GROUP_ROWS: Final = 4_096
#: Row groups of the files ``maintain`` sorts by click id (at most :data:`ROW_GROUP_ROWS`): small, so that a
#: click-id lookup decodes about one 4k-row group per date partition instead of a 64k-row one (at 10M visits
#: files 5 % larger than with 64k-row groups, a lookup about 4× less CPU).
SORTED_ROW_GROUP_ROWS: Final = 4_096
#: At most about this many rows of a partition are sorted in memory at once by maintain.
SORT_SLICE_ROWS: Final = 200_000
#: Commit-metadata key of maintain's re-sort commits (never a batch: the ledger skips them).
MAINTAIN_KEY: Final = "cfanalytics.maintain"
#: Table configuration of every table: the ledger is read from commit metadata, so the log's
#: old entries must never be cleaned up.
TABLE_CONFIG: Final[dict[str, str | None]] = {"delta.enableExpiredLogCleanup": "false"}


def writer_properties(*, max_row_group_size: int | None = None) -> WriterProperties:
    """The ``deltalake.WriterProperties`` of every Delta write of the store.

    Row groups of :data:`ROW_GROUP_ROWS` rows (64k) bound the memory of delta-rs's
    Parquet writers and give readers statistics fine enough to skip row groups;
    compression is zstd level 1. Pass it to ``write_deltalake``, ``optimize`` and ``delete``.

    >>> from deltalake import write_deltalake                      # doctest: +SKIP
    >>> write_deltalake(path, data, mode="append", writer_properties=writer_properties())  # doctest: +SKIP
    >>> writer_properties().max_row_group_size
    65536
    """
    from deltalake import WriterProperties

    return WriterProperties(
        max_row_group_size=ROW_GROUP_ROWS if max_row_group_size is None else max_row_group_size,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
    )


def commit_hooks() -> PostCommitHookProperties:
    """Post-commit hooks of every commit of the store: never clean up old log files (the ledger lives in them).

    Pass it as ``post_commithook_properties`` to ``write_deltalake``, ``delete`` and ``optimize``.

    >>> commit_hooks().cleanup_expired_logs
    False
    """
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def as_location(root: Root) -> Location:
    """The :class:`~cfanalytics.storage.Location` of a table root given as a path or a location."""
    return root if isinstance(root, Location) else LocalLocation(Path(root))


def arrow_schema(schema: Mapping[str, pl.DataType]) -> pa.Schema:
    """Arrow schema of a Polars schema (via an empty frame).

    >>> arrow_schema({"a": pl.String}).names
    ['a']
    """
    return pl.DataFrame(schema=dict(schema)).to_arrow().schema


# ------------------------------------------------------------------ appends written by Polars
def append_rows(
    root: Root,
    rows: pl.LazyFrame,
    *,
    metadata: Mapping[str, str],
    required: Sequence[str] = (),
    expected: int | None = None,
    label: str = "",
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Append ``rows`` (the table's columns, ``date`` included) to the Delta table at ``root`` in one commit.

    Polars' streaming Parquet sink writes the files (one folder per ``date``,
    files of about :data:`INGEST_FILE_BYTES`, :data:`ROW_GROUP_ROWS`-row groups,
    zstd); it encodes columns in parallel, about twice as fast as
    ``write_deltalake`` with less memory. Each file's Delta stats come from its
    Parquet footer, which also proves that no ``required`` column holds a null
    (and, given ``expected``, that the files hold that many rows).
    Columns the table lacks are added first (a schema-only commit without batch
    metadata). If anything fails before the commit, the files written are
    removed: readers never see them. ``before_commit`` is called just before the
    commit (after the uploads, on object storage). Returns the number of rows written.

    >>> import datetime, tempfile
    >>> from deltalake import write_deltalake
    >>> root = Path(tempfile.mkdtemp()) / "t"
    >>> first = pl.DataFrame({"key": ["a"], "date": [datetime.date(2026, 11, 19)]})
    >>> write_deltalake(root, first.to_arrow(), partition_by=["date"])
    >>> more = pl.LazyFrame({"key": ["b", "c"], "date": [datetime.date(2026, 11, 20)] * 2})
    >>> append_rows(root, more, metadata={"cfanalytics.batch_id": "b1"}, required=["key"])
    2
    >>> pl.scan_delta(str(root)).select(pl.len()).collect().item()
    3
    """
    from deltalake import CommitProperties, DeltaTable

    where = as_location(root)
    tag = uuid.uuid4().hex
    # Files are written to the table's folder, or (object storage) to a local folder and uploaded.
    local = where.path if isinstance(where, LocalLocation) else Path(tempfile.mkdtemp(prefix="cfanalytics-append-"))
    uploaded: list[str] = []
    try:
        written = _sink_by_date(rows, local, tag)
        adds = _add_actions(local, written, required, label)
        total = sum(int(sunk.num_rows) for sunk in written)
        if expected is not None and total != expected:
            raise StoreError(f"{label}: {total} rows written, {expected} expected: a bug")
        if not adds:
            return 0
        if where.remote:
            for add in adds:
                rel = unquote(add.path)
                uploaded.append(rel)
                where.upload(rel, local / rel)
        dt = DeltaTable(where.uri, storage_options=where.options)
        _add_missing_columns(dt, rows.collect_schema())
        if before_commit is not None:  # e.g. the writer proves it still holds the store's lease
            before_commit()
        dt.create_write_transaction(
            adds,
            mode="append",
            schema=dt.schema(),
            partition_by=["date"],
            commit_properties=CommitProperties(custom_metadata=dict(metadata)),
            post_commithook_properties=commit_hooks(),
        )
    except BaseException:
        for path in local.glob(f"date=*/part-*-{tag}-c000.zstd.parquet"):  # never committed: not part of the table
            path.unlink(missing_ok=True)
        for rel in uploaded:
            with contextlib.suppress(Exception):
                where.delete(rel)
        raise
    finally:
        if where.remote:
            shutil.rmtree(local, ignore_errors=True)
    return total


def _sink_by_date(rows: pl.LazyFrame, root: Path, tag: str) -> list[SinkedPath]:
    """Write ``rows`` with Polars' Parquet sink into ``date=…`` folders under ``root``; the files written.

    File names carry ``tag``. The sink keeps a buffer per open partition: an input
    spanning many dates is written :data:`SINK_PARTITIONS` dates at a time (each
    pass reads the rows again), so memory stays bounded.
    """

    if "click_id" in rows.collect_schema().names():
        return _sink_sorted_runs(rows, root, tag)

    def file_path(args: FileProviderArgs) -> str:
        day = args.partition_keys.get_column("date")[0]
        return f"date={day}/part-{args.index_in_partition:05d}-{tag}-c000.zstd.parquet"

    written: list[SinkedPath] = []
    days = rows.select(pl.col("date").unique()).collect().get_column("date").sort().to_list()
    for i in range(0, max(len(days), 1), SINK_PARTITIONS):
        group = days[i : i + SINK_PARTITIONS]
        part = rows if len(days) <= SINK_PARTITIONS else rows.filter(pl.col("date").is_in(group))
        _sink_dates(part, root, file_path, ROW_GROUP_ROWS, written)
    return written


def _sink_dates(
    rows: pl.LazyFrame,
    root: Path,
    file_path: Callable[[FileProviderArgs], str],
    row_group_size: int,
    written: list[SinkedPath],
) -> None:
    """Sink ``rows`` into ``date=`` folders under ``root`` (zstd Parquet), adding the files to ``written``."""
    rows.sink_parquet(
        pl.PartitionBy(
            str(root),
            key="date",
            include_key=False,
            file_path_provider=file_path,
            approximate_bytes_per_file=INGEST_FILE_BYTES,
        ),
        compression="zstd",
        compression_level=COMPRESSION_LEVEL,
        row_group_size=row_group_size,
        mkdir=True,
        sinked_paths_callback=lambda args: written.extend(args.paths),
    )


def _sink_sorted_runs(rows: pl.LazyFrame, root: Path, tag: str) -> list[SinkedPath]:
    """Write ``rows`` like :func:`_sink_by_date`, in runs of :data:`SORT_RUN_ROWS` rows sorted by the
    click id's first 8 bytes (:func:`_click_id_order`), each run into files of its own with
    :data:`RUN_ROW_GROUP_ROWS`-row groups.

    A run's files and row groups then cover narrow click-id ranges: a lookup right after an ingest skips
    files by their Delta statistics and row groups by their Parquet statistics, without waiting for
    ``maintain`` (which sorts whole partitions). Memory holds one run and its sorted copy; the rows
    stream from ``rows`` once.
    """
    written: list[SinkedPath] = []

    def sink(run: pl.DataFrame, n: int) -> None:
        def file_path(args: FileProviderArgs) -> str:
            day = args.partition_keys.get_column("date")[0]
            return f"date={day}/part-{n:05d}-{args.index_in_partition:05d}-{tag}-c000.zstd.parquet"

        ordered = run.sort(_click_id_order(), nulls_last=False, maintain_order=True).lazy()
        _sink_dates(ordered, root, file_path, RUN_ROW_GROUP_ROWS, written)

    pending: list[pl.DataFrame] = []
    held = runs = 0
    for batch in rows.collect_batches(chunk_size=SORT_RUN_ROWS):
        pending.append(batch)
        held += batch.height
        while held >= SORT_RUN_ROWS:
            rest = pl.concat(pending, rechunk=False)
            sink(rest.head(SORT_RUN_ROWS), runs)
            runs += 1
            pending = [rest.slice(SORT_RUN_ROWS)]
            held = pending[0].height
    if held:
        sink(pl.concat(pending, rechunk=False), runs)
    return written


def _click_id_order() -> pl.Expr:
    """The click id's first 8 bytes as a big-endian ``UInt64`` (shorter ids padded with zero bytes).

    It sorts like the text (up to ties on those 8 bytes, rare among random ids) and about twice as fast.

    >>> ids = pl.DataFrame({"click_id": ["b", "ab", "a", "abcdefghZ", "abcdefgh", None, "ééééé", "éa"]})
    >>> ids.sort(_click_id_order(), nulls_last=False, maintain_order=True).get_column("click_id").to_list()
    [None, 'a', 'ab', 'abcdefghZ', 'abcdefgh', 'b', 'éa', 'ééééé']
    """
    text = pl.col("click_id").str.slice(0, 8).str.pad_end(8, "\0")  # 8 characters: 8 bytes or more
    head = text.cast(pl.Binary).bin.head(8)
    return head.bin.reinterpret(dtype=pl.UInt64, endianness="big")


def _add_actions(root: Path, written: Sequence[SinkedPath], required: Sequence[str], label: str) -> list[AddAction]:
    """The Delta ``AddAction`` of each written file, stats from its footer; proves no ``required`` value is null."""
    from deltalake.transaction import AddAction

    now = int(time.time() * 1000)
    adds = []
    for sunk in written:
        path = Path(sunk.path)
        rel = path.relative_to(root).as_posix()
        stats = _footer_stats(path)
        nulls = [c for c in required if stats["nullCount"].get(c) != 0]
        if nulls:
            raise StoreError(f"{label}: a required value is null in a row to store ({', '.join(nulls)}): a bug")
        day = unquote(rel.split("/", 1)[0].split("=", 1)[1])
        adds.append(AddAction(rel, path.stat().st_size, {"date": day}, now, True, json.dumps(stats)))
    return adds


def _add_missing_columns(dt: DeltaTable, schema: pl.Schema) -> None:
    """Add the columns of ``schema`` that the Delta table lacks (nullable), in one schema-only commit."""
    from deltalake import Field
    from deltalake.schema import Schema as DeltaSchema

    have = {f.name for f in dt.schema().fields}
    missing = {name: dtype for name, dtype in schema.items() if name not in have}
    if not missing:
        return
    fields = DeltaSchema.from_arrow(arrow_schema(missing)).fields
    dt.alter.add_columns(
        [Field(f.name, f.type, nullable=True) for f in fields], post_commithook_properties=commit_hooks()
    )


def _ranged(dtype: pa.DataType) -> bool:
    """Whether the store's Delta stats carry min/max for an Arrow type: strings, integers, booleans.

    Their JSON form is exact; timestamps, dates and floats get none (readers treat them as unknown).
    """
    import pyarrow as pa

    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
        or pa.types.is_integer(dtype)
        or pa.types.is_boolean(dtype)
    )


def _footer_stats(path: Path) -> dict[str, Any]:
    """Delta ``stats`` of a Parquet file from its footer: rows, null counts, and min/max where exact.

    Null counts are given for every column; min/max for strings (when shorter
    than 64 bytes: longer ones may be truncated in the footer), integers and
    booleans (see :func:`_ranged`).
    """
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    arrow = meta.schema.to_arrow_schema()
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    ranged = {f.name for f in arrow if _ranged(f.type)}
    nulls = dict.fromkeys(names, 0)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    uncounted: set[str] = set()  # no null count in some row group
    unranged: set[str] = set()  # no exact min/max in some row group
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for i, name in enumerate(names):
            st = group.column(i).statistics
            if st is None or not st.has_null_count:
                uncounted.add(name)
                unranged.add(name)
                continue
            nulls[name] += st.null_count
            if name not in ranged or st.null_count == group.num_rows:
                continue
            if not st.has_min_max or (
                isinstance(st.min, str) and max(len(st.min.encode()), len(st.max.encode())) >= 64
            ):
                unranged.add(name)
                continue
            mins[name] = st.min if name not in mins else min(mins[name], st.min)
            maxs[name] = st.max if name not in maxs else max(maxs[name], st.max)
    keep = [n for n in mins if n not in unranged]
    return {
        "numRecords": meta.num_rows,
        "minValues": {n: mins[n] for n in keep},
        "maxValues": {n: maxs[n] for n in keep},
        "nullCount": {n: v for n, v in nulls.items() if n not in uncounted},
    }


# ------------------------------------------------------------------ layout by click id
def partitions_to_sort(dt: DeltaTable, root: Root) -> dict[str, int]:
    """``{date: number of files}`` of the partitions of ``dt`` that are not laid out by ``click_id``.

    A partition is laid out when every row group of its files has at most
    :data:`ROW_GROUP_ROWS` rows and click-id statistics, the row groups' ``[min, max]``
    ranges do not overlap (touching ends are fine: an id may span two groups), and
    at most one of its files is smaller than half of :data:`TARGET_FILE_BYTES`.
    Only Parquet footers are read (and the click ids of a partition of one row group).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    where = as_location(root)
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    if actions.height == 0:
        return {}
    files: dict[str, list[tuple[str, int]]] = {}
    for path, size, day in actions.select("path", "size_bytes", "partition.date").iter_rows():
        if day is not None:
            files.setdefault(str(day), []).append((path, int(size)))
    todo: dict[str, int] = {}
    for day, parts in sorted(files.items()):
        small = sum(1 for _, size in parts if size < TARGET_FILE_BYTES // 2)
        ranges: list[tuple[str, str]] = []
        ok = small <= 1
        for path, _ in parts if ok else ():
            meta = where.parquet_metadata(unquote(path))
            names = [meta.schema.column(i).name for i in range(meta.num_columns)]
            if "click_id" not in names:
                ok = False
                break
            col = names.index("click_id")
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                stats = group.column(col).statistics
                if group.num_rows > ROW_GROUP_ROWS or stats is None or not stats.has_min_max:
                    ok = False
                    break
                ranges.append((str(stats.min), str(stats.max)))
            if not ok:
                break
        if ok and len(ranges) == 1 and ranges[0][0] != ranges[0][1]:  # one group: are its rows in order?
            with where.open(unquote(parts[0][0])) as f:
                ids = pq.read_table(f, columns=["click_id"]).column("click_id")
            ok = pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py() is not False
        ranges.sort()
        if not ok or any(prev[1] > nxt[0] for prev, nxt in itertools.pairwise(ranges)):
            todo[day] = len(parts)
    return todo


def _click_id_ranges(part: pl.LazyFrame) -> list[pl.Expr]:
    """Filters that cut ``part`` into click-id ranges of about :data:`SORT_SLICE_ROWS` rows, in id order.

    The first range also holds the null ids (never stored for these kinds, but kept if present).

    >>> part = pl.LazyFrame({"click_id": ["c", None, "a", "b", "d"]})
    >>> [part.filter(r).collect().get_column("click_id").to_list() for r in _click_id_ranges(part)]
    [['c', None, 'a', 'b', 'd']]
    """
    ids = part.select(pl.col("click_id").drop_nulls().sort()).collect().get_column("click_id")
    cuts = ids.gather_every(SORT_SLICE_ROWS, offset=SORT_SLICE_ROWS).unique(maintain_order=True).to_list()
    cid = pl.col("click_id")
    out: list[pl.Expr] = []
    for lo, hi in itertools.pairwise([None, *cuts, None]):
        within = [c for c in (None if lo is None else cid >= lo, None if hi is None else cid < hi) if c is not None]
        cond = pl.all_horizontal(within) if within else pl.lit(True)
        out.append(cond | cid.is_null() if lo is None else cond)
    return out


class _SortedFileWriter:
    """Writes rows, in the order given, into new Parquet files of one date partition (files are not committed).

    A file is closed once it holds ``per_file`` rows or more; each closed file
    becomes an ``AddAction`` (``dataChange`` as given) whose stats come from its
    footer. :meth:`discard` removes every file written, for a failed rewrite.
    """

    def __init__(
        self,
        root: Root,
        day: str | None,
        schema: pa.Schema,
        per_file: int,
        *,
        data_change: bool = False,
        row_group_rows: int | None = None,
    ) -> None:
        self.where = as_location(root)
        # files are written here; on object storage, a local folder they are uploaded from once closed
        self.root = (
            self.where.path
            if isinstance(self.where, LocalLocation)
            else Path(tempfile.mkdtemp(prefix="cfanalytics-rewrite-"))
        )
        self.day = day  # None: a table without partitions (the quarantine)
        self.folder = "" if day is None else f"date={day}/"
        self.schema = schema
        self.per_file = per_file
        self.data_change = data_change
        self.row_group_rows = ROW_GROUP_ROWS if row_group_rows is None else row_group_rows
        self.added: list[AddAction] = []
        self._writer: pq.ParquetWriter | None = None
        self._path = ""
        self._rows = 0
        (self.root / self.folder).mkdir(parents=True, exist_ok=True)

    def write(self, rows: pa.Table) -> None:
        """Append ``rows`` to the open file (a new one if none is open) as row groups of ``row_group_rows``
        (default :data:`ROW_GROUP_ROWS`)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            self._path = f"{self.folder}part-{len(self.added):05d}-{uuid.uuid4()}-c000.zstd.parquet"
            self._writer = pq.ParquetWriter(
                self.root / self._path,
                self.schema,
                compression=COMPRESSION.lower(),
                compression_level=COMPRESSION_LEVEL,
            )
            self._rows = 0
        self._writer.write_table(rows, row_group_size=self.row_group_rows)
        self._rows += rows.num_rows
        if self._rows >= self.per_file:
            self.close()

    def close(self) -> None:
        """Close the open file, if any, and record its ``AddAction``."""
        from deltalake.transaction import AddAction

        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        full = self.root / self._path
        stats = json.dumps(_footer_stats(full))
        now = int(time.time() * 1000)
        partition = {} if self.day is None else {"date": self.day}
        size = full.stat().st_size
        if self.where.remote:
            self.where.upload(self._path, full)
            full.unlink()
        self.added.append(AddAction(self._path, size, partition, now, self.data_change, stats))
        self._path = ""

    def discard(self) -> None:
        """Remove every file written (never committed), the open one too."""
        if self._writer is not None:
            # on a full disk closing fails again (the footer cannot be written): the file goes all the same
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        for a in self.added:
            if self.where.remote:
                with contextlib.suppress(Exception):
                    self.where.delete(unquote(a.path))
            else:
                (self.root / unquote(a.path)).unlink(missing_ok=True)
        if self._path:
            (self.root / self._path).unlink(missing_ok=True)
        self.added = []
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the local folder of a writer to object storage (its files are uploaded or discarded)."""
        if self.where.remote:
            shutil.rmtree(self.root, ignore_errors=True)


def _replace_files(
    dt: DeltaTable,
    removes: Iterable[tuple[str, int, str | None]],
    adds: Sequence[AddAction],
    metadata: Mapping[str, str],
    *,
    data_change: bool = False,
) -> None:
    """One commit that removes the files ``(path, size, date)`` and adds ``adds``: readers see one or the other.

    ``date`` is None for the files of a table without partitions.
    """
    from deltalake import CommitProperties
    from deltalake.transaction import RemoveAction

    now = int(time.time() * 1000)
    gone = [
        RemoveAction(p, data_change, now, int(size), {} if day is None else {"date": day}) for p, size, day in removes
    ]
    dt.create_write_transaction(
        [*gone, *adds],
        mode="append",
        schema=dt.schema(),
        partition_by=list(dt.metadata().partition_columns) or None,
        commit_properties=CommitProperties(custom_metadata=dict(metadata)),
        post_commithook_properties=commit_hooks(),
    )


def _file_schema(dt: DeltaTable) -> pa.Schema:
    """The Arrow schema of the table's data files (the partition column ``date`` is in the path, not the file)."""
    import pyarrow as pa

    schema = pa.schema(dt.schema().to_arrow())
    return pa.schema([schema.field(n) for n in schema.names if n != "date"])


def rewrite_sorted(dt: DeltaTable, root: Root, day: str) -> int:
    """Replace the files of partition ``date = day`` of ``dt`` by the same rows sorted by ``click_id``.

    The partition is read at the table's current version and sorted in click-id
    ranges of about :data:`SORT_SLICE_ROWS` rows, one range at a time (bounded
    memory), into new Parquet files of :data:`SORTED_ROW_GROUP_ROWS`-row groups, in order.
    One commit removes the old files and adds the new ones (``dataChange`` false, as
    an ``OPTIMIZE``): readers see all the old rows or all the new ones. The files
    are written here rather than by ``write_deltalake``, whose parallel plan does not
    keep the order of a stream. Returns the number of files replaced.
    """
    import pyarrow as pa

    version = dt.version()
    file_schema = _file_schema(dt)
    names = file_schema.names
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    old = actions.filter(pl.col("partition.date").cast(pl.String) == day).select("path", "size_bytes", "num_records")
    old_bytes, expected = int(old.get_column("size_bytes").sum()), int(old.get_column("num_records").sum())
    group = min(SORTED_ROW_GROUP_ROWS, ROW_GROUP_ROWS)
    per_file = max(ROW_GROUP_ROWS, int(TARGET_FILE_BYTES * expected / max(old_bytes, 1)) // group * group)
    where = as_location(root)
    part = pl.scan_delta(where.uri, version=version, storage_options=where.options).filter(
        pl.col("date") == _dt.date.fromisoformat(day)
    )
    out = _SortedFileWriter(root, day, file_schema, per_file, row_group_rows=group)
    seen = 0
    carry = file_schema.empty_table()
    try:
        for within in _click_id_ranges(part):
            rows = part.filter(within).sort(["click_id", "_row_id"], nulls_last=False).select(names).collect()
            seen += rows.height
            carry = pa.concat_tables([carry, rows.to_arrow().cast(file_schema)])
            del rows
            while carry.num_rows >= group:  # whole row groups only, so that groups never straddle ranges
                out.write(carry.slice(0, group))
                carry = carry.slice(group)
        if carry.num_rows:
            out.write(carry)
        out.close()
        if seen != expected:  # never commit a partition that lost or doubled rows
            raise StoreError(f"{where.uri.rsplit('/', 1)[-1]}: re-sort of date={day} read {seen} rows, not {expected}")
        removes = [(p, int(size), day) for p, size, _ in old.iter_rows()]
        _replace_files(dt, removes, out.added, {MAINTAIN_KEY: "sort_by_click_id", "date": day})
    except BaseException:
        out.discard()  # never committed: remove now rather than leave them to vacuum
        raise
    finally:
        out.cleanup()
    return old.height


# ------------------------------------------------------------------ claims: rows a later batch also carried
#: Folder (under ``tables/``) of the claims table: one row per (table, ``_row_id``, batch) for each row a
#: batch carried that the store held already (the id as two Int64 halves, see
#: :func:`cfanalytics.identity.id_halves`). ``forget`` hands such rows to a claimant instead of deleting them.
CLAIMS: Final = "claims"
CLAIMS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "table": pl.String(),
    "id_hi": pl.Int64(),
    "id_lo": pl.Int64(),
    "_batch_id": pl.String(),
    "claimed_at": pl.Datetime("us", "UTC"),
}


def create_claims(root: Root) -> None:
    """Create the claims table at ``root`` unless it exists (stores made before it get it on first use)."""
    from deltalake import DeltaTable

    where = as_location(root)
    DeltaTable.create(
        where.uri,
        arrow_schema(CLAIMS_SCHEMA),
        mode="ignore",
        name=CLAIMS,
        configuration=TABLE_CONFIG,
        storage_options=where.options,
    )


def append_claims(root: Root, claims: pl.DataFrame) -> None:
    """Append ``claims`` (:data:`CLAIMS_SCHEMA`) to the claims table at ``root``, creating it."""
    from deltalake import write_deltalake

    if claims.height == 0:
        return
    create_claims(root)
    where = as_location(root)
    now = pl.lit(_dt.datetime.now(tz=_dt.UTC), CLAIMS_SCHEMA["claimed_at"])  # under the store lock: in commit order
    write_deltalake(
        where.uri,
        claims.with_columns(now.alias("claimed_at"))
        .select(list(CLAIMS_SCHEMA))
        .cast(CLAIMS_SCHEMA)
        .to_arrow()
        .cast(arrow_schema(CLAIMS_SCHEMA)),
        mode="append",
        writer_properties=writer_properties(),
        post_commithook_properties=commit_hooks(),
        storage_options=where.options,
    )


# ------------------------------------------------------------------ rewrites that change rows (forget)
def rewrite_files(
    dt: DeltaTable,
    root: Root,
    touched: pl.Expr,
    change: Callable[[pl.LazyFrame], pl.LazyFrame],
    metadata: Mapping[str, str],
) -> list[str]:
    """Rewrite the data files holding a row that matches ``touched`` as ``change`` of their rows, in one commit.

    ``change`` gets one file's rows (``date`` excluded) and returns what the
    file is to hold instead, in the same columns (fewer rows, or other values);
    the rows keep their order, so a file laid out by ``click_id`` stays so. A
    file left empty is removed without a replacement. Returns the paths of the
    files removed from the table (their bytes are still on disk: the caller
    removes them once committed, see :func:`remove_files`).
    """
    where = as_location(root)
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    if actions.height == 0:
        return []
    file_schema = _file_schema(dt)
    dated = "partition.date" in actions.columns
    day_of = pl.col("partition.date").cast(pl.String) if dated else pl.lit(None, pl.String)
    removes: list[tuple[str, int, str | None]] = []
    writers: list[_SortedFileWriter] = []
    try:
        for path, size, day in actions.select("path", "size_bytes", day_of).iter_rows():
            rows = pl.scan_parquet(where.child(unquote(path)), storage_options=where.options)
            if rows.filter(touched).select(pl.len()).collect().item() == 0:
                continue
            new = change(rows).collect()
            new = new.with_columns(pl.lit(None).alias(c) for c in file_schema.names if c not in new.columns)
            meta = where.parquet_metadata(unquote(path))
            out = _SortedFileWriter(where, day, file_schema, max(meta.num_rows, 1), data_change=True)
            writers.append(out)
            if new.height:
                out.write(new.select(file_schema.names).to_arrow().cast(file_schema))
            out.close()
            removes.append((path, int(size), day))
        if removes:
            adds = [a for w in writers for a in w.added]
            _replace_files(dt, removes, adds, metadata, data_change=True)
    except BaseException:
        for w in writers:
            w.discard()
        raise
    finally:
        for w in writers:
            w.cleanup()
    return [p for p, _, _ in removes]


def remove_files(root: Root, paths: Iterable[str]) -> None:
    """Remove data files (paths relative to the table) that no longer belong to the table's current version."""
    where = as_location(root)
    for p in paths:
        where.delete(unquote(p))


def scrub_log(root: Root, needles: Sequence[str] = ()) -> int:
    """Remove what erased rows left in the Delta log of the table at ``root``; the number of log files changed.

    Old log entries are kept forever (the ledger lives in them), so values of
    erased rows would still be readable there: in the min/max statistics of the
    files that held them, and in the parameters of an operation (the predicate
    of a ``delete``). Every log file is rewritten (atomically) without the min/max
    statistics of files that are no longer part of the table, without any
    statistic that holds one of ``needles``, and with any operation parameter
    holding one replaced by ``"<erased>"``; readers treat a missing statistic as
    unknown. The checkpoints, which repeat the statistics, are removed and one is
    made again from the cleaned log.

    >>> import tempfile
    >>> from deltalake import write_deltalake
    >>> root = Path(tempfile.mkdtemp()) / "t"
    >>> write_deltalake(root, pl.DataFrame({"ip": ["203.0.113.9"]}).to_arrow())
    >>> scrub_log(root, ["203.0.113.9"])
    1
    >>> any(b"203.0.113.9" in p.read_bytes() for p in (root / "_delta_log").iterdir())
    False
    """
    from deltalake import DeltaTable

    where = as_location(root)
    table = DeltaTable(where.uri, storage_options=where.options)
    live = {unquote(p) for p in table.get_add_actions(flatten=True).column("path").to_pylist()}
    log = "_delta_log/"
    entries = [n for n in where.names(log) if "/" not in n[len(log) :]]  # not the sidecars
    changed = 0
    for name in entries:
        if not name.endswith(".json") or name[len(log) :].startswith("."):
            continue
        found = where.read(name)
        if found is None:
            continue
        text = found[0].decode()
        lines = [_scrub_action(line, needles, live) if line.strip() else line for line in text.split("\n")]
        new = "\n".join(lines)
        if new == text:
            continue
        where.write(name, new.encode())
        changed += 1
    if changed:
        for name in where.names(log):  # checkpoints (and version checksums) repeat the statistics
            base = name[len(log) :]
            if (
                ".checkpoint" in base
                or base.endswith(".crc")
                or base.startswith("_sidecars/")
                or base == "_last_checkpoint"
            ):
                where.delete(name)
        DeltaTable(where.uri, storage_options=where.options).create_checkpoint()
    return changed


def _scrub_action(line: str, needles: Sequence[str], live: set[str]) -> str:
    """One Delta log action as :func:`scrub_log` leaves it (the line itself when nothing changes)."""
    action = json.loads(line)
    changed = False
    for key in ("add", "remove"):
        entry = action.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("stats"), str):
            continue
        stats = json.loads(entry["stats"])
        gone = key == "remove" or unquote(str(entry.get("path"))) not in live
        lows, highs = stats.get("minValues") or {}, stats.get("maxValues") or {}
        keep = set() if gone else {c for c in lows if c in highs and not _holds([lows[c], highs[c]], needles)}
        if keep != set(lows) or keep != set(highs):
            stats["minValues"] = {c: v for c, v in lows.items() if c in keep}
            stats["maxValues"] = {c: v for c, v in highs.items() if c in keep}
            entry["stats"] = json.dumps(stats)
            changed = True
    info = action.get("commitInfo")
    if isinstance(info, dict) and needles and _holds(info, needles):
        params = info.get("operationParameters")
        if isinstance(params, dict):
            info["operationParameters"] = {k: ("<erased>" if _holds(v, needles) else v) for k, v in params.items()}
        for k, v in list(info.items()):
            if k != "operationParameters" and _holds(v, needles):
                info[k] = "<erased>"
        changed = True
    if not changed:
        if needles and _holds(line, needles):
            raise StoreError(f"an erased value is in a Delta log entry that cannot be cleaned: {line[:60]}…")
        return line
    out = json.dumps(action, separators=(",", ":"))
    if needles and _holds(out, needles):  # somewhere else (a path, a partition value): never keep it quietly
        raise StoreError(f"an erased value is in a Delta log entry that cannot be cleaned: {line[:60]}…")
    return out


def _holds(value: Any, needles: Sequence[str]) -> bool:
    text = value if isinstance(value, str) else json.dumps(value)
    return any(n in text for n in needles)
