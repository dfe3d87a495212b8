"""Expressions that every engine of :mod:`cfanalytics.engines` evaluates alike.

``is_in`` with a list of values is the one narwhals expression found to break on Spark
Connect servers: Sail (DataFusion) resolves the list against the wrong column of some
plans (a union's, a cached frame's) once it holds more than three values, and fails the
query. :func:`one_of` says the same with equalities, which every engine plans the same way.

>>> import narwhals.stable.v2 as nw, polars as pl
>>> rows = nw.from_native(pl.LazyFrame({"id": ["a", "b", None, "d"]}))
>>> rows.filter(one_of(nw.col("id"), ["a", "d", "x", "y"])).to_native().collect().get_column("id").to_list()
['a', 'd']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import narwhals.stable.v2 as nw


def one_of(expr: nw.Expr, values: Iterable[Any]) -> nw.Expr:
    """True where ``expr`` equals one of ``values``, false elsewhere (a null ``expr`` included); no values:
    false everywhere. The same as ``expr.is_in(values)`` in a filter, on every engine.

    >>> import polars as pl
    >>> frame = nw.from_native(pl.DataFrame({"n": [1, 2, None]}))
    >>> frame.select(one_of(nw.col("n"), [2, 3]).alias("hit")).to_native().get_column("hit").to_list()
    [False, True, False]
    """
    wanted = list(dict.fromkeys(values))
    if not wanted:  # false in every row (a bare literal is a scalar, which a filter does not take)
        return expr.is_null() & ~expr.is_null()
    return nw.any_horizontal(*(expr == value for value in wanted), ignore_nulls=True)
