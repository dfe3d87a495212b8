"""Writer locks: :func:`file_lock` on a local folder, a lease object with an owner and an expiry on object storage.

Object storage has no ``flock``. A writer holds the store by writing ``.lease`` (JSON: owner, token,
expiry) with a conditional PUT: ``If-None-Match: *`` when there is none, ``If-Match: <ETag>`` to take
over a lease that was released or has expired. Exactly one of several writers racing for it wins.
While it works, a thread renews the lease (again with ``If-Match`` on its own last ETag) every third
of its duration; a writer that dies stops renewing, and once the expiry passes the next writer takes
the lease over: a crashed writer cannot hold the store forever. Releasing writes a free lease (still
conditional), so a writer whose lease was taken over never frees the new owner's.

The expiry is compared with the clocks of the writers (seconds since the epoch): they must agree to
well within the lease duration (default 30 s, ``CFANALYTICS_LEASE_SECONDS``).

>>> import tempfile
>>> from cfanalytics.storage import location
>>> where = location(tempfile.mkdtemp())
>>> with Lease(where, seconds=5).held(timeout=1) as lease:
...     lease.owner == Lease.read(where)["owner"]
True
>>> Lease.read(where)["owner"] is None
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from cfanalytics.exceptions import StoreBusyError, StoreError
from cfanalytics.storage import Location, PreconditionFailedError


@contextlib.contextmanager
def file_lock(path: Path, *, wait: float = 0.0, busy: str = "busy") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, mode 600), waiting up to ``wait`` seconds.

    Raises :class:`StoreBusyError` with ``busy`` when another process holds it after ``wait``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> lock = Path(tempfile.mkdtemp()) / ".lock"
    >>> with file_lock(lock):
    ...     with file_lock(lock, busy="taken"):
    ...         pass
    Traceback (most recent call last):
    cfanalytics.exceptions.StoreBusyError: taken
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline, delay = time.monotonic() + wait, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(busy) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


#: Name of the lease object under the store's root.
LEASE_FILE: Final = ".lease"
#: How long a lease lasts unless renewed (env ``CFANALYTICS_LEASE_SECONDS``).
DEFAULT_LEASE_SECONDS: Final = 30.0


def lease_seconds() -> float:
    """The lease duration: ``CFANALYTICS_LEASE_SECONDS``, else :data:`DEFAULT_LEASE_SECONDS`."""
    try:
        value = float(os.environ.get("CFANALYTICS_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    except ValueError:
        return DEFAULT_LEASE_SECONDS
    return value if value > 0 else DEFAULT_LEASE_SECONDS


class LeaseLostError(StoreError):
    """The lease expired and another writer took it over before this one finished."""


class Lease:
    """One writer's claim on ``where/.lease`` (see the module docstring)."""

    def __init__(self, where: Location, *, seconds: float | None = None, name: str = LEASE_FILE) -> None:
        self.where = where
        self.name = name
        self.seconds = lease_seconds() if seconds is None else seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._tag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.lost = False

    @staticmethod
    def read(where: Location, name: str = LEASE_FILE) -> dict[str, Any]:
        """The lease document (``owner`` None when free)."""
        found = where.read(name)
        return _parse(found[0]) if found else {"owner": None, "expires": 0.0}

    def _doc(self, *, free: bool = False) -> bytes:
        doc = {
            "owner": None if free else self.owner,
            "expires": 0.0 if free else time.time() + self.seconds,
            "seconds": self.seconds,
        }
        return json.dumps(doc, sort_keys=True).encode()

    def try_acquire(self) -> bool:
        """Take the lease if it is absent, free or expired; whether this writer holds it now."""
        found = self.where.read(self.name)
        try:
            if found is None:
                self._tag = self.where.write(self.name, self._doc(), if_absent=True)
                return True
            doc = _parse(found[0])
            if doc.get("owner") is not None and float(doc.get("expires") or 0) > time.time():
                return False
            self._tag = self.where.write(self.name, self._doc(), if_match=found[1])
        except PreconditionFailedError:  # another writer got there first
            return False
        return True

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the lease, then renew it in the background until :meth:`release`."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                holder = Lease.read(self.where, self.name)
                raise StoreBusyError(
                    f"{self.where.uri}: store busy (writer {holder.get('owner')} held the lease for {timeout:.0f} s)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5, self.seconds / 4)
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="cfanalytics-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """Push the expiry forward (only if this writer still holds the lease, else :class:`LeaseLostError`)."""
        with self._guard:
            if self._tag is None or self.lost:
                raise LeaseLostError(f"{self.where.uri}: the writer lease was lost (it expired and was taken over)")
            try:
                self._tag = self.where.write(self.name, self._doc(), if_match=self._tag)
            except PreconditionFailedError:
                self.lost = True
                raise LeaseLostError(
                    f"{self.where.uri}: the writer lease was lost (it expired and was taken over)"
                ) from None

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if another writer took the lease over."""
        if self.lost:
            raise LeaseLostError(f"{self.where.uri}: the writer lease was lost (it expired and was taken over)")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except LeaseLostError:
                return
            except StoreError:  # the server did not answer this time: try again at the next beat
                continue

    def release(self) -> None:
        """Stop renewing and free the lease (unless another writer holds it by now)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._guard:
            if self._tag is not None and not self.lost:
                with contextlib.suppress(PreconditionFailedError):
                    self.where.write(self.name, self._doc(free=True), if_match=self._tag)
            self._tag = None

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[Lease]:
        """Hold the lease for the ``with`` block."""
        self.acquire(timeout)
        try:
            yield self
        finally:
            self.release()


def _parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        return {"owner": None, "expires": 0.0}  # unreadable: as good as free (and taken over conditionally)
    return doc if isinstance(doc, dict) else {"owner": None, "expires": 0.0}
