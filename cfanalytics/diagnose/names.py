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

from collections.abc import Iterable, Mapping
from typing import Final

import polars as pl

from cfanalytics.filters import StoreReader
from cfanalytics.schemas import ENTITIES, KINDS, MAIN_TIME

#: Id column → entity (``traffic_source_id`` → ``traffic_source``).
ENTITY_OF_ID: Final = {id_column: entity for entity, (id_column, _name, _field) in ENTITIES.items()}


def _name_rows(reader: StoreReader, entity: str) -> pl.DataFrame:
    """``<entity>_id``, ``<entity>_name`` of one entity from every kind and the activity log, sorted by id."""
    id_col, name_col, _field = ENTITIES[entity]
    parts: list[pl.LazyFrame] = []
    for kind in KINDS:
        lf = reader.scan(kind)
        cols = lf.collect_schema().names()
        if id_col in cols and name_col in cols:
            parts.append(
                lf.select(
                    pl.col(id_col).alias("id"), pl.col(name_col).alias("name"), pl.col(MAIN_TIME[kind]).alias("t")
                ).filter(pl.col("id").is_not_null() & pl.col("name").is_not_null())
            )
    parts.append(
        reader.scan("activity")
        .filter((pl.col("entity_type") == entity) & pl.col("entity_id").is_not_null())
        .select(pl.col("entity_id").alias("id"), pl.col("entity_name").alias("name"), pl.col("changed_at").alias("t"))
        .filter(pl.col("name").is_not_null())
    )
    out = pl.concat(parts).group_by("id").agg(pl.col("name").sort_by("t").last()).sort("id").collect()
    return out.rename({"id": id_col, "name": name_col})


class Names:
    """``id → name`` of some entities (``traffic_source``, ``integration`` …), one frame per entity."""

    def __init__(self, frames: Mapping[str, pl.DataFrame]) -> None:
        self._frames = dict(frames)
        self._lookups: dict[str, dict[str, str]] = {}

    @classmethod
    def load(cls, reader: StoreReader, entities: Iterable[str] = tuple(ENTITIES)) -> Names:
        """Read the names of ``entities`` (default: all) from a store.

        >>> import tempfile, cfanalytics as cf
        >>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
        >>> Names.load(store, ["integration"]).frame("integration").columns
        ['integration_id', 'integration_name']
        """
        return cls({entity: _name_rows(reader, entity) for entity in dict.fromkeys(entities)})

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
