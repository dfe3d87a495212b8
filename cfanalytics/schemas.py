"""Canonical columns of the five log kinds, identity columns, flags and reason codes.

This module is the one place that says what a stored row looks like, and the
home of the value rules: the checks of the pandera models (:func:`column_checks`).
It is light (Polars only); the models are built on demand by :func:`value_model`
and :func:`pandera_model` so that ``import cfanalytics`` does not pull pandera in.
Users validate their own frames with :func:`validate` (``cf.schemas.validate``).

>>> from cfanalytics.schemas import KINDS, column_names
>>> KINDS
('visits', 'clicks', 'conversions', 'postbacks', 'activity')
>>> column_names("postbacks", required_only=True)
['postback_id', 'click_id', 'postback_time', 'is_error']
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandera.polars as pa

Kind = Literal["visits", "clicks", "conversions", "postbacks", "activity"]
KINDS: Final[tuple[Kind, ...]] = ("visits", "clicks", "conversions", "postbacks", "activity")
EVENT_KINDS: Final[tuple[Kind, ...]] = ("visits", "clicks", "conversions")
#: event_type value (singular) of each event kind, as in ClickFlare's event logs.
EVENT_TYPE_OF_KIND: Final[dict[str, str]] = {
    "visits": "visit",
    "clicks": "click",
    "conversions": "conversion",
}
KIND_OF_EVENT_TYPE: Final[dict[str, Kind]] = {"visit": "visits", "click": "clicks", "conversion": "conversions"}

TIME: Final = pl.Datetime("us", "UTC")
STR: Final = pl.String()
INT: Final = pl.Int64()
FLOAT: Final = pl.Float64()
BOOL: Final = pl.Boolean()

#: Version of the on-disk store layout (metadata file, tables, internal columns).
STORE_FORMAT_VERSION: Final = 1
#: Version of the ``_row_id`` canonical encoding (see :mod:`cfanalytics.identity`).
ROW_ID_VERSION: Final = 1
#: Name of the table of quarantined records (beside one table per kind).
QUARANTINE: Final = "quarantine"
#: Prefix of the store's keys in Delta commit metadata (``cfanalytics.batch_id``, ``cfanalytics.source``…).
META_PREFIX: Final = "cfanalytics."
#: How an ingest may keep IP addresses: as read, masked (/24, /48) or as a salted hash.
IP_MODES: Final = ("raw", "masked", "hashed")


def check_ip_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`IP_MODES`, else raise ``UsageError``.

    >>> check_ip_mode("hashed")
    'hashed'
    """
    from cfanalytics.exceptions import UsageError

    if mode not in IP_MODES:
        raise UsageError(f"unknown IP mode {mode!r}; use one of {', '.join(IP_MODES)}")
    return mode


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, Polars dtype, whether it is required, a description."""

    name: str
    dtype: pl.DataType
    required: bool
    doc: str


def _c(name: str, dtype: pl.DataType, doc: str, *, required: bool = False) -> Column:
    return Column(name, dtype, required, doc)


# Visit dimensions (visits; clicks may carry any of them too).
_VISIT_DIMENSIONS: Final[tuple[Column, ...]] = (
    _c("traffic_source_id", STR, "Traffic source id"),
    _c("offer_id", STR, "Offer id"),
    _c("landing_id", STR, "Landing page (lander) id"),
    _c("flow_id", STR, "Flow id"),
    _c("affiliate_network_id", STR, "Affiliate network id"),
    _c("external_id", STR, "External id passed by the traffic source (gclid, fbclid, subid…)"),
    _c("ip", STR, "Visitor IP address"),
    _c("country", STR, "ISO 3166-1 alpha-2 country code, upper case"),
    _c("region", STR, "Region"),
    _c("city", STR, "City"),
    _c("isp", STR, "Internet service provider"),
    _c("connection_type", STR, "Connection type"),
    _c("device_type", STR, "Device type"),
    _c("os", STR, "Operating system"),
    _c("os_version", STR, "Operating system version"),
    _c("browser", STR, "Browser"),
    _c("browser_version", STR, "Browser version"),
    _c("device_brand", STR, "Device brand"),
    _c("device_model", STR, "Device model"),
    _c("language", STR, "Browser language"),
    _c("user_agent", STR, "User agent"),
    _c("referrer", STR, "Referrer"),
    _c("bot_score", FLOAT, "Bot score"),
    _c("is_filtered", BOOL, "Filtered (bot) traffic; false when the export does not say"),
)

#: Display-name columns every kind may carry.
NAME_COLUMNS: Final[tuple[Column, ...]] = (
    _c("campaign_name", STR, "Campaign name"),
    _c("traffic_source_name", STR, "Traffic source name"),
    _c("offer_name", STR, "Offer name"),
    _c("landing_name", STR, "Landing page name"),
    _c("affiliate_network_name", STR, "Affiliate network name"),
    _c("integration_name", STR, "Conversion API integration name"),
)

_KIND_COLUMNS: Final[dict[str, tuple[Column, ...]]] = {
    "visits": (
        _c("click_id", STR, "Click id (the visit's id)", required=True),
        _c("visit_time", TIME, "Visit time (UTC)", required=True),
        _c("campaign_id", STR, "Campaign id", required=True),
        *_VISIT_DIMENSIONS,
    ),
    "clicks": (
        _c("click_id", STR, "Click id of the visit", required=True),
        _c("click_time", TIME, "Landing-page click time (UTC)", required=True),
        _c("campaign_id", STR, "Campaign id", required=True),
        _c("cta", INT, "Call to action: the N of /cf/click/N"),
        *_VISIT_DIMENSIONS,
    ),
    "conversions": (
        _c("click_id", STR, "Click id the conversion was posted for", required=True),
        _c("conversion_time", TIME, "Conversion time (UTC)", required=True),
        _c("visit_time", TIME, "Time of the converting visit (UTC)"),
        _c("campaign_id", STR, "Campaign id"),
        _c("traffic_source_id", STR, "Traffic source id"),
        _c("offer_id", STR, "Offer id"),
        _c("affiliate_network_id", STR, "Affiliate network id"),
        _c("payout", FLOAT, "Payout"),
        _c("currency", STR, "Payout currency"),
        _c("txid", STR, "Transaction id"),
        _c("ct", STR, "Custom conversion type (signup, sale, lead…)"),
        _c("custom_conversion_number", INT, "Custom conversion number"),
        _c("status", STR, "Conversion status"),
    ),
    "postbacks": (
        _c("postback_id", STR, "Postback id (derived from the row when the export lacks it)", required=True),
        _c("click_id", STR, "Click id the postback was fired for", required=True),
        _c("postback_time", TIME, "Time the postback was fired (UTC)", required=True),
        _c("is_error", BOOL, "The traffic source (or CAPI) answered with an error", required=True),
        _c("status_code", INT, "HTTP status code; null = no response"),
        _c("error_message", STR, "Error message"),
        _c("postback_url", STR, "Fully populated postback URL (raw; redacted on display)"),
        _c("ct", STR, "Custom conversion type"),
        _c("custom_conversion_index", INT, "Custom conversion index"),
        _c("integration_id", STR, "Conversion API integration id"),
        _c("event", STR, "Event sent to the traffic source"),
        _c("click_time", TIME, "Click time (UTC)"),
        _c("traffic_source_id", STR, "Traffic source id"),
        _c("campaign_id", STR, "Campaign id"),
    ),
    "activity": (
        _c("activity_id", STR, "Activity id, when the export has one"),
        _c("changed_at", TIME, "Time of the change (UTC)", required=True),
        _c("author", STR, "Who made the change", required=True),
        _c(
            "entity_type",
            STR,
            "campaign, lander, offer, flow, affiliate_network, traffic_source, integration, other",
            required=True,
        ),
        _c("action", STR, "created, updated, deleted, other", required=True),
        _c("entity_id", STR, "Id of the changed entity"),
        _c("entity_name", STR, "Name of the changed entity"),
        _c("old_value", STR, "Value before the change (JSON text)"),
        _c("new_value", STR, "Value after the change (JSON text)"),
        _c("action_raw", STR, "The action word as exported"),
    ),
}

#: The main time of each kind: its UTC date is the ``date`` partition.
MAIN_TIME: Final[dict[str, str]] = {
    "visits": "visit_time",
    "clicks": "click_time",
    "conversions": "conversion_time",
    "postbacks": "postback_time",
    "activity": "changed_at",
}

#: Key column of keyed kinds: a repeated key with other content is ``conflicting_key``.
KEY_COLUMN: Final[dict[str, str]] = {"visits": "click_id", "postbacks": "postback_id"}

#: Frozen identity columns per kind (docs/contract.md §4). Changing them needs a new ROW_ID_VERSION.
IDENTITY_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "visits": ("click_id",),
    "postbacks": ("postback_id",),
    "clicks": ("click_id", "click_time", "cta"),
    "conversions": ("click_id", "conversion_time", "ct", "txid", "payout", "status"),
    "activity": ("changed_at", "author", "entity_type", "entity_id", "action", "old_value", "new_value"),
}
#: Activity rows that carry an id are identified by it alone.
ACTIVITY_KEYED_IDENTITY: Final[tuple[str, ...]] = ("activity_id",)

#: Columns a derived postback id is computed from (plus the ordinal among identical rows).
DERIVED_POSTBACK_ID_COLUMNS: Final[tuple[str, ...]] = (
    "click_id",
    "postback_time",
    "ct",
    "integration_id",
    "postback_url",
    "status_code",
    "is_error",
)

#: The entities logs name by id: activity ``entity_type`` → (id column, name column, ``LogFilter`` field).
ENTITIES: Final[dict[str, tuple[str, str, str]]] = {
    "campaign": ("campaign_id", "campaign_name", "campaigns"),
    "traffic_source": ("traffic_source_id", "traffic_source_name", "traffic_sources"),
    "offer": ("offer_id", "offer_name", "offers"),
    "lander": ("landing_id", "landing_name", "landers"),
    "affiliate_network": ("affiliate_network_id", "affiliate_network_name", "affiliate_networks"),
    "integration": ("integration_id", "integration_name", "integrations"),
}
#: Activity ``entity_type`` values: the entities above, flows (no id column in the logs), and ``other``.
ENTITY_TYPES: Final[tuple[str, ...]] = (
    "campaign",
    "lander",
    "offer",
    "flow",
    "affiliate_network",
    "traffic_source",
    "integration",
    "other",
)
#: Activity ``action`` values.
ACTIONS: Final[tuple[str, ...]] = ("created", "updated", "deleted", "other")
#: Words exports use for an entity type (lower case, letters only) → ``entity_type``; others are ``other``.
ENTITY_WORDS: Final[dict[str, str]] = {
    "campaign": "campaign",
    "campaigns": "campaign",
    "lander": "lander",
    "landers": "lander",
    "landing": "lander",
    "landingpage": "lander",
    "landingpages": "lander",
    "offer": "offer",
    "offers": "offer",
    "flow": "flow",
    "flows": "flow",
    "affiliatenetwork": "affiliate_network",
    "affiliatenetworks": "affiliate_network",
    "network": "affiliate_network",
    "trafficsource": "traffic_source",
    "trafficsources": "traffic_source",
    "source": "traffic_source",
    "integration": "integration",
    "integrations": "integration",
    "capiintegration": "integration",
    "conversionapi": "integration",
}
#: Words exports use for an action (lower case, letters only) → ``action``; others are ``other``.
ACTION_WORDS: Final[dict[str, str]] = {
    "created": "created",
    "create": "created",
    "added": "created",
    "add": "created",
    "new": "created",
    "updated": "updated",
    "update": "updated",
    "edited": "updated",
    "edit": "updated",
    "changed": "updated",
    "modified": "updated",
    "deleted": "deleted",
    "delete": "deleted",
    "removed": "deleted",
    "remove": "deleted",
}

#: Flags: stored-and-flagged outcomes of docs/contract.md §3. Name → (kinds, meaning).
FLAGS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "flag_invalid_status_code": (("postbacks",), "status code not an integer in 100–599; nulled, raw in _raw"),
    "flag_invalid_payout": (("conversions",), "payout not a finite number; nulled, raw in _raw"),
    "flag_invalid_country": (("visits", "clicks"), "country not an ISO-2 code; nulled, raw in _raw"),
    "flag_invalid_value": (KINDS, "another optional value did not parse; nulled, raw in _raw"),
    "flag_error_status_mismatch": (("postbacks",), "is_error disagrees with the status code (value kept)"),
    "flag_click_id_macro": (
        ("visits", "clicks", "conversions", "postbacks"),
        "click_id holds an unreplaced macro such as {subid}, [CLICKID], %7Bclick_id%7D (value kept)",
    ),
    "flag_click_id_malformed": (
        ("visits", "clicks", "conversions", "postbacks"),
        "click_id is not UUID-shaped (value kept)",
    ),
    "flag_negative_payout": (("conversions",), "payout below zero (value kept)"),
    "flag_ambiguous_time": (
        KINDS,
        "a local time fell in a DST fall-back hour (resolved by file order, else the earlier instant)",
    ),
    "flag_shifted_time": (KINDS, "a local time fell in a DST spring-forward gap; shifted forward by the gap"),
    "flag_derived_postback_id": (
        ("postbacks",),
        "the export had no postback id column; the id was derived from the row",
    ),
}

#: Closed list of quarantine reason codes.
REASONS: Final[dict[str, str]] = {
    "missing_required": "a required value is missing or empty",
    "unparseable_required": "a required value does not parse (time, boolean) or fails a check of the kind's model",
    "unknown_event_type": "an event log row whose event type is not visit, click or conversion",
    "conflicting_key": (
        "a keyed row (visit click_id, postback_id, activity_id) seen before with different content; the first is kept"
    ),
    "ragged_row": "a CSV record with too many or too few fields",
    "repeated_header": "the header line repeated inside the file",
    "invalid_record": "a JSON record that is not an object",
}

#: Internal columns every stored row carries.
INTERNAL_COLUMNS: Final[tuple[Column, ...]] = (
    _c("_row_id", STR, "Stable row identity (docs/contract.md §4)"),
    _c("_batch_id", STR, "Batch that stored the row"),
    _c("date", pl.Date(), "UTC date of the main time; the partition"),
    _c("_raw", STR, "JSON text of raw values nulled by a flag, else null"),
)
#: Keyed kinds also keep a digest of their content, to tell identical repeats from conflicts
#: (:func:`cfanalytics.identity.content_digest`).
CONTENT_DIGEST_COLUMN: Final = "_content_digest"
#: The text content hash of tables written before ``_content_digest``: reserved, and ignored where a table has it.
CONTENT_HASH_COLUMN: Final = "_content_hash"

QUARANTINE_COLUMNS: Final[tuple[Column, ...]] = (
    _c("_row_id", STR, "Identity of the quarantined record: source sha256, kind, record, reason"),
    _c("_batch_id", STR, "Batch the record came with"),
    _c("source", STR, "File (or frame) name"),
    _c("source_sha256", STR, "sha256 of the source bytes"),
    _c("kind", STR, "Log kind, when known"),
    _c("record", INT, "Record number (CSV: header = 1)"),
    _c("reason", STR, "Reason code (closed list)"),
    _c("detail", STR, "What was wrong, in words"),
    _c("raw", STR, "The raw record as JSON text, under its original column names"),
    _c("quarantined_at", TIME, "When it was quarantined (UTC)"),
)

#: Names an input column may not take; such inputs get a ``_src`` suffix.
RESERVED_NAMES: Final[frozenset[str]] = frozenset(
    {
        "date",
        "_row_id",
        "_batch_id",
        "_raw",
        CONTENT_DIGEST_COLUMN,
        CONTENT_HASH_COLUMN,
        "event_type",
        "event_time",
        "_record",
    }
)


def columns(kind: str) -> tuple[Column, ...]:
    """Canonical data columns of ``kind`` (required first, then optional, then names)."""
    return (*_KIND_COLUMNS[check_kind(kind)], *NAME_COLUMNS)


def column_names(kind: str, *, required_only: bool = False) -> list[str]:
    """Names of the canonical columns of ``kind``."""
    return [c.name for c in columns(kind) if c.required or not required_only]


def flags(kind: str) -> list[str]:
    """Flag columns stored for ``kind``."""
    return [name for name, (kinds, _) in FLAGS.items() if kind in kinds]


def check_kind(kind: str) -> Kind:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise a one-line ``UsageError``."""
    if kind not in KINDS:
        from cfanalytics.exceptions import UsageError

        raise UsageError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


@cache
def polars_schema(kind: str) -> dict[str, pl.DataType]:
    """The full stored schema of ``kind`` (without extra input columns), in column order.

    >>> polars_schema("activity")["changed_at"]
    Datetime(time_unit='us', time_zone='UTC')
    """
    schema: dict[str, pl.DataType] = {c.name: c.dtype for c in INTERNAL_COLUMNS}
    schema.update({c.name: c.dtype for c in columns(kind)})
    schema.update(dict.fromkeys(flags(kind), BOOL))
    if kind in KEY_COLUMN or kind == "activity":
        schema[CONTENT_DIGEST_COLUMN] = INT
    return schema


def quarantine_schema() -> dict[str, pl.DataType]:
    """Schema of the quarantine table."""
    return {c.name: c.dtype for c in QUARANTINE_COLUMNS}


#: Times outside this window are not log times (``9999-12-31`` placeholders, misread epochs): the
#: check of every time column of the models (from, inclusive; to, exclusive).
TIME_WINDOW: Final = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
#: Inclusive range of HTTP status codes.
STATUS_CODE_RANGE: Final = (100, 599)
#: An ISO 3166-1 alpha-2 country code as stored.
COUNTRY_PATTERN: Final = r"^[A-Z]{2}$"
#: Name of the models' check that a float is finite (pandera has no built-in one).
FINITE: Final = "finite"
#: Columns of :func:`failure_cases`: row (0-based, as in the frame validated; null for a check of the whole
#: column, such as its type), column, the check that failed, the failing value as text.
FAILURE_SCHEMA: Final = {"index": INT, "column": STR, "check": STR, "failure_case": STR}


@contextmanager
def _pandera_import() -> Iterator[None]:
    """The block every import of pandera goes through: its first import loads no Spark.

    When pyspark is installed (``cfanalytics[spark]``), ``import pandera`` also imports
    ``pyspark.pandas`` for pandas-on-Spark typing that the kit never uses: most of a
    second per process, and a ``FutureWarning`` on pandas 3. While pandera is first
    imported, ``pyspark.pandas`` is made unimportable (pandera then skips it) unless it
    is loaded already; afterwards it imports as usual. Once pandera is loaded the block
    does nothing.

    >>> with _pandera_import():
    ...     import pandera.polars as pa
    """
    if "pandera.polars" in sys.modules:
        yield
        return
    blocked = "pyspark.pandas" not in sys.modules
    if blocked:
        sys.modules["pyspark.pandas"] = None  # type: ignore[assignment]  # import raises ModuleNotFoundError
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
            yield
    finally:
        if blocked and sys.modules.get("pyspark.pandas", 0) is None:
            del sys.modules["pyspark.pandas"]


def _finite(data: Any) -> pl.LazyFrame:
    """The ``finite`` check of float columns (``PolarsData`` → one boolean per row; null passes)."""
    return data.lazyframe.select(pl.col(data.key).is_finite())  # type: ignore[no-any-return]


def column_checks(column: Column) -> list[pa.Check]:
    """The value rules of one canonical column as pandera checks: the one place they are written.

    Times lie in :data:`TIME_WINDOW`, floats are finite, status codes lie in
    :data:`STATUS_CODE_RANGE`, countries match :data:`COUNTRY_PATTERN`, activity
    entity types and actions come from :data:`ENTITY_TYPES` and :data:`ACTIONS`.
    The ingest parses text into typed values, runs these checks on every batch
    and turns their failures into quarantine (required columns) or flags.

    >>> [c.error for c in column_checks(Column("status_code", INT, False, ""))]
    ['in_range(100, 599)']
    """
    with _pandera_import():
        import pandera.polars as pa

    if column.dtype == TIME:
        return [pa.Check.in_range(*TIME_WINDOW, include_max=False)]
    if column.dtype == FLOAT:
        return [pa.Check(_finite, name=FINITE, error=FINITE)]
    by_name: dict[str, list[pa.Check]] = {
        "status_code": [pa.Check.in_range(*STATUS_CODE_RANGE)],
        "country": [pa.Check.str_matches(COUNTRY_PATTERN)],
        "entity_type": [pa.Check.isin(ENTITY_TYPES)],
        "action": [pa.Check.isin(ACTIONS)],
    }
    return by_name.get(column.name, [])


@cache
def value_model(kind: str, without: tuple[str, ...] = ()) -> pa.DataFrameSchema:
    """The ``pandera.polars`` model of the values of ``kind``: canonical columns, dtypes, nullability, checks.

    Required columns must be present and non-null; optional columns may be
    absent or null. Extra columns are allowed. This is the model every ingest
    batch is validated against (after its text is parsed), and the one
    :func:`validate` checks users' frames with. ``without`` leaves columns out
    (the postback id an ingest derives after validation).
    """
    with _pandera_import():
        import pandera.polars as pa

    cols = {
        c.name: pa.Column(c.dtype, nullable=not c.required, required=c.required, checks=column_checks(c))
        for c in columns(kind)
        if c.name not in without
    }
    return pa.DataFrameSchema(cols, strict=False, name=f"cfanalytics.{kind}.values")


@cache
def pandera_model(kind: str) -> pa.DataFrameSchema:
    """A ``pandera.polars`` schema for stored rows of ``kind``.

    The columns and checks of :func:`value_model`, every column required, plus
    the internal columns (``_row_id`` of 32 characters, non-null batch, date and
    flags). Extra columns are allowed (unknown input columns are kept as strings).
    Imported lazily: pandera is only loaded when a model is asked for.
    """
    with _pandera_import():
        import pandera.polars as pa

    canonical = {c.name: c for c in columns(kind)}
    cols: dict[str, pa.Column] = {}
    for name, dtype in polars_schema(kind).items():
        if name in canonical:
            c = canonical[name]
            cols[name] = pa.Column(dtype, nullable=not c.required, required=True, checks=column_checks(c))
            continue
        checks = [pa.Check.str_length(32, 32)] if name == "_row_id" else []
        nullable = name not in {"_row_id", "_batch_id", "date"} and not name.startswith("flag_")
        cols[name] = pa.Column(dtype, nullable=nullable, checks=checks, required=True)
    return pa.DataFrameSchema(cols, strict=False, name=f"cfanalytics.{kind}")


def failure_cases(frame: pl.DataFrame, kind: str, *, without: tuple[str, ...] = ()) -> pl.DataFrame:
    """Every value of ``frame`` that breaks :func:`value_model` of ``kind`` (lazy validation: all of them).

    One row per failure, with the columns of :data:`FAILURE_SCHEMA`, ordered by
    row then column; empty when the frame is valid.

    >>> frame = pl.DataFrame({"postback_id": ["p1", "p2"], "click_id": ["c1", None],
    ...     "postback_time": [datetime(2026, 11, 20, tzinfo=UTC)] * 2, "is_error": [False, True],
    ...     "status_code": [200, 700]})
    >>> failure_cases(frame, "postbacks").rows()
    [(1, 'click_id', 'not_nullable', None), (1, 'status_code', 'in_range(100, 599)', '700')]
    """
    with _pandera_import():
        from pandera.errors import SchemaErrors

    try:
        value_model(kind, without).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        assert isinstance(cases, pl.DataFrame)
        return (
            cases.select(pl.col(c).cast(t) for c, t in FAILURE_SCHEMA.items())
            .unique(maintain_order=True)
            .sort("index", nulls_last=False, maintain_order=True)
        )
    return pl.DataFrame(schema=FAILURE_SCHEMA)


class _Capture:
    """Stands in for the lazy frame a pandera check selects from: ``select(expr)`` hands ``expr`` back."""

    def select(self, *exprs: Any) -> Any:
        return exprs[0] if len(exprs) == 1 and isinstance(exprs[0], pl.Expr) else None


def check_expr(check: pa.Check, column: str) -> pl.Expr | None:
    """A pandera check of ``column`` as a Polars expression: true where a value passes, as pandera judges it.

    The check's own function (built-in or custom) is called with a stand-in for
    the frame, so the expression is the one pandera would evaluate, nulls
    passing when the check ignores them. ``None`` when the check is not one
    expression (element-wise, or not over the column).

    >>> import pandera.polars as pa
    >>> expr = check_expr(pa.Check.in_range(100, 599), "status_code")
    >>> pl.DataFrame({"status_code": [99, 200, None]}).select(expr).to_series().to_list()
    [False, True, True]
    """
    with _pandera_import():
        from pandera.api.polars.types import PolarsData
        from pandera.backends.polars.register import register_polars_backends

    register_polars_backends()  # the built-in checks' Polars implementations (once; pandera does it on validate)
    fn = check._check_fn
    name = getattr(fn, "__name__", None)
    if name is not None and check.is_builtin_check(name):  # as pandera does when it runs the check
        fn = check.get_builtin_check_fn(name)
    if check.element_wise or fn is None:
        return None
    out = fn(PolarsData(_Capture(), column), **check._check_kwargs)  # type: ignore[arg-type]
    if not isinstance(out, pl.Expr):
        return None
    return out | out.is_null() if check.ignore_na else out.fill_null(False)


def row_failures(frame: pl.DataFrame, kind: str, *, without: tuple[str, ...] = (), full: bool = False) -> pl.DataFrame:
    """:func:`failure_cases`, the same rows and checks, at the cost of one Polars pass when the frame is valid.

    Each column's nullability and checks in the model become expressions
    (:func:`check_expr`), evaluated together; pandera then validates only the
    rows that fail one, and names their checks. Pandera validates the whole
    frame instead when a column the model requires is absent or of another
    type, or a check has no expression. With ``full``, pandera validates the
    whole frame and the expressions must agree with it (an ``AssertionError``
    otherwise): the ingest does this on the first batch of each kind of an input.
    """
    model = value_model(kind, without)
    passes: list[pl.Expr] = []
    for name, col in model.columns.items():
        if name not in frame.columns:
            if col.required:
                return failure_cases(frame, kind, without=without)
            continue
        if frame.schema[name] != col.dtype.type:
            return failure_cases(frame, kind, without=without)
        if not col.nullable:  # as pandera's not_nullable: NaN counts as null in a float column
            present = pl.col(name).is_not_null()
            passes.append(present & pl.col(name).is_not_nan() if frame.schema[name].is_float() else present)
        for check in col.checks:
            expr = check_expr(check, name)
            if expr is None:
                return failure_cases(frame, kind, without=without)
            passes.append(expr)
    if not passes or frame.height == 0:
        return failure_cases(frame, kind, without=without) if full else pl.DataFrame(schema=FAILURE_SCHEMA)
    bad = frame.select(pl.all_horizontal(passes).not_().arg_true()).to_series()
    if full:
        cases = failure_cases(frame, kind, without=without)
        found = set(cases.get_column("index").drop_nulls().to_list())
        if found != set(bad.to_list()):
            raise AssertionError(f"{kind}: the model's checks as expressions disagree with pandera: {cases.head(3)}")
        return cases
    if bad.len() == 0:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    cases = failure_cases(frame[bad], kind, without=without)
    rows = bad.to_list()  # row i of the subset is row rows[i] of the frame
    index = [None if i is None else rows[i] for i in cases.get_column("index").to_list()]
    return cases.with_columns(pl.Series("index", index, dtype=INT))


def validate(frame: pl.DataFrame | pl.LazyFrame, kind: str, *, raise_errors: bool = False) -> pl.DataFrame:
    """Check a frame of ``kind`` against its model: the failure cases (empty when valid), or one error.

    The frame holds canonical columns (docs/columns.md) in their stored types;
    other columns are ignored. A lazy frame is collected first (pandera checks
    only the schema of a lazy frame). With ``raise_errors``, any failure raises
    one :class:`~cfanalytics.exceptions.InputError` naming the count and the
    first failures instead.

    >>> import cfanalytics as cf
    >>> frame = pl.DataFrame({"postback_id": ["p1", "p2"], "click_id": ["c1", "c2"],
    ...     "postback_time": [datetime(2026, 11, 20, tzinfo=UTC)] * 2, "is_error": [False, True],
    ...     "status_code": [200, 700]})
    >>> cf.schemas.validate(frame, kind="postbacks").rows()
    [(1, 'status_code', 'in_range(100, 599)', '700')]
    >>> cf.schemas.validate(frame.head(1), kind="postbacks").height
    0
    >>> cf.schemas.validate(frame, kind="postbacks", raise_errors=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cfanalytics.exceptions.InputError: postbacks frame: 1 value breaks the model ...: row 1 status_code ...: '700'
    """
    from cfanalytics.exceptions import InputError

    check_kind(kind)
    data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    cases = failure_cases(data, kind)
    if raise_errors and cases.height:
        shown = "; ".join(
            ("" if i is None else f"row {i} ") + f"{c} {check}" + ("" if v is None else f": {v[:40]!r}")
            for i, c, check, v in cases.head(3).iter_rows()
        )
        more = f" (and {cases.height - 3} more)" if cases.height > 3 else ""
        noun = "value breaks" if cases.height == 1 else "values break"
        raise InputError(f"{kind} frame: {cases.height} {noun} the model {value_model(kind).name}: {shown}{more}")
    return cases
