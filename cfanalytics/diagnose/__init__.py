"""Diagnostics (docs/contract.md §6): loaders on one side, pure functions of frames on the other.

- :mod:`~cfanalytics.diagnose.frames` — loaders: a :class:`~cfanalytics.filters.StoreReader`
  and a :class:`~cfanalytics.filters.LogFilter` in, lazy frames out (the only reads);
- pure functions of frames: :mod:`~cfanalytics.diagnose.attribution`,
  :mod:`~cfanalytics.diagnose.error_rates`, :mod:`~cfanalytics.diagnose.gaps`,
  :mod:`~cfanalytics.diagnose.incidents`, :mod:`~cfanalytics.diagnose.events`, with
  :class:`~cfanalytics.diagnose.names.Names` to label ids;
- :mod:`~cfanalytics.diagnose.queries` — one-line answers from a store (load, then compute);
- :func:`diagnose` — the whole ``cfanalytics diagnose --json`` document.

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> cf.diagnose.postback_errors(store, by=["traffic_source_id"]).height
0
"""

from __future__ import annotations

from cfanalytics.diagnose.document import diagnose
from cfanalytics.diagnose.error_kinds import ERROR_KINDS, STATUS_CLASSES, error_kind, signature, status_class
from cfanalytics.diagnose.error_rates import GROUPINGS, error_rates, postback_summary, top_signatures
from cfanalytics.diagnose.events import event_volume
from cfanalytics.diagnose.frames import activity_log_until, conversions, postbacks
from cfanalytics.diagnose.gaps import GAP_CLASSES, gap_rows, gap_table
from cfanalytics.diagnose.incidents import find_incidents
from cfanalytics.diagnose.names import Names
from cfanalytics.diagnose.queries import (
    attribution_by_day,
    funnel,
    gap_summary,
    gaps_by,
    incidents,
    lags,
    money_at_stake,
    names,
    orphan_postbacks,
    postback_errors,
)
from cfanalytics.diagnose.reconcile import Reconciliation, reconcile

__all__ = [
    "ERROR_KINDS",
    "GAP_CLASSES",
    "GROUPINGS",
    "STATUS_CLASSES",
    "Names",
    "Reconciliation",
    "activity_log_until",
    "attribution_by_day",
    "conversions",
    "diagnose",
    "error_kind",
    "error_rates",
    "event_volume",
    "find_incidents",
    "funnel",
    "gap_rows",
    "gap_summary",
    "gap_table",
    "gaps_by",
    "incidents",
    "lags",
    "money_at_stake",
    "names",
    "orphan_postbacks",
    "postback_errors",
    "postback_summary",
    "postbacks",
    "reconcile",
    "signature",
    "status_class",
    "top_signatures",
]
