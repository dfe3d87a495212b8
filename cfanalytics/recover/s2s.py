"""Plain S2S postbacks to fire again: one JSON object per line (docs/contract.md §6).

``{"key": <conversion identity>, "click_id": …, "conversion_time": …, "url": <the URL>}``
— the URL is the real one, secrets included, because it is what
``cfanalytics refire`` sends: the file is written with mode 0600 and the manifest
says it holds secrets. Everything printed about it is redacted.

>>> import polars as pl
>>> from datetime import datetime, UTC
>>> rows = pl.DataFrame({"key": ["c1||"], "click_id": ["c1"], "url": ["https://ts.example/pb?cid=v1"],
...                      "conversion_time": [datetime(2026, 11, 20, tzinfo=UTC)]})
>>> render(rows)
'{"key": "c1||", "click_id": "c1", "conversion_time": "2026-11-20T00:00:00Z", "url": "https://ts.example/pb?cid=v1"}\\n'
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Final

import polars as pl

FILE_NAME: Final = "s2s_postbacks.jsonl"
FILE_MODE: Final = 0o600


def render(rows: pl.DataFrame) -> str:
    """The file's text: one JSON line per included conversion of destination ``s2s``."""
    lines = []
    for r in rows.iter_rows(named=True):
        when = r["conversion_time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(json.dumps({"key": r["key"], "click_id": r["click_id"], "conversion_time": when, "url": r["url"]}))
    return "".join(line + "\n" for line in lines)
