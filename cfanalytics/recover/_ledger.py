"""The recovery ledger: which conversions already went into a recovery file, and which file.

One JSON file in the store folder, ``recovery_ledger.json``:
``{"version": 1, "conversions": {key: {"destination", "file", "recorded_at", "click_id",
"conversion_time"}}}``, the key being the conversion's identity (click id, ct, txid).
It is read and rewritten under the store's writer lock and replaced atomically, so two
runs never both claim a conversion and a crash never leaves half a ledger. It holds
no URL and no secret. The files are written before the ledger: a crash in between
leaves files whose conversions a later run writes again, never conversions that are in
no file; the platforms de-duplicate such a repeat (Meta and TikTok by ``event_id``,
Google and Microsoft by click id and conversion time) and ``refire`` by its own ledger.

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> add(folder, {"c1||": {"destination": "s2s", "file": "/out/s2s_postbacks.jsonl"}})
>>> sorted(read(folder))
['c1||']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cfanalytics.exceptions import StoreError
from cfanalytics.recover._files import write_json_atomic
from cfanalytics.storage import LocalLocation, Location

LEDGER_FILE: Final = "recovery_ledger.json"
VERSION: Final = 1


def read(folder: Path | Location) -> dict[str, dict[str, Any]]:
    """The ledger's entries by conversion key (empty when there is no ledger yet).

    ``folder``: the store's folder, or its :class:`~cfanalytics.storage.Location` (object storage too).
    """
    if isinstance(folder, Location) and folder.remote:
        found = folder.read(LEDGER_FILE)
        path: Path | str = folder.child(LEDGER_FILE)
        text = None if found is None else found[0].decode("utf-8")
    else:
        path = Path(folder.path if isinstance(folder, LocalLocation) else folder) / LEDGER_FILE
        text = path.read_text(encoding="utf-8") if path.exists() else None
    if text is None:
        return {}
    try:
        doc = json.loads(text)
        entries = doc["conversions"]
        if doc.get("version") != VERSION or not isinstance(entries, dict):
            raise ValueError("unexpected layout")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: unreadable recovery ledger ({exc}); move it aside to start a new one") from None
    return entries


def add(folder: Path | Location, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Add ``entries`` (key → facts) to the ledger; the caller holds the store lock. Existing keys are kept."""
    tag = folder.read_tag(LEDGER_FILE) if isinstance(folder, Location) and folder.remote else None
    current = read(folder)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key, facts in entries.items():
        current.setdefault(key, {**facts, "recorded_at": now})
    doc = {"version": VERSION, "conversions": current}
    if isinstance(folder, Location) and folder.remote:  # only if unchanged since read (the lease guards it)
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        folder.write(LEDGER_FILE, data, if_absent=tag is None, if_match=tag)
        return
    write_json_atomic(Path(folder.path if isinstance(folder, LocalLocation) else folder) / LEDGER_FILE, doc)
