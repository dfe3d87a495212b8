"""Enriched lazy frames the diagnostics share: attributed postbacks, display names.

A postback's traffic source is its own column, else its visit's (by click id),
else its conversion's (docs/contract.md §6); none found → null, counted as ``unattributed``.
Campaigns are attributed the same way. Display names come from any kind's name
columns and from the activity log's ``entity_name``; the latest seen wins.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> postbacks(store).collect().columns[:4]
['postback_id', 'click_id', 'postback_time', 'is_error']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import polars as pl

from cfanalytics.diagnose.error_kinds import ERROR_MEANING_COLUMNS, signature, status_class, with_error_meaning
from cfanalytics.filters import LogFilter

if TYPE_CHECKING:
    from cfanalytics.store import LogStore

#: Entity → (id column, name column, activity entity_type).
ENTITIES: Final[dict[str, tuple[str, str, str]]] = {
    "campaign": ("campaign_id", "campaign_name", "campaign"),
    "traffic_source": ("traffic_source_id", "traffic_source_name", "traffic_source"),
    "offer": ("offer_id", "offer_name", "offer"),
    "lander": ("landing_id", "landing_name", "lander"),
    "affiliate_network": ("affiliate_network_id", "affiliate_network_name", "affiliate_network"),
    "integration": ("integration_id", "integration_name", "integration"),
}
_NAME_OF_ID: Final = {id_col: name_col for id_col, name_col, _ in ENTITIES.values()}

POSTBACK_COLUMNS: Final = (
    "postback_id",
    "click_id",
    "postback_time",
    "is_error",
    "status_code",
    "error_message",
    "postback_url",
    "ct",
    "integration_id",
    "traffic_source_id",
    "campaign_id",
    "date",
)


def names(store: LogStore, entity: str) -> pl.DataFrame:
    """``id → name`` of one entity (``"traffic_source"``, ``"campaign"`` …), latest name wins.

    Returns columns ``<entity>_id`` and ``<entity>_name`` (e.g. ``traffic_source_id``,
    ``traffic_source_name``), one row per id, sorted by id.
    """
    id_col, name_col, entity_type = ENTITIES[entity]
    parts: list[pl.LazyFrame] = []
    from cfanalytics.schemas import KINDS, MAIN_TIME

    for kind in KINDS:
        lf = store.scan(kind)
        cols = lf.collect_schema().names()
        if id_col in cols and name_col in cols:
            parts.append(
                lf.select(
                    pl.col(id_col).alias("id"), pl.col(name_col).alias("name"), pl.col(MAIN_TIME[kind]).alias("t")
                ).filter(pl.col("id").is_not_null() & pl.col("name").is_not_null())
            )
    parts.append(
        store.scan("activity")
        .filter((pl.col("entity_type") == entity_type) & pl.col("entity_id").is_not_null())
        .select(pl.col("entity_id").alias("id"), pl.col("entity_name").alias("name"), pl.col("changed_at").alias("t"))
        .filter(pl.col("name").is_not_null())
    )
    out = pl.concat(parts).group_by("id").agg(pl.col("name").sort_by("t").last()).sort("id").collect()
    return out.rename({"id": id_col, "name": name_col})


def with_names(frame: pl.DataFrame, store: LogStore, *id_columns: str) -> pl.DataFrame:
    """Add the display-name column of each id column (``traffic_source_id`` → ``traffic_source_name``)."""
    for id_col in id_columns:
        name_col = _NAME_OF_ID.get(id_col)
        if name_col is None or id_col not in frame.columns:
            continue
        entity = next(e for e, (i, _, _) in ENTITIES.items() if i == id_col)
        lookup = names(store, entity)
        frame = frame.drop(name_col, strict=False).join(lookup, on=id_col, how="left")
        order = list(frame.columns)
        order.remove(name_col)
        order.insert(order.index(id_col) + 1, name_col)
        frame = frame.select(order)
    return frame


def visits_of(store: LogStore, click_ids: pl.LazyFrame) -> pl.LazyFrame:
    """The stored visits of ``click_ids`` (a frame with a ``click_id`` column), semi-joined:
    ``click_id``, ``_v_ts``, ``_v_cmp``, ``_v_time`` (the visit's traffic source, campaign, time)."""
    return (
        store.scan("visits")
        .select(
            "click_id",
            pl.col("traffic_source_id").alias("_v_ts"),
            pl.col("campaign_id").alias("_v_cmp"),
            pl.col("visit_time").alias("_v_time"),
        )
        .join(click_ids.select("click_id"), on="click_id", how="semi")
    )


def visit_lookup(store: LogStore, click_ids: pl.LazyFrame) -> pl.DataFrame:
    """:func:`visits_of` collected once, to serve several diagnostics.

    Reading the visits is the costly part of attributing postbacks and classifying
    conversions: :func:`~cfanalytics.diagnose.document.diagnose` reads them once, for the
    click ids of both (postbacks naming their own traffic source and campaign need none),
    and hands the lookup to each (``visits=``).
    """
    return visits_of(store, click_ids.select("click_id").unique()).collect()


def _visit_attribution(store: LogStore, keys: pl.LazyFrame | None, visits: pl.DataFrame | None = None) -> pl.LazyFrame:
    if visits is not None:  # a visit_lookup covering the keys
        return visits.lazy().select("click_id", "_v_ts", "_v_cmp")
    lf = store.scan("visits").select(
        "click_id", pl.col("traffic_source_id").alias("_v_ts"), pl.col("campaign_id").alias("_v_cmp")
    )
    return lf if keys is None else lf.join(keys, on="click_id", how="semi")


def _conversion_attribution(store: LogStore, keys: pl.LazyFrame | None) -> pl.LazyFrame:
    conv = store.scan("conversions").select("click_id", "traffic_source_id", "campaign_id")
    if keys is not None:
        conv = conv.join(keys, on="click_id", how="semi")
    return conv.group_by("click_id").agg(
        pl.col("traffic_source_id").min().alias("_c_ts"),
        pl.col("campaign_id").min().alias("_c_cmp"),
    )


def click_attribution(store: LogStore, click_ids: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Per click id: the traffic source and campaign of its visit, else of its conversions
    (should a click's conversions disagree, the smallest id, so every engine agrees).

    ``click_ids`` (a frame with a ``click_id`` column) restricts visits and conversions to
    those click ids (semi joins) before they are joined, so only the rows needed are kept.
    """
    keys = None if click_ids is None else click_ids.select("click_id")
    visits, conv = _visit_attribution(store, keys), _conversion_attribution(store, keys)
    return visits.join(conv, on="click_id", how="full", coalesce=True)


def postback_rows(store: LogStore, where: LogFilter | None = None) -> pl.LazyFrame:
    """Stored postbacks (:data:`POSTBACK_COLUMNS`) in the filter's time range, not enriched yet."""
    flt = where or LogFilter()
    pb = store.scan("postbacks").select(POSTBACK_COLUMNS)
    # Prune by time first (partition pruning); other fields may name attributed columns.
    time_only = LogFilter(start=flt.start, end=flt.end, timezone=flt.timezone)
    return time_only.apply(pb, "postbacks", timezone=store.timezone)


def enrich_postbacks(
    store: LogStore, rows: pl.LazyFrame, where: LogFilter | None = None, *, visits: pl.DataFrame | None = None
) -> pl.LazyFrame:
    """Add attribution, ``status_class``, ``error_kind`` and the other ``ERROR_MEANING_COLUMNS`` (what the answer
    means), ``signature`` and ``attributed`` to :func:`postback_rows` (or a row subset of them), then apply the
    filter's other fields.

    Visits and conversions are restricted to the click ids of ``rows`` before the join;
    ``visits`` may be a :func:`visit_lookup` covering those click ids instead.
    """
    flt = where or LogFilter()
    # Rows naming their own traffic source and campaign need no attribution: only the others are
    # joined, == those rows ⟕ click_attribution(store, rows), visits and conversions semi-joined on
    # their click ids.
    own = pl.col("traffic_source_id").is_not_null() & pl.col("campaign_id").is_not_null()
    rest_rows = rows.filter(~own)
    keys = rest_rows.select("click_id")
    attributed = (
        rest_rows.join(_visit_attribution(store, keys, visits), on="click_id", how="left")
        .join(_conversion_attribution(store, keys), on="click_id", how="left")
        .with_columns(
            pl.coalesce("traffic_source_id", "_v_ts", "_c_ts").alias("traffic_source_id"),
            pl.coalesce("campaign_id", "_v_cmp", "_c_cmp").alias("campaign_id"),
        )
        .drop("_v_ts", "_c_ts", "_v_cmp", "_c_cmp")
    )
    pb = pl.concat([rows.filter(own), attributed], how="vertical").with_columns(
        pl.col("traffic_source_id").is_not_null().alias("attributed"),
        status_class(pl.col("status_code")).alias("status_class"),
    )
    # Error kinds and signatures are computed on the failing rows only (a few percent of them).
    failing = pl.col("is_error").cast(pl.Boolean, strict=False).fill_null(value=False)
    sig = pl.when(pl.col("is_error")).then(signature(pl.col("error_message"))).alias("signature")
    nothing = [pl.lit(None, dtype).alias(name) for name, dtype in ERROR_MEANING_COLUMNS.items()]
    nothing.append(pl.lit(None, pl.String).alias("signature"))
    pb = pb.cache()  # both halves below, and the meaning's distinct tables, read it: compute it once
    explained = with_error_meaning(pb.filter(failing)).with_columns(sig)
    pb = pl.concat([pb.filter(~failing).with_columns(nothing), explained], how="diagonal")
    rest = flt.replace(start=None, end=None)
    return rest.apply(pb, None, timezone=store.timezone)


def postbacks(store: LogStore, where: LogFilter | None = None, *, visits: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Postbacks with attributed ``traffic_source_id`` / ``campaign_id``, ``status_class``,
    ``error_kind``, ``signature`` and ``attributed`` (False when no traffic source was found),
    filtered by ``where`` (range on ``postback_time``). ``visits``: see :func:`enrich_postbacks`.
    """
    return enrich_postbacks(store, postback_rows(store, where), where, visits=visits)
