"""The store: one Delta Lake table per kind, a quarantine table, metadata, a lock.

Layout of a store folder (or of an ``s3://bucket/prefix`` on object storage)::

    cfanalytics.json        metadata: account time zone, versions, column map
    .lock                   the store-level writer lock (flock; released when a writer dies)
    .lease                  on object storage instead: the writer lease (:mod:`cfanalytics.lease`)
    tables/<kind>/          Delta tables, partitioned by ``date``
    tables/quarantine/      quarantined records, with reason codes
    tables/claims/          rows a later batch carried too (``forget`` hands them to it)
    _staging/               per-ingest scratch space (removed when an ingest ends; always local)

On object storage (:mod:`cfanalytics.storage`) the metadata is updated with
conditional writes (``If-Match`` on its ETag) and the writer lock is a lease with
an expiry (:mod:`cfanalytics.lease`); Delta commits are conditional PUTs of delta-rs.

Every ingest writes one Delta commit per (input, kind) whose metadata carries
the batch id, source, sha256 and counts; :meth:`LogStore.batches` is derived
from those commits.

Every Parquet file the store writes comes from :mod:`cfanalytics._delta` (row groups
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
import ipaddress
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Unpack

import polars as pl

from cfanalytics._delta import (
    CLAIMS,
    CLAIMS_SCHEMA,
    TABLE_CONFIG,
    TARGET_FILE_BYTES,
    arrow_schema,
    commit_hooks,
    create_claims,
    partitions_to_sort,
    rewrite_files,
    rewrite_sorted,
    scrub_log,
    writer_properties,
)
from cfanalytics._lookup import drop as drop_lookup_cache
from cfanalytics._meanings import ERROR_MEANINGS, MEANINGS_SCHEMA, refresh_meanings
from cfanalytics.columns import parse_map
from cfanalytics.exceptions import StoreError, UsageError
from cfanalytics.identity import id_halves
from cfanalytics.ingest import IngestOptions, IngestResult, ingest_paths, ingest_raw, remove_dead_staging
from cfanalytics.lease import Lease, file_lock
from cfanalytics.normalize import hash_ip
from cfanalytics.readers import frame_input
from cfanalytics.schemas import (
    EVENT_KINDS,
    EVENT_TYPE_OF_KIND,
    KINDS,
    MAIN_TIME,
    META_PREFIX,
    QUARANTINE,
    ROW_ID_VERSION,
    STORE_FORMAT_VERSION,
    check_ip_mode,
    check_kind,
    polars_schema,
    quarantine_schema,
)
from cfanalytics.storage import LocalLocation, Location, ObjectLocation, PreconditionFailedError, is_remote, location
from cfanalytics.values import check_timezone

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["CLICK_ID_TABLES", "META_FILE", "META_PREFIX", "QUARANTINE", "LogStore"]

META_FILE: Final = "cfanalytics.json"
LOCK_FILE: Final = ".lock"
#: How long a writer waits for the lock before giving up (exit code 4); env CFANALYTICS_LOCK_TIMEOUT.
DEFAULT_LOCK_TIMEOUT: Final = 600.0
#: Tables that :meth:`LogStore.maintain` keeps sorted by ``click_id`` within each date partition.
CLICK_ID_TABLES: Final = ("visits", "clicks", "conversions", "postbacks")
#: Commit-metadata keys of the rewrites of ``forget`` and ``forget_ip`` (never a batch: the ledger skips them).
FORGET_KEY: Final = "cfanalytics.forget"
ERASE_KEY: Final = "cfanalytics.erase"


def _default_lock_timeout() -> float:
    try:
        return float(os.environ.get("CFANALYTICS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


class LogStore:
    """A folder of Delta tables holding ClickFlare logs (created when absent).

    Parameters
    ----------
    path
        The store folder, or ``s3://bucket/prefix`` for a store on S3-compatible
        object storage (credentials and endpoint from the ``AWS_*`` environment
        variables or ``storage_options``; see :mod:`cfanalytics.storage`).
    timezone
        The account time zone (IANA). Recorded at creation or first ingest; a
        different zone for an existing store is refused unless ``force_timezone``.
        A store without a zone takes ``UTC`` from an ingest whose times all carry
        a UTC offset, and refuses local times (no offset) until it has one.
    create
        ``True`` creates an absent store now; ``False`` refuses an absent one;
        ``"on_write"`` creates it with the first commit of an ingest, so an ingest
        that fails (a mistyped file name, an unreadable file) leaves nothing.
    lock_timeout
        Seconds a writer waits for another writer before :class:`StoreBusyError`
        (default 600, or the ``CFANALYTICS_LOCK_TIMEOUT`` environment variable).
    storage_options
        Object-store settings over the ``AWS_*`` environment (``AWS_ENDPOINT_URL``,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``).

    On object storage, :attr:`path` is a local working folder (scratch space of
    ingests); :attr:`uri` names the store in every message.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timezone: str | None = None,
        *,
        force_timezone: bool = False,
        create: bool | Literal["on_write"] = True,
        lock_timeout: float | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        self.location: Location = location(path if is_remote(path) else Path(path), storage_options)
        self.remote = self.location.remote
        if isinstance(self.location, LocalLocation):
            self.path = self.location.path
        else:
            self.path = _work_folder(self.location.uri)
        #: The store's name in messages: its folder, or its ``s3://`` URI.
        self.uri = self.location.uri
        #: ``storage_options`` of its Delta tables (None for a local store).
        self.storage_options = self.location.options
        self.lock_timeout = _default_lock_timeout() if lock_timeout is None else lock_timeout
        if timezone is not None:
            check_timezone(timezone)
        if not self.remote and self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: a file, not a store folder")
        if isinstance(self.location, ObjectLocation):
            self.location.check()  # one line for a wrong endpoint, key or bucket
        self._meta_tag: str | None = None
        self._lease: Lease | None = None
        self._pending = False  # created by the first write (create="on_write")
        if self.location.read_tag(META_FILE) is None:
            if not create:
                raise StoreError(f"{self.uri}: not a cfanalytics store (no {META_FILE})")
            if create == "on_write":
                self._check_empty()
                self._pending = True
                self._meta = _new_meta(timezone)
            else:
                self._create(_new_meta(timezone))
        if not self._pending:
            self._meta = self._read_meta()
        stored_tz = self._meta.get("timezone")
        settled = stored_tz is not None and not self._meta.get("timezone_from_offsets")
        if timezone is not None and settled and timezone != stored_tz and not force_timezone:
            raise UsageError(
                f"{self.uri}: store time zone is {stored_tz}, not {timezone}; "
                "a wrong zone shifts every row (use --force-timezone if you mean it)"
            )
        self._session_tz = timezone

    # ------------------------------------------------------------- creation
    def _check_empty(self) -> None:
        """Refuse a folder holding anything but what a store's creator leaves behind (even a killed one)."""
        if self.remote:
            if any(n not in (".lease", META_FILE) and not n.startswith("tables/") for n in self.location.names()):
                raise StoreError(f"{self.uri}: prefix holds objects and is not a cfanalytics store")
            return
        if not self.path.is_dir():
            return
        ours = {LOCK_FILE, "tables", "_staging"}
        if any(p.name not in ours and not p.name.startswith(f".{META_FILE}.") for p in self.path.iterdir()):
            raise StoreError(f"{self.path}: folder exists and is not a cfanalytics store")

    def _create(self, meta: dict[str, Any]) -> None:
        if not self.remote:
            self.path.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.location.read_tag(META_FILE) is not None:  # another process created it meanwhile
                return
            # The tables are created with mode="ignore", so a half-made store is completed.
            self._check_empty()
            from deltalake import DeltaTable

            for kind in KINDS:
                DeltaTable.create(
                    self.table_uri(kind),
                    arrow_schema(polars_schema(kind)),
                    mode="ignore",
                    partition_by=["date"],
                    name=kind,
                    configuration=TABLE_CONFIG,
                    storage_options=self.storage_options,
                )
            DeltaTable.create(
                self.table_uri(QUARANTINE),
                arrow_schema(quarantine_schema()),
                mode="ignore",
                configuration=TABLE_CONFIG,
                storage_options=self.storage_options,
            )
            create_claims(self.table_root(CLAIMS))
            self._write_meta(meta, create=True)

    def _materialize(self) -> None:
        """Create a store opened with ``create="on_write"`` (its first write is due)."""
        if self._pending:
            self._create(self._meta)
            self._pending = False
            self._meta = self._read_meta()

    @property
    def exists(self) -> bool:
        """Whether the store is on disk (False for ``create="on_write"`` before its first write)."""
        return not self._pending

    def _read_meta(self) -> dict[str, Any]:
        try:
            found = self.location.read(META_FILE)
            if found is None:
                raise FileNotFoundError(f"no {META_FILE}")
            meta: dict[str, Any] = json.loads(found[0])
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.uri}: unreadable {META_FILE}: {exc}") from None
        if meta.get("format_version") != STORE_FORMAT_VERSION:
            raise StoreError(f"{self.uri}: store format {meta.get('format_version')} is not supported")
        self._meta_tag = found[1]
        return meta

    def _write_meta(self, meta: dict[str, Any], *, create: bool = False) -> None:
        """Write the metadata: only if absent (``create``), else only if unchanged since it was read."""
        data = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        self._meta_tag = self.location.write(
            META_FILE, data, if_absent=create, if_match=None if create else self._meta_tag
        )

    def _update_meta(self, **changes: Any) -> None:
        """Change metadata under the lock (the caller holds it).

        The write is conditional on the version read (``If-Match`` on object
        storage): a concurrent change is read again and the change applied to it.
        """
        for _ in range(10):
            meta = self._read_meta()
            meta.update(changes)
            try:
                self._write_meta(meta)
            except PreconditionFailedError:
                continue
            self._meta = meta
            return
        raise StoreError(f"{self.uri}: {META_FILE} kept changing under this writer; run again")

    # ------------------------------------------------------- small documents
    def read_document(self, name: str) -> tuple[bytes, str] | None:
        """``(bytes, version tag)`` of a small document kept with the store (a ledger, a state), or None."""
        return self.location.read(name)

    def write_document(self, name: str, data: bytes, *, if_match: str | None = None, if_absent: bool = False) -> str:
        """Write a small document kept with the store (atomically; conditionally if asked); its new tag."""
        return self.location.write(name, data, if_match=if_match, if_absent=if_absent)

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
        """Erase every stored row of one IP address (a data-subject request), under the lock.

        Matches the address and its salted hash in ``visits``/``clicks`` (also where
        the stored text holds it among other words, as a forwarded-for list
        ``"203.0.113.9, 10.0.0.1"`` does, or in the row's ``_raw`` values), and
        quarantined records whose raw text holds it. The files holding such rows
        are rewritten without them; the replaced files are removed from disk at once
        (a reader still on an older version of the table then fails and reads
        again), and the Delta log keeps no statistic or parameter that holds the
        address (:func:`cfanalytics._delta.scrub_log`). Returns rows deleted per table.
        """
        ip = ip.strip()
        if not ip:
            raise UsageError("forget_ip: an empty address")
        spellings = _ip_spellings(ip)
        salt = str(self._meta.get("ip_salt") or "")
        forms = [*spellings, *(hash_ip(s, salt) for s in spellings)]
        # the address as a whole word: not a part of a longer one (203.0.113.9 is not in 203.0.113.90)
        either = "|".join(re.escape(s) for s in spellings)
        word = rf"(?i)(?:^|[^0-9A-Za-z.:])(?:{either})(?:$|[^0-9A-Za-z.:])"
        counts: dict[str, int] = {}
        with self.lock():
            for kind in ("visits", "clicks"):
                ips, raws = pl.col("ip"), pl.col("_raw")
                hit = (ips.is_in(forms) | ips.str.contains(word) | raws.str.contains(word)).fill_null(False)
                n = self._erase(kind, hit, lambda rows, hit=hit: rows.filter(~hit), {ERASE_KEY: "ip"})
                if n:
                    counts[kind] = n
            hit = pl.col("raw").str.contains(word).fill_null(False)
            n = self._erase(QUARANTINE, hit, lambda rows: rows.filter(~hit), {ERASE_KEY: "ip"})
            if n:
                counts[QUARANTINE] = n
            for table in (*KINDS, QUARANTINE):  # also what earlier rewrites (maintain) left behind
                self._purge(table, forms)
            remove_dead_staging(self.path / "_staging")
        return counts

    def _erase(
        self,
        table: str,
        hit: pl.Expr,
        change: Callable[[pl.LazyFrame], pl.LazyFrame],
        metadata: Mapping[str, str],
    ) -> int:
        """Rewrite the files of ``table`` holding a row that matches ``hit`` as ``change`` of them; rows matched."""
        if not self._has_table(table):
            return 0
        n = int(self._scan_table(table).filter(hit).select(pl.len()).collect().item())
        if n:
            rewrite_files(self.table(table), self.table_root(table), hit, change, metadata)
        return n

    def _purge(self, table: str, needles: Sequence[str] = ()) -> None:
        """Remove files no version needs any more, and their statistics in the log (the caller holds the lock)."""
        dt = self.table(table)
        dt.vacuum(
            retention_hours=0,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
            post_commithook_properties=commit_hooks(),
        )
        scrub_log(self.table_root(table), needles)
        if not self.remote:  # the lookup's cached statistics of the files gone may hold erased values
            drop_lookup_cache(self.table_path(table))

    def set_column_map(self, mapping: Mapping[str, str]) -> None:
        """Save ``Header=column`` overrides in the store's config (used by every later ingest)."""
        parsed = parse_map(mapping)
        with self.lock():
            self._update_meta(column_map={**self.column_map, **parsed})

    def reading_timezone(self, timezone: str | None = None) -> str | None:
        """The zone an ingest reads local times in: the store's, else ``timezone`` (or the one the store
        was opened with); None when neither is known (then only times with a UTC offset can be read).

        >>> import tempfile, cfanalytics as cf
        >>> print(cf.LogStore(tempfile.mkdtemp() + "/s").reading_timezone())
        None
        """
        given = timezone or self._session_tz
        if not self.timezone_settled:  # none yet, or UTC from offsets: the user's zone, if given, is the one
            return None if given is None else check_timezone(given)
        return self.timezone

    @property
    def timezone_settled(self) -> bool:
        """Whether the store's zone was given (not absent, nor UTC taken from the offsets of the times read)."""
        return self.timezone is not None and not self._meta.get("timezone_from_offsets")

    def record_timezone(self, timezone: str, *, from_offsets: bool = False) -> None:
        """Record the zone of a store whose zone is not settled (the caller holds the lock; an ingest's first commit).

        ``from_offsets``: the zone is UTC because the times carried offsets, not
        because a zone was given; later local times still need one. A zone given
        later replaces such a UTC (the stored instants came with their offsets:
        nothing shifts). Raises :class:`StoreError` if another writer recorded
        another zone meanwhile.
        """
        self._meta = self._read_meta()
        stored = self._meta.get("timezone")
        if stored is None or (self._meta.get("timezone_from_offsets") and not from_offsets):
            self._update_meta(timezone=check_timezone(timezone), timezone_from_offsets=from_offsets)
        elif stored != timezone:
            raise StoreError(
                f"{self.uri}: another ingest set the store time zone to {stored} meanwhile; run this one again"
            )

    def ensure_timezone(self, timezone: str | None) -> str:
        """The zone to read local times in, recorded now if the store's is not settled (caller holds no lock).

        ``pull`` uses it: the API answers in the account's zone. Without a zone
        given, a store's UTC taken from offsets stays, and a store without one gets UTC.
        """
        given = timezone or self._session_tz
        if self.timezone_settled or (self.timezone is not None and given is None):
            return str(self.timezone)
        tz = check_timezone(given or "UTC")
        with self.lock():
            self._meta = self._read_meta()
            if not self.timezone_settled:
                self._update_meta(timezone=tz, timezone_from_offsets=False)
        return str(self.timezone)

    # ----------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """The store-level exclusive writer lock (``flock``: a dead writer never leaves it taken).

        On object storage, a lease (:class:`cfanalytics.lease.Lease`): renewed while
        held, taken over by the next writer once a dead writer's lease expired.
        A store opened with ``create="on_write"`` is created first.
        """
        self._materialize()
        with self._lock(timeout):
            yield

    @contextlib.contextmanager
    def _lock(self, timeout: float | None = None) -> Iterator[None]:
        wait = self.lock_timeout if timeout is None else timeout
        if self.remote:
            with Lease(self.location).held(wait) as lease:
                self._lease = lease
                try:
                    yield
                finally:
                    self._lease = None
            return
        busy = f"{self.path}: store busy (another writer held the lock for {wait:.0f} s)"
        with file_lock(self.path / LOCK_FILE, wait=wait, busy=busy):
            yield

    def confirm_writer(self) -> None:
        """Before a commit that relies on the lock (an ingest's append after its dedupe): make sure this
        writer still holds it. On object storage the lease is renewed now, conditionally, so a writer
        whose lease expired and was taken over stops here (:class:`~cfanalytics.lease.LeaseLostError`)
        instead of appending rows the new holder may store too. Nothing to do for a local store.
        """
        if self._lease is not None:
            self._lease.renew()

    # --------------------------------------------------------------- tables
    def table_path(self, kind: str) -> Path:
        """Folder of the Delta table of ``kind`` (or ``"quarantine"``) of a local store (see :meth:`table_uri`)."""
        if self.remote:
            raise StoreError(f"{self.uri}: on object storage, a table has a URI (table_uri), not a local folder")
        return self.path / "tables" / kind

    def table_uri(self, kind: str) -> str:
        """The Delta table of ``kind`` as delta-rs and Polars take it: a folder, or an ``s3://`` URI."""
        return self.table_root(kind).uri

    def table_root(self, kind: str) -> Location:
        """The :class:`~cfanalytics.storage.Location` of the Delta table of ``kind``."""
        return self.location.join("tables", kind)

    def _has_table(self, kind: str) -> bool:
        return self.table_root(kind).exists("_delta_log")

    def has_table(self, kind: str) -> bool:
        """Whether the store holds the table ``kind`` (every kind once created; derived tables once written).

        >>> import tempfile, cfanalytics as cf
        >>> store = cf.LogStore(tempfile.mkdtemp() + "/s")
        >>> store.has_table("postbacks"), store.has_table("error_meanings")
        (True, False)
        """
        return not self._pending and self._has_table(kind)

    def _scan_table(self, kind: str) -> pl.LazyFrame:
        return pl.scan_delta(self.table_uri(kind), storage_options=self.storage_options)

    def table(self, kind: str) -> DeltaTable:
        """The ``deltalake.DeltaTable`` of ``kind`` (or ``"quarantine"``)."""
        self._materialize()
        from deltalake import DeltaTable

        return DeltaTable(self.table_uri(kind), storage_options=self.storage_options)

    def file_uris(self, kind: str) -> list[str]:
        """Parquet files of the current table version (from the Delta log, never a glob)."""
        return list(self.table(kind).file_uris())

    def scan(self, kind: str) -> pl.LazyFrame:
        """All stored rows of ``kind`` as a lazy frame; ``date`` filters prune partitions.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s").scan("postbacks").collect_schema()["is_error"]
        Boolean
        """
        if kind == ERROR_MEANINGS:  # derived at ingest (cfanalytics._meanings); stores before it lack it
            return self._scan_table(kind) if self.has_table(kind) else pl.LazyFrame(schema=MEANINGS_SCHEMA)
        if kind != QUARANTINE:
            check_kind(kind)
        if self._pending:  # not created yet: no rows
            return pl.LazyFrame(schema=quarantine_schema() if kind == QUARANTINE else polars_schema(kind))
        return self._scan_table(kind)

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
        **options: Unpack[IngestOptions],
    ) -> IngestResult:
        """Load export files into the store; the keywords are :class:`~cfanalytics.ingest.IngestOptions`
        (``kind``, ``timezone``, ``column_map``, ``progress``, ``store_ips``).

        One Delta commit per (input, kind). Bad records are quarantined or flagged;
        an unreadable file is reported in ``result.failures`` and nothing of it is written.
        """
        paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        return ingest_paths(self, paths, **options)

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
        return ingest_raw(self, [frame_input(data, name)], kind=kind, timezone=timezone, column_map=column_map)

    def forget(self, batch_id: str) -> Forgotten:
        """Delete the rows of a batch (``id`` of one (input, kind), or the input's id prefix), under the lock.

        A row that a later batch carried too (the store held it already) is not
        deleted: it is handed to that batch, which was not forgotten (the earliest
        such batch, when several). The files holding the batch's rows are rewritten
        and the old ones removed from disk, with their statistics in the Delta log.
        Returns the rows deleted per table (none when no batch id matches), with
        the rows handed to another batch in its ``kept`` attribute.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC").forget("20260101T000000-abcdef")
        {}
        """
        match = _batch_match(batch_id)
        counts = Forgotten()
        with self.lock():
            claims = self._claims().filter(~match)  # claims of the batches that stay
            handed: list[pl.DataFrame] = []
            deleted_postbacks: list[str] = []
            for table in (*KINDS, QUARANTINE):
                key = ("postback_id",) if table == "postbacks" else ()  # the key of its error meanings
                mine = self.scan(table).filter(match).select("_row_id", *key, *id_halves()).collect()
                if mine.height == 0:
                    continue
                heirs = (
                    claims.filter(pl.col("table") == table)
                    .join(mine, on=["id_hi", "id_lo"], how="inner")
                    .group_by("_row_id", "id_hi", "id_lo")
                    .agg(pl.col("_batch_id").sort_by("claimed_at", "_batch_id").first().alias("__heir"))
                    .sort("_row_id")
                )

                def change(rows: pl.LazyFrame, heirs: pl.DataFrame = heirs) -> pl.LazyFrame:
                    return (
                        rows.join(
                            heirs.lazy().select("_row_id", "__heir"), on="_row_id", how="left", maintain_order="left"
                        )
                        .filter(~match | pl.col("__heir").is_not_null())
                        .with_columns(pl.coalesce("__heir", "_batch_id").alias("_batch_id"))
                        .drop("__heir")
                    )

                rewrite_files(self.table(table), self.table_root(table), match, change, {FORGET_KEY: batch_id})
                self._purge(table)
                if mine.height > heirs.height:
                    counts[table] = mine.height - heirs.height
                    if table == "postbacks":
                        deleted = mine.join(heirs, on="_row_id", how="anti")
                        deleted_postbacks = deleted.get_column("postback_id").to_list()
                if heirs.height:
                    counts.kept[table] = heirs.height
                handed.append(
                    heirs.select(pl.lit(table).alias("table"), "id_hi", "id_lo", pl.col("__heir").alias("_batch_id"))
                )
            if handed:  # the forgotten batch's claims go, and those that became the claimant's rows
                gone = pl.concat(handed)
                keys = ["table", "id_hi", "id_lo", "_batch_id"]
                self._erase(
                    CLAIMS,
                    match | pl.col("id_hi").is_in(gone.get_column("id_hi").implode()),
                    lambda rows: rows.join(gone.lazy(), on=keys, how="anti", maintain_order="left").filter(~match),
                    {FORGET_KEY: batch_id},
                )
            elif self._has_table(CLAIMS):
                self._erase(CLAIMS, match, lambda rows: rows.filter(~match), {FORGET_KEY: batch_id})
            if deleted_postbacks:  # their error meanings go with them
                gone_ids = pl.col("postback_id").is_in(pl.Series(deleted_postbacks, dtype=pl.String).implode())
                if self._erase(ERROR_MEANINGS, gone_ids, lambda rows: rows.filter(~gone_ids), {FORGET_KEY: batch_id}):
                    self._purge(ERROR_MEANINGS)
        return counts

    def _claims(self) -> pl.DataFrame:
        """Every claim: (table, id halves, batch) of a row a batch carried when the store held it already."""
        if not self._has_table(CLAIMS):
            return pl.DataFrame(schema=CLAIMS_SCHEMA)
        return self._scan_table(CLAIMS).collect()

    def maintain(self, *, retention_hours: int = 168) -> dict[str, Any]:
        """Lay out and compact the tables, checkpoint, and vacuum files no version needs, under the lock.

        Tables with a ``click_id`` (:data:`CLICK_ID_TABLES`) get each date partition
        that is not laid out yet rewritten sorted by ``click_id`` in row groups of
        4k rows (:meth:`sort_by_click_id`, one commit per partition, same rows and
        ``_row_id`` values): a click-id lookup then reads one small row group per partition.
        A partition is left alone when its row groups already hold disjoint
        click-id ranges and it has at most one small file, so a re-run is cheap.
        The other tables are compacted. Maintain commits carry no batch id, so
        :meth:`batches` (the ledger) is unchanged.

        The stored error meanings (:mod:`cfanalytics._meanings`) are brought up to date
        first: derived again when the rules changed (``derived``: rows written), and
        derived for failing postbacks that lack them.

        Vacuum removes replaced files and files a killed writer left behind (never
        committed) once older than the retention (default 7 days), far longer than
        any ingest, so a running writer's files are never removed. Old scratch
        folders go too.

        >>> import tempfile, cfanalytics as cf
        >>> cf.LogStore(tempfile.mkdtemp() + "/s").maintain()["visits"]
        {'compacted': 0, 'sorted': 0, 'vacuumed': 0}
        """
        if retention_hours < 0:
            raise UsageError(f"retention of {retention_hours} hours: it must be 0 or more")
        out: dict[str, Any] = {}
        with self.lock():
            derived = refresh_meanings(self)
            for kind in (*KINDS, QUARANTINE, ERROR_MEANINGS):
                if not self._has_table(kind):  # a derived table with nothing to hold yet
                    continue
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
            if ERROR_MEANINGS in out:
                out[ERROR_MEANINGS]["derived"] = derived["derived"]
            staging = self.path / "_staging"
            if staging.exists():
                cutoff = time.time() - retention_hours * 3600
                for entry in staging.iterdir():
                    if entry.stat().st_mtime < cutoff and not _live_writer(entry.name):
                        shutil.rmtree(entry, ignore_errors=True)
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
        for day in partitions_to_sort(self.table(kind), self.table_root(kind)):
            done[day] = rewrite_sorted(self.table(kind), self.table_root(kind), day)
        return done

    def __repr__(self) -> str:
        return f"LogStore({self.uri!r}, timezone={self.timezone!r})"


def _ip_spellings(ip: str) -> list[str]:
    """The texts an address may be stored as: as given, and (when it parses) compressed and exploded.

    >>> _ip_spellings("2001:DB8::1")
    ['2001:DB8::1', '2001:db8::1', '2001:0db8:0000:0000:0000:0000:0000:0001']
    """
    out = [ip]
    with contextlib.suppress(ValueError):
        parsed = ipaddress.ip_address(ip)
        out += [parsed.compressed, parsed.exploded]
    return list(dict.fromkeys(out))


class Forgotten(dict[str, int]):
    """Rows :meth:`LogStore.forget` deleted per table; ``kept``: rows it handed to a batch that stored them too."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, int] = {}


def _batch_match(batch_id: str) -> pl.Expr:
    col = pl.col("_batch_id")
    return (col == batch_id) | col.str.starts_with(f"{batch_id}-")


def _new_meta(timezone: str | None) -> dict[str, Any]:
    """Metadata of a new store."""
    return {
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


def _work_folder(uri: str) -> Path:
    """The local working folder of a store on object storage (its ingests' scratch space).

    ``$CFANALYTICS_WORK_DIR`` or the system's temporary folder, one sub-folder per store URI.
    """
    import hashlib
    import tempfile

    base = Path(os.environ.get("CFANALYTICS_WORK_DIR") or Path(tempfile.gettempdir()) / "cfanalytics-work")
    return base / hashlib.sha256(uri.encode()).hexdigest()[:16]


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
