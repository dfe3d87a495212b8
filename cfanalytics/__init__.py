"""cfanalytics — ClickFlare logs into answers.

Load ClickFlare exports (visits, clicks, conversions, postback status, activity)
into a validated Delta store, then ask which postbacks fail, since when, why, and
which conversions never reached the traffic source.

>>> import cfanalytics as cf
>>> cf.redact("https://ts.example/pb?cid=1&token=abc123")
'https://ts.example/pb?cid=1&token=***'

Everything is imported on first use (polars too), so ``import cfanalytics`` is instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cfanalytics.exceptions import CfError, InputError, StoreBusyError, StoreError, UsageError

if TYPE_CHECKING:
    from cfanalytics import diagnose
    from cfanalytics.filters import LogFilter
    from cfanalytics.ingest import BatchResult, IngestResult
    from cfanalytics.redaction import mask_ip, redact
    from cfanalytics.schemas import KINDS
    from cfanalytics.store import LogStore

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

#: Public names and the module each lives in: imported on first use, so ``import cfanalytics`` stays instant.
_LAZY: dict[str, str] = {
    "KINDS": "cfanalytics.schemas",
    "BatchResult": "cfanalytics.ingest",
    "IngestResult": "cfanalytics.ingest",
    "LogFilter": "cfanalytics.filters",
    "LogStore": "cfanalytics.store",
    "mask_ip": "cfanalytics.redaction",
    "redact": "cfanalytics.redaction",
}


def __getattr__(name: str) -> Any:
    if name == "diagnose":
        return importlib.import_module("cfanalytics.diagnose")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cfanalytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
