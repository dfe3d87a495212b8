"""Plumbing of the ingest pipeline: Arrow IPC scratch files and the threads that overlap its stages.

Nothing here knows about logs or stores: :class:`ScratchWriter` /
:func:`scratch_batches` / :func:`scan_scratch` spill and read back record
batches, :func:`prefetch` runs a producer a few items ahead on a thread, and
:class:`SerialWorker` runs calls in order on a thread.

>>> list(prefetch(iter(range(3))))
[0, 1, 2]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import polars as pl
import pyarrow as pa
from polars.io.plugins import register_io_source

from cfanalytics.readers import arrow_pool

T = TypeVar("T")

#: Scratch files keep Polars' own string layout (Arrow string views): no copy of the text on the way
#: out of Polars and back in.
SCRATCH_ARROW: Final = pl.CompatLevel.newest()


class ScratchWriter:
    """Appends record batches to an Arrow IPC scratch file (lz4): written once, read once or twice.

    Arrow IPC costs about a third of Parquet to write and read back, and lz4 keeps
    the file at about two thirds of the input's size.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self.schema = schema

    def write_table(self, table: pa.Table) -> None:
        """Append ``table`` (in the file's schema)."""
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (its footer) and close it."""
        self._writer.close()
        self._sink.close()


def scratch_batches(path: Path, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a scratch file (only ``columns``, if given), in order."""
    pool = arrow_pool()  # decompressed buffers: see arrow_pool
    with pa.OSFile(str(path), "rb", memory_pool=pool) as source:  # read, not mapped: batches outlive the file
        reader = pa.ipc.open_file(source, memory_pool=pool)
        if columns is not None:  # read only those columns' buffers
            fields = [reader.schema.get_field_index(c) for c in columns]
            source.seek(0)
            options = pa.ipc.IpcReadOptions(included_fields=fields)
            reader = pa.ipc.open_file(source, options=options, memory_pool=pool)
        for i in range(reader.num_record_batches):
            rb = reader.get_batch(i)
            yield rb if columns is None else rb.select(columns)


def scan_scratch(path: Path) -> pl.LazyFrame:
    """A scratch file as a lazy frame, read batch by batch (not memory-mapped).

    ``pl.scan_ipc`` maps the file, and every page it touches then counts in
    the process's resident memory: gigabytes for a large input.
    """
    with pa.OSFile(str(path), "rb") as source:
        schema = pl.Schema(pa.ipc.open_file(source).schema)

    def batches(
        columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _size: int | None
    ) -> Iterator[pl.DataFrame]:
        left = n_rows
        needed = None
        if columns is not None:  # the projection, and the columns the predicate reads
            needed = list(dict.fromkeys([*columns, *(predicate.meta.root_names() if predicate is not None else ())]))
        for rb in prefetch(scratch_batches(path, needed)):  # the next batches are read meanwhile
            df = pl.DataFrame(rb)
            if predicate is not None:
                df = df.filter(predicate)
            if columns is not None:
                df = df.select(columns)
            if left is not None:
                df = df.head(left)
                left -= df.height
            yield df
            if left == 0:
                return

    return register_io_source(batches, schema=schema, explain_name="scratch")


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a thread produces the next ones (up to ``depth`` ahead).

    Reading and parsing the input (pyarrow releases the GIL) then overlaps with
    normalising and hashing the batch before it. Errors of the producer are
    raised here, in order; closing the generator stops the producer.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="cfanalytics-read", daemon=True)
    thread.start()
    try:
        while True:
            tag, value = q.get()
            if tag == "end":
                return
            if tag == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class SerialWorker:
    """Runs submitted calls one at a time, in order, on a thread, up to ``depth`` calls ahead.

    An error of a call is raised by the next :meth:`submit` or by :meth:`close`;
    :meth:`abort` (always safe) drops what is queued and waits for the thread.
    """

    def __init__(self, name: str, depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._stop:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue ``fn(*args)`` (blocks while ``depth`` calls wait)."""
        self._raise()
        self._queue.put((fn, args))

    def close(self) -> None:
        """Wait for every queued call; raise the first error of one."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Skip what is still queued and wait for the thread."""
        self._stop = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
