"""A small JSON-over-HTTPS client of the ClickFlare API (standard library only).

It sends the key only as the ``api-key`` header, keeps to a rate limit, retries
what is worth retrying (429 with ``Retry-After``, 408, 5xx, time-outs, dropped
connections, truncated or undecodable bodies) with exponential back-off and
jitter, and turns every other refusal into one line without the key.

>>> _retry_after({"Retry-After": "3"}, datetime(2026, 11, 16, tzinfo=UTC))
3.0
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import json
import logging
import ssl
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cfanalytics import __version__
from cfanalytics.pull._options import API_KEY_ENV, PullError, PullOptions, one_line
from cfanalytics.redaction import redact

__all__ = ["ApiClient", "TransientError"]

_log = logging.getLogger("cfanalytics.pull")


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiClient:
    """A small JSON-over-HTTPS client of the ClickFlare API (standard library only).

    Sends ``api-key`` on every request, keeps to ``rate_limit`` requests per
    second, and retries transient failures with exponential back-off and jitter.
    Every message it produces has the key replaced by ``***`` and goes through
    :func:`cfanalytics.redaction`.
    """

    def __init__(self, base_url: str, api_key: str, options: PullOptions) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.options = options
        self.requests = 0
        self.retries = 0
        self._next_slot = 0.0
        self._opener = urllib.request.build_opener()
        self._agent = f"cfanalytics/{__version__}"

    # -- public
    def post(self, path: str, body: Mapping[str, Any], *, what: str = "") -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the decoded JSON object, after retries."""
        url = self.base_url + path
        payload = json.dumps(body).encode("utf-8")
        opt = self.options
        label = what or path
        for attempt in range(1, opt.max_attempts + 1):
            self._throttle()
            self.requests += 1
            try:
                return self._once(url, path, payload)
            except TransientError as exc:
                problem, retry_after = self.scrub(str(exc)), exc.retry_after
            if attempt == opt.max_attempts:
                raise PullError(f"{label}: ClickFlare API still failing after {attempt} attempts ({problem})")
            delay = self._delay(attempt, retry_after, label, problem)
            self.retries += 1
            _log.warning("%s: %s; retry %d of %d in %.1f s", label, problem, attempt, opt.max_attempts - 1, delay)
            opt.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def scrub(self, text: str) -> str:
        """``text`` without the key (and with every other credential redacted), on one line."""
        if self._key:
            text = text.replace(self._key, "***")
        return " ".join((redact(text) or "").split())

    # -- internals
    def _throttle(self) -> None:
        interval = 1.0 / self.options.rate_limit
        now = self.options.monotonic()
        if now < self._next_slot:
            self.options.sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + interval

    def _delay(self, attempt: int, retry_after: float | None, label: str, problem: str) -> float:
        opt = self.options
        base = min(opt.backoff_cap, opt.backoff * 2 ** (attempt - 1))
        delay = base * (0.5 + opt.rng.random() / 2)
        if retry_after is not None:
            if retry_after > opt.max_retry_after:
                raise PullError(f"{label}: {problem}; the API asks to wait {retry_after:.0f} s, try again later")
            delay = max(delay, retry_after)
        return delay

    def _once(self, url: str, path: str, payload: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=payload,
            method="POST",
            headers={
                "api-key": self._key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
                "User-Agent": self._agent,
            },
        )
        try:
            with self._opener.open(request, timeout=self.options.timeout) as resp:
                status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                status, headers = exc.code, exc.headers
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise PullError(f"{self.scrub(self.base_url)}: TLS certificate not trusted ({reason.reason})") from None
            raise TransientError(_transport_problem(exc)) from None
        if not 200 <= status < 300:
            self._refuse(status, headers, body, path)
        return _decode(headers, body)

    def _refuse(self, status: int, headers: Any, body: bytes, path: str) -> None:
        """Raise for a non-2xx answer: transient ones to retry, the others as one line."""
        if status == 429:
            raise TransientError("HTTP 429 too many requests", _retry_after(headers, self.options.now()))
        if status == 408 or status >= 500:
            raise TransientError(f"HTTP {status}", _retry_after(headers, self.options.now()))
        where = self.scrub(self.base_url + path)
        if status == 401:
            raise PullError(f"ClickFlare API refused the API key (HTTP 401 on {where}): check {API_KEY_ENV}")
        if status == 403:
            raise PullError(
                f"ClickFlare API denied access (HTTP 403 on {where}): "
                "the API key is not valid for this account, or its plan has no API access"
            )
        if status == 404:
            raise PullError(f"ClickFlare API has no {where} (HTTP 404): check --base-url")
        detail = self.scrub(_server_message(_unzipped(headers, body)))
        said = f": {detail}" if detail else ""
        raise PullError(f"ClickFlare API rejected the request (HTTP {status} on {where}){said}")


def _transport_problem(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, http.client.IncompleteRead):
        return "truncated body"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, http.client.RemoteDisconnected | ConnectionError):
        return "connection dropped"
    return f"network error: {one_line(reason) if isinstance(reason, BaseException) else reason}"


def _gzipped(headers: Any) -> bool:
    return headers is not None and (headers.get("Content-Encoding") or "").strip().lower() == "gzip"


def _unzipped(headers: Any, body: bytes) -> bytes:
    """An error answer's body, decompressed when it can be (else as it came)."""
    if _gzipped(headers):
        with contextlib.suppress(EOFError, OSError, zlib.error):
            return gzip.decompress(body)
    return body


def _decode(headers: Any, body: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a truncated or undecodable body is transient."""
    try:
        if _gzipped(headers):
            body = gzip.decompress(body)
        doc = json.loads(body.decode("utf-8"))
    except (EOFError, OSError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise TransientError(f"truncated or invalid response body ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise PullError('ClickFlare API answered with JSON that is not {"items": [...], "totals": {...}}')
    return doc


def _retry_after(headers: Any, now: datetime) -> float | None:
    """Seconds asked by ``Retry-After`` (delta-seconds or an HTTP date), if any.

    >>> _retry_after({"Retry-After": "3"}, datetime(2026, 11, 16, tzinfo=UTC))
    3.0
    >>> _retry_after({"Retry-After": "Mon, 16 Nov 2026 00:00:30 GMT"}, datetime(2026, 11, 16, tzinfo=UTC))
    30.0
    """
    value = (headers.get("Retry-After") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _server_message(body: bytes) -> str:
    text = body[:2000].decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        doc = json.loads(text)
        if isinstance(doc, dict):
            for key in ("message", "error", "detail", "errors"):
                if doc.get(key):
                    text = doc[key] if isinstance(doc[key], str) else json.dumps(doc[key])
                    break
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]
