"""Status classes, error kinds and error signatures of postbacks (docs/contract.md §6), as Polars expressions.

Every function takes and returns :class:`polars.Expr`, so it runs inside the
query engine on any number of rows (regular expressions only, no Python per row).
Messages are matched case-insensitively; patterns are Rust ``regex`` syntax
(no look-around, no backreferences).

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

import polars as pl

from cfanalytics.redaction import redact_expr

__all__ = ["ERROR_KINDS", "STATUS_CLASSES", "error_kind", "signature", "status_class"]

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
    "external_?id|ext_?id|gclid|gbraid|wbraid|fbclid|ttclid|msclkid|yclid|twclid"
    "|click_?id|click-id|clid|cid|visitor_?id"
)
_MISSING_PARAM = (
    f"(?i)(?:[?&;]|{_PCT}26|{_PCT}3F)(?:{_CLICK_PARAMS})(?:=|{_PCT}3D)(?:null|undefined|none|nil)?"
    f"(?:[&#;\\s]|{_PCT}26|{_PCT}23|$)"
)

_IDS = "(?:gclid|gbraid|wbraid|fbclid|ttclid|msclkid|click[ _-]?id|external[ _-]?id)"
_MISSING_MESSAGE = (
    "(?i)too short|unparseable_gclid|missing_gclid|missing_click_?id"
    f"|(?-u:\\b)(?:missing|no|empty|blank) (?:the )?{_IDS}"
    f"|{_IDS}[^A-Za-z0-9]{{0,3}}(?:is |was |are )?"
    "(?:missing|required|empty|blank|not (?:provided|set|present|passed|specified))"
    f"|{_IDS}[^A-Za-z0-9]{{0,3}}(?:cannot|can't|can not|must not|should not|may not) be (?:empty|blank|null)"
)

_TOKEN = "(?:(?:oauth|2\\.0|access|auth|authentication|bearer|api|developer|refresh|session)[ _-]?){0,3}token"
_AUTH_MESSAGE = (
    "(?i)error validating access token|session (?:has |is )?expired|session key invalid"
    f"|(?:invalid|expired|revoked|malformed|missing|bad|wrong|incorrect) {_TOKEN}"
    f"|{_TOKEN}[^A-Za-z0-9]{{0,3}}(?:is |has |has been |was )?(?:invalid|expired|revoked|incorrect|not valid|malformed)"
    "|(?:password|credentials?|api[ _-]?key) (?:has |is |has been )?(?:expired|revoked|invalid)"
    "|access_token_invalid|unauthenticated|permission_denied|permissions? error|unauthori[sz]ed"
    "|invalid_grant|oauth_token_[a-z_]+|developer_token_[a-z_]+|authentication (?:failed|error|required)"
    "|invalid (?:api[ _-]?key|credentials|authentication|authorization)"
    # Meta OAuthException 190; TikTok 40102 (expired), 40104 (empty), 40105 (invalid) access token
    '|"code"[ \\t]*:[ \\t]*"?(?:190|4010[245])(?:[^0-9]|$)|\\(#190\\)'
)

_RATE_MESSAGE = (
    "(?i)rate[ _-]?limit|too many (?:requests|calls)|request limit reached|resource_exhausted"
    "|resource has been exhausted|quota(?: [a-z]+)? (?:exceeded|exhausted|reached)|exceeded (?:the |your |its )?"
    "(?:[a-z]+ )?quota|(?:request|call|api|usage|daily|hourly|qps) limit|throttl"
    # Meta (#4) app, (#17) user, (#32) page, (#613) call-rate limits; TikTok 40100
    '|\\(#(?:4|17|32|613)\\)|"code"[ \\t]*:[ \\t]*"?40100(?:[^0-9]|$)'
)
_META_BODY = "(?i)oauthexception|fbtrace_id|facebookapiexception|graphmethodexception"
_META_RATE_CODE = '"code"[ \\t]*:[ \\t]*(?:4|17|32|613|8000[0-9]|8001[0-4])(?:[^0-9]|$)'

_DUPLICATE_MESSAGE = (
    "(?i)duplicat|already[ _]exists"
    "|already (?:been )?(?:recorded|processed|uploaded|tracked|registered|reported|counted|received|converted|imported)"
)

# "expired" alone is a time-window error unless it is about a TLS certificate (token wording is auth, earlier)
_TIME_MESSAGE = (
    "(?i)too[ _](?:old|recent|early|late)|too far in the (?:past|future)|event[ _]?time|_precedes_"
    "|(?:precedes|before) (?:the )?click|(?:time|timestamp|date) (?:is )?in the future"
    "|outside (?:of )?(?:the )?[a-z ]{0,30}window|(?:lookback|attribution|conversion) window"
)
_EXPIRED = "(?i)expired"
_NOT_TIME = "(?i)certificate|ssl|tls"


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


# bits of the message flags computed by _message_flags
_BIT_MACRO, _BIT_MISSING, _BIT_AUTH, _BIT_RATE, _BIT_DUPLICATE, _BIT_TIME = (1 << i for i in range(6))


def _url_flags(url: pl.Expr) -> pl.Expr:
    """One UInt8 per postback URL: ``_BIT_MACRO`` (unreplaced macro), ``_BIT_MISSING`` (empty click-id parameter)."""
    return (
        _matches(url, _MACRO).cast(pl.UInt8) * _BIT_MACRO + _matches(url, _MISSING_PARAM).cast(pl.UInt8) * _BIT_MISSING
    ).cast(pl.UInt8)


def _message_flags(message: pl.Expr) -> pl.Expr:
    """One UInt8 per message: which message rules of :func:`error_kind` it matches (a ``_BIT_*`` set)."""
    flags = (
        (_BIT_MACRO, _matches(message, _MESSAGE_MACRO)),
        (_BIT_MISSING, _matches(message, _MISSING_PARAM) | _matches(message, _MISSING_MESSAGE)),
        (_BIT_AUTH, _matches(message, _AUTH_MESSAGE)),
        (
            _BIT_RATE,
            _matches(message, _RATE_MESSAGE) | (_matches(message, _META_BODY) & _matches(message, _META_RATE_CODE)),
        ),
        (_BIT_DUPLICATE, _matches(message, _DUPLICATE_MESSAGE)),
        (_BIT_TIME, _matches(message, _TIME_MESSAGE) | (_matches(message, _EXPIRED) & ~_matches(message, _NOT_TIME))),
    )
    return pl.sum_horizontal(*(matched.cast(pl.UInt8) * pl.lit(bit, dtype=pl.UInt8) for bit, matched in flags))


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


def error_kind(*, is_error: pl.Expr, status_code: pl.Expr, error_message: pl.Expr, postback_url: pl.Expr) -> pl.Expr:
    """The error kind of each failing postback (a value of :data:`ERROR_KINDS`); null when not an error.

    Rules are tried in :data:`ERROR_KINDS` order and the first match wins, e.g. a 401 whose URL still
    holds ``{clickid}`` is ``unreplaced_macro`` and a 429 saying "duplicate" is ``rate_limit``.
    A null ``is_error`` counts as not an error; a null status code means no response.

    >>> pl.select(
    ...     error_kind(
    ...         is_error=pl.lit(True),
    ...         status_code=pl.lit(400),
    ...         error_message=pl.lit('{"error":{"message":"(#4) Application request limit reached","code":4}}'),
    ...         postback_url=pl.lit("https://graph.facebook.com/v21.0/1/events"),
    ...     )
    ... ).item()
    'rate_limit'
    """
    failing = is_error.cast(pl.Boolean, strict=False).fill_null(value=False)
    code = status_code.cast(pl.Int64, strict=False)
    flags = _per_distinct(error_message, _message_flags, default=0, dtype=pl.UInt8)
    # the URL rules only matter for failing rows: run them on those rows' distinct URLs only
    url_flags = _per_distinct(pl.when(failing).then(postback_url), _url_flags, default=0, dtype=pl.UInt8)

    def said(bit: int) -> pl.Expr:
        return (flags & pl.lit(bit, dtype=pl.UInt8)) != 0

    def status(low: int, high: int) -> pl.Expr:
        return code.is_between(low, high).fill_null(value=False)

    rules: tuple[tuple[str, pl.Expr], ...] = (
        ("unreplaced_macro", ((url_flags & pl.lit(_BIT_MACRO, dtype=pl.UInt8)) != 0) | said(_BIT_MACRO)),
        ("missing_click_id", ((url_flags & pl.lit(_BIT_MISSING, dtype=pl.UInt8)) != 0) | said(_BIT_MISSING)),
        ("auth", code.is_in([401, 403]).fill_null(value=False) | said(_BIT_AUTH)),
        ("rate_limit", status(429, 429) | said(_BIT_RATE)),
        ("duplicate", said(_BIT_DUPLICATE)),
        ("time_window", said(_BIT_TIME)),
        ("no_response", ~status(100, 599)),
        ("server_error", status(500, 599)),
        ("bad_request", status(400, 499)),
    )
    (first_kind, first_rule), *rest = rules
    chain = pl.when(first_rule).then(pl.lit(first_kind))
    for kind, rule in rest:
        chain = chain.when(rule).then(pl.lit(kind))
    kinds = chain.otherwise(pl.lit("other"))
    return pl.when(failing).then(kinds).otherwise(pl.lit(None, dtype=pl.String)).alias("error_kind")


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
