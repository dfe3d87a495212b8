"""Display names of entities: a value read once from a store, then used to label any frame.

A name comes from any kind's name columns and from the activity log's
``entity_name``; for each id the latest seen wins.

>>> import polars as pl
>>> names = Names({"traffic_source": pl.DataFrame({"traffic_source_id": ["t1"], "traffic_source_name": ["Meta"]})})
>>> names.add(pl.DataFrame({"traffic_source_id": ["t1", "t2"], "errors": [3, 1]}), "traffic_source_id").rows()
[('t1', 'Meta', 3), ('t2', None, 1)]
>>> names.lookup("traffic_source_id")
{'t1': 'Meta'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics._portable import one_of
from cfanalytics.engines import Source, engine_of
from cfanalytics.filters import StoreReader
from cfanalytics.schemas import ENTITIES, KINDS, MAIN_TIME

#: Id column → entity (``traffic_source_id`` → ``traffic_source``).
ENTITY_OF_ID: Final = {id_column: entity for entity, (id_column, _name, _field) in ENTITIES.items()}


def _combos(source: Source, kind: str, keys: Sequence[str]) -> nw.LazyFrame[Any]:
    """The distinct values of ``keys`` among the rows of ``kind``, each with its latest time ``t``."""
    return source.table(kind).group_by(*keys).agg(nw.col(MAIN_TIME[kind]).max().alias("t"))


def _name_rows(reader: StoreReader, entities: Sequence[str], kinds: Sequence[str] = KINDS) -> dict[str, pl.DataFrame]:
    """``<entity>_id``, ``<entity>_name`` of each entity from ``kinds`` and the activity log, sorted by id.

    Each kind is scanned once for all the entities (their id and name columns side by side, then one
    row per entity); for each id the name seen last wins (ties: the greatest name).
    """
    parts: list[pl.LazyFrame] = []
    engine = engine_of(reader)
    for kind in kinds:
        cols = reader.scan(kind).collect_schema().names()
        pairs = [(e, *ENTITIES[e][:2]) for e in entities if {ENTITIES[e][0], ENTITIES[e][1]} <= set(cols)]
        if not pairs:
            continue
        # the distinct (id, name) combinations first, each with its last time (in the reader's engine):
        # few rows to unpivot
        combos = engine.run(partial(_combos, kind=kind, keys=[c for _e, i, n in pairs for c in (i, n)]))
        side_by_side = combos.select(
            "t", *(pl.struct(pl.col(i).alias("id"), pl.col(n).alias("name")).alias(e) for e, i, n in pairs)
        )
        parts.append(
            side_by_side.unpivot(index="t", on=[e for e, _, _ in pairs], variable_name="entity")
            .unnest("value")
            .select("entity", "id", "name", "t")
        )
    parts.append(
        engine.run(
            lambda s: (
                s.table("activity")
                .filter(one_of(nw.col("entity_type"), entities))
                .select(
                    nw.col("entity_type").alias("entity"),
                    nw.col("entity_id").alias("id"),
                    nw.col("entity_name").alias("name"),
                    nw.col("changed_at").alias("t"),
                )
            )
        )
    )
    found = (
        pl.concat(parts)
        .filter(pl.col("id").is_not_null() & pl.col("name").is_not_null())
        .group_by("entity", "id")
        .agg(pl.col("name").sort_by("t", "name").last())
        .collect()
    )
    out = {}
    for entity in entities:
        id_col, name_col, _field = ENTITIES[entity]
        rows = found.filter(pl.col("entity") == entity).select(
            pl.col("id").alias(id_col), pl.col("name").alias(name_col)
        )
        out[entity] = rows.sort(id_col)
    return out


class Names:
    """``id → name`` of some entities (``traffic_source``, ``integration`` …), one frame per entity."""

    def __init__(self, frames: Mapping[str, pl.DataFrame]) -> None:
        self._frames = dict(frames)
        self._lookups: dict[str, dict[str, str]] = {}

    @classmethod
    def load(
        cls, reader: StoreReader, entities: Iterable[str] = tuple(ENTITIES), *, kinds: Iterable[str] = KINDS
    ) -> Names:
        """Read the names of ``entities`` (default: all) from a store: from every kind, or only from ``kinds``
        (and always the activity log).

        >>> import tempfile, cfanalytics as cf
        >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
        >>> Names.load(store, ["integration"]).frame("integration").columns
        ['integration_id', 'integration_name']
        """
        return cls(_name_rows(reader, list(dict.fromkeys(entities)), tuple(kinds)))

    def __or__(self, other: Names) -> Names:
        """The names of both (``other``'s entities replace this one's).

        >>> (Names.empty() | Names({"campaign": pl.DataFrame({"campaign_id": ["c1"], "campaign_name": ["Q4"]})})
        ...  ).lookup("campaign_id")
        {'c1': 'Q4'}
        """
        return Names({**self._frames, **other._frames})

    @classmethod
    def empty(cls) -> Names:
        """No names at all (every lookup is empty, every name column null)."""
        return cls(
            {entity: pl.DataFrame(schema={i: pl.String, n: pl.String}) for entity, (i, n, _) in ENTITIES.items()}
        )

    def frame(self, entity: str) -> pl.DataFrame:
        """``<entity>_id`` and ``<entity>_name``, one row per id, sorted by id."""
        if entity not in self._frames:
            raise KeyError(f"names of {entity!r} were not loaded")
        return self._frames[entity]

    def lookup(self, id_column: str) -> dict[str, str]:
        """``id → name`` for an id column (``traffic_source_id`` …); empty for other columns."""
        entity = ENTITY_OF_ID.get(id_column)
        if entity is None or entity not in self._frames:
            return {}
        if id_column not in self._lookups:
            rows = self._frames[entity]
            self._lookups[id_column] = dict(
                zip(rows.get_column(id_column).to_list(), rows.get_column(ENTITIES[entity][1]).to_list(), strict=True)
            )
        return self._lookups[id_column]

    def add(self, frame: pl.DataFrame, *id_columns: str) -> pl.DataFrame:
        """``frame`` with the name column beside each id column it has (``traffic_source_id`` →
        ``traffic_source_name``); columns that are not entity ids are skipped."""
        for id_col in id_columns:
            entity = ENTITY_OF_ID.get(id_col)
            if entity is None or id_col not in frame.columns:
                continue
            name_col = ENTITIES[entity][1]
            frame = frame.drop(name_col, strict=False).join(self.frame(entity), on=id_col, how="left")
            order = list(frame.columns)
            order.remove(name_col)
            order.insert(order.index(id_col) + 1, name_col)
            frame = frame.select(order)
        return frame
