"""The store: one Delta Lake table per kind, a quarantine table, metadata, a lock.

Layout of a store folder::

    cfanalytics.json        metadata: account time zone, versions, column map
    .lock                   the store-level writer lock (flock; released when a writer dies)
    tables/<kind>/          Delta tables, partitioned by ``date``
    tables/quarantine/      quarantined records, with reason codes
    _staging/               per-ingest scratch space (removed when an ingest ends)

Every ingest writes one Delta commit per (input, kind) whose metadata carries
the batch id, source, sha256 and counts; :meth:`LogStore.batches` is derived
from those commits.

Every Parquet file the store writes uses :func:`writer_properties` (row groups
of at most 64k rows: bounded writer memory, and files whose row-group statistics
let a reader skip what it does not need). :meth:`LogStore.maintain` lays out the
tables with a ``click_id`` sorted by it within each date partition, so that a
click-id lookup reads one row group per partition.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/store", timezone="America/New_York")
>>> store.timezone
'America/New_York'
>>> store.scan("visits").collect().height
0
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from cfanalytics.exceptions import StoreBusyError, StoreError, UsageError
from cfanalytics.schemas import (
    EVENT_KINDS,
    EVENT_TYPE_OF_KIND,
    KINDS,
    MAIN_TIME,
    ROW_ID_VERSION,
    STORE_FORMAT_VERSION,
    check_kind,
    polars_schema,
    quarantine_schema,
)

if TYPE_CHECKING:
    from cfanalytics.ingest import IngestResult

META_FILE: Final = "cfanalytics.json"
LOCK_FILE: Final = ".lock"
QUARANTINE: Final = "quarantine"
META_PREFIX: Final = "cfanalytics."
#: How long a writer waits for the lock before giving up (exit code 4); env CFANALYTICS_LOCK_TIMEOUT.
DEFAULT_LOCK_TIMEOUT: Final = 600.0
#: Rows per Parquet row group of every file the store writes (see :func:`writer_properties`).
ROW_GROUP_ROWS: Final = 65_536
#: Parquet compression of every file the store writes, and its level.
COMPRESSION: Final = "ZSTD"
COMPRESSION_LEVEL: Final = 1
#: Size a data file written by :meth:`LogStore.maintain` grows to before the next one starts.
TARGET_FILE_BYTES: Final = 100 * 2**20
#: Size (in memory) at which an ingest starts a new data file of a date partition; ``maintain`` compacts them later.
INGEST_FILE_BYTES: Final = 32 * 2**20
#: Date partitions an append writes at once (its memory grows with them; more dates take more passes).
SINK_PARTITIONS: Final = 16
#: Tables that :meth:`LogStore.maintain` keeps sorted by ``click_id`` within each date partition.
CLICK_ID_TABLES: Final = ("visits", "clicks", "conversions", "postbacks")
#: At most about this many rows of a partition are sorted in memory at once by maintain.
SORT_SLICE_ROWS: Final = 200_000
#: Commit-metadata key of maintain's re-sort commits (never a batch: :meth:`LogStore.batches` skips them).
MAINTAIN_KEY: Final = "cfanalytics.maintain"


def writer_properties(*, max_row_group_size: int | None = None) -> Any:
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
        compression=COMPRESSION,  # type: ignore[arg-type]
        compression_level=COMPRESSION_LEVEL,
    )


def _default_lock_timeout() -> float:
    try:
        return float(os.environ.get("CFANALYTICS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def check_timezone(tz: str) -> str:
    """Return ``tz`` if it is a known IANA zone, else raise a one-line ``UsageError``."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name such as America/New_York)") from None
    return tz


def arrow_schema(schema: Mapping[str, pl.DataType]) -> Any:
    """Arrow schema of a Polars schema (via an empty frame)."""
    return pl.DataFrame(schema=dict(schema)).to_arrow().schema


class LogStore:
    """A folder of Delta tables holding ClickFlare logs (created when absent).

    Parameters
    ----------
    path
        The store folder.
    timezone
        The account time zone (IANA). Recorded at creation or first ingest; a
        different zone for an existing store is refused unless ``force_timezone``.
    lock_timeout
        Seconds a writer waits for another writer before :class:`StoreBusyError`
        (default 600, or the ``CFANALYTICS_LOCK_TIMEOUT`` environment variable).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timezone: str | None = None,
        *,
        force_timezone: bool = False,
        create: bool = True,
        lock_timeout: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = _default_lock_timeout() if lock_timeout is None else lock_timeout
        if timezone is not None:
            check_timezone(timezone)
        meta_path = self.path / META_FILE
        if not meta_path.exists():
            if not create:
                raise StoreError(f"{self.path}: not a cfanalytics store (no {META_FILE})")
            self._create(timezone)
        self._meta = self._read_meta()
        stored_tz = self._meta.get("timezone")
        if timezone is not None and stored_tz is not None and timezone != stored_tz and not force_timezone:
            raise UsageError(
                f"{self.path}: store time zone is {stored_tz}, not {timezone}; "
                "a wrong zone shifts every row (use --force-timezone if you mean it)"
            )
        self._session_tz = timezone

    # ------------------------------------------------------------- creation
    def _create(self, timezone: str | None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.lock():
            if (self.path / META_FILE).exists():  # another process created it meanwhile
                return
            # Only what a creator leaves behind (even a killed one) may be here; the tables are
            # created with mode="ignore", so a half-made store is completed.
            ours = {LOCK_FILE, "tables", "_staging"}
            if any(p.name not in ours and not p.name.startswith(f".{META_FILE}.") for p in self.path.iterdir()):
                raise StoreError(f"{self.path}: folder exists and is not a cfanalytics store")
            from deltalake import DeltaTable

            for kind in KINDS:
                DeltaTable.create(
                    self.table_path(kind),
                    arrow_schema(polars_schema(kind)),
                    mode="ignore",
                    partition_by=["date"],
                    name=kind,
                    configuration=_TABLE_CONFIG,
                )
            DeltaTable.create(
                self.table_path(QUARANTINE),
                arrow_schema(quarantine_schema()),
                mode="ignore",
                configuration=_TABLE_CONFIG,
            )
            self._write_meta(
                {
                    "format_version": STORE_FORMAT_VERSION,
                    "row_id_version": ROW_ID_VERSION,
                    "timezone": timezone,
                    "currency": None,
                    "column_map": {},
                    "store_ips": "raw",
                    "mask_ips": True,
                    "ip_salt": secrets.token_hex(16),
                    "created_at": _now_iso(),
                }
            )

    def _read_meta(self) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads((self.path / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.path}: unreadable {META_FILE}: {exc}") from None
        if meta.get("format_version") != STORE_FORMAT_VERSION:
            raise StoreError(f"{self.path}: store format {meta.get('format_version')} is not supported")
        return meta

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.path / f".{META_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path / META_FILE)

    def _update_meta(self, **changes: Any) -> None:
        """Change metadata under the lock (the caller holds it)."""
        meta = self._read_meta()
        meta.update(changes)
        self._write_meta(meta)
        self._meta = meta

    # ------------------------------------------------------------- metadata
    @property
    def timezone(self) -> str | None:
        """The account time zone (IANA name), or None before the first ingest."""
        return self._meta.get("timezone")

    @property
    def column_map(self) -> dict[str, str]:
        """Stored ``Header → column`` overrides (normalised header keys)."""
        return dict(self._meta.get("column_map") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the store metadata."""
        return dict(self._meta)

    @property
    def store_ips(self) -> str:
        """How ingests keep IP addresses: ``raw``, ``masked`` (/24, /48) or ``hashed`` (salted)."""
        return str(self._meta.get("store_ips") or "raw")

    @property
    def mask_ips(self) -> bool:
        """Whether outputs (panels, their exports) show IP addresses masked (/24, /48); on by default."""
        return bool(self._meta.get("mask_ips", True))

    def set_privacy(self, *, store_ips: str | None = None, mask_ips: bool | None = None) -> None:
        """Change the store's PII settings (``store_ips`` applies to later ingests)."""
        changes: dict[str, Any] = {}
        if store_ips is not None:
            changes["store_ips"] = check_ip_mode(store_ips)
        if mask_ips is not None:
            changes["mask_ips"] = bool(mask_ips)
        with self.lock():
            self._meta = self._read_meta()
            if not self._meta.get("ip_salt"):
                changes["ip_salt"] = secrets.token_hex(16)
            self._update_meta(**changes)

    def forget_ip(self, ip: str) -> dict[str, int]:
        """Delete every stored row of one IP address (a data-subject request), under the lock.

        Matches the raw address and its salted hash in ``visits``/``clicks``, and
        quarantined records whose raw text contains it. Returns rows deleted per table.
        """
        from cfanalytics.normalize import hash_ip

        forms = [ip, hash_ip(ip, str(self._meta.get("ip_salt") or ""))]
        counts: dict[str, int] = {}
        with self.lock():
            for kind in ("visits", "clicks"):
                n = self.scan(kind).filter(pl.col("ip").is_in(forms)).select(pl.len()).collect().item()
                if n:
                    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in forms)
                    self.table(kind).delete(
                        f"ip IN ({quoted})",
                        writer_properties=writer_properties(),
                        post_commithook_properties=commit_hooks(),
                    )
                    counts[kind] = int(n)
            needle = json.dumps(ip)  # the address as a JSON string value inside the raw record
            q = (
                self.scan(QUARANTINE)
                .filter(pl.col("raw").str.contains(needle, literal=True))
                .select("_row_id")
                .collect()
            )
            if q.height:
                ids = ", ".join(f"'{i}'" for i in q.get_column("_row_id").to_list())
                self.table(QUARANTINE).delete(
                    f"_row_id IN ({ids})",
                    writer_properties=writer_properties(),
                    post_commithook_properties=commit_hooks(),
                )
                counts[QUARANTINE] = q.height
        return counts

    def set_column_map(self, mapping: Mapping[str, str]) -> None:
        """Save ``Header=column`` overrides in the store's config (used by every later ingest)."""
        from cfanalytics.columns import parse_map

        parsed = parse_map(mapping)
        with self.lock():
            self._update_meta(column_map={**self.column_map, **parsed})

    def ensure_timezone(self, timezone: str | None) -> str:
        """The zone to read local times in; records it on the first ingest (caller holds no lock)."""
        tz = self.timezone
        if tz is not None:
            return tz
        tz = check_timezone(timezone or self._session_tz or "UTC")
        with self.lock():
            self._meta = self._read_meta()
            if self._meta.get("timezone") is None:
                self._update_meta(timezone=tz)
        return self.timezone or tz

    # ----------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """The store-level exclusive writer lock (``flock``: a dead writer never leaves it taken)."""
        self.path.mkdir(parents=True, exist_ok=True)
        wait = self.lock_timeout if timeout is None else timeout
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + wait
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(
                            f"{self.path}: store busy (another writer held the lock for {wait:.0f} s)"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --------------------------------------------------------------- tables
    def table_path(self, kind: str) -> Path:
        """Folder of the Delta table of ``kind`` (or ``"quarantine"``)."""
        return self.path / "tables" / kind

    def table(self, kind: str) -> Any:
        """The ``deltalake.DeltaTable`` of ``kind`` (or ``"quarantine"``)."""
        from deltalake import DeltaTable

        return DeltaTable(self.table_path(kind))

    def file_uris(self, kind: str) -> list[str]:
        """Parquet files of the current table version (from the Delta log, never a glob)."""
        return list(self.table(kind).file_uris())

    def scan(self, kind: str) -> pl.LazyFrame:
        """All stored rows of ``kind`` as a lazy frame; ``date`` filters prune partitions.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s").scan("postbacks").collect_schema()["is_error"]
        Boolean
        """
        if kind != QUARANTINE:
            check_kind(kind)
        return pl.scan_delta(str(self.table_path(kind)))

    def events(self) -> pl.LazyFrame:
        """Visits ∪ clicks ∪ conversions, with ``event_type`` and ``event_time`` added."""
        frames = [
            self.scan(kind).with_columns(
                pl.lit(EVENT_TYPE_OF_KIND[kind]).alias("event_type"),
                pl.col(MAIN_TIME[kind]).alias("event_time"),
            )
            for kind in EVENT_KINDS
        ]
        return pl.concat(frames, how="diagonal_relaxed")

    def quarantine(self) -> pl.DataFrame:
        """Quarantined records, newest batch first then by source and record."""
        return (
            self.scan(QUARANTINE)
            .collect()
            .sort(["quarantined_at", "source", "record"], descending=[True, False, False])
        )

    def counts(self) -> dict[str, int]:
        """Stored rows per kind (and quarantined records)."""
        return {k: int(self.table(k).count()) for k in (*KINDS, QUARANTINE)}

    def batches(self) -> pl.DataFrame:
        """The ingest ledger, derived from the Delta commits' metadata (newest first)."""
        rows: list[dict[str, Any]] = []
        for kind in (*KINDS, QUARANTINE):
            for commit in self.table(kind).history():
                batch = commit.get(f"{META_PREFIX}batch_id")
                if batch is None:
                    continue
                rows.append(
                    {
                        "batch_id": batch,
                        "table": kind,
                        "kind": commit.get(f"{META_PREFIX}kind"),
                        "source": commit.get(f"{META_PREFIX}source"),
                        "sha256": commit.get(f"{META_PREFIX}sha256"),
                        "rows_read": _int(commit.get(f"{META_PREFIX}rows_read")),
                        "rows_stored": _int(commit.get(f"{META_PREFIX}rows_stored")),
                        "already_stored": _int(commit.get(f"{META_PREFIX}already_stored")),
                        "quarantined": _int(commit.get(f"{META_PREFIX}quarantined")),
                        "flagged": _int(commit.get(f"{META_PREFIX}flagged")),
                        "operation": commit.get("operation"),
                        "version": commit.get("version"),
                        "committed_at": datetime.fromtimestamp(commit["timestamp"] / 1000, tz=UTC),
                    }
                )
        schema = {
            "batch_id": pl.String,
            "table": pl.String,
            "kind": pl.String,
            "source": pl.String,
            "sha256": pl.String,
            "rows_read": pl.Int64,
            "rows_stored": pl.Int64,
            "already_stored": pl.Int64,
            "quarantined": pl.Int64,
            "flagged": pl.Int64,
            "operation": pl.String,
            "version": pl.Int64,
            "committed_at": pl.Datetime("us", "UTC"),
        }
        return pl.DataFrame(rows, schema=schema, orient="row").sort(
            ["committed_at", "batch_id", "table"], descending=[True, False, False]
        )

    # ---------------------------------------------------------------- write
    def ingest(
        self,
        inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        kind: str | None = None,
        timezone: str | None = None,
        column_map: Mapping[str, str] | Sequence[str] | None = None,
        progress: bool = False,
        store_ips: str | None = None,
    ) -> IngestResult:
        """Load export files into the store; see :func:`cfanalytics.ingest.ingest_paths`.

        ``store_ips`` (``raw``, ``masked`` or ``hashed``; default: the store's setting)
        says how IP addresses are kept.

        One Delta commit per (input, kind). Bad records are quarantined or flagged;
        an unreadable file is reported in ``result.failures`` and nothing of it is written.
        """
        from cfanalytics.ingest import ingest_paths

        paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        return ingest_paths(
            self, paths, kind=kind, timezone=timezone, column_map=column_map, progress=progress, store_ips=store_ips
        )

    def ingest_frame(
        self,
        data: Any,
        kind: str | None = None,
        *,
        name: str = "<frame>",
        timezone: str | None = None,
        column_map: Mapping[str, str] | Sequence[str] | None = None,
    ) -> IngestResult:
        """Load a Polars/Arrow frame (any spelling, values as text or typed) like a file."""
        from cfanalytics.ingest import ingest_raw
        from cfanalytics.readers import frame_input

        return ingest_raw(self, [frame_input(data, name)], kind=kind, timezone=timezone, column_map=column_map)

    def forget(self, batch_id: str) -> dict[str, int]:
        """Delete every row of a batch (``id`` of one (input, kind), or the input's id prefix).

        Returns the rows deleted per table. Runs under the lock.
        """
        counts: dict[str, int] = {}
        with self.lock():
            for kind in (*KINDS, QUARANTINE):
                n = self.scan(kind).filter(_batch_match(batch_id)).select(pl.len()).collect().item()
                if n:
                    self.table(kind).delete(
                        _batch_predicate(batch_id),
                        writer_properties=writer_properties(),
                        post_commithook_properties=commit_hooks(),
                    )
                    counts[kind] = int(n)
        return counts

    def maintain(self, *, retention_hours: int = 168) -> dict[str, Any]:
        """Lay out and compact the tables, checkpoint, and vacuum files no version needs, under the lock.

        Tables with a ``click_id`` (:data:`CLICK_ID_TABLES`) get each date partition
        that is not laid out yet rewritten sorted by ``click_id`` in row groups of
        64k rows (:meth:`sort_by_click_id`, one commit per partition, same rows and
        ``_row_id`` values): a click-id lookup then reads one row group per partition.
        A partition is left alone when its row groups already hold disjoint
        click-id ranges and it has at most one small file, so a re-run is cheap.
        The other tables are compacted. Maintain commits carry no batch id, so
        :meth:`batches` (the ledger) is unchanged.

        Vacuum removes replaced files and files a killed writer left behind (never
        committed) once older than the retention (default 7 days), far longer than
        any ingest, so a running writer's files are never removed. Old scratch
        folders go too.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s").maintain()["visits"]
        {'compacted': 0, 'sorted': 0, 'vacuumed': 0}
        """
        out: dict[str, Any] = {}
        with self.lock():
            for kind in (*KINDS, QUARANTINE):
                if kind in CLICK_ID_TABLES:
                    done = self._sort_by_click_id(kind)
                    compacted, resorted = sum(done.values()), len(done)
                else:
                    compacted = (
                        self.table(kind)
                        .optimize.compact(
                            target_size=TARGET_FILE_BYTES,
                            writer_properties=writer_properties(),
                            post_commithook_properties=commit_hooks(),
                        )
                        .get("numFilesRemoved", 0)
                    )
                    resorted = 0
                dt = self.table(kind)
                dt.create_checkpoint()
                removed = dt.vacuum(
                    retention_hours=retention_hours,
                    dry_run=False,
                    enforce_retention_duration=False,
                    full=True,
                    post_commithook_properties=commit_hooks(),
                )
                out[kind] = {"compacted": compacted, "sorted": resorted, "vacuumed": len(removed)}
            staging = self.path / "_staging"
            if staging.exists():
                cutoff = time.time() - retention_hours * 3600
                for entry in staging.iterdir():
                    if entry.stat().st_mtime < cutoff and not _live_writer(entry.name):
                        _rmtree(entry)
        return out

    def sort_by_click_id(self, kind: str) -> dict[str, int]:
        """Rewrite the date partitions of ``kind`` not yet sorted by ``click_id``, under the lock.

        Returns ``{date: files replaced}`` of the partitions rewritten (empty when all
        were laid out already). :meth:`maintain` does this for every table with a click id.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s").sort_by_click_id("postbacks")
        {}
        """
        if kind not in CLICK_ID_TABLES:
            raise UsageError(f"{kind!r} has no click_id; use one of {', '.join(CLICK_ID_TABLES)}")
        with self.lock():
            return self._sort_by_click_id(kind)

    def _sort_by_click_id(self, kind: str) -> dict[str, int]:
        """:meth:`sort_by_click_id` for a caller that holds the lock."""
        done: dict[str, int] = {}
        for day in _partitions_to_sort(self.table(kind), self.table_path(kind)):
            done[day] = _rewrite_sorted(self.table(kind), self.table_path(kind), day)
        return done

    def __repr__(self) -> str:
        return f"LogStore({str(self.path)!r}, timezone={self.timezone!r})"


IP_MODES: Final = ("raw", "masked", "hashed")


def check_ip_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`IP_MODES`, else raise ``UsageError``."""
    if mode not in IP_MODES:
        raise UsageError(f"unknown IP mode {mode!r}; use one of {', '.join(IP_MODES)}")
    return mode


def _batch_match(batch_id: str) -> pl.Expr:
    col = pl.col("_batch_id")
    return (col == batch_id) | col.str.starts_with(f"{batch_id}-")


def _batch_predicate(batch_id: str) -> str:
    safe = batch_id.replace("'", "''")
    return f"_batch_id = '{safe}' OR _batch_id LIKE '{safe}-%'"


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _live_writer(name: str) -> bool:
    """Whether a scratch folder ``<pid>-<token>`` belongs to a process that is still running (an ingest
    preparing its input outside the lock); such a folder is never removed."""
    pid = name.split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ layout by click id
# The ledger is read from commit metadata: the log's old entries must never be cleaned up.
_TABLE_CONFIG: Final[dict[str, str | None]] = {"delta.enableExpiredLogCleanup": "false"}


def commit_hooks() -> Any:
    """Post-commit hooks of every commit of the store: never clean up old log files (the ledger lives in them).

    Pass it as ``post_commithook_properties`` to ``write_deltalake``, ``delete`` and ``optimize``.
    """
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def _partitions_to_sort(dt: Any, root: Path) -> dict[str, int]:
    """``{date: number of files}`` of the partitions of ``dt`` that are not laid out by ``click_id``.

    A partition is laid out when every row group of its files has at most
    :data:`ROW_GROUP_ROWS` rows and click-id statistics, the row groups' ``[min, max]``
    ranges do not overlap (touching ends are fine: an id may span two groups), and
    at most one of its files is smaller than half of :data:`TARGET_FILE_BYTES`.
    Only Parquet footers are read (and the click ids of a partition of one row group).
    """
    from urllib.parse import unquote

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

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
            meta = pq.ParquetFile(root / unquote(path)).metadata
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
            ids = pq.read_table(root / unquote(parts[0][0]), columns=["click_id"]).column("click_id")
            ok = pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py() is not False
        ranges.sort()
        if not ok or any(prev[1] > nxt[0] for prev, nxt in itertools.pairwise(ranges)):
            todo[day] = len(parts)
    return todo


def _rewrite_sorted(dt: Any, root: Path, day: str) -> int:
    """Replace the files of partition ``date = day`` of ``dt`` by the same rows sorted by ``click_id``.

    The partition is read at the table's current version and sorted in click-id
    ranges of about :data:`SORT_SLICE_ROWS` rows, one range at a time (bounded
    memory), into new Parquet files of :data:`ROW_GROUP_ROWS`-row groups, in order.
    One commit removes the old files and adds the new ones (``dataChange`` false, as
    an ``OPTIMIZE``): readers see all the old rows or all the new ones. The files
    are written here rather than by ``write_deltalake``, whose parallel plan does not
    keep the order of a stream. Returns the number of files replaced.
    """
    import datetime as _dt
    import uuid
    from urllib.parse import unquote

    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import CommitProperties
    from deltalake.transaction import AddAction, RemoveAction

    version = dt.version()
    schema = pa.schema(dt.schema().to_arrow())
    names = [n for n in schema.names if n != "date"]
    file_schema = pa.schema([schema.field(n) for n in names])
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    old = actions.filter(pl.col("partition.date").cast(pl.String) == day).select("path", "size_bytes", "num_records")
    old_bytes, expected = int(old.get_column("size_bytes").sum()), int(old.get_column("num_records").sum())
    per_file = max(
        ROW_GROUP_ROWS, int(TARGET_FILE_BYTES * expected / max(old_bytes, 1)) // ROW_GROUP_ROWS * ROW_GROUP_ROWS
    )
    part = pl.scan_delta(str(root), version=version).filter(pl.col("date") == _dt.date.fromisoformat(day))
    ids = part.select(pl.col("click_id").drop_nulls().sort()).collect().get_column("click_id")
    cuts = ids.gather_every(SORT_SLICE_ROWS, offset=SORT_SLICE_ROWS).unique(maintain_order=True).to_list()
    del ids
    bounds = [None, *cuts, None]
    cid = pl.col("click_id")
    folder = f"date={day}"
    (root / folder).mkdir(parents=True, exist_ok=True)
    added: list[Any] = []
    writer: Any = None
    stats = _FileStats(file_schema)
    path = ""

    def close() -> None:
        nonlocal writer
        if writer is None:
            return
        writer.close()
        full = root / path
        added.append(AddAction(path, full.stat().st_size, {"date": day}, int(time.time() * 1000), False, stats.json()))
        writer = None

    def emit(rows: Any) -> None:
        nonlocal writer, path, stats
        if writer is None:
            path = f"{folder}/part-{len(added):05d}-{uuid.uuid4()}-c000.zstd.parquet"
            writer = pq.ParquetWriter(
                root / path, file_schema, compression=COMPRESSION.lower(), compression_level=COMPRESSION_LEVEL
            )
            stats = _FileStats(file_schema)
        writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
        stats.add(rows)
        if stats.rows >= per_file:
            close()

    seen = 0
    carry = file_schema.empty_table()
    try:
        for lo, hi in itertools.pairwise(bounds):
            within = [c for c in (None if lo is None else cid >= lo, None if hi is None else cid < hi) if c is not None]
            cond = pl.all_horizontal(within) if within else pl.lit(True)
            if lo is None:  # null ids (never stored for these kinds, but kept if present) go first
                cond = cond | cid.is_null()
            rows = part.filter(cond).sort(["click_id", "_row_id"], nulls_last=False).select(names).collect()
            seen += rows.height
            carry = pa.concat_tables([carry, rows.to_arrow().cast(file_schema)])
            del rows
            while carry.num_rows >= ROW_GROUP_ROWS:  # whole row groups only, so that groups never straddle ranges
                emit(carry.slice(0, ROW_GROUP_ROWS))
                carry = carry.slice(ROW_GROUP_ROWS)
        if carry.num_rows:
            emit(carry)
        close()
        if seen != expected:  # never commit a partition that lost or doubled rows
            raise StoreError(f"{root.name}: re-sort of date={day} read {seen} rows, not {expected}")
        now = int(time.time() * 1000)
        removes = [RemoveAction(p, False, now, int(size), {"date": day}) for p, size, _ in old.iter_rows()]
        dt.create_write_transaction(
            [*removes, *added],
            mode="append",
            schema=dt.schema(),
            partition_by=["date"],
            commit_properties=CommitProperties(custom_metadata={MAINTAIN_KEY: "sort_by_click_id", "date": day}),
            post_commithook_properties=commit_hooks(),
        )
    except BaseException:
        if writer is not None:
            writer.close()
        for a in added:  # never committed: remove now rather than leave them to vacuum
            (root / unquote(a.path)).unlink(missing_ok=True)
        if path:
            (root / path).unlink(missing_ok=True)
        raise
    return old.height


def _ranged(dtype: Any) -> bool:
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


class _FileStats:
    """Delta ``stats`` of a file being written: row count, null counts, and min/max where exact and cheap.

    Min/max are kept for strings (up to 64 characters, like delta-rs), integers and
    booleans; other types get none, which readers treat as unknown.
    """

    def __init__(self, schema: Any) -> None:
        self.rows = 0
        self.nulls: dict[str, int] = {f.name: 0 for f in schema}
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.ranged = [f.name for f in schema if _ranged(f.type)]
        self.long: set[str] = set()

    def add(self, table: Any) -> None:
        import pyarrow.compute as pc

        self.rows += table.num_rows
        for name in self.nulls:
            self.nulls[name] += table.column(name).null_count
        for name in self.ranged:
            mm = pc.min_max(table.column(name)).as_py()
            lo, hi = mm["min"], mm["max"]
            if lo is None:
                continue
            if isinstance(lo, str) and (len(lo) > 64 or len(hi) > 64):
                self.long.add(name)
            self.mins[name] = lo if name not in self.mins else min(self.mins[name], lo)
            self.maxs[name] = hi if name not in self.maxs else max(self.maxs[name], hi)

    def json(self) -> str:
        keep = [n for n in self.mins if n not in self.long]
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {n: self.mins[n] for n in keep},
                "maxValues": {n: self.maxs[n] for n in keep},
                "nullCount": self.nulls,
            }
        )


# ------------------------------------------------------------------ appends written by Polars
def append_rows(
    root: Path,
    rows: pl.LazyFrame,
    *,
    metadata: Mapping[str, str],
    required: Sequence[str] = (),
    expected: int | None = None,
    label: str = "",
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
    removed: readers never see them. Returns the number of rows written.

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
    import uuid
    from urllib.parse import unquote

    from deltalake import CommitProperties, DeltaTable
    from deltalake.transaction import AddAction

    tag = uuid.uuid4().hex

    def file_path(args: Any) -> str:
        day = args.partition_keys.get_column("date")[0]
        return f"date={day}/part-{args.index_in_partition:05d}-{tag}-c000.zstd.parquet"

    written: list[Any] = []
    try:
        # The sink keeps a buffer per open partition: an input spanning many dates is written
        # SINK_PARTITIONS dates at a time (each pass reads the rows again), so memory stays bounded.
        days = rows.select(pl.col("date").unique()).collect().get_column("date").sort().to_list()
        for i in range(0, max(len(days), 1), SINK_PARTITIONS):
            group = days[i : i + SINK_PARTITIONS]
            part = rows if len(days) <= SINK_PARTITIONS else rows.filter(pl.col("date").is_in(group))
            part.sink_parquet(
                pl.PartitionBy(
                    str(root),
                    key="date",
                    include_key=False,
                    file_path_provider=file_path,
                    approximate_bytes_per_file=INGEST_FILE_BYTES,
                ),
                compression=COMPRESSION.lower(),  # type: ignore[arg-type]
                compression_level=COMPRESSION_LEVEL,
                row_group_size=ROW_GROUP_ROWS,
                mkdir=True,
                sinked_paths_callback=lambda args: written.extend(args.paths),
            )
        now = int(time.time() * 1000)
        adds = []
        for sunk in written:
            path = Path(sunk.path)
            rel = path.relative_to(root).as_posix()
            stats = _footer_stats(path)
            nulls = [c for c in required if stats["nullCount"].get(c)]
            if nulls:
                raise StoreError(f"{label}: a required value is null in a row to store ({', '.join(nulls)}): a bug")
            day = unquote(rel.split("/", 1)[0].split("=", 1)[1])
            adds.append(AddAction(rel, path.stat().st_size, {"date": day}, now, True, json.dumps(stats)))
        total = sum(int(sunk.num_rows) for sunk in written)
        if expected is not None and total != expected:
            raise StoreError(f"{label}: {total} rows written, {expected} expected: a bug")
        if not adds:
            return 0
        dt = DeltaTable(root)
        _add_missing_columns(dt, rows.collect_schema())
        dt.create_write_transaction(
            adds,
            mode="append",
            schema=dt.schema(),
            partition_by=["date"],
            commit_properties=CommitProperties(custom_metadata=dict(metadata)),
            post_commithook_properties=commit_hooks(),
        )
    except BaseException:
        for path in root.glob(f"date=*/part-*-{tag}-c000.zstd.parquet"):  # never committed: not part of the table
            path.unlink(missing_ok=True)
        raise
    return total


def _add_missing_columns(dt: Any, schema: pl.Schema) -> None:
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


def _footer_stats(path: Path) -> dict[str, Any]:
    """Delta ``stats`` of a Parquet file from its footer: rows, null counts, and min/max where exact.

    Min/max are given for strings (when shorter than 64 bytes: longer ones may be
    truncated in the footer), integers and booleans, like :class:`_FileStats`.
    """
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    arrow = meta.schema.to_arrow_schema()
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    ranged = {f.name for f in arrow if _ranged(f.type)}
    nulls = dict.fromkeys(names, 0)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    unknown: set[str] = set()
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for i, name in enumerate(names):
            st = group.column(i).statistics
            if st is None or not st.has_null_count:
                unknown.add(name)
                continue
            nulls[name] += st.null_count
            if name not in ranged or st.null_count == group.num_rows:
                continue
            if not st.has_min_max or (
                isinstance(st.min, str) and max(len(st.min.encode()), len(st.max.encode())) >= 64
            ):
                unknown.add(name)
                continue
            mins[name] = st.min if name not in mins else min(mins[name], st.min)
            maxs[name] = st.max if name not in maxs else max(maxs[name], st.max)
    keep = [n for n in mins if n not in unknown]
    return {
        "numRecords": meta.num_rows,
        "minValues": {n: mins[n] for n in keep},
        "maxValues": {n: maxs[n] for n in keep},
        "nullCount": {n: v for n, v in nulls.items() if n not in unknown},
    }
