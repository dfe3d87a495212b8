"""Google Ads offline click conversions: the upload template (docs/contract.md §6).

Template rows as Google documents them for file imports: a ``Parameters:TimeZone=``
row, then ``Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion
Currency`` (https://support.google.com/google-ads/answer/7014069). Conversions are
accepted up to 90 days after the click (see ``WINDOWS`` in ``_platforms``). The
Conversion Name must be the name of a conversion action in the account: the ct is
written, to be renamed if the account names its actions otherwise.

>>> import polars as pl
>>> from datetime import datetime, UTC
>>> rows = pl.DataFrame({"platform_click_id": ["Cj0K"], "ct": ["lead"], "payout": [11.0], "currency": ["USD"],
...                      "conversion_time": [datetime(2026, 11, 20, 13, 5, tzinfo=UTC)]})
>>> print(render(rows), end="")
Parameters:TimeZone=+0000
Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency
Cj0K,lead,2026-11-20 13:05:00,11.0,USD
"""

from __future__ import annotations

from typing import Final

import polars as pl

from cfanalytics.recover import _csv_template

FILE_NAME: Final = "google_ads_offline_conversions.csv"
CLICK_HEADER: Final = "Google Click ID"


def render(rows: pl.DataFrame) -> str:
    """The upload file's text for ``rows`` (included conversions of destination ``google_ads``)."""
    return _csv_template.render(rows, CLICK_HEADER)
