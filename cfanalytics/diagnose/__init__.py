"""Diagnostics: functions from (store, LogFilter) to DataFrames (docs/contract.md §6).

>>> import tempfile, cfanalytics as cf
>>> store = cf.LogStore(tempfile.mkdtemp() + "/s", timezone="UTC")
>>> cf.diagnose.postback_errors(store, by=["traffic_source_id"]).height
0
"""

from __future__ import annotations

from cfanalytics.diagnose.document import diagnose
from cfanalytics.diagnose.error_kinds import ERROR_KINDS, STATUS_CLASSES, error_kind, signature, status_class
from cfanalytics.diagnose.error_rates import GROUPINGS, postback_errors, postback_summary
from cfanalytics.diagnose.frames import names, postbacks
from cfanalytics.diagnose.gaps import (
    GAP_CLASSES,
    attribution_by_day,
    conversion_gaps,
    funnel,
    gap_summary,
    gaps_by,
    lags,
    orphan_postbacks,
)
from cfanalytics.diagnose.incidents import activity_log_until, incidents
from cfanalytics.diagnose.reconcile import Reconciliation, reconcile

__all__ = [
    "ERROR_KINDS",
    "GAP_CLASSES",
    "GROUPINGS",
    "STATUS_CLASSES",
    "Reconciliation",
    "activity_log_until",
    "attribution_by_day",
    "conversion_gaps",
    "diagnose",
    "error_kind",
    "funnel",
    "gap_summary",
    "gaps_by",
    "incidents",
    "lags",
    "names",
    "orphan_postbacks",
    "postback_errors",
    "postback_summary",
    "postbacks",
    "reconcile",
    "signature",
    "status_class",
]
