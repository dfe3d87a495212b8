"""cfanalytics — ClickFlare logs into answers.

Load ClickFlare exports (visits, clicks, conversions, postback status, activity)
into a validated Delta store, then ask which postbacks fail, since when, why, and
which conversions never reached the traffic source.

>>> import cfanalytics as cf
>>> cf.redact("https://ts.example/pb?cid=1&token=abc123")
'https://ts.example/pb?cid=1&token=***'

Heavy parts (pandera, plotly, ipywidgets, papermill) are imported only where used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfanalytics.errors import CfError, InputError, StoreBusyError, StoreError, UsageError
from cfanalytics.redact import mask_ip, redact
from cfanalytics.schemas import KINDS
from cfanalytics.store import LogStore

if TYPE_CHECKING:
    from cfanalytics import diagnose
    from cfanalytics.filters import LogFilter
    from cfanalytics.ingest import BatchResult, IngestResult

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "BatchResult",
    "CfError",
    "IngestResult",
    "InputError",
    "LogFilter",
    "LogStore",
    "StoreBusyError",
    "StoreError",
    "UsageError",
    "__version__",
    "diagnose",
    "mask_ip",
    "redact",
]


def __getattr__(name: str) -> Any:
    if name in ("BatchResult", "IngestResult"):
        from cfanalytics import ingest

        return getattr(ingest, name)
    if name == "LogFilter":
        from cfanalytics.filters import LogFilter

        return LogFilter
    if name == "diagnose":
        import importlib

        return importlib.import_module("cfanalytics.diagnose")
    raise AttributeError(f"module 'cfanalytics' has no attribute {name!r}")
