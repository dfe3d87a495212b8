"""The ingest pipeline: read → normalise → identify → dedupe → one commit per (input, kind).

Memory stays bounded for inputs of any size (CSV, NDJSON, Parquet): batches
stream through up to three passes over Arrow IPC scratch files in the store's
``_staging`` folder.

1. Read and parse (on a reader thread, batches ahead), normalise every batch,
   then on a writer thread compute each row's identity assuming it is the first
   of its kind (ordinal 0) and, for keyed kinds, its content digest; write typed
   rows to scratch. Nothing is written to the store, so a file that turns out
   unreadable leaves no trace.
2. Only when some identity repeats inside the input: give those rows their
   ordinal (or, for keyed kinds, keep the first and sort later copies into
   identical repeats and ``conflicting_key`` by their content digests).
3. Under the store lock: join the ids (as ``UInt64`` halves, in buckets of the
   stored ids) with those already stored (keyed rows whose stored digest differs
   are checked against the stored row's columns), then stream the new rows from
   scratch through Polars' Parquet sink into one Delta commit whose metadata
   carries the batch id, source, sha256 and counts
   (:func:`cfanalytics._delta.append_rows`); then the quarantine (raw records of
   conflicting rows are read again from the input).

``rows_read = rows_stored + already_stored + quarantined`` holds for every batch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import polars as pl
import pyarrow as pa

from cfanalytics._delta import (
    CLAIMS,
    CLAIMS_SCHEMA,
    ROW_GROUP_ROWS,
    append_claims,
    append_rows,
    arrow_schema,
    commit_hooks,
    writer_properties,
)
from cfanalytics._meanings import meanings_of_batch
from cfanalytics._pipeline import SCRATCH_ARROW, ScratchWriter, SerialWorker, prefetch, scan_scratch, scratch_batches
from cfanalytics.columns import Resolution, norm_key, parse_map, resolve
from cfanalytics.exceptions import CfError, InputError, StoreError, UsageError
from cfanalytics.identity import (
    content_digest,
    encode_rows,
    hash_texts,
    id_halves,
    identity_columns,
    is_keyed,
    with_ordinal,
)
from cfanalytics.normalize import Normalized, Normalizer, raw_records
from cfanalytics.readers import RawInput, RowProblem, open_input
from cfanalytics.schemas import (
    CONTENT_DIGEST_COLUMN,
    CONTENT_HASH_COLUMN,
    DERIVED_POSTBACK_ID_COLUMNS,
    KEY_COLUMN,
    KINDS,
    META_PREFIX,
    QUARANTINE,
    STR,
    check_ip_mode,
    column_names,
    flags,
    pandera_model,
    polars_schema,
    quarantine_schema,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from cfanalytics.store import LogStore

_STATUS_NEW, _STATUS_ALREADY, _STATUS_CONFLICT = 0, 1, 2
#: Stored ids per bucket of the dedupe join (about 100 MB of keys): bounds its memory for any table size.
_JOIN_BUCKET_ROWS = 4_000_000
#: The scratch column holding the first 64 bits of each row's ``_row_id`` (pass 1), for the repeat count.
_ID_HI = "__id_hi"
#: Rows per bucket when counting the input's own ids for repeats (about 100 MB of hash table).
_REPEAT_BUCKET_ROWS = 4_000_000
#: Found keys are "few" below 1 in this many stored rows of their bucket: their stored rows are read by id.
_SPARSE_HITS = 20


@dataclass
class BatchResult:
    """Counts of one (input, kind) batch. ``rows_read = rows_stored + already_stored + quarantined``."""

    batch_id: str
    source: str
    kind: str
    rows_read: int = 0
    rows_stored: int = 0
    already_stored: int = 0
    quarantined: int = 0
    flagged: int = 0
    skipped: int = 0
    sha256: str = ""
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    flagged_by_flag: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``cfanalytics ingest --json`` (docs/contract.md §5)."""
        keys = ("batch_id", "source", "kind", "rows_read", "rows_stored", "already_stored", "quarantined", "flagged")
        d = asdict(self)
        return {k: d[k] for k in keys}


@dataclass
class IngestResult:
    """What an ingest did: one :class:`BatchResult` per (input, kind), and inputs that failed."""

    batches: list[BatchResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: The zone this ingest recorded for a store that had none, else None.
    timezone_recorded: str | None = None
    #: Whether that zone is UTC because every time read carried a UTC offset (no zone was given).
    timezone_from_offsets: bool = False

    @property
    def ok(self) -> bool:
        """True when every input was read."""
        return not self.failures

    def totals(self) -> dict[str, int]:
        """Counts summed over batches."""
        keys = ("rows_read", "rows_stored", "already_stored", "quarantined", "flagged")
        return {k: sum(getattr(b, k) for b in self.batches) for k in keys}

    def by_kind(self) -> dict[str, BatchResult]:
        """Batches summed per kind (a convenience for tests and summaries)."""
        out: dict[str, BatchResult] = {}
        for b in self.batches:
            acc = out.setdefault(b.kind, BatchResult(batch_id="*", source="*", kind=b.kind))
            for k in ("rows_read", "rows_stored", "already_stored", "quarantined", "flagged", "skipped"):
                setattr(acc, k, getattr(acc, k) + getattr(b, k))
            for reason, n in b.quarantined_by_reason.items():
                acc.quarantined_by_reason[reason] = acc.quarantined_by_reason.get(reason, 0) + n
            for flag, n in b.flagged_by_flag.items():
                acc.flagged_by_flag[flag] = acc.flagged_by_flag.get(flag, 0) + n
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"batches": [...]}`` as printed by ``cfanalytics ingest --json``."""
        return {"batches": [b.to_json() for b in self.batches], "failures": list(self.failures)}


# ----------------------------------------------------------------- entry points
class IngestOptions(TypedDict, total=False):
    """How to read inputs, as keywords of :func:`ingest_paths`, :func:`ingest_raw` and ``LogStore.ingest``.

    ``kind``: the log kind when the columns do not tell it; ``timezone``: the zone of times
    without an offset (default: the store's); ``column_map``: ``{"their name": "canonical"}`` or
    ``["their=canonical", ...]``; ``progress``: a progress bar per input; ``store_ips``: ``raw``,
    ``masked`` or ``hashed`` (default: the store's setting).
    """

    kind: str | None
    timezone: str | None
    column_map: Mapping[str, str] | Sequence[str] | None
    progress: bool
    store_ips: str | None


def ingest_paths(
    store: LogStore,
    paths: Sequence[str | os.PathLike[str]],
    **options: Unpack[IngestOptions],
) -> IngestResult:
    """Ingest files; an unreadable file is recorded in ``failures`` and the others go on."""
    result = IngestResult()
    for path in paths:
        try:
            raw = open_input(path)
            sub = ingest_raw(store, [raw], **options)
        except InputError as exc:
            result.failures.append(str(exc))
            continue
        result.batches.extend(sub.batches)
        result.failures.extend(sub.failures)
        if sub.timezone_recorded:
            result.timezone_recorded, result.timezone_from_offsets = sub.timezone_recorded, sub.timezone_from_offsets
    return result


def ingest_raw(
    store: LogStore,
    inputs: Sequence[RawInput],
    **options: Unpack[IngestOptions],
) -> IngestResult:
    """Ingest already opened inputs (files, frames or API windows) into ``store``.

    A store without a time zone gets ``timezone`` with its first commit; without
    one, every time read must carry a UTC offset (the store's zone is then UTC),
    and an input with local times is refused with a :class:`UsageError`. A store
    opened with ``create="on_write"`` is created by the first commit only.
    """
    kind, progress, store_ips = options.get("kind"), options.get("progress", False), options.get("store_ips")
    tz = store.reading_timezone(options.get("timezone"))
    offsets_only = tz is None  # for every input of this call, also once the first one recorded UTC
    ip = (check_ip_mode(store_ips) if store_ips else store.store_ips, str(store.metadata.get("ip_salt") or ""))
    overrides = {**store.column_map, **parse_map(options.get("column_map"))}
    result = IngestResult()
    made_folder = not store.path.exists()
    remove_dead_staging(store.path / "_staging")
    try:
        for raw in inputs:
            staging = store.path / "_staging" / f"{os.getpid()}-{secrets.token_hex(4)}"
            try:
                staging.mkdir(parents=True, exist_ok=True)
                prepared = _prepare(
                    raw,
                    staging,
                    kind=kind,
                    tz=tz or "UTC",
                    overrides=overrides,
                    store=store,
                    progress=progress,
                    ip=ip,
                    offsets_only=offsets_only,
                )
                pin = None if store.timezone_settled else (tz or "UTC")
                was = (store.timezone, store.timezone_settled) if store.exists else (None, False)
                salt = ip[1] if ip[0] == "hashed" else None  # hashed addresses must match the store's salt
                result.batches.extend(_commit(store, prepared, pin=pin, salt=salt, from_offsets=offsets_only))
                if pin is not None and (store.timezone, store.timezone_settled) != was:
                    result.timezone_recorded, result.timezone_from_offsets = pin, offsets_only
            except InputError as exc:
                result.failures.append(str(exc))
            except (OSError, pa.ArrowException) as exc:  # the scratch space could not be written
                what = _DISK_FULL if _disk_full(exc) else _one_line(exc)
                raise StoreError(f"{store.uri}: {what} while reading {raw.name}; nothing of it was stored") from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        if not store.exists:  # nothing was committed: leave no trace of a store
            shutil.rmtree(store.path / "_staging", ignore_errors=True)
            if made_folder:
                with contextlib.suppress(OSError):
                    store.path.rmdir()
    return result


def validate_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    kind: str | None = None,
    timezone: str = "UTC",
    column_map: Mapping[str, str] | Sequence[str] | None = None,
) -> IngestResult:
    """Run every check of an ingest without a store; writes nothing.

    Repeats inside each input are detected; rows that a store may already hold are not.
    """
    overrides = parse_map(column_map)
    result = IngestResult()
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="cfanalytics-validate-") as tmp:
            try:
                raw = open_input(path)
                prepared = _prepare(raw, Path(tmp), kind=kind, tz=timezone, overrides=overrides, store=None)
            except InputError as exc:
                result.failures.append(str(exc))
                continue
            for p in prepared.kinds.values():
                result.batches.append(_count_only(prepared, p))
            if prepared.kindless_quarantine:
                result.batches.append(_kindless_batch(prepared))
    return result


# ------------------------------------------------------------------ pass 1 + 2
@dataclass
class _KindPart:
    kind: str
    scratch: Path  # pass 1 rows
    final: Path | None = None  # pass 2 rows with final ids and in-input status
    rows: int = 0
    keyed: bool = False
    present: tuple[str, ...] = ()
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    content: dict[str, pl.DataType] = field(default_factory=dict)  # columns compared when a key repeats
    filled_extras: set[str] = field(default_factory=set)  # extras holding a value in some row
    claimed: pl.DataFrame | None = None  # ``id_hi``/``id_lo`` of rows the store held already (identical)


@dataclass
class _Prepared:
    raw: RawInput
    resolution: Resolution
    batch_prefix: str
    kinds: dict[str, _KindPart]
    kindless_quarantine: list[pl.DataFrame]
    skipped: int


def _new_batch_prefix() -> str:
    return f"{datetime.now(tz=UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class _Spill:
    """Per-kind scratch files of pass 1, written on the writer thread in batch order.

    :meth:`spill` gives rows their first identity (:func:`_first_identity`) and
    appends them to the kind's scratch file; the first rows of a kind fix the
    file's schema and the part's key and content columns.
    """

    def __init__(self, normalizer: Normalizer, present: tuple[str, ...]) -> None:
        self.normalizer = normalizer
        self.present = present
        self._writers: dict[str, ScratchWriter] = {}
        self._schemas: dict[str, pl.Schema] = {}

    def spill(self, kind: str, part: _KindPart, rows: pl.DataFrame) -> None:
        """Identify ``rows`` of ``kind`` and append them to the part's scratch file."""
        derived = self.normalizer.derived_postback_id
        rows = _first_identity(rows, kind, derived, self.present)
        if rows.height == 0:
            return
        if kind not in self._writers:
            self._schemas[kind] = rows.schema
            part.keyed = is_keyed(kind, self.present) and not derived
            part.present = self.present
            part.content = _content_schema(kind, rows.schema, self.present)
            canonical = polars_schema(kind)
            internal = ("_record", "_raw_record", _ID_HI)
            part.extras = [c for c in rows.columns if c not in canonical and c not in internal]
            self._writers[kind] = ScratchWriter(part.scratch, rows.to_arrow(compat_level=SCRATCH_ARROW).schema)
        schema = self._schemas[kind]
        self._writers[kind].write_table(
            rows.select(list(schema)).cast(dict(schema)).to_arrow(compat_level=SCRATCH_ARROW)
        )
        part.rows += rows.height
        if unfilled := [c for c in part.extras if c not in part.filled_extras]:
            have = rows.select(pl.col(unfilled).is_not_null().any()).row(0, named=True)
            part.filled_extras.update(c for c, v in have.items() if v)

    def close(self) -> None:
        """Close every scratch file."""
        for w in self._writers.values():
            w.close()


def _route(
    outputs: Mapping[str, Normalized],
    parts: dict[str, _KindPart],
    kindless: list[pl.DataFrame],
    staging: Path,
) -> list[tuple[str, _KindPart, pl.DataFrame]]:
    """File a normalised batch: quarantined records into their part (or ``kindless``); the rows to spill.

    Returns ``(kind, part, rows)`` for each kind with rows to store.
    """
    todo: list[tuple[str, _KindPart, pl.DataFrame]] = []
    for k, out in outputs.items():
        if k == "events":
            kindless.append(out.quarantine)
            continue
        if out.rows.height == 0 and out.quarantine.height == 0:
            continue
        part = parts.setdefault(k, _KindPart(k, staging / f"{k}.1.arrow"))
        if out.quarantine.height:
            part.quarantine.append(out.quarantine)
        if out.rows.height:
            todo.append((k, part, out.rows))
    return todo


def _prepare(
    raw: RawInput,
    staging: Path,
    *,
    kind: str | None,
    tz: str,
    overrides: Mapping[str, str],
    store: LogStore | None,
    progress: bool = False,
    ip: tuple[str, str] = ("raw", ""),
    offsets_only: bool = False,
) -> _Prepared:
    """Passes 1 and 2 of one input: read, normalise, identify and spill to scratch in ``staging``.

    With ``offsets_only`` (the store has no time zone and none was given), a
    local time (no UTC offset) refuses the input with a :class:`UsageError`.
    """
    if not raw.columns:  # an empty API window or JSON list: nothing to read, nothing wrong
        return _Prepared(raw, Resolution(kind=kind or "events"), _new_batch_prefix(), {}, [], 0)
    known = _known_extras(store) if store is not None else {}
    res = resolve(list(raw.columns), kind=kind, overrides=overrides, known_extras=known, name=raw.name)
    only_kind = kind if res.kind == "events" and kind not in (None, "events") else None
    normalizer = Normalizer(
        res, timezone=tz, source=raw.name, delimiter=raw.delimiter, only_kind=only_kind, ip_mode=ip[0], ip_salt=ip[1]
    )
    parts: dict[str, _KindPart] = {}
    kindless: list[pl.DataFrame] = []
    default_kind = res.kind if res.kind != "events" else None
    spill = _Spill(normalizer, tuple(res.canonical.values()))
    bar = _progress_bar(raw, progress)
    # Three stages overlap (Polars and pyarrow release the GIL): a reader thread parses the
    # next batches, this thread normalises, and a writer thread identifies and spills rows.
    writer = SerialWorker(name="cfanalytics-write")
    try:
        batches = ((normalizer.frame(b), problems, b.num_rows) for b, problems in raw.batches())
        for frame, problems, n in prefetch(batches):
            if problems:
                q = _problem_frame(problems, default_kind)
                if default_kind is None:
                    kindless.append(q)
                else:
                    parts.setdefault(default_kind, _KindPart(default_kind, staging / f"{default_kind}.1.arrow"))
                    parts[default_kind].quarantine.append(q)
            outputs = normalizer.normalize(frame)
            if offsets_only and normalizer.local_times:
                where = f"the account time zone of {store.uri} is not known" if store else "no time zone was given"
                raise UsageError(
                    f"{raw.name}: times without a UTC offset, and {where}; "
                    "pass --timezone with the account's zone (an IANA name such as America/New_York)"
                )
            for k, part, rows in _route(outputs, parts, kindless, staging):
                writer.submit(spill.spill, k, part, rows)
            if bar is not None:
                bar.update(n + len(problems))
        writer.close()
    except CfError:
        raise
    except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError, pl.exceptions.ComputeError) as exc:
        if store is not None and _disk_full(exc):
            raise StoreError(f"{store.uri}: {_DISK_FULL} while reading {raw.name}; nothing of it was stored") from None
        raise InputError(f"{raw.name}: {_one_line(exc)}") from None
    finally:
        writer.abort()
        spill.close()
        if bar is not None:
            bar.close()
    raw.sha256  # noqa: B018 - wait for the input's digest now: a file changed while read fails before the lock
    for part in parts.values():
        if part.rows:
            part.final = staging / f"{part.kind}.2.arrow"
            _assign_ordinals(part, normalizer.derived_postback_id)
    if kindless and len(parts) == 1:
        # An event-log export holding one kind (say, conversions): its stray rows count there.
        (part,) = parts.values()
        part.quarantine.extend(q.with_columns(pl.lit(part.kind).alias("kind")) for q in kindless)
        kindless = []
    return _Prepared(raw, res, _new_batch_prefix(), parts, kindless, normalizer.skipped)


def _first_identity(rows: pl.DataFrame, kind: str, derived_postback_id: bool, present: tuple[str, ...]) -> pl.DataFrame:
    """Pass 1 identity: ``_row_id`` with ordinal 0 (and derived postback ids, content digests).

    ``present`` lists the canonical columns the input has (activity is keyed by
    ``activity_id`` only when the input has that column).
    """
    if rows.height == 0:
        return rows
    if kind == "postbacks" and derived_postback_id:
        enc = encode_rows(rows, "postback", DERIVED_POSTBACK_ID_COLUMNS)
        rows = rows.with_columns(
            hash_texts(with_ordinal(enc, pl.Series([0] * rows.height))).alias("postback_id"),
            enc.alias("_identity"),
        )
    cols = identity_columns(kind, present)
    enc = encode_rows(rows, kind, cols)
    keyed = is_keyed(kind, present)
    ids = hash_texts(enc) if keyed else hash_texts(with_ordinal(enc, pl.Series([0] * rows.height)))
    out = rows.with_columns(ids.alias("_row_id")).with_columns(_key_halves("_row_id", "__k")[0].alias(_ID_HI))
    if keyed or kind == "activity":
        out = out.with_columns(content_digest(_content_schema(kind, rows.schema, present)))
    return out.drop("_raw_record", strict=False)  # raw text is fetched again for the few rows quarantined later


def _repeated_ids(scratch: pl.LazyFrame, rows: int) -> set[str]:
    """The ``_row_id``s that occur more than once among the ``rows`` rows of a scratch file.

    Counted on the ids' first 64 bits (the scratch's ``UInt64`` column
    :data:`_ID_HI`, an eighth of the memory of grouping the 32-digit texts), in
    buckets of those bits of about :data:`_REPEAT_BUCKET_ROWS` rows each, so
    that the count's memory stays bounded whatever the input's size (one read of
    that column per bucket); the few candidates are then checked on the whole
    id, so a collision of the first halves costs nothing but a look.
    """
    buckets = max(1, -(-rows // _REPEAT_BUCKET_ROWS))
    hi = pl.col(_ID_HI)
    found: list[pl.DataFrame] = []
    for b in range(buckets):
        ids = scratch.select(hi) if buckets == 1 else scratch.select(hi).filter(hi % buckets == b)
        candidates = ids.group_by(_ID_HI).len().filter(pl.col("len") > 1).select(_ID_HI).collect()
        if candidates.height:
            found.append(candidates)
    if not found:
        return set()
    ids = (
        scratch.select("_row_id", hi)
        .join(pl.concat(found).lazy(), on=_ID_HI, how="semi")
        .group_by("_row_id")
        .len()
        .filter(pl.col("len") > 1)
        .collect()
    )
    return set(ids.get_column("_row_id").to_list())


def _assign_ordinals(part: _KindPart, derived_postback_id: bool) -> None:
    """Pass 2: ordinals for repeated identities; first-kept rule for keyed kinds."""
    assert part.final is not None
    repeated = _repeated_ids(scan_scratch(part.scratch), part.rows)
    if not repeated:  # the usual case: every row is the first of its identity; no second pass needed
        part.final = part.scratch
        return
    seen: dict[str, Any] = {}
    writer: ScratchWriter | None = None
    key = KEY_COLUMN.get(part.kind, "activity_id")
    try:
        for rb in scratch_batches(part.scratch):
            df = pl.from_arrow(rb)
            assert isinstance(df, pl.DataFrame)
            df = df.drop(_ID_HI)  # pass 1's count only (ordinals below change some ids)
            status = [_STATUS_NEW] * df.height
            ids = df.get_column("_row_id").to_list() if repeated else []
            idx = [i for i, rid in enumerate(ids) if rid in repeated]
            if idx and part.keyed:
                digests = df.get_column(CONTENT_DIGEST_COLUMN).to_list()
                for i in idx:
                    if ids[i] not in seen:  # the first of its key in this input: kept
                        seen[ids[i]] = digests[i]
                    else:
                        status[i] = _STATUS_ALREADY if seen[ids[i]] == digests[i] else _STATUS_CONFLICT
            elif idx:
                df = _with_ordinals(df, part, idx, seen, derived_postback_id)
            df = df.with_columns(pl.Series("_status", status, dtype=pl.Int8))
            if part.keyed and idx:
                df = _conflicts_to_quarantine(df, part, key, in_store=False)
            table = df.to_arrow(compat_level=SCRATCH_ARROW)
            if writer is None:
                writer = ScratchWriter(part.final, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _with_ordinals(
    df: pl.DataFrame, part: _KindPart, idx: list[int], seen: dict[str, Any], derived_postback_id: bool
) -> pl.DataFrame:
    """Recompute ids of repeated rows with their ordinal among identical rows of the input."""
    kind = part.kind
    ids = df.get_column("_row_id").to_list()
    ordinals = [0] * df.height
    for i in idx:
        n = seen.get(ids[i], 0)
        ordinals[i] = n
        seen[ids[i]] = n + 1
    rows = [i for i in idx if ordinals[i] > 0]
    if not rows:
        return df
    sub = df[rows]
    ords = pl.Series([ordinals[i] for i in rows])
    if kind == "postbacks" and derived_postback_id:
        new_pid = hash_texts(with_ordinal(sub.get_column("_identity"), ords))
        sub = sub.with_columns(new_pid.alias("postback_id"))
        new_id = hash_texts(encode_rows(sub, kind, identity_columns(kind, part.present)))
    else:
        new_id = hash_texts(with_ordinal(encode_rows(sub, kind, identity_columns(kind, part.present)), ords))
    pos = pl.Series("__pos", rows, dtype=pl.UInt32)
    patch = sub.with_columns(new_id.alias("_row_id")).with_columns(pos)
    base = df.with_row_index("__pos")
    return base.update(patch, on="__pos").drop("__pos")


def _final_frame(part: _KindPart) -> pl.LazyFrame:
    """Pass-2 rows with their in-input ``_status`` (all new when pass 2 had nothing to do)."""
    assert part.final is not None
    lf = scan_scratch(part.final)
    if "_status" not in lf.collect_schema().names():
        lf = lf.with_columns(pl.lit(_STATUS_NEW, pl.Int8).alias("_status"))
    return lf


def _conflicts_to_quarantine(df: pl.DataFrame, part: _KindPart, key: str, *, in_store: bool) -> pl.DataFrame:
    """Move ``conflicting_key`` rows into the part's quarantine list; return the others."""
    bad = df.filter(pl.col("_status") == _STATUS_CONFLICT)
    if bad.height:
        where = "in the store" if in_store else "earlier in this input"
        part.quarantine.append(
            bad.select(
                "_record",
                pl.lit("conflicting_key").alias("reason"),
                pl.concat_str(
                    [
                        pl.lit(f"{key} '"),
                        pl.col(key).fill_null("").str.slice(0, 80),
                        pl.lit(f"' seen {where} with other content; first kept"),
                    ]
                ).alias("detail"),
                pl.lit(None, STR).alias("raw"),  # filled from the input at commit (see _fill_raw)
                pl.lit(part.kind).alias("kind"),
            )
        )
    return df.filter(pl.col("_status") != _STATUS_CONFLICT)


# ---------------------------------------------------------------------- pass 3
def _commit(
    store: LogStore,
    prepared: _Prepared,
    *,
    pin: str | None = None,
    salt: str | None = None,
    from_offsets: bool = False,
) -> list[BatchResult]:
    """Under the lock: dedupe against the store, write one commit per kind, then quarantine.

    A full disk (an ``OSError`` or a Polars error saying so) becomes one
    :class:`StoreError` line: each (input, kind) batch is committed whole or not at all.
    """
    try:
        return _commit_locked(store, prepared, pin=pin, salt=salt, from_offsets=from_offsets)
    except CfError:
        raise
    except (OSError, pl.exceptions.ComputeError, pa.ArrowException) as exc:
        if not (isinstance(exc, OSError) or _disk_full(exc)):
            raise
        what = _DISK_FULL if _disk_full(exc) else _one_line(exc)
        raise StoreError(
            f"{store.uri}: {what} while storing {prepared.raw.name}; each of its kinds is stored whole or not "
            "at all: free space and run the ingest again (rows stored already are skipped)"
        ) from None


def _commit_locked(
    store: LogStore, prepared: _Prepared, *, pin: str | None, salt: str | None, from_offsets: bool
) -> list[BatchResult]:
    results: list[BatchResult] = []
    quarantine: list[pl.DataFrame] = []
    claims: list[pl.DataFrame] = []
    if not prepared.kinds and not prepared.kindless_quarantine:  # nothing to store (an empty input)
        return results
    with store.lock():
        if salt is not None and salt != str(
            store.metadata.get("ip_salt") or ""
        ):  # another process created the store meanwhile
            raise StoreError(f"{store.uri}: the store was created by another process meanwhile; run again")
        if pin is not None:
            store.record_timezone(pin, from_offsets=from_offsets)
        for kind, part in sorted(prepared.kinds.items()):
            batch_id = f"{prepared.batch_prefix}-{kind}"
            res = BatchResult(batch_id, prepared.raw.name, kind, sha256=prepared.raw.sha256)
            if part.final is not None:
                _write_kind(store, prepared, part, res)
                if kind == "postbacks" and res.rows_stored:
                    meanings_of_batch(store, batch_id)  # derived data: the rules run on the writer, once
            if part.claimed is not None:
                claims.append(
                    part.claimed.select(
                        pl.lit(kind).alias("table"), "id_hi", "id_lo", pl.lit(batch_id).alias("_batch_id")
                    )
                )
            q = _quarantine_rows(_fill_raw(prepared.raw, part.quarantine), prepared, batch_id)
            quarantine.append(q)
            res.quarantined = q.height
            res.quarantined_by_reason = _reason_counts(q)
            res.rows_read = res.rows_stored + res.already_stored + res.quarantined
            res.skipped = prepared.skipped
            results.append(res)
        if prepared.kindless_quarantine:
            batch_id = f"{prepared.batch_prefix}-events"
            q = _quarantine_rows(prepared.kindless_quarantine, prepared, batch_id)
            quarantine.append(q)
            results.append(_kindless_batch(prepared, q=q, batch_id=batch_id))
        claims.append(_write_quarantine(store, prepared, pl.concat(quarantine) if quarantine else None))
        # After the data: a run killed before this line leaves rows that only their first batch owns.
        store.confirm_writer()
        append_claims(store.table_root(CLAIMS), pl.concat(claims))
    return results


def _key_halves(column: str, prefix: str) -> list[pl.Expr]:
    """A 32-hex-digit hash as two ``UInt64`` columns: a compact, exact join key."""
    return [
        pl.col(column).str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64).alias(f"{prefix}hi"),
        pl.col(column).str.slice(16, 16).str.to_integer(base=16, dtype=pl.UInt64).alias(f"{prefix}lo"),
    ]


def _write_kind(store: LogStore, prepared: _Prepared, part: _KindPart, res: BatchResult) -> None:
    """Dedupe the part against the store on compact keys, then stream its new rows into one commit.

    Only ``_row_id`` of both sides takes part in the join, as a pair of
    ``UInt64``; the rows themselves stream from the scratch file into
    :func:`cfanalytics._delta.append_rows`. Rows found in the store are counted (identical) or, for
    keyed kinds whose content differs, quarantined as ``conflicting_key``
    (see :func:`_stored_conflicts`).
    """
    assert part.final is not None
    kind = part.kind
    key = KEY_COLUMN.get(kind, "activity_id")
    flag_cols = flags(kind)
    final = _final_frame(part)
    keys = ["__khi", "__klo"]
    fresh = final.filter(pl.col("_status") == _STATUS_NEW)  # not a repeat inside this input
    stored_rows = int(store.table(kind).count())
    # The join runs in buckets of the id's first half, each holding about _JOIN_BUCKET_ROWS stored
    # ids, so that its memory stays bounded whatever the size of the table.
    buckets = -(-stored_rows // _JOIN_BUCKET_ROWS)
    hits = n_conflicts = 0
    counts: dict[str, int] = dict.fromkeys(["new", "flagged", *flag_cols], 0)
    hit_keys: list[pl.DataFrame] = []
    clash_keys: list[pl.DataFrame] = []
    mine = fresh.with_columns(*_key_halves("_row_id", "__k"))
    # Keyed rows compare content digests too; a table written before digests were stored has none (null).
    has_digest = part.keyed and CONTENT_DIGEST_COLUMN in store.scan(kind).collect_schema().names()
    theirs = [pl.col(CONTENT_DIGEST_COLUMN).alias("__s")] if has_digest else [pl.lit(None, pl.Int64).alias("__s")]
    suspect = pl.col("__s").is_null() | (pl.col("__c") != pl.col("__s"))
    for b in range(max(buckets, 1)):
        in_bucket = (pl.col("__khi") % buckets == b) if buckets > 1 else pl.lit(True)
        side = mine.filter(in_bucket)
        new_rows = side
        if buckets:
            stored = store.scan(kind).select(*_key_halves("_row_id", "__k"), *(theirs if part.keyed else ()))
            stored = stored.filter(in_bucket)
            if part.keyed:
                joined = side.select(*keys, pl.col(CONTENT_DIGEST_COLUMN).alias("__c")).join(stored, on=keys)
                found, suspects = pl.collect_all([joined.select(keys), joined.filter(suspect).select(keys)])
            else:
                found = side.select(keys).join(stored, on=keys, how="semi").collect()
            hits += found.height
            if found.height:
                hit_keys.append(found)
                new_rows = side.join(found.lazy(), on=keys, how="anti")
                if part.keyed and suspects.height:
                    clash = _stored_conflicts(
                        store, part, side, suspects, in_bucket=in_bucket, bucket_rows=-(-stored_rows // buckets)
                    )
                    n_conflicts += clash.height
                    if clash.height:
                        clash_keys.append(clash)
                        rows = (
                            side.join(clash.lazy(), on=keys, how="semi")
                            .select("_record", key)
                            .collect()
                            .with_columns(pl.lit(_STATUS_CONFLICT, pl.Int8).alias("_status"))
                        )
                        _conflicts_to_quarantine(rows, part, key, in_store=True)
        got = (
            new_rows.select(
                pl.len().alias("new"),
                pl.any_horizontal(flag_cols).sum().alias("flagged"),
                *(pl.col(f).sum().alias(f) for f in flag_cols),
            )
            .collect()
            .row(0, named=True)
        )
        counts = {k: counts[k] + int(got[k] or 0) for k in counts}
    repeats = final.filter(pl.col("_status") == _STATUS_ALREADY).select(pl.len()).collect().item()
    res.rows_stored = counts["new"]
    res.already_stored = int(repeats) + hits - n_conflicts
    res.flagged = counts["flagged"]
    res.flagged_by_flag = {f: counts[f] for f in flag_cols if counts[f]}
    # Keys of rows the store holds already (none on a first ingest): filtered out while streaming.
    stored_hits = pl.concat(hit_keys) if hit_keys else None
    if stored_hits is not None:  # rows this batch carried identical to stored ones: its claims on them
        same = stored_hits.join(pl.concat(clash_keys), on=keys, how="anti") if clash_keys else stored_hits
        part.claimed = same.select(
            pl.col("__khi").reinterpret(signed=True).alias("id_hi"),
            pl.col("__klo").reinterpret(signed=True).alias("id_lo"),
        )
    if res.rows_stored == 0:
        return
    _append_new_rows(store, prepared, part, res, stored_hits)


def _stored_conflicts(
    store: LogStore,
    part: _KindPart,
    side: pl.LazyFrame,
    suspects: pl.DataFrame,
    *,
    in_bucket: pl.Expr,
    bucket_rows: int,
) -> pl.DataFrame:
    """Keys (``__khi``/``__klo``) of keyed rows whose content differs from the stored row's.

    ``suspects`` are the found keys whose stored digest is missing or differs:
    the stored rows' digests are computed again from their columns, over the
    columns this input carries (the stored digest covers the columns of the
    input that stored the row, and a table written before digests has none).
    When the suspects are few next to the bucket's stored rows, the stored rows
    are read with a filter on their ``_row_id``, so that Parquet row groups
    without one skip decoding their other columns; else the bucket's stored
    rows are read in a stream and reduced to their digests.
    """
    keys = ["__khi", "__klo"]
    ours = side.select("_row_id", *keys, pl.col(CONTENT_DIGEST_COLUMN).alias("__c"))
    ours = ours.join(suspects.lazy(), on=keys, how="semi")
    stored = store.scan(part.kind)
    if suspects.height * _SPARSE_HITS < bucket_rows:
        ours_df = ours.collect()
        stored = stored.filter(pl.col("_row_id").is_in(ours_df.get_column("_row_id").implode()))
        ours = ours_df.lazy()
    theirs = (
        stored.select(*_key_halves("_row_id", "__k"), content_digest(part.content).alias("__s"))
        .filter(in_bucket)
        .collect()
    )
    return ours.join(theirs.lazy(), on=keys, how="inner").filter(pl.col("__c") != pl.col("__s")).select(keys).collect()


def _content_schema(kind: str, schema: Mapping[str, pl.DataType], present: Sequence[str]) -> dict[str, pl.DataType]:
    """The columns a content digest covers: the kind's canonical columns this input carries, names aside.

    A row restated by an export with fewer columns (an API window without the
    visitor's ISP, say) is an identical repeat when the columns it does carry agree.
    """
    return {c: schema[c] for c in column_names(kind) if c in schema and c in present and not c.endswith("_name")}


def _append_new_rows(
    store: LogStore, prepared: _Prepared, part: _KindPart, res: BatchResult, stored_hits: pl.DataFrame | None
) -> None:
    """Stream the part's new rows from scratch into one Delta commit carrying the batch metadata.

    The rows go from the scratch file through a lazy query (rows new to the
    store, in the stored types) into :func:`cfanalytics._delta.append_rows`.
    Every batch's values were validated against the kind's value model by the
    normaliser (:func:`cfanalytics.schemas.row_failures`); here required values
    are proven non-null by the written files' footers, and the stored model
    (internal columns too) runs on the first rows as a guard (a failure would be
    a bug, not bad input).
    """
    assert part.final is not None
    kind = part.kind
    extras = [c for c in part.extras if c in part.filled_extras]
    quarantined = _pending_quarantine(part)
    metadata = {
        f"{META_PREFIX}batch_id": res.batch_id,
        f"{META_PREFIX}kind": kind,
        f"{META_PREFIX}source": prepared.raw.name,
        f"{META_PREFIX}sha256": prepared.raw.sha256,
        f"{META_PREFIX}rows_read": str(res.rows_stored + res.already_stored + quarantined),
        f"{META_PREFIX}rows_stored": str(res.rows_stored),
        f"{META_PREFIX}already_stored": str(res.already_stored),
        f"{META_PREFIX}quarantined": str(quarantined),
        f"{META_PREFIX}flagged": str(res.flagged),
    }
    target = {**polars_schema(kind), **dict.fromkeys(extras, STR)}
    rows = scan_scratch(part.final)
    names = rows.collect_schema().names()
    if "_status" in names:
        rows = rows.filter(pl.col("_status") == _STATUS_NEW)
    if stored_hits is not None:  # rows the store holds already
        rows = rows.with_columns(_key_halves("_row_id", "__k")).join(
            stored_hits.lazy(), on=["__khi", "__klo"], how="anti"
        )
    rows = rows.select(
        pl.lit(res.batch_id, dtype).alias(c)
        if c == "_batch_id"
        else pl.col(c).cast(dtype)
        if c in names
        else pl.lit(None, dtype).alias(c)
        for c, dtype in target.items()
    )
    pandera_model(kind).validate(
        rows.head(ROW_GROUP_ROWS).collect()
    )  # the contract of stored rows (docs/contract.md §2)
    append_rows(
        store.table_root(kind),
        rows,
        metadata=metadata,
        required=[*column_names(kind, required_only=True), "_row_id", "_batch_id"],
        expected=res.rows_stored,
        label=f"{prepared.raw.name}: {kind}",
        before_commit=store.confirm_writer,
    )


def _fill_raw(raw: RawInput, frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """Give quarantined rows without raw text (``conflicting_key``) their raw record, read again from the input.

    Stored-to-be rows carry no copy of their raw record (it would double the
    scratch); the few that turn out to conflict are looked up by record number.
    """
    missing = {r for f in frames if f.height for r in f.filter(pl.col("raw").is_null()).get_column("_record").to_list()}
    if not missing:
        return frames
    found: dict[int, str] = {}
    for batch, _problems in raw.batches():
        found.update(raw_records(batch, missing))
        if len(found) == len(missing):
            break
    lookup = pl.DataFrame(
        {"_record": list(found), "__raw": list(found.values())}, schema={"_record": pl.Int64, "__raw": STR}
    )
    return [
        f.with_columns(pl.col("_record").cast(pl.Int64))
        .join(lookup, on="_record", how="left", maintain_order="left")
        .with_columns(pl.coalesce("raw", "__raw").alias("raw"))
        .drop("__raw")
        if f.height
        else f
        for f in frames
    ]


def _pending_quarantine(part: _KindPart) -> int:
    return sum(q.height for q in part.quarantine)


def _write_quarantine(store: LogStore, prepared: _Prepared, q: pl.DataFrame | None) -> pl.DataFrame:
    """Append quarantined records not stored before (a re-run writes nothing twice); the claims on the others."""
    from deltalake import CommitProperties, write_deltalake

    if q is None or q.height == 0:
        return pl.DataFrame(schema={c: t for c, t in CLAIMS_SCHEMA.items() if c != "claimed_at"})
    existing = (
        store.scan(QUARANTINE).select("_row_id").filter(pl.col("_row_id").is_in(q.get_column("_row_id").implode()))
    )
    known = set(existing.collect().to_series().to_list())
    new = q.filter(~pl.col("_row_id").is_in(list(known)))
    claimed = q.filter(pl.col("_row_id").is_in(list(known))).select(
        pl.lit(QUARANTINE).alias("table"), *id_halves(), "_batch_id"
    )
    if new.height == 0:
        return claimed
    metadata = {
        f"{META_PREFIX}batch_id": prepared.batch_prefix,
        f"{META_PREFIX}kind": QUARANTINE,
        f"{META_PREFIX}source": prepared.raw.name,
        f"{META_PREFIX}sha256": prepared.raw.sha256,
        f"{META_PREFIX}quarantined": str(new.height),
    }
    store.confirm_writer()
    write_deltalake(
        store.table_uri(QUARANTINE),
        new.select(list(quarantine_schema())).to_arrow().cast(arrow_schema(quarantine_schema())),
        mode="append",
        writer_properties=writer_properties(),
        commit_properties=CommitProperties(custom_metadata=metadata),
        post_commithook_properties=commit_hooks(),
        storage_options=store.storage_options,
    )
    return claimed


def _quarantine_rows(frames: list[pl.DataFrame], prepared: _Prepared, batch_id: str) -> pl.DataFrame:
    schema = quarantine_schema()
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=schema)
    q = pl.concat([f.select("_record", "reason", "detail", "raw", pl.col("kind").cast(STR)) for f in frames])
    q = q.sort("_record")
    ids = hash_texts(
        q.select(
            pl.concat_str(
                [
                    pl.lit(f"q1|{prepared.raw.sha256}|"),
                    pl.col("kind").fill_null(""),
                    pl.lit("|"),
                    pl.col("_record").cast(STR),
                    pl.lit("|"),
                    pl.col("reason"),
                ]
            )
        ).to_series()
    )
    return q.select(
        ids.alias("_row_id"),
        pl.lit(batch_id).alias("_batch_id"),
        pl.lit(prepared.raw.name).alias("source"),
        pl.lit(prepared.raw.sha256).alias("source_sha256"),
        pl.col("kind"),
        pl.col("_record").alias("record"),
        "reason",
        "detail",
        "raw",
        pl.lit(datetime.now(tz=UTC)).cast(schema["quarantined_at"]).alias("quarantined_at"),
    ).cast(dict(schema))


def _reason_counts(q: pl.DataFrame) -> dict[str, int]:
    if q.height == 0:
        return {}
    counts = q.group_by("reason").len().sort("reason")
    return dict(zip(counts.get_column("reason").to_list(), counts.get_column("len").to_list(), strict=True))


def _kindless_batch(prepared: _Prepared, q: pl.DataFrame | None = None, batch_id: str | None = None) -> BatchResult:
    """Records of an event-log file that belong to no kind (unknown event type, ragged rows)."""
    if q is None:
        q = (
            pl.concat([f.select("reason") for f in prepared.kindless_quarantine if f.height])
            if any(f.height for f in prepared.kindless_quarantine)
            else pl.DataFrame(schema={"reason": STR})
        )
    n = q.height
    return BatchResult(
        batch_id or f"{prepared.batch_prefix}-events",
        prepared.raw.name,
        "events",
        rows_read=n,
        quarantined=n,
        sha256=prepared.raw.sha256,
        quarantined_by_reason=_reason_counts(q),
    )


def _count_only(prepared: _Prepared, part: _KindPart) -> BatchResult:
    """Counts of a validated (not stored) part: in-input repeats count as already stored."""
    res = BatchResult(f"{prepared.batch_prefix}-{part.kind}", prepared.raw.name, part.kind, sha256=prepared.raw.sha256)
    if part.final is not None:
        flag_cols = flags(part.kind)
        c = (
            _final_frame(part)
            .select(
                (pl.col("_status") == _STATUS_NEW).sum().alias("new"),
                (pl.col("_status") == _STATUS_ALREADY).sum().alias("already"),
                (pl.col("_status") == _STATUS_NEW).and_(pl.any_horizontal(flag_cols)).sum().alias("flagged"),
            )
            .collect()
            .row(0, named=True)
        )
        res.rows_stored, res.already_stored, res.flagged = int(c["new"]), int(c["already"]), int(c["flagged"])
    q = (
        pl.concat([f.select("reason") for f in part.quarantine])
        if part.quarantine
        else pl.DataFrame(schema={"reason": STR})
    )
    res.quarantined = q.height
    res.quarantined_by_reason = _reason_counts(q)
    res.rows_read = res.rows_stored + res.already_stored + res.quarantined
    return res


# ------------------------------------------------------------------- helpers
def _known_extras(store: LogStore) -> dict[str, str]:
    """``norm_key → column`` of extra columns already in the store (first-seen spelling wins)."""
    known: dict[str, str] = {}
    for kind in KINDS:
        canon = {*polars_schema(kind), CONTENT_HASH_COLUMN}
        for name in store.scan(kind).collect_schema().names():
            if name not in canon:
                known.setdefault(norm_key(name), name)
    return known


def remove_dead_staging(folder: Path) -> None:
    """Remove scratch folders of ingests whose process is gone (killed runs leave them)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def _problem_frame(problems: list[RowProblem], kind: str | None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_record": [p.record for p in problems],
            "reason": [p.reason for p in problems],
            "detail": [p.detail for p in problems],
            "raw": [p.raw for p in problems],
            "kind": [kind] * len(problems),
        },
        schema={"_record": pl.Int64, "reason": STR, "detail": STR, "raw": STR, "kind": STR},
    )


def _progress_bar(raw: RawInput, enabled: bool) -> tqdm[Any] | None:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc=os.path.basename(raw.name), unit=" rows", unit_scale=True, leave=False, file=sys.stderr)


_DISK_FULL = "no space left on device"


def _disk_full(exc: BaseException) -> bool:
    """Whether an error says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk quota exceeded" in text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
