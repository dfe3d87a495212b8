"""Where a store's bytes live: a local folder or an S3-compatible bucket, behind one small interface.

A :class:`Location` is a folder-like root (``/data/store`` or ``s3://bucket/prefix``) with the few
operations the store needs besides Delta itself: read and write small documents with a version tag
(writes can be conditional: only if absent, or only if the tag is unchanged), delete, list, upload a
local file, and open a Parquet footer. Delta tables under it are read and written by delta-rs and
Polars with :attr:`Location.options` (``storage_options``).

On object storage the conditional writes are ``If-None-Match: *`` and ``If-Match: <ETag>`` PUTs
(through ``obstore``, the Python binding of the Rust ``object_store`` crate that delta-rs uses too:
one client, the same configuration keys). A local folder has no such writes; its writers are
serialised by ``flock`` instead, and a "conditional" local write is checked, then replaced atomically.

Credentials and the endpoint come from the standard ``AWS_*`` environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``, ``AWS_ALLOW_HTTP`` for a plain-HTTP local server), overridden by ``storage_options``.

>>> import tempfile
>>> loc = location(tempfile.mkdtemp())
>>> tag = loc.write("a.json", b"{}", if_absent=True)
>>> loc.read("a.json")[0]
b'{}'
>>> loc.write("a.json", b"[]", if_match="stale")
Traceback (most recent call last):
...
cfanalytics.storage.PreconditionFailedError: a.json changed meanwhile
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from cfanalytics.exceptions import StoreError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = ["Location", "PreconditionFailedError", "is_remote", "location", "storage_options"]

#: URL schemes of object stores (S3 and S3-compatible servers).
REMOTE_SCHEMES: Final = ("s3://", "s3a://")
#: ``AWS_*`` environment variables passed on to delta-rs, Polars and the object-store client.
AWS_ENV: Final = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_SKIP_SIGNATURE",
)
#: Options of the HTTP client rather than of S3 (``obstore`` takes them apart).
_CLIENT_KEYS: Final = {"AWS_ALLOW_HTTP": "allow_http", "ALLOW_HTTP": "allow_http"}


class PreconditionFailedError(StoreError):
    """A conditional write lost: the object exists already, or changed since it was read."""


def is_remote(where: str | os.PathLike[str]) -> bool:
    """Whether ``where`` names an object store (``s3://…``) rather than a local folder.

    >>> is_remote("s3://lake/store"), is_remote("/tmp/store")
    (True, False)
    """
    return isinstance(where, str) and where.lower().startswith(REMOTE_SCHEMES)


def storage_options(given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``storage_options`` of an object store: the ``AWS_*`` environment, then ``given`` over it.

    >>> storage_options({"aws_region": "eu-west-1"})["AWS_REGION"]
    'eu-west-1'
    """
    out = {k: os.environ[k] for k in AWS_ENV if os.environ.get(k)}
    if "AWS_REGION" not in out and "AWS_DEFAULT_REGION" in out:
        out["AWS_REGION"] = out["AWS_DEFAULT_REGION"]
    out.pop("AWS_DEFAULT_REGION", None)
    if "AWS_ENDPOINT_URL_S3" in out:
        out.setdefault("AWS_ENDPOINT_URL", out.pop("AWS_ENDPOINT_URL_S3"))
    for name, value in (given or {}).items():
        key = name.upper()
        out[key if key.startswith("AWS_") else f"AWS_{key}"] = str(value)
    return out


def location(where: str | os.PathLike[str], options: Mapping[str, str] | None = None) -> Location:
    """The :class:`Location` of a local folder or an ``s3://bucket/prefix`` URI."""
    if is_remote(where):
        return ObjectLocation(str(where), storage_options(options))
    return LocalLocation(Path(where))


class Location(ABC):
    """A folder-like root of a store's files (local or on object storage)."""

    #: The root as given: a local path, or ``s3://bucket/prefix`` (never with credentials).
    uri: str
    #: ``storage_options`` for delta-rs and Polars (None for a local folder).
    options: dict[str, str] | None

    @property
    def remote(self) -> bool:
        """Whether the bytes are on object storage."""
        return self.options is not None

    def check(self) -> None:
        """Raise a one-line :class:`StoreError` unless the location can be reached (nothing to do locally)."""
        return

    @abstractmethod
    def join(self, *parts: str) -> Location:
        """The location of a sub-folder."""

    def child(self, rel: str) -> str:
        """The URI (or path) of ``rel`` under this root, for delta-rs and Polars."""
        return f"{self.uri.rstrip('/')}/{rel}" if rel else self.uri

    @abstractmethod
    def read(self, rel: str) -> tuple[bytes, str] | None:
        """``(bytes, version tag)`` of ``rel``, or None when absent."""

    @abstractmethod
    def write(self, rel: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        """Write ``rel`` whole (atomically); the new version tag.

        ``if_absent``: only if there is no ``rel`` yet; ``if_match``: only if its tag
        is still that. Otherwise :class:`PreconditionFailedError` and nothing is written.
        """

    @abstractmethod
    def delete(self, rel: str) -> None:
        """Remove ``rel`` (nothing when absent)."""

    @abstractmethod
    def names(self, prefix: str = "") -> list[str]:
        """Every file under ``prefix`` (recursive), relative to the root, sorted."""

    def exists(self, rel: str = "") -> bool:
        """Whether ``rel`` is a file, or a folder holding any."""
        return self.read_tag(rel) is not None or bool(self.names(f"{rel.rstrip('/')}/" if rel else ""))

    @abstractmethod
    def read_tag(self, rel: str) -> str | None:
        """The version tag of ``rel`` (None when absent), without its bytes."""

    @abstractmethod
    def upload(self, rel: str, source: Path) -> None:
        """Copy the local file ``source`` to ``rel``."""

    @abstractmethod
    def parquet_metadata(self, rel: str) -> pq.FileMetaData:
        """The footer of the Parquet file ``rel`` (reads only the footer on object storage)."""

    @abstractmethod
    def open(self, rel: str) -> BinaryIO:
        """``rel`` opened for reading (seekable; on object storage, read by byte ranges)."""


class LocalLocation(Location):
    """A local folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uri = str(path)
        self.options = None

    def join(self, *parts: str) -> LocalLocation:
        return LocalLocation(self.path.joinpath(*parts))

    def child(self, rel: str) -> str:
        return str(self.path / rel) if rel else self.uri

    def read(self, rel: str) -> tuple[bytes, str] | None:
        try:
            data = (self.path / rel).read_bytes()
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def exists(self, rel: str = "") -> bool:
        return (self.path / rel).exists()

    def read_tag(self, rel: str) -> str | None:
        found = self.read(rel) if (self.path / rel).is_file() else None
        return None if found is None else found[1]

    def write(self, rel: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        target = self.path / rel
        if if_absent or if_match is not None:
            current = self.read(rel)
            if (if_absent and current is not None) or (
                if_match is not None and (current is None or current[1] != if_match)
            ):
                raise PreconditionFailedError(f"{rel} changed meanwhile")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return _digest(data)

    def delete(self, rel: str) -> None:
        (self.path / rel).unlink(missing_ok=True)

    def names(self, prefix: str = "") -> list[str]:
        base = self.path / prefix if prefix else self.path
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.path).as_posix() for p in base.rglob("*") if p.is_file())

    def upload(self, rel: str, source: Path) -> None:
        import shutil

        target = self.path / rel
        if target != source:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)

    def parquet_metadata(self, rel: str) -> pq.FileMetaData:
        import pyarrow.parquet as pq

        return pq.read_metadata(self.path / rel)

    def open(self, rel: str) -> BinaryIO:
        return (self.path / rel).open("rb")


class ObjectLocation(Location):
    """A prefix of a bucket on S3 or an S3-compatible server (``s3://bucket/prefix``)."""

    def __init__(self, uri: str, options: dict[str, str]) -> None:
        scheme, _, rest = uri.partition("://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StoreError(f"{uri}: no bucket (use s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"{scheme.lower()}://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.options = options
        self._client: Any = None

    def join(self, *parts: str) -> ObjectLocation:
        return ObjectLocation("/".join([self.uri, *(p.strip("/") for p in parts)]), self.options or {})

    @property
    def client(self) -> Any:
        """The ``obstore`` S3 store of the bucket (made on first use)."""
        if self._client is None:
            try:
                from obstore.store import S3Store
            except ImportError:
                raise StoreError(f"{self.uri}: stores on S3 need obstore: pip install 'cfanalytics[s3]'") from None

            config: dict[str, Any] = {}
            client: dict[str, Any] = {}
            for key, value in (self.options or {}).items():
                if key in _CLIENT_KEYS:
                    client[_CLIENT_KEYS[key]] = value.lower() in ("1", "true", "yes")
                elif key.startswith("AWS_S3_") or key in AWS_ENV:  # delta-rs-only keys are not the client's
                    config[key] = value
            config.pop("AWS_S3_ALLOW_UNSAFE_RENAME", None)
            config.pop("AWS_S3_LOCKING_PROVIDER", None)
            try:
                self._client = S3Store(self.bucket, config=cast("Any", config), client_options=cast("Any", client))
            except Exception as exc:  # a malformed option: one line
                raise StoreError(f"{self.uri}: {describe(exc)}") from None
        return self._client

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def read(self, rel: str) -> tuple[bytes, str] | None:
        import obstore

        client = self.client
        try:
            got = obstore.get(client, self._key(rel))
            data = bytes(got.bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"{self.child(rel)}: {describe(exc)}") from None
        return data, str(got.meta.get("e_tag") or _digest(data))

    def read_tag(self, rel: str) -> str | None:
        import obstore

        client = self.client
        try:
            meta = obstore.head(client, self._key(rel))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"{self.child(rel)}: {describe(exc)}") from None
        return str(meta.get("e_tag") or "")

    def write(self, rel: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        mode: Any = "create" if if_absent else ({"e_tag": if_match} if if_match is not None else "overwrite")
        client = self.client
        try:
            result = obstore.put(client, self._key(rel), data, mode=mode)
        except (AlreadyExistsError, PreconditionError):
            raise PreconditionFailedError(f"{rel} changed meanwhile") from None
        except FileExistsError:
            raise PreconditionFailedError(f"{rel} changed meanwhile") from None
        except Exception as exc:
            raise StoreError(f"{self.child(rel)}: {describe(exc)}") from None
        return str(result.get("e_tag") or _digest(data))

    def delete(self, rel: str) -> None:
        import obstore

        client = self.client
        try:
            obstore.delete(client, self._key(rel))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise StoreError(f"{self.child(rel)}: {describe(exc)}") from None

    def names(self, prefix: str = "") -> list[str]:
        import obstore

        base = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: list[str] = []
        client = self.client
        try:
            for chunk in obstore.list(client, base or None):
                out.extend(str(m["path"])[strip:] for m in chunk)
        except Exception as exc:
            raise StoreError(f"{self.uri}: {describe(exc)}") from None
        return sorted(out)

    def exists(self, rel: str = "") -> bool:
        import obstore

        if rel and self.read_tag(rel) is not None:
            return True
        client = self.client
        try:
            for chunk in obstore.list(client, self._key(rel) or None, chunk_size=1):
                return bool(chunk)
        except Exception as exc:
            raise StoreError(f"{self.uri}: {describe(exc)}") from None
        return False

    def upload(self, rel: str, source: Path) -> None:
        import obstore

        client = self.client
        try:
            obstore.put(client, self._key(rel), source)
        except Exception as exc:
            raise StoreError(f"{self.child(rel)}: {describe(exc)}") from None

    def parquet_metadata(self, rel: str) -> pq.FileMetaData:
        import pyarrow.parquet as pq

        with self.open(rel) as f:
            return pq.read_metadata(f)

    def open(self, rel: str) -> BinaryIO:
        return cast("BinaryIO", _RangeFile(self, rel))

    def check(self) -> None:
        """Raise a one-line :class:`StoreError` unless the bucket answers to these credentials."""
        endpoint = (self.options or {}).get("AWS_ENDPOINT_URL", "")
        allow = (self.options or {}).get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")
        if endpoint.lower().startswith("http://") and not allow:
            raise StoreError(f"{self.uri}: AWS_ENDPOINT_URL is plain HTTP: set AWS_ALLOW_HTTP=true to use it")
        self.names(".cfanalytics-probe/")


class _RangeFile:
    """A read-only, seekable file over an object, fetched by byte ranges (for Parquet footers)."""

    def __init__(self, where: ObjectLocation, rel: str) -> None:
        import obstore

        self._where, self._key = where, where._key(rel)
        try:
            self._size = int(obstore.head(where.client, self._key)["size"])
        except Exception as exc:
            raise StoreError(f"{where.child(rel)}: {describe(exc)}") from None
        self._pos = 0
        self.closed = False

    def __enter__(self) -> _RangeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self._size + offset
        return self._pos

    def read(self, n: int = -1) -> bytes:
        import obstore

        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        data = bytes(obstore.get_range(self._where.client, self._key, start=self._pos, end=end))
        self._pos = end
        return data

    def close(self) -> None:
        self.closed = True


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")
_HINTS: Final = {
    "InvalidAccessKeyId": "the access key is not known to the server (check AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the server refused the secret key (check AWS_SECRET_ACCESS_KEY)",
    "AccessDenied": "access denied (check the credentials and the bucket's permissions)",
    "NoSuchBucket": "no such bucket (create it first, or check the name)",
    "InvalidBucketName": "not a valid bucket name",
    "Missing AccessKeyId": "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
}


def describe(exc: BaseException) -> str:
    """One line saying what an object-store error means (never credentials or signed URLs).

    >>> describe(RuntimeError("Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>"))
    'no such bucket (create it first, or check the name)'
    """
    from cfanalytics.redaction import redact

    text = str(exc)
    code = _CODE.search(text)
    if code and code.group(1) in _HINTS:
        return _HINTS[code.group(1)]
    if "Missing AccessKeyId" in text or "Missing SecretAccessKey" in text:
        return _HINTS["Missing AccessKeyId"]
    lowered = text.lower()
    if "connection refused" in lowered or "error sending request" in lowered or "dns error" in lowered:
        return "cannot reach the object store (check AWS_ENDPOINT_URL, and AWS_ALLOW_HTTP for a plain-HTTP server)"
    if "timed out" in lowered or "timeout" in lowered:
        return "the object store did not answer in time (check AWS_ENDPOINT_URL)"
    status = _STATUS.search(text)
    if code:
        return f"the object store answered {code.group(1)}" + (f" ({status.group(1)})" if status else "")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return redact(first[:200]) or type(exc).__name__


@contextlib.contextmanager
def scratch_folder(prefix: str = "cfanalytics-") -> Iterator[Path]:
    """A local scratch folder, removed afterwards."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
