"""Fire S2S postbacks again, safely: a dry run by default, a ledger so nothing accepted is sent twice.

:func:`refire` reads a file written by ``cfanalytics recover`` (``s2s_postbacks.jsonl``:
one ``{"key", "url", …}`` object per line; a plain list of URLs, one per line, is read
too, the URL being its own key). Without ``send`` it prints, redacted, what it would
send. With ``send=True`` it sends each URL with ``GET`` (the standard library's
``urllib``), at most ``rate`` requests per second, each with a ``timeout``:

- a 2xx answer is ``accepted``;
- a 429, a 5xx, a time-out or a connection error is retried up to ``retries`` times
  after an exponential back-off with jitter (``backoff`` × 2ⁿ seconds, its second
  half random), then recorded ``failed``;
- any other 4xx is ``rejected`` at once (sending it again would get the same answer).

Every attempt and its answer goes into ``refire_ledger.json`` in the store folder,
rewritten atomically after each postback (under an exclusive lock of its own, so two
runs never fire the same postback); a postback the ledger shows ``accepted`` is never
sent again. The ledger, every printed line and every error hold redacted URLs only.

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
import fcntl
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cfanalytics.exceptions import InputError, StoreBusyError, StoreError
from cfanalytics.recover._files import write_json_atomic
from cfanalytics.redaction import redact

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = ["LEDGER_FILE", "RefireResult", "refire", "run_refire"]

LEDGER_FILE: Final = "refire_ledger.json"
_LOCK_FILE: Final = ".refire.lock"
VERSION: Final = 1
USER_AGENT: Final = "cfanalytics-refire/1"
_MAX_ERROR_CHARS: Final = 300


@dataclass
class RefireResult:
    """Counts of one run and one redacted line per postback."""

    would_send: int = 0
    accepted: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: int = 0
    attempts: int = 0
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts and lines, for ``--json``."""
        return {
            k: getattr(self, k) for k in ("would_send", "accepted", "failed", "rejected", "skipped", "attempts")
        } | {"postbacks": self.lines}


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


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError(f"{folder}: another refire is running") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_ledger(folder: Path) -> dict[str, dict[str, Any]]:
    """The refire ledger's postbacks by key (empty when none yet)."""
    path = Path(folder) / LEDGER_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["postbacks"]
        if doc.get("version") != VERSION or not isinstance(entries, dict):
            raise ValueError("unexpected layout")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: unreadable refire ledger ({exc}); move it aside to start a new one") from None
    return entries


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _send_once(url: str, timeout: float) -> tuple[int | None, str | None]:
    """One GET: ``(status, None)`` for an HTTP answer, ``(None, error)`` for no answer."""
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), None
    except TimeoutError:
        return None, f"timed out after {timeout:g} s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return None, f"timed out after {timeout:g} s"
        return None, f"no connection: {reason}"
    except (OSError, ValueError) as exc:
        return None, f"no answer: {exc}"


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

    folder = store.path
    with _exclusive(folder):
        ledger = read_ledger(folder)
        last_sent = [float("-inf")]
        for key, url in postbacks:
            shown = redact(url)
            entry = ledger.get(key)
            if entry is not None and entry.get("state") == "accepted":
                result.skipped += 1
                say(f"skip (accepted {entry.get('accepted_at')}): {shown}")
                continue
            if not send:
                result.would_send += 1
                say(f"would send: GET {shown}")
                continue
            entry = ledger.setdefault(key, {"url": shown, "state": "pending", "attempts": []})
            entry["url"] = shown
            state = _fire(
                url,
                entry,
                rate=rate,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                sleep=sleep,
                rng=rng,
                last_sent=last_sent,
            )
            result.attempts += len(entry["attempts"]) - entry.get("_before", 0)
            entry.pop("_before", None)
            setattr(result, state, getattr(result, state) + 1)
            last = entry["attempts"][-1]
            answer = last["status"] if last["status"] is not None else last["error"]
            say(f"{state} ({answer}, {len(entry['attempts'])} attempt(s) in all): {shown}")
            write_json_atomic(folder / LEDGER_FILE, {"version": VERSION, "postbacks": ledger}, mode=0o600)
    return result


def _fire(
    url: str,
    entry: dict[str, Any],
    *,
    rate: float,
    timeout: float,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None],
    rng: random.Random,
    last_sent: list[float],
) -> str:
    """Send ``url`` until accepted, rejected or out of retries; append each attempt to ``entry``."""
    entry["_before"] = len(entry["attempts"])
    for n in range(retries + 1):
        if n:
            delay = backoff * 2 ** (n - 1)
            sleep(delay / 2 + rng.uniform(0, delay / 2))
        wait = last_sent[0] + 1 / rate - time.monotonic()
        if wait > 0:
            sleep(wait)
        last_sent[0] = time.monotonic()
        started = time.monotonic()
        status, error = _send_once(url, timeout)
        entry["attempts"].append(
            {
                "at": _now(),
                "status": status,
                "error": redact(error)[:_MAX_ERROR_CHARS] if error else None,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        if status is not None and 200 <= status < 300:
            entry["state"], entry["accepted_at"] = "accepted", entry["attempts"][-1]["at"]
            return "accepted"
        if not _retryable(status):
            entry["state"] = "rejected"
            return "rejected"
    entry["state"] = "failed"
    return "failed"


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
    """Body of ``cfanalytics refire``: lines as they happen (or one JSON document), exit 0 / 1 if any failed."""
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
    return 1 if (result.failed or result.rejected) else 0
