"""One redaction for every display, chart, report, log line and export.

:func:`redact` hides credentials in URLs and free text: values of secret-named
query parameters, path segments, headers, assignments (``api_key = value``,
``access_token="…"``) and JSON keys (also URL-encoded, also inside a URL nested
in another URL's parameter), the userinfo of a URL (``user:password@`` and a
bare ``token@``), ``Authorization``/``Bearer`` values, ``Cookie``/``Set-Cookie``
header values and session ids, and nameless token shapes (Meta ``EAA…``, Google
``ya29.…`` and ``AIza…``, JWTs). Every hidden value becomes ``***``.
Click ids (UUIDs), 24-hex entity ids and unreplaced macros such as ``{token}``,
``[TOKEN]`` or ``%7Btoken%7D`` stay readable. :func:`redact_expr` applies the
very same patterns to a Polars string column (Rust ``regex`` syntax is a common
subset of Python ``re`` here: no look-around, no backreferences). Redaction is
idempotent: ``redact(redact(x)) == redact(x)``; text without secrets comes back
byte for byte.

:func:`mask_ip` truncates an IPv4 address to its /24 and an IPv6 address to its
/48; :func:`mask_ip_expr` does the same for a column.

>>> redact("https://graph.facebook.com/v19.0/123/events?access_token=EAAGm0PX4ZCpsBAxyz1234567890&data=x")
'https://graph.facebook.com/v19.0/123/events?access_token=***&data=x'
>>> redact("https://ts.example/pb?cid={clickid}&payout=1.5&token=abc123")
'https://ts.example/pb?cid={clickid}&payout=1.5&token=***'
>>> redact(redact("Authorization: Bearer xyz"))
'Authorization: Bearer ***'
>>> mask_ip("203.0.113.77"), mask_ip("2001:db8:abcd:12::1")
('203.0.113.0', '2001:db8:abcd::')
>>> import polars as pl
>>> pl.DataFrame({"u": ["https://x.example/?api_key=0f3c9a"]}).select(redact_expr(pl.col("u"))).item()
'https://x.example/?api_key=***'
"""

from __future__ import annotations

import html
import ipaddress
import re

import polars as pl

__all__ = [
    "MASK",
    "PATTERN",
    "REPLACEMENT",
    "escape_text",
    "mask_ip",
    "mask_ip_expr",
    "plain_text",
    "redact",
    "redact_expr",
    "safe_text",
]

MASK = "***"

# --------------------------------------------------------------------------- building blocks
# Every pattern below is valid, and means the same, in Python ``re`` and Rust ``regex``:
# explicit ASCII classes (no \w, \s, \b, \d), set-operator characters escaped inside classes.

_HEX = "0123456789ABCDEF"
_CLASS_ESCAPES = {"\t": r"\t", "\n": r"\n", "\r": r"\r", "\x0b": r"\x0B", "\x0c": r"\x0C"}
_WHITESPACE = "\t\n\x0b\x0c\r "
# characters that end a credential value in URLs and free text
_STOP = _WHITESPACE + "&#\"'<>\\,;)]}"
# characters that end a path segment
_SEG_STOP = _STOP + "/?"
# characters that end the userinfo of a URL (a superset of _STOP and _SEG_STOP, so that a value
# redacted inside "scheme://user:pass@" can never turn it into a userinfo match on a second pass)
_USER_STOP = _SEG_STOP + "@"


def _class(chars: str) -> str:
    """A class of any character but ``chars``."""
    body = "".join(_CLASS_ESCAPES.get(c, "\\" + c if c in "\\]-[^&~|" else c) for c in chars)
    return f"[^{body}]"


def _hex_class(digits: str) -> str:
    """A class of hex digits in either case."""
    return "[" + digits + "".join(d.lower() for d in digits if d.isalpha()) + "]"


def _pct(pair: str) -> str:
    """``%XX`` for the byte ``pair``, also double/triple encoded (``%25XX``)."""
    return "%(?:25)*" + "".join(_hex_class(c) if c.isalpha() else c for c in pair)


def _pairs(chars: str) -> tuple[str, ...]:
    """The ``%XX`` hex pairs of ``chars``."""
    return tuple(f"{ord(c):02X}" for c in chars)


def _pct_except(*pairs: str) -> str:
    """Any percent escape (any encoding depth) except the given hex pairs."""
    excluded = {"25", *(p.upper() for p in pairs)}
    groups: dict[str, str] = {}
    for first in _HEX:
        seconds = "".join(s for s in _HEX if first + s not in excluded)
        if seconds:
            groups[seconds] = groups.get(seconds, "") + first
    alternatives = "|".join(_hex_class(firsts) + _hex_class(seconds) for seconds, firsts in groups.items())
    return f"%(?:25)*(?:{alternatives})"


# a value: first character may not open a macro ({token}, [TOKEN], %7Btoken%7D)
# (a colon followed by white space or the end is not part of it: "token=abc: retrying")
_VALUE = f"(?:{_class(_STOP + '{[%')}|{_pct_except('7B', '5B')})(?:{_class(_STOP + ':')}|:+{_class(_STOP + ':')})*"
# a value that is only a credential when it holds a digit (bare names in prose: "access token: Session")
# (or one already redacted, so that a second pass keeps the same match)
_DIGIT_VALUE = (
    f"(?:(?:[0-9]|{_class(_STOP + '{[%0123456789')}{_class(_STOP + '0123456789')}*[0-9]){_class(_STOP)}*|\\*\\*\\*)"
)
# a value inside an URL-encoded (nested) URL: ends at an encoded separator
# (a literal "/", "?" or "@" there belongs to the outer URL)
_ENC_CHAR = f"(?:{_class(_USER_STOP + '%')}|{_pct_except(*_pairs(_STOP))})"
_ENC_VALUE = f"(?:{_class(_USER_STOP + '%{[')}|{_pct_except(*_pairs(_STOP), '7B', '5B')}){_ENC_CHAR}*"
_SEGMENT = f"(?:{_class(_SEG_STOP + '{[%')}|{_pct_except('7B', '5B')}){_class(_SEG_STOP)}*"
_ENC_SEG_CHAR = f"(?:{_class(_USER_STOP + '%')}|{_pct_except(*_pairs(_SEG_STOP))})"
_ENC_SEGMENT = f"(?:{_class(_USER_STOP + '%{[')}|{_pct_except(*_pairs(_SEG_STOP), '7B', '5B')}){_ENC_SEG_CHAR}*"
_DQ_VALUE = r'(?:[^"\\{\[]|\\[^"])(?:[^"\\]|\\[^"])*'
_SQ_VALUE = r"(?:[^'\\{\[]|\\[^'])(?:[^'\\]|\\[^'])*"

# start of a name: text start, any percent escape, or a character that cannot be part of a name
# ("*" neither: "***_token:" left by a redacted token is no name)
_BOUND = r"(?:^|%(?:25)*[0-9A-Fa-f]{2}|[^A-Za-z0-9_.\-*])"
# after "scheme://" a "name:" is a userinfo user, not a header: no "/" before a header name
_HEADER_BOUND = r"(?:^|%(?:25)*[0-9A-Fa-f]{2}|[^A-Za-z0-9_.\-*/])"
_NCH = r"[A-Za-z0-9_.\-]"


def _ci(words: str) -> str:
    """``a|ab|bc`` as an ASCII-only case-insensitive trie (``[Aa](?:[Bb])?|[Bb][Cc]``); ``s?`` = ``|s``."""
    trie: dict[str, dict] = {}
    for word in words.split("|"):
        variants = [word[:-2], word[:-1]] if word.endswith("?") else [word]
        for variant in variants:
            node = trie
            for char in variant:
                node = node.setdefault(char.lower(), {})
            node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        branches = [
            (f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c)) + emit(child) for c, child in node.items() if c
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


_COMPOUND_KEYS = (
    "apikey|accesskey|privatekey|secretkey|passkey|authkey|appkey|clientkey|devkey|licensekey|hmackey|signkey"
)
# secret when the name ends with it, whatever comes before (access_token, pageToken, client_secret, apikey)
_SESSION_WORDS = "cookies?|sessionid|session_id|session-id|sessid"
_SUFFIX_WORDS = _ci(f"token|secret|password|passwd|pwd|signature|credentials?|{_SESSION_WORDS}|{_COMPOUND_KEYS}")
# secret alone or after a delimiter / camel hump only (key, api_key, x-api-key, apiKey; not keyword, monkey)
_DELIM_WORDS = _ci("key|sig|auth|pass|bearer")
_CAMEL_WORDS = "Key|KEY|Sig|SIG|Auth|AUTH|Pass|PASS|Bearer|BEARER"
# secret as the first word too (password_confirm, apiKeyV2, client_secret_2); not token_type, key_id
_PREFIXED = f"(?:{_ci('secret|password|passwd|pwd|apikey|api_key|api-key|client_secret')})(?:[_.\\-]|[A-Z0-9]){_NCH}*"
_ENDINGS = f"{_SUFFIX_WORDS}|[_.\\-](?:{_DELIM_WORDS})|[a-z0-9](?:{_CAMEL_WORDS})"
# any secret-looking parameter / field name
_NAME = f"(?:{_NCH}*(?:{_ENDINGS})|{_DELIM_WORDS}|{_PREFIXED})"
# names specific enough to redact any value after "name:" in prose (not a bare token/key/secret/sig)
_STRONG_NAME = f"(?:{_NCH}+(?:{_ENDINGS})|{_ci(f'password|passwd|pwd|{_COMPOUND_KEYS}')}|{_PREFIXED})"
# names whose following path segment is a credential: /token/abc, /api_key/XYZ, /key/XYZ
_PATH_NAME = (
    f"(?:{_NCH}*(?:{_ci(f'token|secret|{_COMPOUND_KEYS}')}|[_.\\-][Kk][Ee][Yy]|[a-z0-9](?:Key|KEY))|[Kk][Ee][Yy])"
)
_AUTH_SCHEMES = _ci("bearer|basic|digest|token|oauth|bot|apikey|key")
_TOKEN_BOUND = r"(?:^|%(?:25)*[0-9A-Fa-f]{2}|[^A-Za-z0-9])"
_TOKEN_SHAPES = "|".join(
    (
        "EAA[0-9A-F]*[G-Za-z][A-Za-z0-9]{16,}",  # Meta access token (not an upper-case hex id)
        r"ya29\.[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]+)*",  # Google OAuth access token
        r"AIza[0-9A-Za-z_\-]{30,}",  # Google API key
        r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",  # JWT
    )
)
_JSON_WS = r"[ \t\r\n]*"

# (kept prefix, redacted value, kept suffix) per kind of credential, in priority order
_RULES: tuple[tuple[str, str, str], ...] = (
    # scheme://user:password@host, plain and URL-encoded
    (f"://{_class(_USER_STOP + ':')}*:", f"{_class(_USER_STOP)}+", "@"),
    (
        f"{_pct('3A')}{_pct('2F')}{_pct('2F')}"
        f"(?:{_class(_USER_STOP + ':%')}|{_pct_except(*_pairs(_USER_STOP + ':'))})*{_pct('3A')}",
        f"(?:{_class(_USER_STOP + '%')}|{_pct_except(*_pairs(_USER_STOP))})+",
        _pct("40"),
    ),
    # scheme://token@host (userinfo without a password: the whole user part), plain and URL-encoded
    ("://", f"{_class(_USER_STOP + ':')}+", "@"),
    (
        f"{_pct('3A')}{_pct('2F')}{_pct('2F')}",
        f"(?:{_class(_USER_STOP + ':%')}|{_pct_except(*_pairs(_USER_STOP + ':'))})+",
        _pct("40"),
    ),
    # Authorization: Bearer xyz / "Authorization": "Basic …" / authorization=…
    (
        f"{_BOUND}{_NCH}*(?:{_ci('authorization')})\\\\?[\"']?[ \\t]*[:=][ \\t]*\\\\?[\"']?"
        f"(?:(?:{_AUTH_SCHEMES})[ \\t]+)?",
        _VALUE,
        "",
    ),
    (f"{_BOUND}(?:{_ci('bearer')})(?:[ \\t]+|\\+|{_pct('20')})", _DIGIT_VALUE, ""),
    # JSON / Python-repr fields: "access_token": "…", 'api_key': '…' (also \"escaped\" JSON)
    (f'\\\\?"{_NAME}\\\\?"{_JSON_WS}:{_JSON_WS}\\\\?"', _DQ_VALUE, ""),
    (f"\\\\?'{_NAME}\\\\?'{_JSON_WS}:{_JSON_WS}\\\\?'", _SQ_VALUE, ""),
    # Cookie: a=1; sid=2 / Set-Cookie: …: the whole header value
    (
        f"{_HEADER_BOUND}{_NCH}*(?:{_ci('cookie|cookies')})\\\\?[\"']?[ \\t]*:[ \\t]*\\\\?[\"']?",
        _class("\r\n\"'\\<>") + "+",
        "",
    ),
    # headers and prose: Access-Token: …, api-key: …, "token": 12345, token: abc123
    (f"{_HEADER_BOUND}{_STRONG_NAME}[ \\t]*:[ \\t]*[\"']?", _VALUE, ""),
    (f"{_HEADER_BOUND}{_NAME}\\\\?[\"']?[ \\t]*:[ \\t]*[\"']?", _DIGIT_VALUE, ""),
    # query / form parameters and assignments (api_key = value, access_token="…"), plain and URL-encoded
    (f"{_BOUND}{_NAME}\\]?[ \\t]*=[ \\t]*\\\\?[\"']?", _VALUE, ""),
    (f"{_BOUND}{_NAME}(?:\\]|{_pct('5D')})?{_pct('3D')}", _ENC_VALUE, ""),
    # path segments after a secret-named segment
    (f"/{_PATH_NAME}/", _SEGMENT, ""),
    (f"{_pct('2F')}{_PATH_NAME}{_pct('2F')}", _ENC_SEGMENT, ""),
    # nameless token shapes
    (_TOKEN_BOUND, f"(?:{_TOKEN_SHAPES})", ""),
)

#: The one pattern behind :func:`redact` and :func:`redact_expr` (Python ``re`` and Rust ``regex`` alike):
#: one alternative per kind of credential, each ``(kept prefix)value(kept suffix)``; leftmost match wins.
PATTERN = "|".join(f"({prefix}){value}({suffix})" for prefix, value, suffix in _RULES)
#: Its replacement in Rust syntax: every prefix group, ``***``, every suffix group (unmatched groups are empty).
REPLACEMENT = (
    "".join(f"${{{2 * i + 1}}}" for i in range(len(_RULES)))
    + MASK
    + "".join(f"${{{2 * i + 2}}}" for i in range(len(_RULES)))
)

_REGEX = re.compile(PATTERN)
_PY_REPLACEMENT = re.sub(r"\$\{(\d+)\}", r"\\g<\1>", REPLACEMENT)
# every match of PATTERN contains one of these: text without any is returned as is, quickly
_CANDIDATE = re.compile(
    r"token|secret|pass|pwd|sig|credential|key|auth|bearer|cookie|sess|eaa|ya29|aiza|eyj|@|%(?:25)*40", re.I
)


def redact(text: str | None) -> str | None:
    """Return ``text`` with every credential replaced by ``***`` (idempotent; ``None`` stays ``None``)."""
    if text is None or _CANDIDATE.search(text) is None:
        return text
    return _REGEX.sub(_PY_REPLACEMENT, text)


def redact_expr(expr: pl.Expr) -> pl.Expr:
    """Polars version of :func:`redact` for a string expression (the same pattern, vectorised)."""
    return expr.str.replace_all(PATTERN, REPLACEMENT)


def mask_ip(ip: str | None) -> str | None:
    """Truncate an IPv4 address to its /24 and an IPv6 address to its /48; anything else is returned unchanged.

    An IPv4-mapped IPv6 address keeps its mapping (``::ffff:203.0.113.0``); an IPv6 zone id is dropped.
    """
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFF00))
    if address.ipv4_mapped is not None:
        return "::ffff:" + str(ipaddress.IPv4Address(int(address.ipv4_mapped) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(address) >> 80 << 80))


def _mask_ip_series(series: pl.Series) -> pl.Series:
    """Apply :func:`mask_ip` once per distinct value."""
    distinct = series.drop_nulls().unique().to_list()
    mapping = {value: masked for value in distinct if (masked := mask_ip(value)) != value}
    if not mapping:
        return series
    return series.replace(mapping)


def mask_ip_expr(expr: pl.Expr) -> pl.Expr:
    """Polars version of :func:`mask_ip` for a string expression (one Python call per distinct address)."""
    return expr.map_batches(_mask_ip_series, return_dtype=pl.String, is_elementwise=True)


def plain_text(value: object, limit: int = 120) -> str:
    """Redacted, single-line, shortened text (not yet escaped); ``None`` → ``""``.

    >>> plain_text("a \t  b", limit=0)
    'a b'
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = " ".join((redact(text) or "").split())
    if limit > 0 and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def escape_text(text: str) -> str:
    """HTML-escape with only the entities Plotly decodes: ``&amp; &lt; &gt;`` and numeric ones for quotes.

    >>> escape_text('<a href="x">')
    '&lt;a href=&#34;x&#34;&gt;'
    """
    return html.escape(text, quote=False).replace('"', "&#34;").replace("'", "&#39;")


def safe_text(value: object, limit: int = 120) -> str:
    """Display form of one data value: redacted, whitespace collapsed, shortened, HTML-escaped.

    Redaction runs first, so a credential cut by shortening can never leak half a
    token; escaping runs last, so shortening never splits an entity such as
    ``&lt;``. Quotes become numeric entities (Plotly's text renderer decodes ``&amp;``,
    ``&lt;``, ``&gt;`` and numeric entities, not ``&quot;``). ``limit`` counts visible
    characters (``0`` = no limit); ``None`` → ``""``.

    >>> safe_text("<img src=x onerror=alert(1)>")
    '&lt;img src=x onerror=alert(1)&gt;'
    >>> safe_text("https://t.example/pb?cid=1&access_token=EAAGm0PX4ZCpsBAxyz1234567890")
    'https://t.example/pb?cid=1&amp;access_token=***'
    >>> safe_text("a long message about a failure", limit=12)
    'a long mess…'
    """
    return escape_text(plain_text(value, limit))
