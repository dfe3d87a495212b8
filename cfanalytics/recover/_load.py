"""The thin loader: the three input frames of :func:`~cfanalytics.recover._select.select` from a store.

Gap rows come from :func:`cfanalytics.diagnose.gap_rows` (conversions in the
range); postbacks and visits are read for those conversions' click ids only, whatever
their time (a postback accepted after the range still counts). The visits' IP
addresses are read only when the store keeps them raw and its outputs are not masked
(``cfanalytics config --mask-ips off``): otherwise the files carry no IP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from cfanalytics.diagnose.frames import POSTBACK_COLUMNS, conversions, enriched_postbacks, postback_outcomes
from cfanalytics.diagnose.gaps import gap_rows

if TYPE_CHECKING:
    from cfanalytics.filters import LogFilter
    from cfanalytics.store import LogStore

_OPTIONAL_POSTBACK = ("event", "integration_name")
_VISIT = ("click_id", "visit_time", "external_id", "referrer", "user_agent", "ip", "traffic_source_id")


def load(store: LogStore, where: LogFilter | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``(conversions, postbacks, visits)`` as the input contract of ``select`` describes them."""
    gaps = gap_rows(conversions(store, where), postback_outcomes(store))
    keys = gaps.filter(pl.col("gap").is_in(["posted_failed", "not_posted"])).select("click_id").unique().lazy()
    pb_all = store.scan("postbacks")
    have = pb_all.collect_schema().names()
    extra = [c for c in _OPTIONAL_POSTBACK if c in have]
    rows = pb_all.select(*POSTBACK_COLUMNS, *extra).join(keys, on="click_id", how="semi")
    postbacks = enriched_postbacks(store, rows).collect()
    # traffic sources of candidates never posted: their destination and endpoint are learnt from the
    # latest postbacks naming that source (their own column; no attribution join needed)
    sources = gaps.filter(pl.col("gap") == "not_posted").select("traffic_source_id").drop_nulls().unique()
    if sources.height:
        latest = (
            pb_all.select(*POSTBACK_COLUMNS, *extra)
            .join(sources.lazy(), on="traffic_source_id", how="semi")
            .filter(
                pl.struct("postback_time", "postback_id").rank("ordinal", descending=True).over("traffic_source_id")
                <= 100
            )
        )
        others = enriched_postbacks(store, latest).collect()
        postbacks = pl.concat([postbacks, others.select(postbacks.columns)]).unique(
            subset=["postback_id"], keep="first", maintain_order=True
        )
    vis = store.scan("visits")
    vcols = vis.collect_schema().names()
    # the visitor's IP goes to the platforms only from a store that keeps raw IPs and does not mask its outputs
    if store.store_ips != "raw" or store.mask_ips:
        vcols = [c for c in vcols if c != "ip"]
    wanted = [c for c in _VISIT if c in vcols] + sorted(c for c in vcols if c.startswith("tracking_field"))
    visits = vis.select(wanted).join(keys, on="click_id", how="semi").collect()
    return gaps, postbacks, visits
