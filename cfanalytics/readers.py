"""Readers: turn an input file (or frame) into Arrow record batches of raw strings.

One reader per format: CSV, NDJSON, JSON (a list of records or the API
envelope ``{"items": [...], "totals": {...}}``), Parquet, Excel ``.xlsx`` and
in-memory frames, each optionally gzip-compressed. A reader does not interpret
column names; it yields every value as the text found in the file, plus a
``_record`` column holding the record number used in messages:

- CSV: the record number, header = 1 (quoted newlines do not count, blank lines do not count);
- NDJSON: the line number (1-based, blank lines counted);
- JSON list / envelope: the item index (1-based);
- Parquet and frames: the row index (1-based);
- xlsx: the sheet row, header = 1.

Memory: CSV (pyarrow's streaming reader, 4 MB blocks, retried with a
16 MB block only for a record that does not fit), NDJSON (line by line) and
Parquet (row groups) stream in bounded memory. A CSV record, an NDJSON line
or the text of a JSON document's item larger than :data:`MAX_RECORD_BYTES`
(16 MB) fails the file with one line naming the record, before it is
stored: a log record is a few kB, and a bigger one is a broken file (an
unbalanced quote) or not a log. A JSON document is parsed whole, and an
xlsx workbook is read whole by openpyxl (its shared strings are held in
memory); gzip-compressed Parquet and xlsx are first decompressed to a
temporary file. The sha256 of an input file is computed by a background thread
while the file is scanned and read; :attr:`RawInput.sha256` waits for it.

Record counts are vouched for or the file fails: a CSV quote that is never
closed (it would swallow the rest of the file into one value) or a ragged
record spanning lines that are whole records on their own (an unbalanced quote
in the middle), and a workbook with more than one sheet holding data, are each
one-line errors; nothing of the file is stored.

Odd files: a pipe (a FIFO, ``/dev/fd/N`` of a process substitution) is copied
to a temporary file and read from there; when nothing is written to it for
``CFANALYTICS_PIPE_TIMEOUT`` seconds (default 10) the input fails with one line
instead of waiting forever. Devices and sockets are refused. File names are
shown with :func:`display_name`: redacted (a presigned URL's signature) and
with bytes that are not UTF-8 escaped, in every message and record of the
source.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "postbacks.csv"
>>> _ = path.write_text("Postback ID;Click ID;Status Code\\np1;c1;200\\np2;c2;\\n")
>>> raw = open_input(path)
>>> raw.format, raw.delimiter, raw.columns
('csv', ';', ['Postback ID', 'Click ID', 'Status Code'])
>>> [batch.to_pylist() for batch, problems in raw.batches()][0][1]
{'Postback ID': 'p2', 'Click ID': 'c2', 'Status Code': '', '_record': 3}
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import select
import shutil
import signal
import stat
import struct
import tempfile
import threading
import warnings
import weakref
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cfanalytics.exceptions import InputError
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    import polars as pl

RECORD: Final = "_record"
RAW_LIMIT: Final = 10_000
#: The largest CSV record or NDJSON line read (bytes); a bigger one fails the file with one line.
MAX_RECORD_BYTES: Final = 16 << 20
DELIMITERS: Final[tuple[str, ...]] = (",", ";", "\t", "|")

_CHUNK: Final = 1 << 20
_HASH_CHUNK: Final = 1 << 20
_HEAD: Final = 64 * 1024
_BLOCK: Final = 4 << 20  # pyarrow reads up to 32 blocks ahead: ~128 MB
_MAX_BLOCK: Final = MAX_RECORD_BYTES
_PIPE_TIMEOUT: Final = 10.0
_DEFAULT_BATCH: Final = 65_536
_BOM: Final = codecs.BOM_UTF8
_EXTENSIONS: Final[dict[str, str]] = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx",
}  # fmt: skip
_NOT_A_LOG: Final = "not a CSV, JSON, NDJSON, Parquet or xlsx file"
_OLE2: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CP1252_HOLES: Final = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UTC_NAMES: Final = frozenset({"UTC", "Etc/UTC", "Z", "+00:00", "utc"})


def arrow_pool() -> pa.MemoryPool:
    """The Arrow memory pool of the ingest's readers: jemalloc where pyarrow has it, else the system's.

    pyarrow's default pool (mimalloc) hands freed pages back to the system within
    milliseconds, so every batch of a streamed read faulted in (and zeroed) fresh
    pages: about a tenth of the CPU time of an ingest went to the kernel doing that.

    >>> arrow_pool().backend_name in ("jemalloc", "system")
    True
    """
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return pa.system_memory_pool()


@dataclass
class RowProblem:
    """One record that a reader skipped, and why.

    ``reason`` is ``ragged_row``, ``repeated_header`` or ``invalid_record``;
    ``raw`` is the record's text, truncated to 10,000 characters.
    """

    record: int
    reason: str
    detail: str
    raw: str


Batches = Iterator[tuple[pa.RecordBatch, list[RowProblem]]]


class RawInput:
    """An opened input: what it is, its raw column names, and its batches."""

    def __init__(
        self,
        name: str,
        format: str,
        columns: list[str],
        sha256: str | _FileDigest,
        produce: Callable[[], Batches],
        *,
        compression: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
    ) -> None:
        self.name = name
        self.format = format
        self.compression = compression
        self.encoding = encoding
        self.delimiter = delimiter
        self._sha256 = sha256
        self.columns = columns
        self._produce = produce
        if isinstance(sha256, _FileDigest):
            weakref.finalize(self, sha256.cancel)  # stop hashing an input nobody holds any more

    @property
    def sha256(self) -> str:
        """Hex sha256 of the input's bytes as stored (a frame: of its Arrow IPC stream).

        A file is hashed by a background thread started by :func:`open_input`;
        this waits for it. Raises :class:`InputError` (one line naming the file)
        when the file could not be read or changed while it was being read.
        """
        if isinstance(self._sha256, _FileDigest):
            self._sha256 = self._sha256.result()
        return self._sha256

    def __repr__(self) -> str:
        return f"RawInput({self.name!r}, format={self.format!r}, columns={len(self.columns)})"

    def batches(self) -> Batches:
        """Yield ``(batch, problems)`` from the start of the input.

        Each batch has exactly :attr:`columns` (all ``pa.string()``) plus
        ``_record`` (``pa.int64()``), in file order; the problems are those
        found while producing it. May be called more than once.
        """
        with _errors(self.name):
            yield from self._produce()


# --------------------------------------------------------------------------- entry points


def open_input(path: str | os.PathLike[str], *, batch_rows: int = _DEFAULT_BATCH) -> RawInput:
    """Open a file, detect its format, compression and encoding, and read its header.

    Raises :class:`InputError` (one line, ``"<path>: <problem>"``) when the
    file cannot be read at all.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    name = display_name(path)
    p = Path(os.fsdecode(path))
    with _errors(name):
        try:
            st = p.stat()
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name}: is a directory, not a file")
        temporary: Path | None = None
        if stat.S_ISFIFO(st.st_mode):
            temporary = p = _spool_pipe(p, name)
        elif not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name}: is a device or socket, not a file")
        elif not _encodable(str(p)):
            temporary = p = _alias(p)  # Arrow takes only UTF-8 paths: read it through a link
        try:
            raw = _open_file(p, name, batch_rows)
        except BaseException:
            if temporary is not None:
                _remove_temporary(temporary)
            raise
        if temporary is not None:
            weakref.finalize(raw, _remove_temporary, temporary)
        return raw


def _encodable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _alias(p: Path) -> Path:
    """A symbolic link with a UTF-8 name, in a new temporary folder, to a file whose name is not UTF-8."""
    folder = Path(tempfile.mkdtemp(prefix="cfanalytics-input-"))
    link = folder / ("input" + "".join(c for c in p.suffixes[-2:] if _encodable(c)))
    link.symlink_to(p.absolute())
    return link


def _remove_temporary(path: Path) -> None:
    path.unlink(missing_ok=True)
    if path.parent.name.startswith("cfanalytics-input-"):
        shutil.rmtree(path.parent, ignore_errors=True)


def _open_file(p: Path, name: str, batch_rows: int) -> RawInput:
    fmt, gz = _detect(p, name)
    sha = _FileDigest(p, name)  # hashed in the background, overlapping the scan and the reading
    try:
        if fmt in ("parquet", "xlsx"):
            return _open_binary(p, name, fmt, gz, sha, batch_rows=batch_rows)
        encoding, odd_quotes = _sniff_encoding(p, gz)
        src = _Source(p, gz, encoding, odd_quotes)
        if fmt == "csv":
            return _open_csv(src, name, sha, batch_rows)
        if fmt == "ndjson":
            return _open_ndjson(src, name, sha, batch_rows)
        return _open_json(src, name, sha, batch_rows)
    except BaseException:
        sha.cancel()
        raise


def display_name(path: str | bytes | os.PathLike[Any]) -> str:
    """A file name as shown in messages and recorded as a source: redacted, non-UTF-8 bytes escaped.

    >>> display_name("exports/pb.csv?X-Amz-Signature=0f3c9a77"), display_name(b"v\\xff.csv")
    ('exports/pb.csv?X-Amz-Signature=***', 'v\\\\xff.csv')
    """
    raw = os.fsencode(path)
    return redact(raw.decode("utf-8", "backslashreplace")) or ""


def _spool_pipe(p: Path, name: str) -> Path:
    """Copy a pipe to a temporary file (its bytes can be read only once); fail when it stays silent."""
    timeout = _pipe_timeout()
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # never blocks, even with no writer yet
    # SIGTERM / Ctrl-C held back until the copy's name is known, so their unwinding always removes it
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        out_fd, tmp = tempfile.mkstemp(prefix="cfanalytics-pipe-", suffix=".input")
        target = Path(tmp)
    except BaseException:
        os.close(fd)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    try:
        with os.fdopen(out_fd, "wb") as out:
            while True:
                ready, _, _ = select.select([fd], [], [], timeout)
                if not ready:
                    what = "stopped sending" if out.tell() else "with nothing written to it"
                    raise InputError(
                        f"{name}: a pipe {what} for {timeout:g} s (CFANALYTICS_PIPE_TIMEOUT); is its writer running?"
                    )
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    break  # every writer closed it
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return target


def _pipe_timeout() -> float:
    value = os.environ.get("CFANALYTICS_PIPE_TIMEOUT", "")
    try:
        seconds = float(value) if value else _PIPE_TIMEOUT
    except ValueError:
        return _PIPE_TIMEOUT
    return seconds if seconds > 0 else _PIPE_TIMEOUT


def frame_input(data: pl.DataFrame | pa.Table, name: str = "<frame>") -> RawInput:
    """Wrap an in-memory Polars DataFrame or Arrow table as a :class:`RawInput`."""
    import polars as pl

    if isinstance(data, pl.DataFrame):
        try:
            table = data.to_arrow()
        except Exception as e:  # a column Arrow cannot hold (e.g. pl.Object)
            raise InputError(f"{name}: cannot convert the frame to Arrow ({_one_line(e)})") from None
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise InputError(f"{name}: expected a Polars DataFrame or an Arrow table, got {type(data).__name__}")
    digest = hashlib.sha256()
    with pa.ipc.new_stream(pa.PythonFile(_HashSink(digest), mode="w"), table.schema) as writer:
        writer.write_table(table)
    columns = _unique(table.column_names)

    def produce() -> Batches:
        start = 1
        for batch in table.to_batches(max_chunksize=_DEFAULT_BATCH):
            yield _as_text(batch, columns, start), []
            start += batch.num_rows

    return RawInput(name, "frame", columns, digest.hexdigest(), produce)


# --------------------------------------------------------------------------- detection


@contextmanager
def _errors(name: str) -> Iterator[None]:
    """Turn library errors raised while reading ``name`` into one-line :class:`InputError`."""
    try:
        yield
    except InputError:
        raise
    except EOFError:
        raise InputError(f"{name}: truncated gzip stream") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"{name}: corrupt gzip stream ({_one_line(e)})") from None
    except RecursionError:
        raise InputError(f"{name}: {_TOO_DEEP}") from None
    except MemoryError:
        raise InputError(f"{name}: not enough memory to read it") from None
    except Exception as e:  # pyarrow, OSError, csv.Error, openpyxl's own: one line, never a traceback
        msg = _one_line(e)
        if "Truncated compressed stream" in msg:
            msg = "truncated gzip stream"
        elif isinstance(e, OSError) and e.errno is not None:
            msg = os.strerror(e.errno)  # the OS message names the path again, unredacted
        raise InputError(f"{name}: {msg}") from None


_TOO_DEEP: Final = "JSON nested too deeply to read (more than about 900 levels)"


def _one_line(e: BaseException) -> str:
    """The first line of an exception's message, redacted."""
    lines = str(e).strip().splitlines()
    return redact(lines[0]) or "" if lines else type(e).__name__


def _detect(p: Path, name: str) -> tuple[str, bool]:
    """Return ``(format, gzipped)``: magic bytes first, then content, then the extension."""
    lower = name.lower()
    ext_fmt = _EXTENSIONS.get(os.path.splitext(lower.removesuffix(".gz"))[1])
    with p.open("rb") as f:
        magic = f.read(4)
    if not magic:
        raise InputError(f"{name}: empty file")
    gz = magic[:2] == b"\x1f\x8b"
    with _open_stream(p, gz) as f:
        head = f.read(_HEAD)
    if not head:
        raise InputError(f"{name}: empty file")
    if head.startswith(b"PAR1"):
        return "parquet", gz
    if head.startswith(b"PK\x03\x04"):
        return _workbook_or_zip(p, gz, name), gz
    if head.startswith(_OLE2):
        raise InputError(f"{name}: an old Excel .xls workbook (or another OLE2 file): save it as .xlsx or CSV")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(f"{name}: UTF-16 text is not supported; save it as UTF-8")
    if _looks_binary(head):
        raise InputError(f"{name}: {_NOT_A_LOG}")
    text = head.removeprefix(_BOM).decode("utf-8", "replace").lstrip()
    if not text:
        raise InputError(f"{name}: empty file")
    json_ext = ext_fmt in ("json", "ndjson")
    first_line = text.split("\n", 1)[0].strip()
    if ext_fmt == "ndjson" or (text[0] != "{" and (text[0] != "[" or _is_json(first_line)) and _object_lines(text)):
        return "ndjson", gz  # NDJSON, possibly with a junk first line
    after = text[1:].lstrip()[:1]
    if text[0] == "[" and (json_ext or after in ("{", "]")):
        return "json", gz
    if text[0] == "{" and (json_ext or after in ('"', "}")):
        return _json_or_ndjson(p, gz, ext_fmt), gz
    if json_ext and len(head) < _HEAD and _is_json(text):
        return "json", gz  # a bare number or string: reported as the wrong shape
    return "csv", gz


def _workbook_or_zip(p: Path, gz: bool, name: str) -> str:
    """``"xlsx"`` for a zip holding a workbook (whatever its file name says); other zip files fail."""
    with _open_stream(p, gz) as f:
        data: Any = f if not gz else io.BytesIO(f.read())
        try:
            with zipfile.ZipFile(data) as z:
                names = set(z.namelist())
        except zipfile.BadZipFile:
            return "xlsx"  # damaged: the workbook reader says so
    if "content.xml" in names and "mimetype" in names:
        raise InputError(f"{name}: an OpenDocument spreadsheet: save it as .xlsx or CSV")
    if "xl/workbook.xml" not in names:
        raise InputError(f"{name}: a zip archive, not an xlsx workbook or a log file; unzip it first")
    return "xlsx"


def _object_lines(text: str) -> bool:
    """Two or more lines of which one of the first few is a complete JSON object (NDJSON with junk first)."""
    lines = [line.strip() for line in text.splitlines()[:6] if line.strip()]
    return len(lines) >= 2 and any(line.startswith("{") and _is_json(line) for line in lines[1:5])


def _looks_binary(head: bytes) -> bool:
    """Control characters in the first line, or in more than a tenth of the head."""
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0]
    return bool(_CONTROL.search(first)) or len(_CONTROL.findall(head)) * 10 > len(head)


def _json_or_ndjson(p: Path, gz: bool, ext_fmt: str | None) -> str:
    """Tell NDJSON (a complete object per line) from a JSON document starting with ``{``."""
    lines: list[str] = []
    with _open_stream(p, gz) as f:
        while raw := f.readline(MAX_RECORD_BYTES + 1):
            line = raw.removeprefix(_BOM).decode("utf-8", "replace").strip()
            if len(raw) > MAX_RECORD_BYTES:
                return ext_fmt if ext_fmt in ("json", "ndjson") else "json"  # too long: fails when read
            if line:
                lines.append(line)
                if len(lines) == 2:
                    break
    objects = [_loads_object(line) for line in lines]
    first = objects[0]
    if first is not None:
        single = len(lines) == 1
        return "json" if single and "items" in first else "ndjson"
    if ext_fmt == "ndjson" or (len(objects) > 1 and objects[1] is not None):
        return "ndjson"
    return "json"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except RecursionError:
        return True  # JSON, only too deep: reported when it is read
    except ValueError:
        return False
    return True


def _loads_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- byte sources


class _HashSink(io.RawIOBase):
    """A writable sink that only hashes what is written (for Arrow IPC bytes)."""

    def __init__(self, digest: Any) -> None:
        super().__init__()
        self._digest = digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._digest.update(data)
        return len(memoryview(data))


def _open_stream(p: Path, gz: bool) -> IO[bytes]:
    return gzip.open(p, "rb") if gz else p.open("rb")


class _FileDigest:
    """The sha256 of a file's bytes as stored, computed by a background thread.

    Hashing releases the GIL, so it overlaps the encoding scan and the parsing;
    :meth:`result` waits for it. A file whose size or modification time changes
    while it is hashed, or that cannot be read, gives a one-line :class:`InputError`.
    """

    def __init__(self, path: Path, name: str) -> None:
        self._name = name
        self._digest: str | None = None
        self._error: str | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path,), name=f"sha256 {name}", daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            digest = hashlib.sha256()
            buffer = bytearray(_HASH_CHUNK)
            view = memoryview(buffer)
            hashed = 0
            with path.open("rb", buffering=0) as f:
                before = os.fstat(f.fileno())
                while (n := f.readinto(buffer)) and not self._cancelled.is_set():
                    digest.update(view[:n])
                    hashed += n
                after = os.fstat(f.fileno())
            if self._cancelled.is_set():
                self._error = f"{self._name}: reading was abandoned"
            elif stat.S_ISREG(before.st_mode) and (hashed != before.st_size or _stamp(after) != _stamp(before)):
                self._error = f"{self._name}: the file changed while it was being read"
            else:
                self._digest = digest.hexdigest()
        except Exception as e:  # reported by result(), in the thread that asks
            self._error = f"{self._name}: {_one_line(e)}"

    def cancel(self) -> None:
        """Stop hashing (the input failed to open or was dropped)."""
        self._cancelled.set()

    def result(self) -> str:
        """The hex digest, once the thread has hashed the whole file."""
        self._thread.join()
        if self._digest is None:
            raise InputError(self._error or f"{self._name}: cannot compute sha256")
        return self._digest


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def _sniff_encoding(p: Path, gz: bool) -> tuple[str, bool]:
    """The encoding, and whether the stream holds an odd number of ``"`` (a quote may be left open).

    UTF-8 (``utf-8-sig`` with a BOM) if every byte decodes, else cp1252, else
    latin-1 when the file holds a byte that cp1252 leaves undefined. The whole
    (decompressed) stream is read, so a truncated gzip fails here; runs of ASCII
    skip the decoder, and the holes are searched only once UTF-8 failed.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    bom: bool | None = None
    utf8 = True
    quotes = 0
    with _open_stream(p, gz) as f:
        while chunk := f.read(_CHUNK):
            quotes += chunk.count(b'"')
            if bom is None:
                bom = chunk.startswith(_BOM)
            if not utf8 or (chunk.isascii() and not decoder.getstate()[0]):
                continue
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    odd = quotes % 2 == 1
    if not utf8:
        return _legacy_encoding(p, gz), odd
    return ("utf-8-sig" if bom else "utf-8"), odd


def _legacy_encoding(p: Path, gz: bool) -> str:
    """cp1252, or latin-1 if a byte anywhere in the stream is one of cp1252's holes."""
    holes = False
    with _open_stream(p, gz) as f:
        while chunk := f.read(_CHUNK):
            holes = holes or _CP1252_HOLES.search(chunk) is not None
    return "latin-1" if holes else "cp1252"


@dataclass(frozen=True)
class _Source:
    """A text file to re-read: path, gzip flag and detected encoding."""

    path: Path
    gz: bool
    encoding: str
    odd_quotes: bool = False

    def open(self) -> IO[bytes]:
        return _open_stream(self.path, self.gz)

    def lines(self, name: str) -> Iterator[tuple[int, str]]:
        """``(line number, text)`` of each non-blank line, end of line removed.

        A line longer than :data:`MAX_RECORD_BYTES` fails with one line, before it is held whole.
        """
        encoding = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        with self.open() as f:
            number = 0
            while raw := f.readline(MAX_RECORD_BYTES + 1):
                number += 1
                if len(raw) > MAX_RECORD_BYTES:
                    raise InputError(f"{name}: line {number}: {_too_large()}")
                text = raw.decode(encoding).rstrip("\r\n")
                if number == 1:
                    text = text.removeprefix("\ufeff")
                if text.strip():
                    yield number, text


# --------------------------------------------------------------------------- CSV


def _open_csv(src: _Source, name: str, sha: _FileDigest, batch_rows: int) -> RawInput:
    with src.open() as f:
        head = f.read(_HEAD).decode(src.encoding, "ignore").lstrip("\r\n")
    delimiter, header_text = _sniff_delimiter(head, prefer_tab=name.lower().removesuffix(".gz").endswith(".tsv"))
    if src.odd_quotes and (open_quote := _unclosed_quote(src, delimiter)) is not None:
        line, after = open_quote
        rest = f", so the {after} line{'' if after == 1 else 's'} after it would be one value" if after else ""
        raise InputError(
            f"{name}: line {line}: a quoted value opens there and is never closed{rest} (unbalanced quote); "
            "nothing of the file was stored"
        )
    with src.open() as f, io.TextIOWrapper(f, encoding=src.encoding, newline="") as text:
        header = next((row for row in csv.reader(text, delimiter=delimiter) if row), None)
    if header is None:
        raise InputError(f"{name}: empty file")
    columns = _unique(header)
    reader = _CsvReader(src, name, columns, header, header_text[:RAW_LIMIT], delimiter, batch_rows)
    return RawInput(
        name, "csv", columns, sha, reader.batches,
        compression="gzip" if src.gz else None, encoding=src.encoding, delimiter=delimiter,
    )  # fmt: skip


def _unclosed_quote(src: _Source, delimiter: str) -> tuple[int, int] | None:
    """``(line, lines after it)`` of a quoted value that is still open at the end of the file, else None.

    The quoting rules of the CSV parser: a ``"`` opens a quoted value only as the
    first character of a field; inside one, ``""`` is a quote and a lone ``"``
    closes it.
    """
    encoding = "utf-8" if src.encoding == "utf-8-sig" else src.encoding
    field_quote = re.compile(f'[{re.escape(delimiter)}\r\n]"')
    starts = (delimiter, "\r", "\n", None)
    in_quote = pending = False
    line = opened = 1
    prev: str | None = None
    with src.open() as f, io.TextIOWrapper(f, encoding=encoding, newline="") as text:
        while chunk := text.read(_CHUNK):
            i, n = 0, len(chunk)
            while i < n:
                if pending:  # a quote inside a quoted value: escaped ("") or the end of the value
                    pending = False
                    if chunk[i] == '"':
                        i += 1
                        continue
                    in_quote = False
                if in_quote:
                    j = chunk.find('"', i)
                    end = n if j < 0 else j
                    line += chunk.count("\n", i, end)
                    i, pending = (n, False) if j < 0 else (j + 1, True)
                    continue
                if i == 0 and chunk[0] == '"' and prev in starts:
                    j = 0
                else:
                    m = field_quote.search(chunk, i)
                    if m is None:
                        line += chunk.count("\n", i)
                        break
                    j = m.start() + 1
                line += chunk.count("\n", i, j)
                in_quote, opened, i = True, line, j + 1
            prev = chunk[-1]
    if in_quote and not pending:
        return opened, line - opened - (prev == "\n")  # a final newline ends the last line, starts none
    return None


def _sniff_delimiter(text: str, *, prefer_tab: bool) -> tuple[str, str]:
    """The most frequent of ``, ; \\t |`` outside quotes in the first record, and that record's text."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    end = len(text)
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            if ch in "\r\n":
                end = i
                break
            if ch in counts:
                counts[ch] += 1
    if prefer_tab and counts["\t"]:
        return "\t", text[:end]
    best = max(DELIMITERS, key=counts.__getitem__)
    return (best if counts[best] else ","), text[:end]


@dataclass(frozen=True)
class _CsvReader:
    """Streams a CSV through pyarrow, numbering records and skipping ragged and repeated-header rows."""

    src: _Source
    name: str
    columns: list[str]
    header: list[str]
    header_text: str
    delimiter: str
    batch_rows: int

    def batches(self) -> Batches:
        """Read from the start; on a record larger than the block, retry with a bigger block."""
        done = 1  # records up to here were delivered
        block = _BLOCK
        while True:
            try:
                for batch, problems in self._read(block, done):
                    yield batch, problems
                    last = batch.column(RECORD)[-1].as_py() if batch.num_rows else 0
                    done = max(done, last, *(p.record for p in problems))
                return
            except pa.ArrowInvalid as e:
                if "straddl" not in str(e):
                    raise
                if block >= _MAX_BLOCK:
                    raise InputError(f"{self.name}: a record after record {done} is {_too_large(_MAX_BLOCK)}") from None
                block *= 4

    def _read(self, block: int, done: int) -> Batches:
        skipped: deque[int] = deque()
        found: dict[int, RowProblem] = {}
        swallowed: list[int] = []

        def on_invalid(row: Any) -> str:
            skipped.append(row.number)
            if row.number > done:
                detail = _fields(row.actual_columns, row.expected_columns)
                found[row.number] = RowProblem(row.number, "ragged_row", detail, row.text[:RAW_LIMIT])
                if not swallowed:
                    lines = _whole_records(row.text, self.delimiter, row.expected_columns)
                    if lines:
                        swallowed.extend((row.number, lines))
            return "skip"

        encoding = "utf8" if self.src.encoding.startswith("utf-8") else self.src.encoding
        # use_threads=True would keep the row order, but the invalid-row handler then gets no
        # row number (``row.number`` is None), and ragged rows could not be numbered.
        read_options = pacsv.ReadOptions(
            column_names=self.columns, use_threads=False, block_size=block, encoding=encoding
        )
        parse_options = pacsv.ParseOptions(
            delimiter=self.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        )
        convert_options = pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            # The text is valid UTF-8 already: _sniff_encoding decoded the whole stream as UTF-8, or
            # pyarrow transcodes it from cp1252 / latin-1 (a file that changes meanwhile fails its sha256).
            check_utf8=False,
        )
        pool = arrow_pool()
        source: Any = pa.OSFile(str(self.src.path), "r", memory_pool=pool)
        if self.src.gz:
            source = pa.CompressedInputStream(source, "gzip")
        next_record = 1
        with source, pacsv.open_csv(source, read_options, parse_options, convert_options, memory_pool=pool) as reader:
            for batch in reader:
                if swallowed:
                    raise self._swallowed(*swallowed)
                records, used = _number(next_record, batch.num_rows, skipped)
                next_record = (records[-1].as_py() + 1) if len(records) else next_record
                problems = [found.pop(r) for r in used if r in found]
                table = batch.append_column(RECORD, records)
                table, repeated = self._drop_headers(table, done)
                if (merged := self._merged_records(table)) is not None:
                    raise self._swallowed(*merged)
                yield from _split(table, sorted(problems + repeated, key=lambda p: p.record), self.batch_rows)
        if swallowed:
            raise self._swallowed(*swallowed)
        rest = [found.pop(r) for r in skipped if r in found]
        if rest:
            yield _empty(self.columns), rest

    def _merged_records(self, batch: pa.RecordBatch) -> tuple[int, int] | None:
        """``(record, lines)`` of a record whose quoted value holds whole records (a quote closed too late)."""
        expected = len(self.columns)
        if expected < 3 or not batch.num_rows:
            return None
        d = {"\t": "\\t", "|": "\\|"}.get(self.delimiter, self.delimiter)
        # a line after a line break holding exactly a record's delimiters (RE2, vectorised)
        whole_line = f"\\n(?:[^{d}\\n]*{d}){{{expected - 1}}}[^{d}\\n]*(?:\\n|$)"
        for i in range(expected):
            column = batch.column(i)
            if not _may_hold_newline(column):
                continue  # no line break in the column's text at all (a byte search of its data buffer)
            if not pc.any(pc.match_substring(column, "\n")).as_py():
                continue  # no line break in the column: the pattern cannot match (a plain search is far cheaper)
            mask = pc.match_substring_regex(column, whole_line)
            if not pc.any(mask).as_py():
                continue
            value = column.filter(mask)[0].as_py()
            record = batch.column(RECORD).filter(mask)[0].as_py()
            return record, _whole_records(value, self.delimiter, expected)
        return None

    def _swallowed(self, record: int, lines: int) -> InputError:
        return InputError(
            f"{self.name}: record {record} spans {lines + 1} lines of which {lines} "
            f"{'looks like a record of its own' if lines == 1 else 'look like records of their own'} "
            "(an unbalanced quote?); nothing of the file was stored"
        )

    def _drop_headers(self, batch: pa.RecordBatch, done: int) -> tuple[pa.RecordBatch, list[RowProblem]]:
        """Drop the header, rows already delivered, and records equal to the header (reported)."""
        records = batch.column(RECORD)
        keep = pc.greater(records, max(done, 1))
        name = self.header[0]  # a header repeated by concatenating two exports keeps its BOM
        spellings = ["\ufeff" + name] if name.startswith("\ufeff") else ["\ufeff" + name, name]
        same = pc.is_in(batch.column(0), value_set=pa.array(spellings, pa.string()))
        if pc.any(same).as_py():
            for i, value in enumerate(self.header[1:], 1):
                same = pc.and_(same, pc.equal(batch.column(i), value))
            repeats = pc.and_(same, keep)
            problems = [
                RowProblem(r, "repeated_header", "record repeats the header", self.header_text)
                for r in records.filter(repeats).to_pylist()
            ]
            keep = pc.and_(keep, pc.invert(same))
        else:
            problems = []
        if pc.all(keep).as_py() is not False:
            return batch, problems
        return batch.filter(keep), problems


def _may_hold_newline(column: pa.Array) -> bool:
    """False when no value of a string column can hold a line break: its data buffer has no ``\\n`` byte.

    A byte search of the buffer (memchr speed) rules out most columns; the buffer
    of a slice covers more than its values, so True only means "look closer".

    >>> _may_hold_newline(pa.array(["a", "b"])), _may_hold_newline(pa.array(["a", "b\\nc"]))
    (False, True)
    """
    buffers = column.buffers()
    data = buffers[2] if len(buffers) > 2 else None
    return data is not None and memoryview(data).tobytes().find(b"\n") >= 0


def _whole_records(text: str, delimiter: str, expected: int) -> int:
    """How many continuation lines of a multi-line record have exactly a record's fields on their own."""
    if expected < 2 or "\n" not in text:
        return 0
    return sum(1 for line in text.split("\n")[1:] if line.count(delimiter) == expected - 1)


def _fields(actual: int, expected: int) -> str:
    return f"{actual} field{'' if actual == 1 else 's'}, expected {expected}"


def _number(first: int, n: int, skipped: deque[int]) -> tuple[pa.Array, list[int]]:
    """Record numbers (``int64``) of ``n`` rows starting at ``first``, jumping over skipped records (consumed)."""
    end = first + n - 1
    used: list[int] = []
    while n and skipped and skipped[0] <= end:
        used.append(skipped.popleft())
        end += 1
    numbers = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), end - first + 1), start=first - 1)
    if used:
        numbers = numbers.filter(pc.invert(pc.is_in(numbers, value_set=pa.array(used, pa.int64()))))
    return numbers, used


def _split(batch: pa.RecordBatch, problems: list[RowProblem], size: int) -> Batches:
    """Slice a batch into batches of at most ``size`` rows, each with the problems up to its last record."""
    if batch.num_rows <= size:
        if batch.num_rows or problems:
            yield batch, problems
        return
    pending = deque(problems)
    for offset in range(0, batch.num_rows, size):
        part = batch.slice(offset, size)
        last = part.column(RECORD)[-1].as_py()
        mine: list[RowProblem] = []
        while pending and (pending[0].record <= last or offset + size >= batch.num_rows):
            mine.append(pending.popleft())
        yield part, mine


def _empty(columns: list[str]) -> pa.RecordBatch:
    arrays = [pa.array([], pa.string()) for _ in columns] + [pa.array([], pa.int64())]
    return pa.RecordBatch.from_arrays(arrays, names=[*columns, RECORD])


# --------------------------------------------------------------------------- NDJSON and JSON


def _too_large(limit: int = MAX_RECORD_BYTES) -> str:
    return f"larger than {limit >> 20} MB, the largest record read (a log record is a few kB)"


def _open_ndjson(src: _Source, name: str, sha: _FileDigest, batch_rows: int) -> RawInput:
    keys: dict[str, None] = {}
    for _, text in src.lines(name):
        obj = _loads_object(text)
        if obj is not None:
            keys.update(dict.fromkeys(obj))
    key_list = list(keys)
    columns = _unique(key_list)

    def produce() -> Batches:
        return _object_batches(((n, _ndjson_item(t), t) for n, t in src.lines(name)), key_list, columns, batch_rows)

    return RawInput(
        name, "ndjson", columns, sha, produce, compression="gzip" if src.gz else None, encoding=src.encoding
    )


def _ndjson_item(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return _Invalid(_TOO_DEEP)
    except ValueError as e:
        return _Invalid(f"not valid JSON: {_one_line(e)}")


@dataclass(frozen=True)
class _Invalid:
    detail: str


def _open_json(src: _Source, name: str, sha: _FileDigest, batch_rows: int) -> RawInput:
    items = _json_items(src, name)
    keys: dict[str, None] = {}
    for index, item in enumerate(items, 1):
        if isinstance(item, dict):
            keys.update(dict.fromkeys(item))
            if sum(len(v) for v in item.values() if isinstance(v, str)) > MAX_RECORD_BYTES:
                raise InputError(f"{name}: record {index}: {_too_large()}")
    key_list = list(keys)
    columns = _unique(key_list)
    del items

    def produce() -> Batches:
        numbered = ((i, item, None) for i, item in enumerate(_json_items(src, name), 1))
        return _object_batches(numbered, key_list, columns, batch_rows)

    return RawInput(name, "json", columns, sha, produce, compression="gzip" if src.gz else None, encoding=src.encoding)


def _json_items(src: _Source, name: str) -> list[Any]:
    """Parse a whole JSON document: a list of records, ``{"items": [...]}``, or a single record."""
    with src.open() as f:
        text = f.read().decode(src.encoding)
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InputError(f"{name}: {_TOO_DEEP}") from None
    except ValueError as e:
        raise InputError(f"{name}: invalid JSON: {_one_line(e)}") from None
    del text
    shape = 'JSON must be a list of records or {"items": [...]}'
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if "items" in doc:
            if isinstance(doc["items"], list):
                return doc["items"]
            raise InputError(f'{name}: {shape}, got "items" holding {_json_kind(doc["items"])}')
        if any(isinstance(v, list) and v and isinstance(v[0], dict) for v in doc.values()):
            raise InputError(f'{name}: {shape}, got an object without "items" that holds a list of records')
        return [doc]
    raise InputError(f"{name}: {shape}, got {_json_kind(doc)}")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _object_batches(
    items: Iterable[tuple[int, Any, str | None]], keys: list[str], columns: list[str], batch_rows: int
) -> Batches:
    """Batch ``(record, value, raw text)`` triples; values that are not objects become problems."""
    rows: list[dict[str, Any]] = []
    records: list[int] = []
    problems: list[RowProblem] = []
    for record, value, raw in items:
        if isinstance(value, dict):
            rows.append(value)
            records.append(record)
            if len(rows) == batch_rows:
                yield _deep_checked(rows, records, keys, columns, problems)
                rows, records, problems = [], [], []
            continue
        if isinstance(value, RowProblem):
            problems.append(value)
            continue
        detail = value.detail if isinstance(value, _Invalid) else f"{_json_kind(value)}, not an object"
        text = raw if raw is not None else _safe_compact(value)
        problems.append(RowProblem(record, "invalid_record", detail, text[:RAW_LIMIT]))
    if rows or problems:
        yield _deep_checked(rows, records, keys, columns, problems)


def _safe_compact(value: Any) -> str:
    try:
        return _compact(value)
    except RecursionError:
        return ""


def _deep_checked(
    rows: list[dict[str, Any]], records: list[int], keys: list[str], columns: list[str], problems: list[RowProblem]
) -> tuple[pa.RecordBatch, list[RowProblem]]:
    """:func:`_objects_batch`, with records nested too deeply to write as text moved to the problems."""
    try:
        return _objects_batch(rows, records, keys, columns), problems
    except RecursionError:
        pass
    kept: list[dict[str, Any]] = []
    kept_records: list[int] = []
    problems = list(problems)
    for row, record in zip(rows, records, strict=True):
        try:
            [_text(v) for v in row.values()]
        except RecursionError:
            problems.append(RowProblem(record, "invalid_record", _TOO_DEEP, ""))
            continue
        kept.append(row)
        kept_records.append(record)
    problems.sort(key=lambda p: p.record)
    return _objects_batch(kept, kept_records, keys, columns), problems


def _objects_batch(
    rows: list[dict[str, Any]], records: list[int], keys: list[str], columns: list[str]
) -> pa.RecordBatch:
    arrays = [pa.array([_text(row.get(k)) for row in rows], pa.string()) for k in keys]
    arrays.append(pa.array(records, pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, names=[*columns, RECORD])


# --------------------------------------------------------------------------- Parquet and xlsx


def _open_binary(p: Path, name: str, fmt: str, gz: bool, sha: _FileDigest, *, batch_rows: int) -> RawInput:
    """Open a Parquet or xlsx file; a gzipped one is decompressed to a temporary file first."""
    target = p
    if gz:
        fd, tmp = tempfile.mkstemp(suffix="." + fmt)
        target = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out, _open_stream(p, gz) as f:
                shutil.copyfileobj(f, out, _CHUNK)
            raw = (_open_parquet if fmt == "parquet" else _open_xlsx)(target, name, sha, batch_rows)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    else:
        raw = (_open_parquet if fmt == "parquet" else _open_xlsx)(target, name, sha, batch_rows)
    if gz:
        raw.compression = "gzip"
        weakref.finalize(raw, target.unlink, missing_ok=True)
    return raw


def _open_parquet(p: Path, name: str, sha: _FileDigest, batch_rows: int) -> RawInput:
    try:
        with pq.ParquetFile(p) as pf:
            names = pf.schema_arrow.names
    except pa.ArrowException as e:
        raise InputError(f"{name}: not a readable Parquet file ({_one_line(e)})") from None
    columns = _unique(names)

    def produce() -> Batches:
        start = 1
        with pq.ParquetFile(p) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows):
                yield _as_text(batch, columns, start), []
                start += batch.num_rows

    return RawInput(name, "parquet", columns, sha, produce)


@contextmanager
def _workbook(p: Path, name: str) -> Iterator[Any]:
    """The workbook, read-only, opened from a file object (openpyxl refuses names not ending in .xlsx)."""
    try:
        import openpyxl
    except ImportError:
        raise InputError(f"{name}: reading .xlsx needs openpyxl: pip install 'cfanalytics[xlsx]'") from None
    with p.open("rb") as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wb = openpyxl.load_workbook(f, read_only=True, data_only=True)
        except Exception as e:  # zipfile, XML and openpyxl's own errors alike
            raise InputError(f"{name}: not a readable xlsx workbook ({_one_line(e)})") from None
        try:
            yield wb
        finally:
            wb.close()


def _has_data(ws: Any) -> bool:
    """True when a worksheet (read-only) holds at least one value."""
    if not hasattr(ws, "iter_rows"):
        return False  # a chart sheet
    ws.reset_dimensions()
    return any(v is not None for row in ws.iter_rows(values_only=True) for v in row)


def _sheet_rows(wb: Any, index: int) -> Iterator[tuple[Any, ...]]:
    """Rows of a sheet, all of them (the stored dimensions may be wrong)."""
    ws = wb.worksheets[index]
    ws.reset_dimensions()
    yield from ws.iter_rows(values_only=True)


def _open_xlsx(p: Path, name: str, sha: _FileDigest, batch_rows: int) -> RawInput:
    with _workbook(p, name) as wb:
        filled = [(i, ws.title) for i, ws in enumerate(wb.worksheets) if _has_data(ws)]
        if len(filled) > 1:
            shown = ", ".join(repr(redact(t)) for _, t in filled[:5]) + (", …" if len(filled) > 5 else "")
            raise InputError(
                f"{name}: the workbook has {len(filled)} sheets with data ({shown}); one sheet per file "
                "is read: save each sheet as its own file"
            )
        index = filled[0][0] if filled else 0
        first = next(_sheet_rows(wb, index), ())
    header = list(first)
    while header and header[-1] is None:
        header.pop()
    if not header:
        raise InputError(f"{name}: the workbook is empty")
    columns = _unique([_text(v) or "" for v in header])

    def produce() -> Batches:
        with _workbook(p, name) as book:
            yield from _object_batches(_xlsx_items(book, index, columns), columns, columns, batch_rows)

    return RawInput(name, "xlsx", columns, sha, produce)


def _xlsx_items(book: Any, index: int, columns: list[str]) -> Iterator[tuple[int, Any, str | None]]:
    """``(sheet row, {column: value} or RowProblem, None)`` for each non-empty row below the header."""
    width = len(columns)
    for number, values in enumerate(_sheet_rows(book, index), 1):
        if number == 1 or all(v is None for v in values):
            continue
        extra = [v for v in values[width:] if v is not None]
        if extra:
            raw = "\t".join(_text(v) or "" for v in values)[:RAW_LIMIT]
            detail = _fields(width + len(extra), width)
            yield number, RowProblem(number, "ragged_row", detail, raw), None
        else:
            yield number, dict(zip(columns, values, strict=False)), None


# --------------------------------------------------------------------------- values


def _unique(names: Iterable[str]) -> list[str]:
    """Make names unique: a repeated name gets `` (2)``, `` (3)``…; ``_record`` is reserved."""
    seen = {RECORD}
    out: list[str] = []
    for position, given in enumerate(names, 1):
        name = given if given.strip() else f"column {position}"  # a pandas index column, a trailing delimiter
        candidate, k = name, 1
        while candidate in seen:
            k += 1
            candidate = f"{name} ({k})"
        seen.add(candidate)
        out.append(candidate)
    return out


def _as_text(batch: pa.RecordBatch, columns: list[str], start: int) -> pa.RecordBatch:
    """Every column of an Arrow batch as text, plus ``_record`` numbered from ``start``."""
    arrays = [_arrow_text(col) for col in batch.columns]
    arrays.append(pa.array(range(start, start + batch.num_rows), pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, names=[*columns, RECORD])


def _arrow_text(arr: pa.Array) -> pa.Array:
    """One Arrow column as ``pa.string()`` following the reader's value rules."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _arrow_text(arr.dictionary_decode())
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_timestamp(t):
        return _timestamp_text(arr)
    if pa.types.is_date(t):
        return pc.strftime(arr, format="%Y-%m-%d")
    if pa.types.is_floating(t):
        if t.bit_width == 16:
            arr = arr.cast(pa.float32())
        single = t.bit_width < 64
        return pa.array([None if v is None else _float_text(v, single=single) for v in arr.to_pylist()], pa.string())
    if _is_any(t, pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_integer,
               pa.types.is_boolean, pa.types.is_decimal):  # fmt: skip
        return arr.cast(pa.string())
    if _is_any(t, pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view):
        try:
            return arr.cast(pa.string())
        except pa.ArrowInvalid:
            pass
    return pa.array([_text(v) for v in arr.to_pylist()], pa.string())


def _is_any(t: pa.DataType, *tests: Callable[[pa.DataType], bool]) -> bool:
    return any(test(t) for test in tests)


def _timestamp_text(arr: pa.Array) -> pa.Array:
    """ISO 8601: ``Z`` for UTC, the offset for other zones, nothing for naive; fraction only if non-zero."""
    tz = arr.type.tz
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"(\.\d*?[1-9])0+$|\.0+$", r"\1")
    if tz is None:
        return text
    if tz in _UTC_NAMES:
        return pc.binary_join_element_wise(text, "Z", "")
    offset = pc.replace_substring_regex(pc.strftime(arr, format="%z"), r"(\d\d)$", r":\1")
    return pc.binary_join_element_wise(text, offset, "")


def _float_text(v: float, *, single: bool = False) -> str:
    """Python ``repr`` of a float; for float32 the shortest text that round-trips in 32 bits."""
    if single and math.isfinite(v):
        for digits in range(1, 10):
            short = float(f"{v:.{digits}g}")
            if struct.unpack("f", struct.pack("f", short))[0] == v:
                return repr(short)
    return repr(v)


def _text(v: Any) -> str | None:
    """A Python value as raw text: null stays null, numbers as decimal text, nested values as compact JSON."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict | list | tuple):
        return _compact(v)
    if isinstance(v, datetime):
        utc = v.utcoffset() == timedelta(0) and str(v.tzinfo) in _UTC_NAMES
        return v.isoformat().removesuffix("+00:00") + "Z" if utc else v.isoformat()
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=_text)
