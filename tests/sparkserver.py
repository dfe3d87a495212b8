"""A throw-away Spark Connect server for the tests: Sail (``sail spark server``, from the ``pysail`` wheel).

:func:`start` runs one server on a free port of 127.0.0.1 in a folder of its own, in Sail's ``local-cluster`` mode
(a driver and ``workers`` workers in one process, talking to each other over RPC, as a real cluster does), with
telemetry export off, and returns once a Spark Connect session runs a query on it; :meth:`SparkServer.stop` ends it
by its PID. The server dies with the process that started it (``PR_SET_PDEATHSIG`` on Linux), so a crashed test
run leaves none behind. Sail reads Delta tables on local folders and, given the ``AWS_*`` variables of
:mod:`tests.s3server` in ``env``, on S3.

Used as (the ``spark`` fixture of ``tests/conftest.py``)::

    server = start(folder, env=s3.options)
    server.remote  # 'sc://127.0.0.1:40123'
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from tests.s3server import free_ports, stop_process, wheel_binary

#: Sail's configuration, as environment variables (``SAIL_<SECTION>__<KEY>``): local-cluster mode, no telemetry.
BASE_ENV = {
    "SAIL_MODE": "local-cluster",
    "SAIL_TELEMETRY__EXPORT_TRACES": "false",
    "SAIL_TELEMETRY__EXPORT_METRICS": "false",
    "SAIL_TELEMETRY__EXPORT_LOGS": "false",
}

#: Run in the child before it becomes Sail: die with the parent (Linux), then exec Sail. Set there rather than in a
#: ``preexec_fn`` so that the (threaded) test process is never forked with Python code to run.
_LAUNCH = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):  # the parent died before the signal was set
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class SparkServer:
    """A running Sail Spark Connect server: its remote address, port, worker count, folder and process."""

    remote: str
    port: int
    workers: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        """The server's log (stdout and stderr)."""
        return self.folder / "sail.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 10 s) by its PID."""
        stop_process(self.process)


def _sail() -> str:
    """The ``sail`` command of the ``pysail`` wheel."""
    return wheel_binary("sail", "the Spark engine tests need Sail: pip install -e '.[test]' (pysail)")


def start(folder: Path, *, env: dict[str, str] | None = None, workers: int = 2, timeout: float = 60.0) -> SparkServer:
    """Start Sail in ``folder`` on a free loopback port with ``workers`` workers; return once it runs a query.

    ``env`` adds environment variables (the ``AWS_*`` options of an S3 server, more ``SAIL_*`` settings).
    """
    sail = _sail()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    server_env = {
        **os.environ,
        **BASE_ENV,
        "SAIL_CLUSTER__WORKER_INITIAL_COUNT": str(workers),
        "SAIL_CLUSTER__WORKER_MAX_COUNT": str(workers),
        # where localCheckpoint writes: the frames the diagnostics keep are computed once, not per query
        "SAIL_EXECUTION__CHECKPOINT__PATH": str(folder / "checkpoints"),
        **(env or {}),
    }
    args = [sys.executable, "-c", _LAUNCH, str(os.getpid()), sail, "spark", "server", "--ip", "127.0.0.1"]
    args += ["--port", str(port)]
    with (folder / "sail.log").open("wb") as log:  # the server writes to its own copy of the handle
        process = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=server_env)
    server = SparkServer(f"sc://127.0.0.1:{port}", port, workers, folder, process)
    deadline = time.monotonic() + timeout
    try:
        while not _port_open(port):
            if process.poll() is not None:
                raise RuntimeError(f"Sail exited ({process.returncode}); the end of {server.log}:")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Sail did not listen within {timeout:.0f} s; the end of {server.log}:")
            time.sleep(0.1)
        _run_query(server.remote, deadline - time.monotonic())
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n{server.log_tail()}") from exc.__cause__
    except BaseException:
        server.stop()
        raise
    return server


def _port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_query(remote: str, timeout: float) -> None:
    """Open a Spark Connect session on ``remote``, count ``range(1)`` and close it, within ``timeout`` seconds.

    The session's workers stop with it. The query runs in a thread so that a server that accepts connections but
    never answers fails the start instead of hanging it.
    """
    with warnings.catch_warnings():  # pyspark's check of the pandas version warns on pandas 3
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        try:
            from pyspark.sql.connect.session import SparkSession
        except ImportError as exc:
            raise RuntimeError("the Spark engine tests need pyspark-client: pip install -e '.[spark]'") from exc
    outcome: list[BaseException | int] = []

    def probe() -> None:
        try:
            spark = SparkSession.builder.remote(remote).create()  # a session of its own, never a cached one
            try:
                outcome.append(spark.range(1).count())
            finally:
                spark.stop()
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="sail-probe", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if not outcome:
        raise RuntimeError(
            f"Sail did not run a query within the start timeout ({timeout:.0f} s left); the end of its log:"
        )
    if isinstance(outcome[0], BaseException):
        raise RuntimeError(f"Sail did not run a query ({outcome[0]!r}); the end of its log:") from outcome[0]
    if outcome[0] != 1:
        raise RuntimeError(f"Sail counted {outcome[0]} rows in range(1); the end of its log:")
