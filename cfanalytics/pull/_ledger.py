"""The pull's own files in the store folder: the ledger of windows, and the pull settings.

The ledger (``pull_state.json``) records each (kind, local day) pulled; it
cannot be derived from the Delta commits because a day that brings no new row
makes no commit. The settings (``pull_config.json``) hold the base URL, where
the key is found (never the key) and the extra fields to ask. Both are written
atomically (a temporary file, fsync, rename) under the store lock; on object
storage, as objects under the store's prefix, written only if unchanged since read.

>>> from datetime import date
>>> doc = {"windows": {"events": {"2026-11-16": {"status": "finished"}, "2026-11-17": {"status": "pulled"}}}}
>>> finished_days(doc, "events"), default_start(doc, ["events"])
({'2026-11-16'}, datetime.date(2026, 11, 17))
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cfanalytics.pull._options import PullError, one_line

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

__all__ = [
    "CONFIG_FILE",
    "LEDGER_FILE",
    "default_start",
    "finished_days",
    "ledger",
    "read_config",
    "read_ledger",
    "record_window",
    "write_config",
]

LEDGER_FILE: Final = "pull_state.json"
LEDGER_FORMAT: Final = 1
CONFIG_FILE: Final = "pull_config.json"


def ledger(store: LogStore) -> list[dict[str, Any]]:
    """The pull ledger: one entry per (kind, local day) pulled, oldest first.

    Each entry has ``kind``, ``date``, ``status`` (``finished`` or ``pulled``),
    ``start``/``end`` (UTC), ``rows``, ``pulled_at`` and ``batches``.
    """
    state = read_ledger(store)
    out = []
    for kind, days in sorted(state["windows"].items()):
        for day, entry in sorted(days.items()):
            out.append({"kind": kind, "date": day, **entry})
    return sorted(out, key=lambda e: (e["date"], e["kind"]))


def read_ledger(store: LogStore) -> dict[str, Any]:
    """The ledger document; an absent file, or one kept in another time zone, reads as empty."""
    empty: dict[str, Any] = {"format": LEDGER_FORMAT, "timezone": store.timezone, "windows": {}}
    path = _where(store, LEDGER_FILE)
    try:
        doc = json.loads(_read(store, LEDGER_FILE))
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        raise PullError(f"{path}: unreadable pull ledger ({one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT or doc.get("timezone") != store.timezone:
        return empty  # another zone's days are other windows: pull them again (nothing is stored twice)
    doc.setdefault("windows", {})
    return doc


def record_window(store: LogStore, kind: str, day: date, entry: Mapping[str, Any]) -> None:
    """Record one window in the ledger, atomically, under the store lock."""
    with store.lock():
        tag = store.location.read_tag(LEDGER_FILE) if store.remote else None  # before reading: see _write
        doc = read_ledger(store)
        doc["windows"].setdefault(kind, {})[day.isoformat()] = dict(entry)
        _write(store, LEDGER_FILE, doc, tag)


def finished_days(doc: Mapping[str, Any], kind: str) -> set[str]:
    """Local days of ``kind`` the ledger holds as finished."""
    return {d for d, e in doc["windows"].get(kind, {}).items() if e.get("status") == "finished"}


def default_start(doc: Mapping[str, Any], kinds: Sequence[str]) -> date | None:
    """Without ``--from``: the earliest unfinished day in the ledger, else the day after the last finished."""
    starts: list[date] = []
    for kind in kinds:
        days = doc["windows"].get(kind, {})
        if not days:
            return None
        unfinished = sorted(d for d, e in days.items() if e.get("status") != "finished")
        if unfinished:
            starts.append(date.fromisoformat(unfinished[0]))
        else:
            starts.append(date.fromisoformat(max(days)) + timedelta(days=1))
    return min(starts) if starts else None


def read_config(store: LogStore) -> dict[str, Any]:
    """The pull settings of ``store`` (``{}`` when none were saved).

    Stores configured before the settings had their own file keep them under
    ``pull`` in the store's metadata; those are read when the file is absent.
    """
    path = _where(store, CONFIG_FILE)
    try:
        doc = json.loads(_read(store, CONFIG_FILE))
    except FileNotFoundError:
        legacy = store.metadata.get("pull")
        return dict(legacy) if isinstance(legacy, dict) else {}
    except (OSError, ValueError) as exc:
        raise PullError(f"{path}: unreadable pull settings ({one_line(exc)})") from None
    if not isinstance(doc, dict):
        raise PullError(f"{path}: unreadable pull settings (not a JSON object)")
    return doc


def write_config(store: LogStore, settings: Mapping[str, Any]) -> None:
    """Save the pull settings of ``store``, atomically, under the store lock."""
    with store.lock():
        _write(store, CONFIG_FILE, dict(settings), store.location.read_tag(CONFIG_FILE) if store.remote else None)


def _where(store: LogStore, name: str) -> str:
    """The file's name in messages: its path, or its URI on object storage."""
    return store.location.child(name) if store.remote else str(store.path / name)


def _read(store: LogStore, name: str) -> str:
    """The text of ``name`` in the store (``FileNotFoundError`` when absent)."""
    if not store.remote:
        return (store.path / name).read_text("utf-8")
    found = store.read_document(name)
    if found is None:
        raise FileNotFoundError(name)
    return found[0].decode("utf-8")


def _write(store: LogStore, name: str, doc: Any, tag: str | None = None) -> None:
    """Write ``name`` whole: a local file atomically; an object only if its version is still ``tag``
    (the one the caller saw before reading it; None: only if there is none yet).

    The caller holds the store lock (a lease on object storage), so the object
    changes only if a writer lost its lease meanwhile: then this write fails.
    """
    if not store.remote:
        _write_json(store.path / name, doc)
        return
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
    store.write_document(name, data, if_absent=tag is None, if_match=tag)


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
