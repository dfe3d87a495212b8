"""Status classes, error kinds, error meanings and error signatures of postbacks (docs/contract.md §6).

What a failing postback means is read from the URL sent (an unreplaced macro, an empty click-id
parameter), then from the platform's answer (its documented codes, then its wording; the tables live in
:mod:`cfanalytics.diagnose.platform_errors`), and from the HTTP status only when the answer says nothing
more. :func:`with_error_meaning` adds the kind, a finer detail, the platform and its own code, whether a
re-send can succeed, who fixes it and what to do; :func:`error_kind` is the kind alone, as an expression.

All of it runs inside the query engine (regular expressions, joins; no Python per row): the rules
run once per distinct message, URL, host and integration name among the failing rows and are joined
back. Patterns are Rust ``regex`` syntax (no look-around, no backreferences).

>>> import polars as pl
>>> df = pl.DataFrame(
...     {
...         "is_error": [True, True, True, False],
...         "status_code": [401, None, 429, 200],
...         "error_message": ["Invalid token", "cURL error 28: Connection timed out after 10000 ms", "", None],
...         "postback_url": [
...             "https://ts.example/pb?cid={clickid}",
...             "https://ts.example/pb?cid=5",
...             "https://ts.example/pb?cid=6",
...             "https://ts.example/pb?cid=7",
...         ],
...     }
... )
>>> df.select(
...     kind=error_kind(
...         is_error=pl.col("is_error"),
...         status_code=pl.col("status_code"),
...         error_message=pl.col("error_message"),
...         postback_url=pl.col("postback_url"),
...     ),
...     status_class=status_class(pl.col("status_code")),
...     signature=signature(pl.col("error_message")),
... ).rows()  # doctest: +NORMALIZE_WHITESPACE
[('unreplaced_macro', '4xx', 'Invalid token'),
 ('no_response', 'none', 'cURL error <n>: Connection timed out after <n> ms'),
 ('rate_limit', '4xx', None),
 (None, '2xx', None)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import narwhals.stable.v2 as nw
import polars as pl

from cfanalytics.diagnose.platform_errors import (
    BODY_MARKERS,
    BODY_RULES,
    CODE_PATTERNS,
    HOST_PATTERNS,
    KIND_DEFAULTS,
    MEANINGS,
    META_SUBCODE,
    NAME_PATTERNS,
    PLATFORMS,
    STATUS_MEANINGS,
    URL_HOST,
    Rule,
)
from cfanalytics.redaction import redact_expr

__all__ = [
    "ERROR_KINDS",
    "ERROR_MEANING_COLUMNS",
    "KIND_ACTIONS",
    "STATUS_CLASSES",
    "error_kind",
    "kind_actions",
    "signature",
    "status_class",
    "with_error_meaning",
]

#: Error kinds in rule order: the first rule that matches a failing postback wins.
ERROR_KINDS: tuple[str, ...] = (
    "unreplaced_macro",
    "missing_click_id",
    "auth",
    "rate_limit",
    "duplicate",
    "time_window",
    "no_response",
    "server_error",
    "bad_request",
    "other",
)

#: Status classes; ``none`` = no (usable) HTTP status code.
STATUS_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")

SIGNATURE_MAX_CHARS = 200

# --------------------------------------------------------------------------- error-kind patterns

_PCT = "%(?:25)*"  # a percent escape, also double / triple encoded
_NAME = "[A-Za-z_][A-Za-z0-9_.\\-]*"

# {clickid}, {{click_id}}, =[SUBID], /[CLICKID], %7Bclickid%7D (any case, any encoding depth).
# [TOKEN] only counts as a value (after = or /): PHP-style array names such as data[0]= are not macros.
_MACRO = (
    f"(?i)\\{{\\{{?[ ]*{_NAME}[ ]*\\}}\\}}?"
    f"|[=/]\\[\\[?{_NAME}\\]\\]?"
    f"|{_PCT}7B(?:{_PCT}7B)?{_NAME}{_PCT}7D"
    f"|(?:={_PCT}5B|{_PCT}3D\\[|{_PCT}3D{_PCT}5B){_NAME}{_PCT}5D"
)

# in a message only where it quotes a URL or a value (after = / ' "): script in an HTML error page is no macro
_MESSAGE_MACRO = (
    f"(?i)(?:[=/'\"]|{_PCT}3D|{_PCT}2F)\\$?(?:\\{{\\{{?[ ]*{_NAME}[ ]*\\}}\\}}?|{_PCT}7B(?:{_PCT}7B)?{_NAME}{_PCT}7D)"
    f"|[=/]\\[\\[?{_NAME}\\]\\]?"
)

# a click-id parameter with an empty (or null-ish) value: ?gclid=&…, &cid=, %26fbclid%3D%26
_CLICK_PARAMS = (
    "external_?id|ext_?id|gclid|gbraid|wbraid|fbclid|ttclid|msclkid|yclid|twclid|ob_click_id|postbackid"
    "|click_?id|click-id|clid|cid|visitor_?id|transaction_id|aff_click_id"
)
_MISSING_PARAM = (
    f"(?i)(?:[?&;]|{_PCT}26|{_PCT}3F)(?:{_CLICK_PARAMS})(?:=|{_PCT}3D)(?:null|undefined|none|nil)?"
    f"(?:[&#;\\s]|{_PCT}26|{_PCT}23|$)"
    # MGID names its click id just c
    "|mgid\\.com/postback[?](?:[^#]*&)?c=(?:[&#]|$)"
)

# the platforms' answers, as indexes: meaning 0 = none, platform 0 = unknown
_MEANING_IDS: tuple[str, ...] = ("", *MEANINGS)
_MEANING_INDEX: dict[str, int] = {m: i for i, m in enumerate(_MEANING_IDS)}
_PLATFORM_INDEX: dict[str, int] = {p: i + 1 for i, p in enumerate(PLATFORMS)}
_NO_RESPONSE_FLAG = 32  # bit of the body code: the body's meaning is of kind no_response
_NETWORK_CLICK_ACTION = (
    "The network did not take the click id: pass the network's own click id from the offer URL into the postback"
)
_MESSAGE_RULES: tuple[Rule, ...] = (
    # the URL we sent, quoted back: an unreplaced macro or an empty click-id parameter decide first
    Rule("unreplaced_macro", _MESSAGE_MACRO),
    Rule("missing_click_id", _MISSING_PARAM),
    *BODY_RULES,
)
# an HTML error page is judged by its title and first heading only (its scripts and footers say nothing)
_HTML = "(?i)<!doctype html|<html|<head|<body"


def _matches(expr: pl.Expr, pattern: str) -> pl.Expr:
    """``expr`` contains ``pattern``; null counts as no match."""
    return expr.str.contains(pattern).fill_null(value=False)


def _per_distinct(expr: pl.Expr, build: Callable[[pl.Expr], pl.Expr], *, default: Any, dtype: pl.DataType) -> pl.Expr:
    """``build`` evaluated once per distinct non-null value of ``expr`` and mapped back to every row.

    Messages repeat a lot (a few hundred distinct among millions of rows), so the regular
    expressions run on the distinct values only; null maps to ``default``.
    """
    distinct = expr.drop_nulls().unique(maintain_order=True)
    return expr.replace_strict(distinct, build(distinct), default=default, return_dtype=dtype)


def _first(choices: list[tuple[pl.Expr, int]], otherwise: int, dtype: pl.DataType) -> pl.Expr:
    """The value of the first condition that holds (a when/then chain), else ``otherwise``."""
    if not choices:
        return pl.lit(otherwise, dtype=dtype)
    (cond, value), *rest = choices
    chain = pl.when(cond).then(pl.lit(value, dtype=dtype))
    for cond, value in rest:
        chain = chain.when(cond).then(pl.lit(value, dtype=dtype))
    return chain.otherwise(pl.lit(otherwise, dtype=dtype))


# bits of the URL code computed by _url_code
_BIT_MACRO, _BIT_MISSING = 1, 2


def _url_code(url: pl.Expr) -> pl.Expr:
    """One UInt8 per postback URL: ``_BIT_MACRO`` (unreplaced macro), ``_BIT_MISSING`` (empty click-id parameter)."""
    return (
        _matches(url, _MACRO).cast(pl.UInt8) * _BIT_MACRO + _matches(url, _MISSING_PARAM).cast(pl.UInt8) * _BIT_MISSING
    ).cast(pl.UInt8)


def _host_platform(host: pl.Expr) -> pl.Expr:
    """The platform index of a URL host (:data:`HOST_PATTERNS`); 0 = none."""
    return _first([(_matches(host, p), _PLATFORM_INDEX[name]) for name, p in HOST_PATTERNS], 0, pl.UInt8)


def _name_platform(name: pl.Expr) -> pl.Expr:
    """The platform index an integration (or traffic source) name points to; 0 = none."""
    return _first([(_matches(name, p), _PLATFORM_INDEX[platform]) for platform, p in NAME_PATTERNS], 0, pl.UInt8)


def _probe(message: pl.Expr) -> pl.Expr:
    """The text the body rules read: the message, or for an HTML page its title and first heading."""
    title = message.str.extract("(?is)<title[^>]*>(.*?)</title>", 1).fill_null("")
    heading = message.str.extract("(?is)<h1[^>]*>(.*?)</h1>", 1).fill_null("")
    return pl.when(_matches(message, _HTML)).then(title + pl.lit(" ") + heading).otherwise(message)


def _body_code(text: pl.Expr) -> pl.Expr:
    """One UInt32 per :func:`_probe` text: meaning index × 256 + ``_NO_RESPONSE_FLAG`` + the body's platform index."""
    within = {r.within: _matches(text, r.within) for r in _MESSAGE_RULES if r.within is not None}
    choices = []
    for rule in _MESSAGE_RULES:
        cond = _matches(text, rule.pattern)
        if rule.within is not None:
            cond = cond & within[rule.within]
        choices.append((cond, _MEANING_INDEX[rule.meaning]))
    meaning = _first(choices, 0, pl.UInt32)
    no_response = [_MEANING_INDEX[m] for m, v in MEANINGS.items() if v.kind == "no_response"]
    platform = _first([(_matches(text, p), _PLATFORM_INDEX[name]) for name, p in BODY_MARKERS], 0, pl.UInt32)
    flag = meaning.is_in(no_response).cast(pl.UInt32) * _NO_RESPONSE_FLAG
    return meaning * 256 + flag + platform


def _platform_code(text: pl.Expr) -> pl.Expr:
    """The platform's own error code in a :func:`_probe` text (``190/463``, ``UNPARSEABLE_GCLID``, ``40100``)."""
    found = []
    for within, pattern in CODE_PATTERNS:
        code = text.str.extract(pattern, 1)
        if within is not None:
            subcode = text.str.extract(META_SUBCODE, 1)
            code = pl.when(_matches(text, within)).then(
                pl.when(subcode.is_not_null()).then(code + pl.lit("/") + subcode).otherwise(code)
            )
        found.append(code)
    return pl.coalesce(found)


def _meaning_index(*, failing: pl.Expr, status_code: pl.Expr, body: pl.Expr, url: pl.Expr) -> pl.Expr:
    """The meaning index of each row (0 when not failing): the URL, then the body, then the status decides."""
    code = status_code.cast(pl.Int64, strict=False)
    has_status = code.is_between(100, 599).fill_null(value=False)
    body_meaning = body // 256
    body_no_response = (body & _NO_RESPONSE_FLAG) != 0
    status = {k: _MEANING_INDEX[v] for k, v in STATUS_MEANINGS.items()}

    def between(low: int, high: int) -> pl.Expr:
        return code.is_between(low, high).fill_null(value=False)

    chain = _first(
        [
            (~failing, 0),
            ((url & _BIT_MACRO) != 0, _MEANING_INDEX["unreplaced_macro"]),
            ((url & _BIT_MISSING) != 0, _MEANING_INDEX["missing_click_id"]),
            ((body_meaning != 0) & (~body_no_response | ~has_status), -1),
            (~has_status, status["none"]),
            *((between(int(k), int(k)), v) for k, v in status.items() if k.isdigit()),
            (between(500, 599), status["5xx"]),
            (between(400, 499), status["4xx"]),
        ],
        status["other"],
        pl.Int32,
    )
    return pl.when(chain == -1).then(body_meaning.cast(pl.Int32)).otherwise(chain).cast(pl.UInt16)


def _lookup(index: pl.Expr, field: str, dtype: pl.DataType) -> pl.Expr:
    """``MEANINGS[…].field`` of a meaning index (null for 0)."""
    keys = list(range(1, len(_MEANING_IDS)))
    values = [getattr(MEANINGS[_MEANING_IDS[i]], field) for i in keys]
    return index.replace_strict(keys, values, default=None, return_dtype=dtype)


def _distinct(
    frame: pl.LazyFrame,
    column: str,
    key: str,
    build: dict[str, Callable[[pl.Expr], pl.Expr]],
    *,
    probe: bool = False,
) -> pl.LazyFrame:
    """The distinct non-null values of ``column`` among failing rows (as ``key``), with ``build``'s columns.

    Messages and URLs repeat a lot (a few hundred distinct among millions of rows), so the regular
    expressions run on the distinct values only; the result is joined back on ``key``.
    """
    values = frame.filter(pl.col("_em_failing")).select(pl.col(column).cast(pl.String).alias(key)).drop_nulls().unique()
    if probe:
        values = values.with_columns(_probe(pl.col(key)).alias("_em_text"))
    source = pl.col("_em_text") if probe else pl.col(key)
    return values.with_columns(**{name: fn(source) for name, fn in build.items()}).drop("_em_text", strict=False)


def _failing(is_error: pl.Expr) -> pl.Expr:
    return is_error.cast(pl.Boolean, strict=False).fill_null(value=False)


def _with_codes(postbacks: pl.LazyFrame, *, full: bool) -> pl.LazyFrame:
    """``postbacks`` with ``_em_failing``, ``_em_body`` and ``_em_url`` (see :func:`_body_code`, :func:`_url_code`);
    ``full`` adds ``_em_code`` (the platform's code), ``_em_host`` and ``_em_named`` (platform of the URL host
    and of the integration name). Each is computed on distinct values and joined back."""
    frame = postbacks.with_columns(_failing(pl.col("is_error")).alias("_em_failing"))
    message_build: dict[str, Callable[[pl.Expr], pl.Expr]] = {"_em_body": _body_code}
    if full:
        message_build["_em_code"] = _platform_code
    keys = [
        ("error_message", "_em_msg", message_build, True),
        ("postback_url", "_em_url_key", {"_em_url": _url_code}, False),
    ]
    filled = ["_em_body", "_em_url"]
    if full:
        # the platform of a URL depends on its host only: a few distinct hosts among many distinct URLs
        frame = frame.with_columns(
            pl.col("postback_url").cast(pl.String).str.extract(URL_HOST, 1).str.to_lowercase().alias("_em_host_in")
        )
        keys.append(("_em_host_in", "_em_host_key", {"_em_host": _host_platform}, False))
        filled += ["_em_host", "_em_named"]
        names = postbacks.collect_schema().names()
        name_col = next((c for c in ("integration_name", "integration_id") if c in names), None)
        if name_col is not None:
            keys.append((name_col, "_em_name_key", {"_em_named": _name_platform}, False))
        else:
            frame = frame.with_columns(pl.lit(0, dtype=pl.UInt8).alias("_em_named"))
    # the distinct tables and the frame itself read the same input: compute it once
    frame = frame.cache()
    tables = [(key, _distinct(frame, column, key, build, probe=probe)) for column, key, build, probe in keys]
    for (column, *_), (key, table) in zip(keys, tables, strict=True):
        frame = frame.with_columns(pl.col(column).cast(pl.String).alias(key))
        frame = frame.join(table, on=key, how="left", maintain_order="left")
    return frame.with_columns(pl.col(c).fill_null(0) for c in filled)


def status_class(status_code: pl.Expr) -> pl.Expr:
    """``1xx``…``5xx`` for an HTTP status code, ``none`` for null or a code outside 100–599.

    >>> pl.select(status_class(pl.Series([200, 404, None, 503]))).to_series().to_list()
    ['2xx', '4xx', 'none', '5xx']
    """
    code = status_code.cast(pl.Int64, strict=False)
    return (
        pl.when(code.is_between(100, 599))
        .then((code // 100).cast(pl.String) + pl.lit("xx"))
        .otherwise(pl.lit("none"))
        .alias("status_class")
    )


def status_class_nw(status_code: nw.Expr) -> nw.Expr:
    """:func:`status_class` on any engine (comparisons only, so a Spark server computes it as Polars does).

    >>> import narwhals.stable.v2 as nw
    >>> rows = nw.from_native(pl.DataFrame({"code": [200, 404, None, 503, 99]}))
    >>> rows.select(status_class_nw(nw.col("code"))).to_native().to_series().to_list()
    ['2xx', '4xx', 'none', '5xx', 'none']
    """
    code = status_code.cast(nw.Int64())
    out: nw.Expr = nw.lit("none")
    for hundred in range(5, 0, -1):
        out = nw.when(code.is_between(hundred * 100, hundred * 100 + 99)).then(nw.lit(f"{hundred}xx")).otherwise(out)
    return out.alias("status_class")


def error_kind(*, is_error: pl.Expr, status_code: pl.Expr, error_message: pl.Expr, postback_url: pl.Expr) -> pl.Expr:
    """The error kind of each failing postback (a value of :data:`ERROR_KINDS`); null when not an error.

    The postback URL decides first (an unreplaced macro, an empty click-id parameter), then what the
    platform's answer says (its documented codes, then its wording), and the HTTP status only when the
    body says nothing more: a Meta code 4 sent with a 403 is ``rate_limit``, a network's "Conversion
    exists" in an HTTP 200 is ``duplicate``. A null ``is_error`` counts as not an error; a null status
    code means no response. :func:`with_error_meaning` adds the finer columns; this expression runs the
    same query once per batch of rows (``map_batches``: Polars operations on the whole batch, no Python per row).

    >>> pl.select(
    ...     error_kind(
    ...         is_error=pl.lit(True),
    ...         status_code=pl.lit(403),
    ...         error_message=pl.lit('{"error":{"message":"(#4) Application request limit reached","code":4}}'),
    ...         postback_url=pl.lit("https://graph.facebook.com/v21.0/1/events"),
    ...     )
    ... ).item()
    'rate_limit'
    """
    inputs = pl.struct(
        is_error=is_error.cast(pl.Boolean, strict=False),
        status_code=status_code.cast(pl.Int64, strict=False),
        error_message=error_message.cast(pl.String),
        postback_url=postback_url.cast(pl.String),
    )
    return inputs.map_batches(_kinds_of, return_dtype=pl.String).alias("error_kind")


def _kinds_of(inputs: pl.Series) -> pl.Series:
    """:func:`error_kind` of a batch of rows (a struct series), by the same lazy query as :func:`with_error_meaning`."""
    frame = _with_codes(inputs.struct.unnest().lazy(), full=False)
    index = _meaning_index(
        failing=pl.col("_em_failing"), status_code=pl.col("status_code"), body=pl.col("_em_body"), url=pl.col("_em_url")
    )
    return frame.select(_lookup(index, "kind", pl.String).alias("error_kind")).collect().to_series()


#: Columns :func:`with_error_meaning` adds, with their types.
ERROR_MEANING_COLUMNS: dict[str, pl.DataType] = {
    "error_kind": pl.String(),
    "error_detail": pl.String(),
    "platform": pl.String(),
    "platform_code": pl.String(),
    "retryable": pl.Boolean(),
    "fix_owner": pl.String(),
    "action": pl.String(),
}

#: Error kind → (default action, retryable, fix owner), for summaries by kind.
KIND_ACTIONS: dict[str, tuple[str, bool, str]] = {
    kind: (MEANINGS[m].action, MEANINGS[m].retryable, MEANINGS[m].fix_owner) for kind, m in KIND_DEFAULTS.items()
}


def kind_actions() -> pl.DataFrame:
    """:data:`KIND_ACTIONS` as a frame (``error_kind``, ``action``, ``retryable``, ``fix_owner``), in kind order.

    >>> kind_actions().filter(pl.col("error_kind") == "rate_limit").row(0)[1:]  # doctest: +ELLIPSIS
    ('The platform is throttling requests: ...', True, 'nobody')
    """
    return pl.DataFrame(
        [(kind, *KIND_ACTIONS[kind]) for kind in ERROR_KINDS],
        schema={"error_kind": pl.String, "action": pl.String, "retryable": pl.Boolean, "fix_owner": pl.String},
        orient="row",
    )


def with_error_meaning(postbacks: pl.LazyFrame) -> pl.LazyFrame:
    """Add :data:`ERROR_MEANING_COLUMNS` to postbacks: what each failing postback's answer means.

    Reads ``is_error``, ``status_code``, ``error_message``, ``postback_url`` and, when present,
    ``integration_name`` (else ``integration_id``) to tell the platform. Non-failing rows get nulls.
    ``error_kind`` is :func:`error_kind`; ``error_detail`` a finer class (``token_expired``,
    ``invalid_click_id``, ``too_recent`` …); ``platform`` the platform answering (URL host, then
    integration name, then the body's shape; ``s2s`` when none says); ``platform_code`` the platform's
    own code (``190/463``, ``EXPIRED_EVENT``, ``40105``); ``retryable`` whether a re-send later can
    succeed; ``fix_owner`` who fixes it and ``action`` one sentence saying what to do.

    >>> lf = pl.LazyFrame(
    ...     {
    ...         "is_error": [True, False],
    ...         "status_code": [400, 200],
    ...         "error_message": ['{"errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"}}]}', ""],
    ...         "postback_url": ["https://googleads.googleapis.com/v17/customers/1:uploadClickConversions", None],
    ...     }
    ... )
    >>> row = with_error_meaning(lf).collect().row(0, named=True)
    >>> row["error_kind"], row["error_detail"], row["platform"], row["platform_code"], row["retryable"]
    ('missing_click_id', 'invalid_click_id', 'google_ads', 'UNPARSEABLE_GCLID', False)
    >>> row["action"]
    'The gclid was truncated or altered: fix the click-id macro on the Google Ads campaign'
    """
    columns = postbacks.collect_schema().names()
    missing = [c for c in ("is_error", "status_code", "error_message", "postback_url") if c not in columns]
    if missing:
        raise ValueError(f"with_error_meaning: the postbacks have no column {', '.join(missing)}")
    frame = _with_codes(postbacks, full=True)
    index = _meaning_index(
        failing=pl.col("_em_failing"), status_code=pl.col("status_code"), body=pl.col("_em_body"), url=pl.col("_em_url")
    )
    by_url = pl.col("_em_host")
    by_body = (pl.col("_em_body") % 32).cast(pl.UInt8)
    platform = (
        pl.when(by_url != 0)
        .then(by_url)
        .when(pl.col("_em_named") != 0)
        .then(pl.col("_em_named"))
        .when(by_body != 0)
        .then(by_body)
        .otherwise(pl.lit(_PLATFORM_INDEX["s2s"], dtype=pl.UInt8))
    )
    frame = frame.with_columns(index.alias("_em_index"), platform.alias("_em_platform"))
    meaning = pl.col("_em_index")
    failing = meaning != 0
    kind = _lookup(meaning, "kind", pl.String)
    owner = _lookup(meaning, "fix_owner", pl.String)
    action = _lookup(meaning, "action", pl.String)
    # an affiliate network has no ad account, and the click id it expects is its own, passed through the tracker
    network = pl.col("_em_platform") == _PLATFORM_INDEX["affiliate_network"]
    network_click = network & (kind == "missing_click_id")
    added = [
        kind.alias("error_kind"),
        _lookup(meaning, "detail", pl.String).alias("error_detail"),
        pl.when(failing)
        .then(
            pl.col("_em_platform").replace_strict(
                list(_PLATFORM_INDEX.values()), list(_PLATFORM_INDEX), return_dtype=pl.String
            )
        )
        .alias("platform"),
        pl.when(failing).then(pl.col("_em_code")).alias("platform_code"),
        _lookup(meaning, "retryable", pl.Boolean).alias("retryable"),
        pl.when(network_click)
        .then(pl.lit("tracker_setup"))
        .when(network & (owner == "ad_account"))
        .then(pl.lit("network"))
        .otherwise(owner)
        .alias("fix_owner"),
        pl.when(network_click).then(pl.lit(_NETWORK_CLICK_ACTION)).otherwise(action).alias("action"),
    ]
    kept = [c for c in columns if c not in ERROR_MEANING_COLUMNS]
    return frame.select(*kept, *added)


# --------------------------------------------------------------------------- signature patterns

# JSON's own quotes (also Python-repr single quotes) are set aside as these while quoted values in prose are masked
_DQ, _SQ = "\ue000", "\ue001"
_ID_NAME = "(?:[A-Za-z0-9_.\\-]*[_.\\-](?i:id)|[A-Za-z0-9]*[a-z0-9](?:Id|ID)|(?i:id|uuid|guid|[a-z_]*trace[a-z_]*))"


def _quoted(quote: str) -> str:
    """A ``quote``-delimited string with backslash escapes; its content is group 1 (of the snippet)."""
    return f"{quote}((?:[^{quote}\\\\]|\\\\.)*){quote}"


_DQ_STRING, _SQ_STRING = _quoted('"'), _quoted("'")
_B = "(?-u:\\b)"  # ASCII word boundary (fast on any text)
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?[ ]+"
_MONTH = "(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\\.?"
_DATE = (
    "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    f"|[0-9]{{1,2}}[-/ ]{_MONTH}[-/ ,]+[0-9]{{2,4}}"
    f"|{_MONTH}[ ]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ ]+[0-9]{{4}}"
    "|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}"
)
_CLOCK = "[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:[ ]?[ap]\\.?m\\.?)?"
_ZONE = "(?:[ ]?(?-i:Z|[+-][0-9]{2}:?[0-9]{2}|UTC|GMT|[A-Z]{1,4}T)" + _B + ")?"
_DATETIME = (
    f"(?i){_B}(?:{_DAY})?(?:{_DATE})(?:(?:t|[ ,]+(?:at[ ]+)?){_CLOCK}{_ZONE})?"
    f"|{_B}[0-9]{{1,2}}:[0-9]{{2}}:[0-9]{{2}}(?:[.,][0-9]+)?{_ZONE}"
)
_UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


def _mixed_id() -> str:
    """A word of 8 or more ASCII letters and digits holding both (trace ids, request ids)."""
    alternatives = []
    for run in range(1, 7):
        alternatives.append(f"[A-Za-z]{{{run}}}[0-9][A-Za-z0-9]{{{7 - run},}}")
        alternatives.append(f"[0-9]{{{run}}}[A-Za-z][A-Za-z0-9]{{{7 - run},}}")
    alternatives += ["[A-Za-z]{7,}[0-9][A-Za-z0-9]*", "[0-9]{7,}[A-Za-z][A-Za-z0-9]*"]
    return f"{_B}(?:{'|'.join(alternatives)}){_B}"


#: ``(pattern, replacement)`` steps applied in order after redaction; replacements use Rust ``${n}`` syntax.
SIGNATURE_STEPS: tuple[tuple[str, str], ...] = (
    # HTML error pages: their text only
    ("(?is)<(?:script|style)[^>]*>.*?</(?:script|style)[^>]*>", " "),
    ("</?[A-Za-z!][^<>]*>", " "),
    # JSON values of id-like keys ("fbtrace_id":"AbC…", 'requestId': '…')
    (f'("{_ID_NAME}"[ \\t]*:[ \\t]*){_DQ_STRING}', '${1}"…"'),
    (f"('{_ID_NAME}'[ \\t]*:[ \\t]*){_SQ_STRING}", "${1}'…'"),
    # quoted values in prose → "…"; JSON keys and string values are kept (set aside, masked around, put back)
    (f"{_DQ_STRING}([ \\t]*:)", f"{_DQ}${{1}}{_DQ}${{2}}"),
    (f"{_SQ_STRING}([ \\t]*:)", f"{_SQ}${{1}}{_SQ}${{2}}"),
    (f"((?:{_DQ}|{_SQ})[ \\t]*:[ \\t]*|[\\[,][ \\t]*){_DQ_STRING}", f"${{1}}{_DQ}${{2}}{_DQ}"),
    (f"((?:{_DQ}|{_SQ})[ \\t]*:[ \\t]*|[\\[,][ \\t]*){_SQ_STRING}", f"${{1}}{_SQ}${{2}}{_SQ}"),
    ('\\\\"(?:[^"\\\\]|\\\\[^"])*\\\\"', '\\"…\\"'),
    ('"[^"\\n]*"', '"…"'),
    ("(^|[^A-Za-z0-9])'[^'\\n]*'", '${1}"…"'),
    (_DQ, '"'),
    (_SQ, "'"),
    # e-mail addresses, URL query values (scheme, host and path stay)
    ("[A-Za-z0-9._%+\\-]+@[A-Za-z0-9\\-]+(?:\\.[A-Za-z0-9\\-]+)*\\.[A-Za-z]{2,}", "<email>"),
    ("([?&][^=&#\\s\"'<>?]+=)[^&#\\s\"'<>]+", "${1}…"),
    # times, UUIDs, long numbers, hex, mixed ids, then any number
    (_DATETIME, "<time>"),
    (_UUID, "<uuid>"),
    (f"{_B}[0-9]{{8,}}{_B}", "<n>"),
    (f"{_B}(?:0[xX])?[0-9A-Fa-f]{{8,}}{_B}", "<hex>"),
    (_mixed_id(), "<id>"),
    ("[0-9]+(?:\\.[0-9]+)*", "<n>"),
    ("\\s+", " "),
)


def signature(error_message: pl.Expr) -> pl.Expr:
    """The message's signature: redacted, with ids, numbers, hex, UUIDs, times and quoted values masked.

    Messages that differ only in such values share a signature, so "top errors" groups one failure.
    Whitespace is collapsed and the result cut to 200 characters; null or blank → null.

    >>> msg = pl.Series(
    ...     [
    ...         "Error validating access token: Session has expired on Thursday, 19-Nov-26 10:00:00 PST.",
    ...         "Error validating access token: Session has expired on Friday, 20-Nov-26 04:13:07 PST.",
    ...         "Invalid value 'abc-1234' for https://ts.example/pb?cid=0f3e&access_token=EAAGxyz",
    ...     ]
    ... )
    >>> for sig in pl.select(signature(msg)).to_series():
    ...     print(sig)
    Error validating access token: Session has expired on <time>.
    Error validating access token: Session has expired on <time>.
    Invalid value "…" for https://ts.example/pb?cid=…&access_token=…
    """
    masked = _per_distinct(error_message, _signature, default=None, dtype=pl.String)
    return pl.when(masked.str.len_bytes() > 0).then(masked).alias("signature")


def _signature(message: pl.Expr) -> pl.Expr:
    """:func:`signature` of every value (no de-duplication; blank stays blank)."""
    expr = redact_expr(message)
    for pattern, replacement in SIGNATURE_STEPS:
        expr = expr.str.replace_all(pattern, replacement)
    return expr.str.strip_chars().str.slice(0, SIGNATURE_MAX_CHARS).str.strip_chars_end()
