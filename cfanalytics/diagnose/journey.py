"""One click's journey: its visit, clicks, conversions and the postbacks fired for it, read by click id.

The lookup reads only the columns a journey shows. On a plain local
:class:`~cfanalytics.store.LogStore` it reads the Parquet row groups that can hold
the id directly (:mod:`cfanalytics._lookup`: a snapshot of each table's files and
their click-id bounds, cached by table version, and cached footers); any other
reader filters each table with a plain ``click_id == X`` predicate that Polars
pushes into ``scan_delta``. Either way files and row groups whose click-id
statistics cannot hold the id are skipped, and the rows are the same. An ingest
writes these tables in runs sorted by click id (4k-row row groups), so right
after it that is about one row group per run and date partition; after
:meth:`LogStore.maintain <cfanalytics.store.LogStore.maintain>` has sorted whole
partitions, about one per date partition, instead of every row of every file.

>>> import tempfile, cfanalytics as cf
>>> from cfanalytics.diagnose.journey import journey
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> journey(store, "6f1d0c9e-2b1a-4c55-9d2e-0a1b2c3d4e5f").columns[:4]
['time', 'step', 'outcome', 'campaign_id']
"""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from cfanalytics._lookup import click_frames
from cfanalytics.filters import StoreReader
from cfanalytics.schemas import MAIN_TIME, polars_schema

#: A click's journey: the tables read and the step each is shown as, in the order they happen when times tie.
JOURNEY_STEPS: Final = (
    ("visits", "visit"),
    ("clicks", "click"),
    ("conversions", "conversion"),
    ("postbacks", "postback"),
)
#: Columns of a journey, in order (those no table holds are left out).
JOURNEY_COLUMNS: Final = (
    "time",
    "step",
    "outcome",
    "campaign_id",
    "traffic_source_id",
    "landing_id",
    "offer_id",
    "cta",
    "ct",
    "payout",
    "txid",
    "status",
    "postback_id",
    "integration_id",
    "status_code",
    "error_message",
    "postback_url",
    "external_id",
    "country",
    "device_type",
    "ip",
)
_DERIVED: Final = ("time", "step", "outcome")


def click_rows(store: StoreReader, kind: str, click_id: str, columns: Any = None) -> pl.LazyFrame:
    """The rows of ``kind`` with this click id, only ``columns`` (those the table has; default all).

    The filter is a plain equality on ``click_id`` so that the scan skips files and
    row groups by their statistics.

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> click_rows(store, "postbacks", "x", ["postback_id", "nope"]).collect().columns
    ['postback_id']
    """
    lf = store.scan(kind).filter(pl.col("click_id") == click_id)
    if columns is not None:
        wanted = list(dict.fromkeys(columns))
        # every canonical column is in the table (created with its full schema): no need to read the schema
        known = polars_schema(kind)
        present = known if all(c in known for c in wanted) else lf.collect_schema()
        lf = lf.select([c for c in wanted if c in present])
    return lf


def journey(store: StoreReader, click_id: str) -> pl.DataFrame:
    """One click's visit, clicks, conversions and postbacks (any date), in time order.

    Columns: :data:`JOURNEY_COLUMNS` that the tables hold, ``time`` being each
    table's main time, ``step`` visit/click/conversion/postback and ``outcome``
    failed/accepted for postbacks (else null). IP addresses are as stored; mask them
    for display (:func:`cfanalytics.redaction.mask_ip_expr`).

    >>> import tempfile, cfanalytics as cf
    >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
    >>> journey(store, "no-such-click").height
    0
    """
    wanted = []
    for kind, _step in JOURNEY_STEPS:
        known = polars_schema(kind)  # the journey's columns are canonical: every table holds those of its kind
        keep = [c for c in (*JOURNEY_COLUMNS, "is_error") if c in known and c not in _DERIVED]
        wanted.append((kind, [MAIN_TIME[kind], *keep], keep))
    # a plain local store: only the files and row groups that can hold the id (else one scan per table)
    read = click_frames(store, click_id, [(kind, columns) for kind, columns, _ in wanted])
    parts = []
    for order, ((kind, step), (_, columns, keep)) in enumerate(zip(JOURNEY_STEPS, wanted, strict=True)):
        time_col = MAIN_TIME[kind]
        lf = click_rows(store, kind, click_id, columns) if read is None else read[order].lazy()
        parts.append(
            lf.select(
                pl.col(time_col).alias("time"),
                pl.lit(step).alias("step"),
                pl.lit(order).alias("_order"),
                *keep,
            )
        )
    frame = pl.concat(parts, how="diagonal_relaxed").collect()
    if "is_error" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("is_error"))
    frame = frame.with_columns(
        pl.when(pl.col("step") != "postback")
        .then(pl.lit(None, pl.String))
        .when(pl.col("is_error"))
        .then(pl.lit("failed"))
        .otherwise(pl.lit("accepted"))
        .alias("outcome")
    )
    frame = frame.sort(["time", "_order"], nulls_last=True, maintain_order=True)
    return frame.select([c for c in JOURNEY_COLUMNS if c in frame.columns])
