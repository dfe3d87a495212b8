"""Microsoft Advertising offline conversions: the upload template (docs/contract.md §6).

The offline conversion record carries Microsoft Click Id, Conversion Name, Conversion
Time, Conversion Value and Conversion Currency
(https://learn.microsoft.com/en-us/advertising/bulk-service/offline-conversion?view=bingads-13);
the file written has the ``Microsoft Click ID,Conversion Name,Conversion Time,Conversion
Value,Conversion Currency`` header after a ``Parameters:TimeZone=`` row, mirroring Google's
template (that row was not found in Microsoft's pages: check it against the template the
account offers). Conversions up to 90 days after the click (``WINDOWS`` in ``_platforms``).
The Conversion Name must be an offline conversion goal of the account.

>>> import polars as pl
>>> from datetime import datetime, UTC
>>> rows = pl.DataFrame({"platform_click_id": ["f894f6"], "ct": [None], "payout": [10.0], "currency": ["USD"],
...                      "conversion_time": [datetime(2026, 11, 20, 13, 5, tzinfo=UTC)]})
>>> print(render(rows).splitlines()[2])
f894f6,conversion,2026-11-20 13:05:00,10.0,USD
"""

from __future__ import annotations

from typing import Final

import polars as pl

from cfanalytics.recover import _csv_template

FILE_NAME: Final = "microsoft_offline_conversions.csv"
CLICK_HEADER: Final = "Microsoft Click ID"


def render(rows: pl.DataFrame) -> str:
    """The upload file's text for ``rows`` (included conversions of destination ``microsoft``)."""
    return _csv_template.render(rows, CLICK_HEADER)
