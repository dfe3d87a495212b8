"""Frames computed once for several reads: held in memory when small, else spilled to scratch Parquet files.

:meth:`~cfanalytics.engines.PolarsEngine.keep` computes a frame once for the several
aggregates that read it. Row-level frames of a large account (the enriched postbacks, the
classified conversions of 50 million visits) would hold gigabytes: :func:`kept` runs the
plan in Polars' streaming engine batch by batch and, once the batches it holds pass
:data:`SPILL_BYTES`, writes them to Parquet files in a scratch folder, part after part
(:data:`PART_BYTES`), then scans those files back; each aggregate then streams them in turn.
Below the limit the frame stays in memory, as a plain collect would keep it (the fast path).

The scratch folder is removed when the frame :func:`kept` returned is garbage-collected (or at
exit): frames derived from it are read while it lives, as a Spark checkpoint is (the frames
:func:`~cfanalytics.diagnose.frames.diagnosis_frames` returns hold theirs).

>>> plan = pl.LazyFrame({"n": range(10_000)})
>>> small, big = kept(plan), kept(plan, limit=0)
>>> spill_folder(small) is None, spill_folder(big) is not None
(True, True)
>>> big.select(pl.col("n").sum()).collect().item() == small.select(pl.col("n").sum()).collect().item()
True
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import polars as pl

#: Bytes (Polars' estimate) of a kept frame above which it is spilled to disk rather than held in memory.
SPILL_BYTES = 128 * 2**20
#: Bytes of rows written per Parquet file once a frame is spilled (what is held while they are written).
PART_BYTES = 32 * 2**20

#: Rows per batch the streaming engine hands over (small batches cost time, large ones hold memory).
BATCH_ROWS = 200_000

#: Scratch folders of the frames spilled and still alive, by the ``id`` of the frame.
_FOLDERS: dict[int, Path] = {}


def kept(plan: pl.LazyFrame, limit: int | None = None) -> pl.LazyFrame:
    """``plan`` computed once, as a lazy frame reading the result: in memory up to ``limit`` bytes
    (default :data:`SPILL_BYTES`), else from scratch Parquet files (see the module); the same rows,
    in the order the streaming engine gave them, and the same schema either way.

    >>> kept(pl.LazyFrame({"a": [1, 2]}), limit=0).collect().rows()
    [(1,), (2,)]
    """
    limit = SPILL_BYTES if limit is None else limit
    held: list[pl.DataFrame] = []
    size = 0
    spill: _Spill | None = None
    try:
        for batch in plan.collect_batches(chunk_size=BATCH_ROWS):
            held.append(batch)
            size += int(batch.estimated_size())
            if size > (limit if spill is None else PART_BYTES):
                spill = spill or _Spill(plan.collect_schema())
                spill.write(held)
                held, size = [], 0
        if spill is None:
            return (pl.concat(held, rechunk=False) if held else pl.DataFrame(schema=plan.collect_schema())).lazy()
        spill.write(held)
    except BaseException:
        if spill is not None:
            spill.remove()
        raise
    return spill.scan()


def spill_folder(frame: pl.LazyFrame) -> Path | None:
    """The scratch folder a frame returned by :func:`kept` reads (None: it is held in memory)."""
    return _FOLDERS.get(id(frame))


class _Spill:
    """Parquet parts of one spilled frame, in a scratch folder of their own."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema
        self.folder = Path(tempfile.mkdtemp(prefix="cfanalytics-spill-"))
        self.parts: list[Path] = []

    def write(self, batches: list[pl.DataFrame]) -> None:
        """One more part: ``batches``, in order (nothing when empty and a part exists already)."""
        if not batches and self.parts:
            return
        frame = pl.concat(batches, rechunk=False) if batches else pl.DataFrame(schema=self.schema)
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        # uncompressed (dictionary-encoded all the same): written and read back at memory speed
        frame.write_parquet(path, compression="uncompressed", statistics=False)
        self.parts.append(path)

    def scan(self) -> pl.LazyFrame:
        """The parts as one lazy frame; the folder goes when that frame is garbage-collected."""
        frame = pl.scan_parquet(self.parts, schema=self.schema, hive_partitioning=False)
        _FOLDERS[id(frame)] = self.folder
        weakref.finalize(frame, _remove, id(frame), self.folder)
        return frame

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove(key: int, folder: Path) -> None:
    _FOLDERS.pop(key, None)
    shutil.rmtree(folder, ignore_errors=True)
