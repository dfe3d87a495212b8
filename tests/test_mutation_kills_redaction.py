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
