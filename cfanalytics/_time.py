"""Time text shared by every output: ISO 8601 UTC with ``Z``.

>>> from datetime import UTC, datetime
>>> iso(datetime(2026, 11, 20, 5, 0, 4, tzinfo=UTC)), iso(None)
('2026-11-20T05:00:04Z', None)
"""

from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with ``Z`` (microseconds only when present, trailing zeros dropped).

    >>> from datetime import UTC, datetime
    >>> iso(datetime(2026, 11, 20, 5, 0, 4, 120000, tzinfo=UTC))
    '2026-11-20T05:00:04.12Z'
    """
    if value is None:
        return None
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"
