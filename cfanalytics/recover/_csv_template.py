"""The offline click-conversion CSV template Google Ads and Microsoft Advertising share.

A ``Parameters:TimeZone=`` row, then the header row, then one row per conversion;
times are written in UTC with the ``+0000`` time-zone parameter, so no local-time
ambiguity (daylight-saving folds) can shift a conversion.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC
from typing import Final

import polars as pl

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
TIMEZONE_ROW: Final = "Parameters:TimeZone=+0000"


def conversion_name(ct: str | None) -> str:
    """The conversion (goal) name written for a ct: the ct itself, ``conversion`` without one."""
    return ct or "conversion"


def value_text(payout: float | None) -> str:
    """The payout as written: shortest text that reads back the same float; empty when unknown."""
    return "" if payout is None else repr(float(payout))


def render(rows: pl.DataFrame, click_header: str) -> str:
    """The CSV text: time-zone row, header, one line per row of ``rows`` (``platform_click_id``,
    ``ct``, ``conversion_time``, ``payout``, ``currency``)."""
    buf = io.StringIO()
    buf.write(TIMEZONE_ROW + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([click_header, "Conversion Name", "Conversion Time", "Conversion Value", "Conversion Currency"])
    for r in rows.iter_rows(named=True):
        writer.writerow(
            [
                r["platform_click_id"],
                conversion_name(r["ct"]),
                r["conversion_time"].astimezone(UTC).strftime(TIME_FORMAT),
                value_text(r["payout"]),
                r["currency"] or "",
            ]
        )
    return buf.getvalue()
