"""Fire S2S postbacks again, safely: a dry run by default, a ledger so nothing accepted is sent twice.

:func:`refire` reads a file written by ``cfanalytics recover`` (``s2s_postbacks.jsonl``:
one ``{"key", "url", …}`` object per line; a plain list of URLs, one per line, is read
too, the URL being its own key). Without ``send`` it prints, redacted, what it would
send. With ``send=True`` it sends each URL with ``GET`` (the standard library's
``urllib``), at most ``rate`` requests per second, each with a ``timeout``:

- a 2xx answer is ``accepted``;
- a 429, a 5xx, a time-out or a connection error is retried up to ``retries`` times
  after an exponential back-off with jitter (``backoff`` × 2ⁿ seconds, its second
  half random; longer when a ``Retry-After`` header asks for it, up to a minute),
  then recorded ``failed``;
- any other 4xx is ``rejected`` at once (sending it again would get the same answer).

Every attempt is journalled in ``refire_ledger.jsonl`` with the store, under an exclusive
lock of its own, so two runs never fire the same postback: in the store folder (mode 0600,
an ``flock`` on ``.refire.lock``), or, for a store on object storage, under its prefix (a
lease object, ``.refire.lease``, that a crashed run's expiry frees; each line is appended
by rewriting the document only if it did not change since read). A ``sending`` line is
appended and made durable *before* each request, its ``answer`` line after it. A
postback the ledger shows ``accepted`` is never sent again; nor is one whose last
``sending`` line has no answer (a run was killed mid-request, so the platform may have
accepted it): it is reported as ``unknown`` until its lines are removed from the ledger
by hand. The journal is append-only (a crash can only cut its
last line, which is then ignored). The ledger, every printed line and every error hold
redacted URLs only.

>>> import tempfile, cfanalytics as cf
>>> from pathlib import Path
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> f = Path(tempfile.mkdtemp()) / "pb.txt"
>>> _ = f.write_text("https://ts.example/pb?cid=1&token=s3cr3t\\n")
>>> refire(store, f).would_send
1
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cfanalytics.exceptions import InputError, StoreBusyError, StoreError
from cfanalytics.lease import Lease, file_lock
from cfanalytics.redaction import redact
from cfanalytics.storage import LocalLocation, Location, PreconditionFailedError, is_remote, location

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = ["LEDGER_FILE", "FileJournal", "Journal", "ObjectJournal", "RefireResult", "journal", "refire", "run_refire"]

LEDGER_FILE: Final = "refire_ledger.jsonl"
#: The ``flock`` file of a local store folder.
LOCK_FILE: Final = ".refire.lock"
#: The lease object under the prefix of a store on object storage.
LEASE_FILE: Final = ".refire.lease"
#: Conditional writes an append to a journal on object storage tries before giving up.
APPEND_TRIES: Final = 8
USER_AGENT: Final = "cfanalytics-refire/1"
_MAX_ERROR_CHARS: Final = 300
#: Longest wait a ``Retry-After`` header can impose, in seconds.
MAX_RETRY_AFTER: Final = 60.0


@dataclass
class RefireResult:
    """Counts of one run and one redacted line per postback."""

    would_send: int = 0
    accepted: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: int = 0
    unknown: int = 0
    attempts: int = 0
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts and lines, for ``--json``."""
        names = ("would_send", "accepted", "failed", "rejected", "skipped", "unknown", "attempts")
        return {k: getattr(self, k) for k in names} | {"postbacks": self.lines}


def read_postbacks(path: Path) -> list[tuple[str, str]]:
    """``(key, url)`` per line of a refire file; a bad line raises a one-line error naming file and line."""
    out: list[tuple[str, str]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
                key, url = str(doc["key"]), str(doc["url"])
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}: line {n}: expected a JSON object with 'key' and 'url'") from None
        else:
            key = url = line
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{path}: line {n}: not an http(s) URL: {redact(url)[:120]}")
        out.append((key, url))
    return out


class Journal(ABC):
    """The refire ledger of one store and the lock that makes one run at a time its only writer."""

    #: The journal's name in messages (a path or an ``s3://`` URI).
    where: str

    @abstractmethod
    def read_text(self) -> str | None:
        """The journal's text, or None when there is none yet."""

    @abstractmethod
    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a line, durably, before returning."""

    @abstractmethod
    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Hold the refire lock for the ``with`` block, or raise a one-line :class:`StoreBusyError`."""

    @abstractmethod
    def repair(self) -> None:
        """Before appending: cut a torn last line a crash left."""

    @abstractmethod
    def confirm(self) -> None:
        """Before a request: make sure this run still holds the lock."""


class FileJournal(Journal):
    """``refire_ledger.jsonl`` in a local store folder (mode 0600, appended with ``O_APPEND`` and ``fsync``),
    locked by an ``flock`` on ``.refire.lock``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LEDGER_FILE
        self.where = str(self.path)

    def read_text(self) -> str | None:
        if not self.path.exists():
            return None
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"{self.path}: unreadable refire ledger ({exc.strerror or exc})") from None

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.folder / LOCK_FILE, busy=f"{self.folder}: another refire is running")

    def repair(self) -> None:
        """Cut a torn last line, so appends start on a line of their own.

        A torn ``sending`` line means the request had not started (it is sent after the line is
        on disk); a torn ``answer`` line leaves its ``sending`` line without answer: ``unknown``.
        """
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
                os.fsync(fh.fileno())

    def confirm(self) -> None:
        """Nothing to do: an ``flock`` is held until released."""

    def append(self, record: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, _line(record))
            os.fsync(fd)
        finally:
            os.close(fd)


class ObjectJournal(Journal):
    """``refire_ledger.jsonl`` under a store's prefix on object storage, locked by the lease ``.refire.lease``.

    An append reads the document and its version tag and writes it back with the new line, only if
    it is unchanged (``If-Match``; ``If-None-Match: *`` for the first line). On a conflict it reads
    again and retries (up to :data:`APPEND_TRIES` times), so no line is ever lost or overwritten.
    """

    def __init__(self, where: Location) -> None:
        self.location = where
        self.where = where.child(LEDGER_FILE)
        self._lease: Lease | None = None
        self._last: tuple[bytes, str] | None = None  # the document as this run last wrote it

    def read_text(self) -> str | None:
        found = self.location.read(LEDGER_FILE)
        self._last = found
        return None if found is None else found[0].decode("utf-8")

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        lease = Lease(self.location, name=LEASE_FILE)
        try:
            lease.acquire(timeout=0)
        except StoreBusyError:
            raise StoreBusyError(f"{self.location.uri}: another refire is running") from None
        self._lease = lease
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._held()

    def repair(self) -> None:
        """Nothing to do: a write to object storage is all or nothing."""

    def confirm(self) -> None:
        """Renew the lease now (conditionally): a run whose lease expired and was taken over stops here."""
        if self._lease is not None:
            self._lease.renew()

    def append(self, record: dict[str, Any]) -> None:
        line = _line(record)
        found = self._last if self._last is not None else self.location.read(LEDGER_FILE)
        for _ in range(APPEND_TRIES):
            data = b"" if found is None else found[0]
            if data and not data.endswith(b"\n"):  # never written so by refire; keep lines apart anyway
                data = data[: data.rfind(b"\n") + 1]
            data += line
            try:
                if found is None:
                    tag = self.location.write(LEDGER_FILE, data, if_absent=True)
                else:
                    tag = self.location.write(LEDGER_FILE, data, if_match=found[1])
            except PreconditionFailedError:  # written meanwhile: read it again, add the line to what is there
                found = self.location.read(LEDGER_FILE)
                continue
            self._last = (data, tag)
            return
        self._last = None
        raise StoreError(f"{self.where}: the refire ledger kept changing; {APPEND_TRIES} appends in a row conflicted")


def journal(store: LogStore | Location | str | os.PathLike[str]) -> Journal:
    """The refire journal of ``store``: a :class:`LogStore`, its location, a store folder or an ``s3://`` URI.

    >>> import tempfile
    >>> type(journal(tempfile.mkdtemp())).__name__, type(journal("s3://lake/acme")).__name__
    ('FileJournal', 'ObjectJournal')
    """
    from cfanalytics.store import LogStore

    if isinstance(store, LogStore):
        where = store.location
    elif isinstance(store, Location):
        where = store
    else:
        where = location(store if is_remote(store) else Path(store))
    if isinstance(where, LocalLocation):
        return FileJournal(where.path)
    return ObjectJournal(where)


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def read_ledger(store: LogStore | Location | str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The postbacks of the refire ledger of ``store`` (as :func:`journal` takes it) by key:
    ``state`` (``accepted``, ``rejected``, ``failed``, ``unknown``), ``url`` (redacted), ``attempts``
    (``at``, ``status``, ``error``, ``seconds``), ``accepted_at``. Empty when there is no ledger yet."""
    return _parse(journal(store))


def _parse(source: Journal) -> dict[str, dict[str, Any]]:
    text = source.read_text()
    if text is None:
        return {}
    lines = text.splitlines()
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            key, event = rec["key"], rec["event"]
        except (ValueError, KeyError, TypeError):
            if n == len(lines):  # a crash cut the last line: its request is 'sending' at most
                break
            raise StoreError(f"{source.where}: line {n} is not a ledger record; move it aside to start anew") from None
        entry = out.setdefault(key, {"url": rec.get("url"), "state": "pending", "attempts": []})
        if event == "sending":
            entry["attempts"].append({"at": rec["at"], "status": None, "error": None, "seconds": None})
            entry["state"] = "unknown"
        elif event == "answer" and entry["attempts"]:
            entry["attempts"][-1].update(status=rec["status"], error=rec["error"], seconds=rec["seconds"])
            entry["state"] = rec["state"]
            if rec["state"] == "accepted":
                entry["accepted_at"] = entry["attempts"][-1]["at"]
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _send_once(url: str, timeout: float) -> tuple[int | None, str | None, float | None]:
    """One GET: ``(status, None, retry_after)`` for an HTTP answer, ``(None, error, None)`` for no answer.

    ``retry_after`` is the seconds of a ``Retry-After`` header on a 429 or 503 (capped at
    :data:`MAX_RETRY_AFTER`), else None.
    """
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status), None, None
    except urllib.error.HTTPError as exc:
        wait = None
        header = exc.headers.get("Retry-After") if exc.headers else None
        if exc.code in (429, 503) and header and header.strip().isdigit():
            wait = min(float(header.strip()), MAX_RETRY_AFTER)
        exc.close()
        return int(exc.code), None, wait
    except TimeoutError:
        return None, f"timed out after {timeout:g} s", None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return None, f"timed out after {timeout:g} s", None
        return None, f"no connection: {reason}", None
    except (OSError, ValueError) as exc:
        return None, f"no answer: {exc}", None


def _retryable(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


def refire(
    store: LogStore,
    file: str | Path,
    *,
    send: bool = False,
    rate: float = 2.0,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 1.0,
    echo: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> RefireResult:
    """Print (redacted) or send the postbacks of ``file``; see the module doc. ``echo`` receives each line."""
    if rate <= 0 or timeout <= 0 or retries < 0 or backoff < 0:
        raise InputError("refire: rate and timeout must be > 0, retries and backoff ≥ 0")
    postbacks = read_postbacks(Path(file))
    rng = rng or random.Random()
    result = RefireResult()

    def say(line: str) -> None:
        line = redact(line)
        result.lines.append(line)
        if echo is not None:
            echo(line)

    book = journal(store)
    with book.exclusive():
        if send:
            book.repair()
        ledger = _parse(book)
        last_sent = [float("-inf")]
        for key, url in postbacks:
            shown = redact(url)
            entry = ledger.get(key)
            if entry is not None and entry["state"] == "accepted":
                result.skipped += 1
                say(f"skip (accepted {entry.get('accepted_at')}): {shown}")
                continue
            if entry is not None and entry["state"] == "unknown":
                result.unknown += 1
                say(f"skip (outcome unknown: a run stopped mid-request; check, then edit {book.where}): {shown}")
                continue
            if not send:
                result.would_send += 1
                say(f"would send: GET {shown}")
                continue
            state, answers = _fire(
                url,
                journal=lambda rec, key=key, shown=shown: book.append({"key": key, "url": shown, **rec}),
                confirm=book.confirm,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                sleep=sleep,
                rng=rng,
                pace=lambda: _pace(last_sent, rate, sleep),
            )
            result.attempts += len(answers)
            setattr(result, state, getattr(result, state) + 1)
            last = answers[-1]
            answer = last["status"] if last["status"] is not None else last["error"]
            say(f"{state} ({answer}, {len(answers)} attempt(s)): {shown}")
    return result


def _pace(last_sent: list[float], rate: float, sleep: Callable[[float], None]) -> None:
    """Wait until ``1 / rate`` seconds have passed since the previous request."""
    wait = last_sent[0] + 1 / rate - time.monotonic()
    if wait > 0:
        sleep(wait)
    last_sent[0] = time.monotonic()


def _fire(
    url: str,
    *,
    journal: Callable[[dict[str, Any]], None],
    confirm: Callable[[], None],
    timeout: float,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None],
    rng: random.Random,
    pace: Callable[[], None],
) -> tuple[str, list[dict[str, Any]]]:
    """Send ``url`` until accepted, rejected or out of retries, journalling each attempt before and after."""
    answers: list[dict[str, Any]] = []
    state = "failed"
    asked: float | None = None
    for n in range(retries + 1):
        if n:
            delay = backoff * 2 ** (n - 1)
            sleep(max(delay / 2 + rng.uniform(0, delay / 2), asked or 0.0))
        pace()
        confirm()
        journal({"event": "sending", "at": _now()})
        started = time.monotonic()
        status, error, asked = _send_once(url, timeout)
        if status is not None and 200 <= status < 300:
            state = "accepted"
        elif not _retryable(status):
            state = "rejected"
        else:
            state = "failed" if n == retries else "retry"
        answer = {
            "status": status,
            "error": redact(error)[:_MAX_ERROR_CHARS] if error else None,
            "seconds": round(time.monotonic() - started, 3),
        }
        journal({"event": "answer", "state": state, **answer})
        answers.append(answer)
        if state != "retry":
            return state, answers
    return state, answers


def run_refire(
    store_dir: str,
    file: str,
    *,
    send: bool = False,
    rate: float = 2.0,
    timeout: float = 10.0,
    retries: int = 3,
    as_json: bool = False,
) -> int:
    """Body of ``cfanalytics refire``: lines as they happen (or one JSON document); exit 1 when a postback
    failed, was rejected or has an unknown outcome, else 0."""
    from cfanalytics.store import LogStore

    store = LogStore(store_dir, create=False)
    echo = None if as_json else (lambda line: print(line, flush=True))
    result = refire(store, file, send=send, rate=rate, timeout=timeout, retries=retries, echo=echo)
    if as_json:
        json.dump(result.as_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        counts = result.as_dict()
        counts.pop("postbacks")
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if (result.failed or result.rejected or result.unknown) else 0
