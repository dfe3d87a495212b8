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
    from cfanalytics import charts, diagnose, panels, schemas
    from cfanalytics.engines import on_spark
    from cfanalytics.filters import LogFilter, StoreReader
    from cfanalytics.ingest import BatchResult, IngestResult
    from cfanalytics.redaction import mask_ip, redact
    from cfanalytics.schemas import KINDS
    from cfanalytics.store import LogStore
    from cfanalytics.workspace import open_store

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
    "StoreReader",
    "UsageError",
    "__version__",
    "charts",
    "diagnose",
    "mask_ip",
    "on_spark",
    "open_store",
    "panels",
    "redact",
    "schemas",
]
#: Subpackages and modules reachable as attributes (``cf.diagnose``, ``cf.panels``, ``cf.charts``, ``cf.schemas``).
_SUBMODULES: frozenset[str] = frozenset({"charts", "diagnose", "panels", "schemas"})

#: Public names and the module each lives in: imported on first use, so ``import cfanalytics`` stays instant.
_LAZY: dict[str, str] = {
    "KINDS": "cfanalytics.schemas",
    "BatchResult": "cfanalytics.ingest",
    "IngestResult": "cfanalytics.ingest",
    "LogFilter": "cfanalytics.filters",
    "LogStore": "cfanalytics.store",
    "StoreReader": "cfanalytics.filters",
    "open_store": "cfanalytics.workspace",
    "on_spark": "cfanalytics.engines",
    "mask_ip": "cfanalytics.redaction",
    "redact": "cfanalytics.redaction",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"cfanalytics.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cfanalytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
