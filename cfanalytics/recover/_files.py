"""Atomic file writes shared by the recovery files, manifests and ledgers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (readers never see half a file).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(p, "x", mode=0o600); oct(p.stat().st_mode & 0o777), p.read_text()
    ('0o600', 'x')
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, doc: Any, *, mode: int = 0o644) -> None:
    """:func:`write_atomic` of ``doc`` as indented JSON."""
    write_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", mode=mode)
