"""Export a table to CSV or Excel, safe to open in a spreadsheet.

Every string cell (and every header) is redacted with :func:`cfanalytics.redaction`
and neutralised the OWASP way (CSV injection): a cell that starts with a tab or
a carriage return, or whose first character after any leading white space and
control characters is ``=``, ``+``, ``-``, ``@`` (or their full-width forms), is
prefixed with ``'`` so that a spreadsheet shows it as text instead of running it
as a formula (``\\x01=HYPERLINK(…)``, ``==1``, `` =1`` and ``\\t=1`` included). CSV
files quote every text field, so that a delimiter inside a cell cannot start a
new cell in a spreadsheet that splits on another delimiter; ``.xlsx`` files store
every text cell as a string, never as a formula. Nested values (structs, lists)
are written as JSON text. In ``.xlsx`` files times are written as Excel
date-times in UTC (Excel has no time zones); in CSV files as ISO 8601 with their
offset.

>>> import polars as pl
>>> safe_frame(pl.DataFrame({"u": ["=HYPERLINK(1)", "https://x.example/?token=abc", "-5"], "n": [1, 2, -3]})).rows()
[("'=HYPERLINK(1)", 1), ('https://x.example/?token=***', 2), ("'-5", -3)]
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from cfanalytics.exceptions import UsageError
from cfanalytics.redaction import redact, redact_expr

__all__ = ["FORMULA_PREFIXES", "SUFFIXES", "export_frame", "neutralise", "safe_frame"]

#: First characters that make a spreadsheet treat a cell as a formula (or split it).
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: File suffixes :func:`export_frame` writes.
SUFFIXES: Final = (".csv", ".xlsx")
# leading characters a spreadsheet may skip before it looks for a formula: white space and controls
_SKIPPED: Final = "\\x00-\\x20\\x7F-\\xA0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff"
# one pattern for Python ``re`` and Polars (Rust ``regex``): a tab or CR first, or a formula
# character after any skipped characters
_FORMULA_START: Final = f"^(?:[\\t\\r]|[{_SKIPPED}]*[=+\\-@\uff1d\uff0b\uff0d\uff20])"
_FORMULA_RE: Final = re.compile(_FORMULA_START)
_XLSX_ILLEGAL: Final = r"[\x00-\x08\x0B\x0C\x0E-\x1F]"


def neutralise(text: str | None) -> str | None:
    """Redact ``text`` and prefix ``'`` when it would start a spreadsheet formula.

    >>> neutralise("=cmd|' /C calc'!A0"), neutralise("@SUM(A1)"), neutralise("plain")
    ("'=cmd|' /C calc'!A0", "'@SUM(A1)", 'plain')
    >>> neutralise("\\x01=HYPERLINK(1)"), neutralise("  +1"), neutralise("a=1")
    ("'\\x01=HYPERLINK(1)", "'  +1", 'a=1')
    """
    if text is None:
        return None
    text = redact(text) or ""
    return "'" + text if _FORMULA_RE.match(text) else text


def _safe_strings(expr: pl.Expr) -> pl.Expr:
    redacted = redact_expr(expr)
    return pl.when(redacted.str.contains(_FORMULA_START)).then(pl.lit("'") + redacted).otherwise(redacted)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)


def safe_frame(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with nested values as JSON text, every string cell and header redacted and neutralised."""
    out = df
    nested = [name for name, dtype in df.schema.items() if dtype.is_nested() or dtype == pl.Object]
    if nested:
        out = out.with_columns(
            pl.Series(name, [_to_json(v) for v in out.get_column(name).to_list()], dtype=pl.String) for name in nested
        )
    strings = [name for name, dtype in out.schema.items() if dtype in (pl.String, pl.Categorical, pl.Enum)]
    if strings:
        out = out.with_columns(_safe_strings(pl.col(name).cast(pl.String)).alias(name) for name in strings)
    renames = {name: neutralise(name) or "" for name in out.columns}
    return out.rename({old: new for old, new in renames.items() if old != new})


def export_frame(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to ``path`` as CSV or ``.xlsx`` (by suffix), redacted and formula-safe; return the path.

    >>> import tempfile, polars as pl
    >>> p = export_frame(pl.DataFrame({"m": ["=1+1"]}), tempfile.mkdtemp() + "/t.csv")
    >>> p.read_text()
    '"m"\\n"\\'=1+1"\\n'
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"cannot export to {target.name}: use a .csv or .xlsx file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    frame = safe_frame(df)
    if suffix == ".csv":
        frame.write_csv(target, quote_style="non_numeric")
    else:
        _write_xlsx(frame, target)
    return target


def _write_xlsx(frame: pl.DataFrame, target: Path) -> None:
    try:
        from openpyxl import Workbook
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise UsageError("writing .xlsx needs openpyxl (pip install 'cfanalytics[xlsx]')") from None
    zoned = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone]
    if zoned:
        frame = frame.with_columns(
            pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None) for name in zoned
        )
    durations = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Duration | pl.Time)]
    if durations:
        frame = frame.with_columns(pl.col(name).cast(pl.String) for name in durations)
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if strings:  # control characters Excel cannot store
        frame = frame.with_columns(pl.col(name).str.replace_all(_XLSX_ILLEGAL, "") for name in strings)
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("data")
    dates = {i for i, dtype in enumerate(frame.dtypes) if isinstance(dtype, pl.Datetime)}

    def cell(value: Any, index: int, *, header: bool = False) -> Any:
        out = WriteOnlyCell(sheet, value=value)
        if isinstance(value, str):
            out.data_type = "s"  # text, never a formula, whatever it starts with
        elif index in dates and not header:
            out.number_format = "yyyy-mm-dd hh:mm:ss"
        return out

    sheet.append([cell(name, i, header=True) for i, name in enumerate(frame.columns)])
    for row in frame.iter_rows():
        sheet.append([cell(value, i) for i, value in enumerate(row)])
    book.save(target)
