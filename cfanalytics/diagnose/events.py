"""Event volume: visits, clicks and conversions per hour (or per day over long ranges), pure.

>>> import polars as pl
>>> from datetime import UTC, datetime
>>> times = [datetime(2026, 11, 20, 10, 5, tzinfo=UTC), datetime(2026, 11, 20, 10, 50, tzinfo=UTC)]
>>> events = pl.DataFrame({"event_time": times, "event_type": ["visit", "visit"]})
>>> event_volume(events, "UTC").rows()
[(datetime.datetime(2026, 11, 20, 10, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'visit', 2)]
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

#: Ranges longer than this are bucketed by day, shorter ones by hour.
HOURLY_UP_TO: Final = timedelta(days=7)


def event_volume(events: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """``bucket, event_type, count``: events per local hour and type (per local day when the events span
    more than :data:`HOURLY_UP_TO`), sorted by bucket and type."""
    if events.height == 0:
        return pl.DataFrame(schema={"bucket": pl.Datetime("us", timezone), "event_type": pl.String, "count": pl.UInt32})
    local = pl.col("event_time").dt.convert_time_zone(timezone)
    first, last = events.get_column("event_time").min(), events.get_column("event_time").max()
    assert isinstance(first, datetime)
    assert isinstance(last, datetime)
    bucket = local.dt.truncate("1h") if last - first <= HOURLY_UP_TO else local.dt.date()
    return (
        events.group_by(bucket.alias("bucket"), "event_type").agg(pl.len().alias("count")).sort("bucket", "event_type")
    )
