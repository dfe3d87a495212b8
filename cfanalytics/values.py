"""Value rules, in one place: times, payouts, booleans, status codes, click-id shapes, time zones.

Both the ingest (:mod:`cfanalytics.normalize`) and the reconciliation of network
exports (:mod:`cfanalytics.diagnose.reconcile`) parse text with these rules:

- **Time** text is one of three classes (docs/contract.md §2): Unix seconds or
  milliseconds (:data:`EPOCH`), text with a UTC offset or ``Z`` (:data:`OFFSET`;
  the offset wins over any zone setting), or naive local time in the account
  zone (:data:`NAIVE_FORMATS`). Naive times in a DST fall-back hour read as the
  earlier instant, those in a spring-forward gap are shifted forward by the gap
  (the ingest refines the fall-back hour by file order).
- **Numbers** (payouts) are plain decimals, optionally signed, with an exponent;
  a decimal comma only where the caller knows the file uses it; non-finite
  values are null. Exports of other systems (affiliate networks) are cleaned of
  currency signs and thousands separators first (:func:`money_text`).
- **Booleans** are ``1/true/yes/y/t`` and ``0/false/no/n/f`` (any case).
- **Status codes** are integers.

Parsing gives text its type; the rules a typed value must then obey (time
window, finite numbers, status-code range, ISO-2 countries, vocabularies) are
the checks of the pandera value models, :func:`cfanalytics.schemas.column_checks`.

>>> import polars as pl
>>> frame = pl.DataFrame({"t": ["1795150804", "2026-11-20T05:00:04Z", "2026-11-20 00:00:04"]})
>>> [t.isoformat() for t in frame.select(parse_time_expr(pl.col("t"), "America/New_York")).to_series()]
['2026-11-20T05:00:04+00:00', '2026-11-20T05:00:04+00:00', '2026-11-20T05:00:04+00:00']
"""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from cfanalytics.exceptions import UsageError

#: An unreplaced tracker macro in a click id or URL: ``{clickid}``, ``[CLICK_ID]``, ``%7Bclickid%7D``.
MACRO_PATTERN: Final = r"\{[^}]*\}|\[[A-Za-z_]+\]|%7[Bb].*%7[Dd]"
#: A well-formed click id: a UUID.
UUID_PATTERN: Final = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: Unix time in seconds (9–10 digits) or milliseconds (12–13 digits), optionally with a fraction.
EPOCH: Final = r"^\d{9,13}(\.\d+)?$"
#: Time text that carries its own offset.
OFFSET: Final = r"(Z|z|[+-]\d{2}:?\d{2})$"
#: Formats of time text with an offset (after :func:`iso_text`).
OFFSET_FORMATS: Final = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M%z")
#: Formats of naive local time text (after :func:`iso_text`), year first.
NAIVE_FORMATS: Final = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d")
#: Naive formats some exports of other systems use as well: 12-hour clocks and year-first slashes.
EXTRA_NAIVE_FORMATS: Final = (
    "%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y-%m-%d %I:%M:%S %p", "%Y-%m-%d %I:%M %p",
)  # fmt: skip
#: Month-first slash dates (``11/20/2026``); :func:`day_first` tells when a column is day-first instead.
SLASH_FORMATS: Final = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y")
#: A plain decimal number: optional sign, digits with an optional point, optional exponent.
NUMBER: Final = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
TRUE_WORDS: Final = ("1", "true", "yes", "y", "t")
FALSE_WORDS: Final = ("0", "false", "no", "n", "f")
UTC_TIME: Final = pl.Datetime("us", "UTC")


def check_timezone(timezone: str) -> str:
    """Return ``timezone`` if it is a known IANA zone, else raise a one-line ``UsageError``.

    >>> check_timezone("Europe/Paris")
    'Europe/Paris'
    """
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {timezone!r} (use an IANA name such as America/New_York)") from None
    return timezone


# --------------------------------------------------------------------------- time
def iso_text(s: pl.Expr) -> pl.Expr:
    """Time text with ``T`` as a space and a trailing ``Z`` as ``+00:00`` (what the formats expect)."""
    return s.str.replace("T", " ", literal=True).str.replace(r"\s*[Zz]$", "+00:00")


def time_class_expr(s: pl.Expr) -> pl.Expr:
    """1 for Unix time, 2 for text with an offset, 3 for naive local time (stripped text ``s``)."""
    return pl.when(s.str.contains(EPOCH)).then(pl.lit(1)).when(s.str.contains(OFFSET)).then(pl.lit(2)).otherwise(3)


def epoch_expr(s: pl.Expr) -> pl.Expr:
    """Unix seconds or milliseconds (from 1e11 on) → UTC instant.

    >>> pl.DataFrame({"t": ["1763614804000"]}).select(epoch_expr(pl.col("t"))).item().isoformat()
    '2025-11-20T05:00:04+00:00'
    """
    num = s.cast(pl.Float64, strict=False)
    return pl.from_epoch(
        pl.when(num >= 1e11).then(num * 1_000).otherwise(num * 1_000_000).cast(pl.Int64, strict=False),
        time_unit="us",
    ).dt.replace_time_zone("UTC")


def offset_expr(s: pl.Expr) -> pl.Expr:
    """Time text with an offset → UTC instant (null when no :data:`OFFSET_FORMATS` fits)."""
    text = iso_text(s)
    return pl.coalesce(
        *(text.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False) for f in OFFSET_FORMATS)
    )


def naive_expr(s: pl.Expr, formats: tuple[str, ...] = NAIVE_FORMATS) -> pl.Expr:
    """Naive time text → naive datetime by the first of ``formats`` that fits."""
    text = iso_text(s)
    return pl.coalesce(*(text.str.to_datetime(f, time_unit="us", strict=False) for f in formats))


def localize_expr(naive: pl.Expr, timezone: str) -> pl.Expr:
    """Naive local times in ``timezone`` → UTC: fall-back hour → the earlier instant; spring-forward gap →
    shifted forward by the gap."""
    early = naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    shifted = (naive - pl.duration(hours=12)).dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    ) + pl.duration(hours=12)
    return pl.coalesce(early, shifted).dt.convert_time_zone("UTC")


def day_first(values: pl.Series) -> bool:
    """``D/M/YYYY`` when a slash date's first field exceeds 12 (else US ``M/D/YYYY``).

    >>> day_first(pl.Series(["20/11/2026", "01/12/2026"])), day_first(pl.Series(["11/20/2026"]))
    (True, False)
    """
    first = values.drop_nulls().str.extract(r"^(\d{1,2})/\d{1,2}/\d{4}", 1).drop_nulls().cast(pl.Int64)
    return bool(first.len()) and bool((first > 12).any())


def parse_time_expr(s: pl.Expr, timezone: str, *, formats: tuple[str, ...] = NAIVE_FORMATS) -> pl.Expr:
    """Stripped time text → UTC instant by the rules of the module docstring (null when unparseable).

    ``formats`` are the naive formats tried (default :data:`NAIVE_FORMATS`).
    """
    return (
        pl.when(s.str.contains(EPOCH))
        .then(epoch_expr(s))
        .when(s.str.contains(OFFSET))
        .then(offset_expr(s))
        .otherwise(localize_expr(naive_expr(s, formats), timezone))
        .cast(UTC_TIME)
    )


# --------------------------------------------------------------------------- numbers
def parse_number_expr(s: pl.Expr, *, decimal_comma: bool = False, finite: bool = True) -> pl.Expr:
    """Stripped number text → Float64 (:data:`NUMBER`; with ``decimal_comma`` the comma is the point).

    A number too large for a float (``1e400``) is null, or infinite with
    ``finite=False`` (the ingest's choice: there the value model's ``finite``
    check judges it, :func:`cfanalytics.schemas.column_checks`).

    >>> frame = pl.DataFrame({"p": ["12.5", "1e2", "$5", "NaN", "12,50", "1e400"]})
    >>> frame.select(parse_number_expr(pl.col("p"))).to_series().to_list()
    [12.5, 100.0, None, None, None, None]
    >>> frame.select(parse_number_expr(pl.col("p"), finite=False)).to_series().to_list()[-1]
    inf
    """
    text = s.str.replace(",", ".", literal=True) if decimal_comma else s
    number = pl.when(text.str.contains(NUMBER)).then(text.cast(pl.Float64, strict=False))
    return pl.when(number.is_finite()).then(number) if finite else number


def money_text(s: pl.Expr) -> pl.Expr:
    """Money text of another system → :data:`NUMBER` text: currency signs and spaces dropped, thousands
    separators removed, a decimal comma turned into a point (``1.250,00`` · ``1,250.00`` · ``12,50``).

    >>> frame = pl.DataFrame({"p": ["$1,250.00", "1.250,00 €", "12,50", "7"]})
    >>> frame.select(parse_number_expr(money_text(pl.col("p")))).to_series().to_list()
    [1250.0, 1250.0, 12.5, 7.0]
    """
    t = s.str.replace_all(r"[^0-9.,+\-]", "")
    has_comma = t.str.find(",", literal=True).fill_null(-1) >= 0
    comma_after_dot = t.str.contains(r",[0-9]*$") & t.str.contains(".", literal=True)
    return (
        pl.when(comma_after_dot)  # 1.250,00
        .then(t.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
        .when(t.str.contains(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"))  # 1,250 / 1,250.00
        .then(t.str.replace_all(",", "", literal=True))
        .when(has_comma & ~t.str.contains(".", literal=True))  # 12,50
        .then(t.str.replace(",", ".", literal=True))
        .otherwise(t)
    )


def parse_int_expr(s: pl.Expr) -> pl.Expr:
    """Integer text (``"200"``, ``"200.0"``) → Int64; fractions and non-numbers → null."""
    f = s.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(f.is_finite() & (f == f.round(0)) & (f.abs() < 2**53)).then(f.cast(pl.Int64, strict=False))


def parse_float_expr(s: pl.Expr) -> pl.Expr:
    """Number text → Float64 (Polars' float syntax, ``inf`` included), else null.

    Whether the number is finite is a check of the value models (:func:`cfanalytics.schemas.column_checks`).
    """
    return s.str.strip_chars().cast(pl.Float64, strict=False)


def parse_country_expr(s: pl.Expr) -> pl.Expr:
    """Country text → stripped, upper case (empty → null).

    Whether it is an ISO 3166 alpha-2 code is a check of the value models
    (:data:`cfanalytics.schemas.COUNTRY_PATTERN`).

    >>> pl.DataFrame({"c": [" us", "USA", " "]}).select(parse_country_expr(pl.col("c"))).to_series().to_list()
    ['US', 'USA', None]
    """
    c = s.str.strip_chars().str.to_uppercase()
    return pl.when(c != "").then(c)


def parse_bool_expr(s: pl.Expr) -> pl.Expr:
    """Boolean text (:data:`TRUE_WORDS`, :data:`FALSE_WORDS`, any case) → Boolean, else null.

    >>> pl.DataFrame({"b": ["Yes", "0", "maybe"]}).select(parse_bool_expr(pl.col("b"))).to_series().to_list()
    [True, False, None]
    """
    t = s.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(t.is_in(TRUE_WORDS))
        .then(pl.lit(True))
        .when(t.is_in(FALSE_WORDS))
        .then(pl.lit(False))
        .otherwise(pl.lit(None, pl.Boolean))
    )


def vocabulary_expr(s: pl.Expr, words: dict[str, str], other: str) -> pl.Expr:
    """Free text → a controlled value: lower case, letters only, looked up in ``words`` (else ``other``);
    empty → null."""
    key = s.cast(pl.String).str.to_lowercase().str.replace_all(r"[^a-z]", "")
    return (
        pl.when(s.is_null() | (s.str.strip_chars() == ""))
        .then(pl.lit(None, pl.String))
        .otherwise(key.replace_strict(words, default=other, return_dtype=pl.String))
    )
