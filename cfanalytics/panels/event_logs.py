"""Event logs panel: ClickFlare's System Logs screen, with a volume chart and each click's journey.

Filters: event type, campaigns, traffic sources, date range, filtered (bot)
traffic — excluded by default, as in ClickFlare — and a click-id search (clicks
and conversions without their own traffic source or campaign are filtered by
their visit's, as the diagnostics attribute them). The
events of a date range are read once and kept; every other filter is applied
in memory. Pick a click in the table's "Journey of click" picker (or call
:meth:`EventLogsPanel.show_journey`) to see its visit, clicks, conversions and
the postbacks fired for it, in time order, with their outcomes.

>>> from cfanalytics.panels import event_logs
>>> panel = event_logs(store)                                   # doctest: +SKIP
>>> panel.set_filters(traffic_sources=["ts-meta"], event_types=["conversion"])  # doctest: +SKIP
>>> panel.table_frame.height, panel.volume.columns             # doctest: +SKIP
(42, ['bucket', 'event_type', 'count'])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Unpack

import polars as pl

from cfanalytics.charts import volume_over_time
from cfanalytics.diagnose.attribution import attribute_events
from cfanalytics.diagnose.events import event_volume
from cfanalytics.diagnose.frames import click_attribution, events
from cfanalytics.diagnose.journey import journey
from cfanalytics.filters import LogFilter
from cfanalytics.panels._base import LogPanel, PanelOptions, named_ids
from cfanalytics.redaction import mask_ip_expr, safe_text
from cfanalytics.schemas import EVENT_KINDS, EVENT_TYPE_OF_KIND

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

EVENT_TYPES: Final = tuple(EVENT_TYPE_OF_KIND[k] for k in EVENT_KINDS)
_CONVERSION_DETAIL: Final = ("cta", "ct", "payout", "currency", "txid")
_VISITOR: Final = ("external_id", "country", "device_type", "os", "browser", "ip", "is_filtered")
#: Entities named in the events table / in a journey (name over id).
_NAMED: Final = ("campaign", "traffic_source", "offer")
_JOURNEY_NAMED: Final = (*_NAMED, "landing", "integration")
#: Columns read from the store for the events table (those present).
EVENT_COLUMNS: Final = (
    "event_time",
    "event_type",
    "click_id",
    "campaign_id",
    "traffic_source_id",
    "offer_id",
    "landing_id",
    "affiliate_network_id",
    *_CONVERSION_DETAIL,
    "status",
    *_VISITOR,
)
#: Columns the events table shows, in order.
TABLE_COLUMNS: Final = (
    "event_time",
    "event_type",
    "click_id",
    *named_ids(*_NAMED),
    *_CONVERSION_DETAIL,
    *_VISITOR,
)
#: Columns the journey table shows: what happened and why first, each id under its name.
JOURNEY_TABLE_COLUMNS: Final = (
    "time",
    "step",
    "outcome",
    "status_code",
    "error_message",
    "postback_url",
    "ct",
    "payout",
    "status",
    *named_ids(*_JOURNEY_NAMED),
    "cta",
    "txid",
    "postback_id",
    "external_id",
    "country",
    "device_type",
    "ip",
)


class EventLogsPanel(LogPanel):
    """Visits, clicks and conversions: filters, a volume chart, a paged table, a click's journey.

    Attributes
    ----------
    events
        The filtered events (every column read), newest first in the table.
    table_frame
        The table's rows as shown and exported (sorted, shown columns).
    volume
        ``bucket, event_type, count`` behind :attr:`figure` (hourly, or daily over 7 days).
    figure
        The volume chart (:class:`~cfanalytics.panels._figures.Chart`).
    journey
        The picked click's rows in time order (``step`` visit/click/conversion/postback).
    hidden_filtered
        Rows left out because they are filtered (bot) traffic.
    """

    title = "Event logs"
    latest_kinds = EVENT_KINDS
    table_name = "events"
    table_columns = TABLE_COLUMNS
    sort = "event_time"
    key = "click_id"
    key_label = "Journey of click"

    def __init__(self, store: LogStore, **options: Unpack[PanelOptions]) -> None:
        super().__init__(store, **options)
        import ipywidgets as widgets

        from cfanalytics.panels._widgets import FilterBar

        self._filters = FilterBar(
            ("start", "end", "event_types", "campaigns", "traffic_sources", "include_filtered", "click_id"),
            self._initial,
        )
        self._filters.set_options("event_types", [(t, t) for t in EVENT_TYPES])
        self.events = pl.DataFrame()
        self.volume = pl.DataFrame(
            schema={"bucket": pl.Datetime("us", "UTC"), "event_type": pl.String, "count": pl.UInt32}
        )
        self.journey = pl.DataFrame()
        self.journey_click: str | None = None
        self.journey_queries = 0
        self.hidden_filtered = 0
        self.journey_table = self._new_table(
            "journey",
            columns=JOURNEY_TABLE_COLUMNS,
            sort="time",
            descending=False,
            page_size=500,
            empty="Pick a click in the table above to see its journey.",
        )
        self.journey_title = widgets.HTML("<h4>Journey</h4>")
        self._lay_out(self.journey_title, self.journey_table.widget, on_pick=self.show_journey)

    # ---------------------------------------------------------------- data
    def _load(self, where: LogFilter) -> pl.DataFrame:
        rows = events(self.reader, where.replace(include_filtered=True))
        present = rows.collect_schema().names()
        rows = rows.select([c for c in EVENT_COLUMNS if c in present])
        # clicks and conversions without their own traffic source / campaign get their visit's
        frame = self._masked(attribute_events(rows, click_attribution(self.reader)).collect())
        return self.names.add(frame, *(f"{e}_id" for e in _NAMED))

    def _masked(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with its IP addresses masked when the store masks them for display."""
        if "ip" in frame.columns and self.reader.mask_ips:
            return frame.with_columns(mask_ip_expr(pl.col("ip")).alias("ip"))
        return frame

    def _update(self) -> None:
        from cfanalytics.panels._figures import show
        from cfanalytics.panels._widgets import option_pairs

        where = self.filter
        base = self.base(where)
        for field, column in (("campaigns", "campaign_id"), ("traffic_sources", "traffic_source_id")):
            ids = base.get_column(column).unique().to_list() if column in base.columns else []
            self._filters.set_options(field, option_pairs(ids, self.names.lookup(column)))
        rows = self.in_memory(base, where)
        self.hidden_filtered = 0
        if not where.include_filtered:
            self.hidden_filtered = self.in_memory(base, where.replace(include_filtered=True)).height - rows.height
        self.events = rows
        self.volume = event_volume(rows, self.timezone)
        show(self.figure, volume_over_time(self.volume, timezone=self.timezone))
        self.table.set_frame(rows)
        note = (
            "filtered (bot) traffic included"
            if where.include_filtered
            else f"filtered (bot) traffic excluded ({self.hidden_filtered:,} rows hidden)"
        )
        self.status.value = f"<b>{rows.height:,}</b> events · {note}"

    # ------------------------------------------------------------- journey
    def show_journey(self, click_id: str) -> pl.DataFrame:
        """Read one click's visit, clicks, conversions and postbacks (any date) and show them in time order.

        The lookup (:func:`cfanalytics.diagnose.journey.journey`) reads only the journey's
        columns and skips row groups by their click-id statistics.
        """
        self.journey_queries += 1
        frame = self.names.add(self._masked(journey(self.reader, click_id)), *(f"{e}_id" for e in _JOURNEY_NAMED))
        self.journey = frame.select([c for c in JOURNEY_TABLE_COLUMNS if c in frame.columns])
        self.journey_click = click_id
        self.journey_title.value = f"<h4>Journey of click <code>{safe_text(click_id)}</code></h4>"
        self.journey_table.set_frame(self.journey)
        return self.journey


def event_logs(store: LogStore, **options: Unpack[PanelOptions]) -> EventLogsPanel:
    """Open the event logs panel on ``store`` (last 7 days of data unless ``start``/``end`` are given)."""
    return EventLogsPanel(store, **options)
