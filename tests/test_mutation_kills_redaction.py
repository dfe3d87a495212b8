"""Edges of the display helpers of ``cfanalytics.redaction`` that a one-line change would cross (``make mutation``).

The expected strings are written out by hand.
"""

from __future__ import annotations

import polars as pl
import pytest

from cfanalytics.redaction import escape_text, mask_ip, mask_ip_expr, plain_text, redact, safe_text


@pytest.mark.parametrize(
    ("ip", "masked"),
    [
        ("203.0.113.255", "203.0.113.0"),  # the last octet goes, whatever it was
        ("203.0.113.1", "203.0.113.0"),
        ("10.1.254.0", "10.1.254.0"),
        ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::"),  # the first 48 bits stay
        ("2001:db8:ab01:1::", "2001:db8:ab01::"),
        ("::ffff:198.51.100.200", "::ffff:198.51.100.0"),  # IPv4-mapped: masked as IPv4, mapping kept
        ("fe80::1%eth0", "fe80::"),  # the zone id is dropped
        ("not an ip", "not an ip"),
        ("", ""),
    ],
)
def test_mask_ip_by_hand(ip: str, masked: str) -> None:
    assert mask_ip(ip) == masked


def test_mask_ip_expr_masks_each_distinct_address_and_keeps_the_rest():
    frame = pl.DataFrame({"ip": ["203.0.113.9", None, "203.0.113.9", "x", "2001:db8:1:2::3"]})
    assert frame.select(mask_ip_expr(pl.col("ip"))).to_series().to_list() == [
        "203.0.113.0",
        None,
        "203.0.113.0",
        "x",
        "2001:db8:1::",
    ]
    # nothing to mask: the very same values come back
    same = pl.DataFrame({"ip": ["x", None, "203.0.113.0"]})
    assert same.select(mask_ip_expr(pl.col("ip"))).to_series().to_list() == ["x", None, "203.0.113.0"]


def test_text_without_a_candidate_is_returned_as_is():
    text = "plain words, nothing secret"
    assert redact(text) is text
    assert redact("") == ""
    # "@" is a candidate (userinfo), yet an address in prose is not a URL's userinfo
    assert redact("write to ops@example.com") == "write to ops@example.com"
    assert redact("https://user:pa55@host.example/x") == "https://user:***@host.example/x"


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (None, 10, ""),
        (12345, 10, "12345"),  # not a string: its str()
        ("  a \n\t b  ", 0, "a b"),  # white space collapsed, ends trimmed
        ("abcdefghij", 10, "abcdefghij"),  # exactly the limit: kept whole
        ("abcdefghijk", 10, "abcdefghi…"),  # one more: 9 characters and the ellipsis
        ("abcd     efgh", 6, "abcd…"),  # collapsed first ("abcd efgh"), cut to 5, the space before … trimmed
        ("x" * 500, 0, "x" * 500),  # 0 = no limit
        ("token=abc123 and more", 14, "token=*** and…"),  # redacted before it is shortened
    ],
)
def test_plain_text(value: object, limit: int, expected: str) -> None:
    assert plain_text(value, limit) == expected


def test_plain_text_default_limit_is_120_characters():
    assert plain_text("y" * 120) == "y" * 120
    assert plain_text("y" * 121) == "y" * 119 + "…"


def test_escape_and_safe_text():
    assert escape_text("a & b < c > d \"e\" 'f'") == "a &amp; b &lt; c &gt; d &#34;e&#34; &#39;f&#39;"
    # escaping comes after shortening: the entity is never cut
    assert safe_text("<<<<<<", limit=4) == "&lt;&lt;&lt;…"
    assert safe_text(None) == ""
    assert safe_text("z" * 121) == "z" * 119 + "…"


def test_a_limit_of_one_leaves_only_the_ellipsis():
    assert plain_text("abc", 1) == "…"
    assert plain_text("a", 1) == "a"


def test_a_column_of_nulls_masks_to_a_string_column():
    # an IP column read from a file where every value is missing has no string type yet
    frame = pl.LazyFrame({"ip": pl.Series([None, None], dtype=pl.Null)})
    out = frame.select(mask_ip_expr(pl.col("ip")))
    assert out.collect_schema()["ip"] == pl.String
    assert out.collect().to_series().to_list() == [None, None]


# ------------------------------------------------------------------ the pattern's building blocks
# PATTERN is built once, when the module is imported; these check the builders themselves, by hand.
def test_character_classes():
    from cfanalytics.redaction import _class, _hex_class

    assert _class("ab") == "[^ab]"
    assert _class("\t\n\r\x0b\x0c") == r"[^\t\n\r\x0B\x0C]"
    assert _class("\\]-[^&~|") == r"[^\\\]\-\[\^\&\~\|]"
    assert _class(" {") == "[^ {]"
    assert _class("X") == "[^X]"  # a letter is never escaped (``\X`` is no escape at all)
    assert _hex_class("3A") == "[3Aa]"
    assert _hex_class("0F") == "[0Ff]"
    assert _hex_class("AB") == "[ABab]"
    assert _hex_class("12") == "[12]"


def test_percent_escapes():
    import re

    from cfanalytics.redaction import _pairs, _pct, _pct_except

    assert _pct("3A") == "%(?:25)*3[Aa]"
    assert _pct("20") == "%(?:25)*20"
    assert _pairs("&=\n") == ("26", "3D", "0A")
    brace = _pct_except("7B", "5b")
    for text in ("%41", "%2F", "%7C", "%7a", "%2541", "%252541", "%5C", "%00", "%ff"):
        assert re.fullmatch(brace, text), text
    # the excluded pairs in either case and at any depth, and "%25" itself, never match
    for text in ("%7B", "%7b", "%257B", "%5B", "%5b", "%25255B", "%25", "%2525", "%4", "%G1", "41", "%4X", "%X1"):
        assert re.fullmatch(brace, text) is None, text
    assert re.fullmatch(_pct_except(), "%7B")


def test_case_insensitive_word_tries():
    import re

    from cfanalytics.redaction import _ci

    assert _ci("ab") == "[Aa][Bb]"
    assert _ci("a|ab") == "[Aa](?:[Bb])?"
    assert _ci("ab|ac") == "[Aa](?:[Bb]|[Cc])"
    assert _ci("a.b") == r"[Aa]\.[Bb]"
    pattern = _ci("token|cookies?|api_key|key")
    for word in ("token", "TOKEN", "ToKeN", "cookie", "COOKIES", "cookies", "api_key", "API_KEY", "key", "Key"):
        assert re.fullmatch(pattern, word), word
    for word in ("tokens", "cooki", "cookiess", "apikey", "api-key", "ke", "keys", ""):
        assert re.fullmatch(pattern, word) is None, word
