"""Where the diagnostics read and aggregate: Polars in this process (the default), or a Spark Connect server.

The loaders of :mod:`cfanalytics.diagnose.frames`, the name lookups of
:mod:`~cfanalytics.diagnose.names` and the diagnostics' core (attribution joins, error
rates, gap classes, the incidents' cube) are written once, in narwhals. An :class:`Engine`
gives them its tables (:meth:`~Engine.table`), moves small Polars frames next to them
(:meth:`~Engine.local`), keeps a frame that several aggregates read (:meth:`~Engine.keep`),
and runs on a few rows what only Polars can (:meth:`~Engine.in_polars`: the error rules'
regexes); :func:`fetch` brings a small result into Polars.

- :class:`PolarsEngine` (any reader without an ``engine``): queries stay lazy Polars plans
  over ``reader.scan(kind)``; a kept frame is collected once (spilled to scratch Parquet files when large).
- :class:`SparkEngine` (:func:`on_spark`): the same queries run on a Spark Connect
  session (Spark, Databricks, Sail) over the store's Delta tables, a folder or
  ``s3://`` URI the server can read; a kept frame is a local checkpoint there, and only
  aggregates (and the few rows some answers list) come back.

Local hours, the incidents' tests, suspects, names, sorting, JSON and charts run in
Polars on those results, so both engines print the same answers.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> engine_of(store).name
'polars'
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics import _spill
from cfanalytics.exceptions import UsageError
from cfanalytics.filters import StoreReader

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: A query over an engine's tables: a :class:`Source` in, a lazy narwhals frame out.
Query = Callable[["Source"], "nw.LazyFrame[Any]"]

#: A step of Polars code on a narwhals frame of Polars (see :meth:`Engine.in_polars`).
Step = Callable[["nw.LazyFrame[Any]"], "nw.LazyFrame[Any]"]

#: Engines ``--engine`` accepts.
ENGINES: Final = ("polars", "spark")


class Source(Protocol):
    """What a :data:`Query` reads: stored tables, and local Polars frames moved next to them."""

    def table(self, kind: str) -> nw.LazyFrame[Any]:
        """The stored rows of ``kind``."""
        ...

    def local(self, frame: pl.LazyFrame) -> nw.LazyFrame[Any]:
        """A Polars frame of this process (e.g. click ids to semi-join on) as a frame of this engine."""
        ...


class Engine(Protocol):
    """Runs loader queries and returns their result as a Polars lazy frame."""

    @property
    def name(self) -> str:
        """``polars`` or ``spark``."""
        ...

    def run(self, query: Query) -> pl.LazyFrame:
        """``query`` over this engine's tables, as a Polars lazy frame."""
        ...

    def table(self, kind: str) -> nw.LazyFrame[Any]:
        """The stored rows of ``kind``, as a frame of this engine."""
        ...

    def local(self, frame: pl.LazyFrame) -> nw.LazyFrame[Any]:
        """A Polars frame of this process as a frame of this engine."""
        ...

    def keep(self, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        """``frame`` computed once for the several aggregates that read it (Polars: collected; Spark: checkpointed)."""
        ...

    def in_polars(self, frame: nw.LazyFrame[Any], step: Step) -> nw.LazyFrame[Any]:
        """``step`` (what only Polars can do, e.g. the error rules' regexes) on ``frame`` (a few rows), its result
        back in this engine."""
        ...


@dataclass(frozen=True)
class PolarsEngine:
    """Queries as lazy Polars plans over ``reader.scan`` (nothing is read before the caller collects).

    >>> import polars as pl
    >>> class Reader:
    ...     timezone = "UTC"
    ...     def scan(self, kind): return pl.LazyFrame({"click_id": ["a", "b"]})
    >>> PolarsEngine(Reader()).run(lambda s: s.table("visits").filter(nw.col("click_id") == "b")).collect().rows()
    [('b',)]
    """

    reader: StoreReader
    name: str = "polars"

    def table(self, kind: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self.reader.scan(kind))

    def local(self, frame: pl.LazyFrame) -> nw.LazyFrame[Any]:
        return nw.from_native(frame)

    def run(self, query: Query) -> pl.LazyFrame:
        native: pl.LazyFrame = query(self).to_native()
        return native

    def keep(self, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        """``frame`` computed once: in memory, or past :data:`~cfanalytics._spill.SPILL_BYTES` in scratch
        Parquet files read back (:func:`~cfanalytics._spill.kept`), so that a large account's rows are
        never all held at once."""
        held: nw.LazyFrame[Any] = nw.from_native(_spill.kept(frame.to_native()))
        return held

    def in_polars(self, frame: nw.LazyFrame[Any], step: Step) -> nw.LazyFrame[Any]:
        return step(frame)


@dataclass
class SparkEngine:
    """Queries on a Spark Connect session over a :class:`~cfanalytics.store.LogStore`'s Delta tables.

    The result of each query is collected (what the diagnostics need of a table: a time
    range, the visits of some click ids, distinct combinations), then cast to the
    schema the same query gives on Polars, so that nothing downstream can tell the engines
    apart. Tables the store does not have yet read as empty.
    """

    store: LogStore
    session: Any
    name: str = "spark"
    _polars: PolarsEngine = field(init=False)
    _checkpoints: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self._polars = PolarsEngine(self.store)

    def table(self, kind: str) -> nw.LazyFrame[Any]:
        if not self.store.exists:  # created by its first write: no tables yet, no rows
            return self.local(self.store.scan(kind))
        uri = self.store.table_uri(kind)
        if not self.store.remote:  # the server has a working folder of its own
            uri = str(Path(uri).resolve())
        rows: nw.LazyFrame[Any] = nw.from_native(self.session.read.format("delta").load(uri))
        return rows

    def local(self, frame: pl.LazyFrame) -> nw.LazyFrame[Any]:
        # Arrow's plain (not view) string and binary types: what every Spark Connect server reads
        arrow = frame.collect().to_arrow(compat_level=pl.CompatLevel.oldest())
        from pyspark.sql.pandas.types import from_arrow_schema

        # the schema given, not inferred: an empty frame has nothing to infer it from
        moved: nw.LazyFrame[Any] = nw.from_native(
            self.session.createDataFrame(arrow, schema=from_arrow_schema(arrow.schema))
        )
        return moved

    def run(self, query: Query) -> pl.LazyFrame:
        schema = self._polars.run(query).collect_schema()
        try:
            result = query(self).collect(backend="polars").to_native()
        except Exception as error:  # a server's error: one line, no stack of the RPC client
            raise UsageError(f"the Spark engine failed: {_one_line(error)}") from None
        if not isinstance(result, pl.DataFrame):  # pragma: no cover - narwhals always gives a DataFrame
            raise TypeError(type(result))
        return result.select(pl.col(name).cast(dtype) for name, dtype in schema.items()).lazy()

    def keep(self, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        """``frame`` materialized on the server (``localCheckpoint``), so that each aggregate reading it does not
        compute it again; where the server has no checkpoints (Sail without ``execution.checkpoint.path``,
        some serverless endpoints), cached instead (which Sail ignores: then it is computed per query)."""
        native = frame.to_native()
        if self._checkpoints:
            try:
                checkpoint = native.localCheckpoint()
                checkpoint.limit(0).collect()  # readable back (Sail loses those of a second session open at once)
                kept: nw.LazyFrame[Any] = nw.from_native(checkpoint)
                return kept
            except Exception:  # not offered by this server (asked once per engine); a server gone fails next query
                self._checkpoints = False
        cached: nw.LazyFrame[Any] = nw.from_native(native.cache())
        return cached

    def in_polars(self, frame: nw.LazyFrame[Any], step: Step) -> nw.LazyFrame[Any]:
        done = step(nw.from_native(fetch(frame).lazy())).to_native()
        return self.local(done if isinstance(done, pl.LazyFrame) else fetch(done).lazy())


@dataclass
class SparkReader:
    """A store whose diagnostics' loaders run on a Spark Connect session (see :func:`on_spark`).

    Everything else a reader offers (``scan``, ``events``, the store's metadata) is the
    store's own, read by Polars.
    """

    store: LogStore
    engine: SparkEngine

    @property
    def timezone(self) -> str | None:
        return self.store.timezone

    @property
    def metadata(self) -> dict[str, Any]:
        return self.store.metadata

    @property
    def location(self) -> Any:
        """The store's :class:`~cfanalytics.storage.Location` (its documents: alert state, ledgers)."""
        return self.store.location

    def scan(self, kind: str) -> pl.LazyFrame:
        return self.store.scan(kind)

    def events(self) -> pl.LazyFrame:
        return self.store.events()

    def __repr__(self) -> str:
        return f"SparkReader({self.store!r})"


def fetch(frame: Any) -> pl.DataFrame:
    """A frame of any engine (narwhals, Polars, Spark; lazy or not) computed and collected into Polars: the
    small result of an aggregate, on which names, sorting and JSON are made. Times come back as UTC instants
    whatever the engine; a server's error is one line (:class:`~cfanalytics.exceptions.UsageError`).

    >>> fetch(nw.from_native(pl.LazyFrame({"n": [1, 2]})).select(nw.col("n").sum())).rows()
    [(3,)]
    """
    native = frame.to_native() if isinstance(frame, nw.LazyFrame | nw.DataFrame) else frame
    if isinstance(native, pl.LazyFrame):
        return native.collect()
    if isinstance(native, pl.DataFrame):
        return native
    try:
        collected = nw.from_native(native).lazy().collect(backend="polars").to_native()
    except Exception as error:  # a server's error: one line, no stack of the RPC client
        raise UsageError(f"the Spark engine failed: {_one_line(error)}") from None
    if not isinstance(collected, pl.DataFrame):  # pragma: no cover - narwhals always gives a DataFrame
        raise TypeError(type(collected))
    naive = [name for name, dtype in collected.schema.items() if isinstance(dtype, pl.Datetime) and not dtype.time_zone]
    return collected.with_columns(pl.col(naive).dt.replace_time_zone("UTC")).with_columns(  # TIMESTAMP_NTZ: UTC
        pl.col(pl.Datetime).dt.convert_time_zone("UTC")
    )


def as_polars(frame: Any) -> pl.LazyFrame:
    """A frame of any engine as a Polars lazy frame: Polars' own stays lazy, another engine's is
    :func:`fetch`-ed (use it on small results only).

    >>> as_polars(nw.from_native(pl.LazyFrame({"n": [1]}))).collect().item()
    1
    """
    native = frame.to_native() if isinstance(frame, nw.LazyFrame | nw.DataFrame) else frame
    if isinstance(native, pl.LazyFrame):
        return native
    return fetch(native).lazy()


def engine_of(reader: StoreReader) -> Engine:
    """The engine a reader's loaders run on: its own ``engine`` (:func:`on_spark`), else Polars."""
    engine: Engine | None = getattr(reader, "engine", None)
    return engine if engine is not None else PolarsEngine(reader)


def on_spark(store: LogStore, remote: str | None = None, *, session: Any = None) -> SparkReader:
    """``store`` as a reader whose diagnostics' loaders run on Spark.

    ``remote`` is a Spark Connect URL (``sc://host:15002``; default: ``SPARK_REMOTE``);
    or pass a ``session`` (a ``pyspark.sql.SparkSession``, e.g. Databricks Connect's).
    The server reads the store's tables itself: a folder it can see, or ``s3://`` with
    the server's own credentials. Needs ``pip install 'cfanalytics[spark]'``.

    ``cf.diagnose.diagnose(cf.on_spark(store, "sc://127.0.0.1:50051"))`` gives the same
    document as ``cf.diagnose.diagnose(store)``.
    """
    if session is None:
        session = spark_session(remote)
    return SparkReader(store, SparkEngine(store, session))


def spark_session(remote: str | None = None, *, timeout: float = 10.0) -> Any:
    """A Spark Connect session to ``remote`` (default: ``SPARK_REMOTE``), its time zone set to UTC.

    Errors are one line (:class:`~cfanalytics.exceptions.UsageError`) with any token in
    the URL redacted; a server that does not answer within ``timeout`` seconds is an
    error, not a wait (the client alone would retry for minutes).
    """
    import os

    remote = remote or os.environ.get("SPARK_REMOTE")
    if not remote:
        raise UsageError("--engine spark needs a Spark Connect URL: --spark-remote sc://HOST:PORT or SPARK_REMOTE")
    if not remote.startswith("sc://"):
        raise UsageError(f"--spark-remote {redact_remote(remote)}: a Spark Connect URL starts with sc://")
    try:
        import pyspark.sql.connect.session  # noqa: F401  # the client itself, not only the API
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("--engine spark needs the Spark Connect client: pip install 'cfanalytics[spark]'") from None
    except SystemExit:  # pyspark exits when it takes its host for one of its own doctest runs
        raise UsageError("the Spark Connect client could not start in this process (pyspark exited)") from None
    open_session = _SESSIONS.get(remote)
    if open_session is not None and not open_session.client.is_closed:
        return open_session
    _check_reachable(remote, timeout)
    try:
        # a session of this URL's own: pyspark's getOrCreate would hand back one to another server
        session = SparkSession.builder.remote(remote).create()
        # stored times are UTC instants; local hours are made in Polars, never by the server
        session.conf.set("spark.sql.session.timeZone", "UTC")
    except Exception as error:
        raise UsageError(f"cannot reach Spark at {redact_remote(remote)}: {_one_line(error)}") from None
    _SESSIONS[remote] = session
    return session


#: Sessions :func:`spark_session` opened, by URL (one per server and process).
_SESSIONS: dict[str, Any] = {}


def close_sessions() -> None:
    """Stop the sessions :func:`spark_session` opened (before their server goes away: a client left open
    would retry its clean-up calls for minutes when the process exits)."""
    while _SESSIONS:
        _url, session = _SESSIONS.popitem()
        with contextlib.suppress(Exception):
            session.stop()


def _check_reachable(remote: str, timeout: float) -> None:
    """Fail in one line when nothing listens at the URL's host and port (default port 15002)."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit("http://" + remote.removeprefix("sc://").split("/", 1)[0].split(";", 1)[0])
        host, port = parts.hostname or "localhost", parts.port or 15002
    except ValueError as error:
        raise UsageError(f"--spark-remote {redact_remote(remote)}: {error}") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise UsageError(
            f"cannot reach Spark at {redact_remote(remote)}: {error.strerror or error} (is the server running?)"
        ) from None


_SECRET_PARAM = re.compile(r"(?i)(;\s*(?:token|password|x-databricks-[^=;]*)\s*=)[^;]*")
_USERINFO = re.compile(r"^(sc://)[^@/]*@")


def redact_remote(remote: str) -> str:
    """A Spark Connect URL without its secrets (``;token=…``, a user's password).

    >>> redact_remote("sc://dbc-1.cloud.databricks.com:443/;token=dapi123;use_ssl=true")
    'sc://dbc-1.cloud.databricks.com:443/;token=***;use_ssl=true'
    """
    return _USERINFO.sub(r"\1***@", _SECRET_PARAM.sub(r"\1***", remote))


def _one_line(error: BaseException) -> str:
    """The first meaningful line of a (possibly gRPC) error, secrets in URLs redacted."""
    from cfanalytics.redaction import redact

    text = str(error).strip() or type(error).__name__
    line = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return (redact(redact_remote(line)) or "")[:500]
