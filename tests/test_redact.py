"""Tests for cfanalytics.redaction: one redaction for every output, same in Python and Polars."""

from __future__ import annotations

import doctest
import importlib
from urllib.parse import quote

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfanalytics.redaction import MASK, PATTERN, REPLACEMENT, mask_ip, mask_ip_expr, redact, redact_expr

META_TOKEN = "EAAGm0PX4ZCpsBAKZCxyz1234567890abcdEFGHijkl"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

# (id, input, expected output) — every expected output written out by hand
CASES: list[tuple[str, str, str]] = [
    (
        "meta-capi-url",
        f"https://graph.facebook.com/v19.0/123456789/events?access_token={META_TOKEN}&data=%5B%7B%22event_name%22%3A%22Purchase%22%7D%5D",
        "https://graph.facebook.com/v19.0/123456789/events?access_token=***&data=%5B%7B%22event_name%22%3A%22Purchase%22%7D%5D",
    ),
    (
        "meta-token-in-error-text",
        f"Malformed access token {META_TOKEN}",
        "Malformed access token ***",
    ),
    (
        "meta-token-url-encoded-param",
        f"body=access_token%3D{META_TOKEN}%26event_name%3DPurchase",
        "body=access_token%3D***%26event_name%3DPurchase",
    ),
    (
        "meta-oauth-exchange-url",
        "https://graph.facebook.com/v19.0/oauth/access_token?grant_type=fb_exchange_token&client_id=1234"
        f"&client_secret=9f8e7d6c5b4a&fb_exchange_token={META_TOKEN}",
        "https://graph.facebook.com/v19.0/oauth/access_token?grant_type=fb_exchange_token&client_id=1234"
        "&client_secret=***&fb_exchange_token=***",
    ),
    (
        "meta-error-json-unchanged",
        '{"error":{"message":"Invalid OAuth access token - Cannot parse access token","type":"OAuthException",'
        '"code":190,"fbtrace_id":"AbC123xyz"}}',
        '{"error":{"message":"Invalid OAuth access token - Cannot parse access token","type":"OAuthException",'
        '"code":190,"fbtrace_id":"AbC123xyz"}}',
    ),
    (
        "meta-expired-session-unchanged",
        "Error validating access token: Session has expired on Tuesday, 01-Jan-24 08:00:00 PST.",
        "Error validating access token: Session has expired on Tuesday, 01-Jan-24 08:00:00 PST.",
    ),
    (
        "google-ads-error-json-unchanged",
        '{"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 '
        'access token.", "status": "UNAUTHENTICATED", "details": [{"errors": [{"errorCode": '
        '{"authenticationError": "OAUTH_TOKEN_INVALID"}, "message": "Oauth token is invalid."}]}]}}',
        '{"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 '
        'access token.", "status": "UNAUTHENTICATED", "details": [{"errors": [{"errorCode": '
        '{"authenticationError": "OAUTH_TOKEN_INVALID"}, "message": "Oauth token is invalid."}]}]}}',
    ),
    (
        "google-ads-request-headers",
        "developer-token: AbCdEf123456\nlogin-customer-id: 1234567890\nAuthorization: Bearer ya29.a0AfH6SMBx-abc_123",
        "developer-token: ***\nlogin-customer-id: 1234567890\nAuthorization: Bearer ***",
    ),
    (
        "google-oauth-token-bare",
        "refresh failed for ya29.a0AfH6SMBxYz-123_abc.def, retrying",
        "refresh failed for ***, retrying",
    ),
    (
        "google-api-key-bare",
        "quota exceeded for AIzaSyA1234567890abcdefghijklmnopqrstu today",
        "quota exceeded for *** today",
    ),
    (
        "tiktok-access-token-header",
        "POST /open_api/v1.3/event/track/ HTTP/1.1\nAccess-Token: 9f8e7d6c5b4a39281706f5e4d3c2b1a098765432\n"
        "Content-Type: application/json",
        "POST /open_api/v1.3/event/track/ HTTP/1.1\nAccess-Token: ***\nContent-Type: application/json",
    ),
    (
        "tiktok-error-json-unchanged",
        '{"code": 40105, "message": "Access token is incorrect or has been revoked.", "request_id": "2024010112"}',
        '{"code": 40105, "message": "Access token is incorrect or has been revoked.", "request_id": "2024010112"}',
    ),
    (
        "clickflare-api-url",
        "https://public-api.clickflare.io/api/campaigns?api_key=4f9c2b7e1d8a6035f4e2c1b0a9d8e7f6"
        "&campaign_id=6543a1b2c3d4e5f601234567",
        "https://public-api.clickflare.io/api/campaigns?api_key=***&campaign_id=6543a1b2c3d4e5f601234567",
    ),
    (
        "clickflare-api-key-header",
        "api-key: 4f9c2b7e1d8a6035f4e2c1b0a9d8e7f6",
        "api-key: ***",
    ),
    (
        "s2s-postback-url",
        "https://ts.example/pb?cid={clickid}&payout=1.5&token=abc123",
        "https://ts.example/pb?cid={clickid}&payout=1.5&token=***",
    ),
    (
        "url-encoded-nested-url",
        "https://tracker.example/cb?url=https%3A%2F%2Fts.example%2Fpb%3Fcid%3D1%26token%3Dabc123%26payout%3D2",
        "https://tracker.example/cb?url=https%3A%2F%2Fts.example%2Fpb%3Fcid%3D1%26token%3D***%26payout%3D2",
    ),
    (
        "double-encoded-nested-url",
        "https://tracker.example/cb?url=https%253A%252F%252Fts.example%252Fpb%253Ftoken%253Dabc123%2526x%253D1",
        "https://tracker.example/cb?url=https%253A%252F%252Fts.example%252Fpb%253Ftoken%253D***%2526x%253D1",
    ),
    (
        "userinfo-password",
        "https://admin:s3cr3t@ts.example/postback?cid=1",
        "https://admin:***@ts.example/postback?cid=1",
    ),
    (
        "userinfo-password-url-encoded",
        "https://x.example/cb?u=https%3A%2F%2Fadmin%3As3cr3t%40ts.example%2Fpb",
        "https://x.example/cb?u=https%3A%2F%2Fadmin%3A***%40ts.example%2Fpb",
    ),
    ("jwt", f"id_token {JWT} rejected", "id_token *** rejected"),
    ("bearer-header", "Authorization: Bearer xyz", "Authorization: Bearer ***"),
    (
        "authorization-json",
        '{"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"}',
        '{"Authorization": "Basic ***", "Content-Type": "application/json"}',
    ),
    ("bearer-in-prose", "sent Bearer abc123def to the API", "sent Bearer *** to the API"),
    ("uuid-click-id-unchanged", "cf5f1a4e-2b7c-4d2e-9a51-3c7d1e0f8a92", "cf5f1a4e-2b7c-4d2e-9a51-3c7d1e0f8a92"),
    (
        "hex-entity-ids-unchanged",
        "https://cf.example/c?campaign_id=6543a1b2c3d4e5f601234567&offer=c00000000000000000000001",
        "https://cf.example/c?campaign_id=6543a1b2c3d4e5f601234567&offer=c00000000000000000000001",
    ),
    ("upper-hex-id-unchanged", "id EAA0123456789ABCDEF012345 not found", "id EAA0123456789ABCDEF012345 not found"),
    (
        "innocent-params",
        "https://ts.example/pb?keyword=shoes&kw=token&token_type=bearer&click_id=abc&key=abc",
        "https://ts.example/pb?keyword=shoes&kw=token&token_type=bearer&click_id=abc&key=***",
    ),
    ("plain-error-unchanged", "Invalid parameter", "Invalid parameter"),
    ("html-payload-unchanged", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    (
        "unreplaced-macros-unchanged",
        "https://ts.example/pb?cid=1&token={token}&sig=[SIG]&key=%7Bkey%7D",
        "https://ts.example/pb?cid=1&token={token}&sig=[SIG]&key=%7Bkey%7D",
    ),
    ("path-token", "https://ts.example/token/abc123/convert?x=1", "https://ts.example/token/***/convert?x=1"),
    ("path-api-key", "https://ts.example/api_key/XYZ", "https://ts.example/api_key/***"),
    ("path-key", "https://ts.example/key/XYZ?monkey=1", "https://ts.example/key/***?monkey=1"),
    (
        "python-dict-repr",
        "{'api_key': 'abc', 'password': 'hunter', 'token_type': 'bearer'}",
        "{'api_key': '***', 'password': '***', 'token_type': 'bearer'}",
    ),
    (
        "json-number-and-null",
        '{"access_token": 12345678, "password": null}',
        '{"access_token": ***, "password": null}',
    ),
    (
        "escaped-json-in-json",
        '{"data":"{\\"access_token\\":\\"abc\\",\\"event\\":\\"x\\"}"}',
        '{"data":"{\\"access_token\\":\\"***\\",\\"event\\":\\"x\\"}"}',
    ),
    (
        "name-forms",
        "https://x.example/?accessToken=AbC&apiKey=1&x-api-key=2&client_secret=3&signature=4&sig=5&auth=6"
        "&pwd=7&pass=8&bearer=9&password=10&secret=11&API_KEY=12&apikey=13",
        "https://x.example/?accessToken=***&apiKey=***&x-api-key=***&client_secret=***&signature=***&sig=***"
        "&auth=***&pwd=***&pass=***&bearer=***&password=***&secret=***&API_KEY=***&apikey=***",
    ),
    ("bracket-param", "data[access_token]=abc&data[event]=x", "data[access_token]=***&data[event]=x"),
    (
        "fragment",
        "https://app.example/cb#access_token=abc&expires_in=3600",
        "https://app.example/cb#access_token=***&expires_in=3600",
    ),
    ("prose-token-without-digit", "Invalid token: expired", "Invalid token: expired"),
    ("prose-token-with-digit", "Invalid token: ab12cd, retry", "Invalid token: ***, retry"),
    ("empty-value-unchanged", "https://ts.example/pb?token=&cid=1", "https://ts.example/pb?token=&cid=1"),
    ("empty-string", "", ""),
    # assignments with quotes and spaces
    ("assignment-double-quoted", 'access_token="EAAB12cd34ef56"; retry', 'access_token="***"; retry'),
    ("assignment-single-quoted", "client_secret='s3cr3t' id=7", "client_secret='***' id=7"),
    ("assignment-spaces", "api_key = 0f3c9a77 (from config)", "api_key = *** (from config)"),
    ("assignment-escaped-json", 'body="{\\"x\\":1} password=\\"hunter2\\""', 'body="{\\"x\\":1} password=\\"***\\""'),
    ("assignment-empty-quotes-unchanged", 'token="" cid=1', 'token="" cid=1'),
    ("assignment-macro-unchanged", 'token = "{token}"', 'token = "{token}"'),
    # cookies and session ids
    ("cookie-header", "GET /pb\nCookie: session=9f8e7d6c; theme=dark\nHost: x", "GET /pb\nCookie: ***\nHost: x"),
    ("set-cookie-header", "Set-Cookie: sid=abcdef123; Path=/; HttpOnly", "Set-Cookie: ***"),
    ("cookie-json", '{"cookie": "PHPSESSID=abc123; a=b", "status": 401}', '{"cookie": "***", "status": 401}'),
    ("session-id-param", "https://x.example/cb?PHPSESSID=9a8b7c&cid=1", "https://x.example/cb?PHPSESSID=***&cid=1"),
    ("cookie-param", "https://x.example/cb?cookie=9a8b7c&cid=1", "https://x.example/cb?cookie=***&cid=1"),
    # userinfo without a password
    (
        "userinfo-token-only",
        "https://ghp_16C7e42F292c6912E7710c8@ts.example/pb?cid=1",
        "https://***@ts.example/pb?cid=1",
    ),
    ("userinfo-token-encoded", "u=https%3A%2F%2Ftok3n%40ts.example%2Fpb", "u=https%3A%2F%2F***%40ts.example%2Fpb"),
    (
        "email-unchanged",
        "contact bob@example.com or mailto:bob@example.com",
        "contact bob@example.com or mailto:bob@example.com",
    ),
    ("at-in-query-unchanged", "https://ts.example/pb?email=a@b.example", "https://ts.example/pb?email=a@b.example"),
    ("value-before-colon", "pb.csv?token=abc123: empty file", "pb.csv?token=***: empty file"),
    ("value-with-colons", "https://x.example/?sig=ab:cd::ef&x=1", "https://x.example/?sig=***&x=1"),
    # a presigned URL as a file name
    (
        "presigned-file-name",
        "exports/pb.csv?X-Amz-Credential=AKIA1%2F2026&X-Amz-Date=20261201T000000Z&X-Amz-Signature=deadbeef1234567",
        "exports/pb.csv?X-Amz-Credential=***&X-Amz-Date=20261201T000000Z&X-Amz-Signature=***",
    ),
    (
        "log-line",
        f'2024-05-01T10:00:00Z POST https://ts.example/pb?cid=1&sig=f00d status=401 body={{"token": "t0k"}} {JWT}',
        '2024-05-01T10:00:00Z POST https://ts.example/pb?cid=1&sig=*** status=401 body={"token": "***"} ***',
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_redact_cases(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_redact_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_none_stays_none() -> None:
    assert redact(None) is None
    assert mask_ip(None) is None


def test_redact_expr_matches_redact_on_all_cases() -> None:
    texts = [c[1] for c in CASES] + [c[2] for c in CASES] + [None]
    out = pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(redact_expr(pl.col("t"))).to_series()
    assert out.to_list() == [redact(t) for t in texts]


def test_redact_expr_lazy_and_dtype() -> None:
    lf = pl.LazyFrame({"url": ["https://ts.example/pb?token=abc123", None]}, schema={"url": pl.String})
    out = lf.with_columns(redact_expr(pl.col("url")).alias("safe")).collect()
    assert out.schema["safe"] == pl.String
    assert out["safe"].to_list() == ["https://ts.example/pb?token=***", None]


def test_pattern_shape() -> None:
    assert MASK == "***"
    assert MASK in REPLACEMENT
    # no look-around or backreferences: Rust's regex must accept the same pattern
    for construct in ("(?=", "(?!", "(?<=", "(?<!", "\\1"):
        assert construct not in PATTERN


def test_module_doctest() -> None:
    module = importlib.import_module("cfanalytics.redaction")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------ generated URLs and text

SECRET_NAMES = ["token", "access_token", "accessToken", "api_key", "apikey", "api-key", "x-api-key", "key", "secret"]
SECRET_NAMES += ["client_secret", "signature", "sig", "auth", "password", "pwd", "pass", "bearer", "Access-Token"]
SECRET_NAMES += ["cookie", "session_id", "PHPSESSID", "X-Amz-Signature"]
INNOCENT_NAMES = ["cid", "click_id", "payout", "keyword", "token_type", "kw", "sub1", "campaign_id", "event", "ct"]
HEX = "0123456789abcdef"


@st.composite
def postback_urls(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """A postback URL with secret and innocent parameters, and the values of each kind."""
    secrets: list[str] = []
    keeps: list[str] = []
    params = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            value = "S3cr" + draw(st.text(HEX, min_size=6, max_size=12))
            secrets.append(value)
            params.append(f"{draw(st.sampled_from(SECRET_NAMES))}={value}")
        else:
            value = "keep" + draw(st.text(HEX, min_size=4, max_size=8))
            keeps.append(value)
            params.append(f"{draw(st.sampled_from(INNOCENT_NAMES))}={value}")
    host = draw(st.sampled_from(["ts.example", "graph.facebook.com", "business-api.tiktok.com", "cf.example:8443"]))
    path = draw(st.sampled_from(["/pb", "/v19.0/123/events", "/postback/", ""]))
    url = f"https://{host}{path}?{'&'.join(params)}"
    return url, secrets, keeps


@settings(max_examples=150, deadline=None)
@given(postback_urls(), st.sampled_from(["plain", "encoded", "double"]))
def test_generated_urls(case: tuple[str, list[str], list[str]], encoding: str) -> None:
    url, secrets, keeps = case
    if encoding != "plain":
        url = quote(url, safe="")
        if encoding == "double":
            url = quote(url, safe="")
        url = f"https://tracker.example/r?cid=1&url={url}"
    out = redact(url)
    assert out is not None
    for value in secrets:
        assert value not in out
    for value in keeps:
        assert value in out
    assert redact(out) == out
    polars_out = pl.DataFrame({"u": [url, out]}).select(redact_expr(pl.col("u"))).to_series().to_list()
    assert polars_out == [out, out]


FUZZ_PIECES = ["token", "key", "api-key", "apiKey", "x", "cid", "=", "&", "?", "/", ":", "@", "://", "%3D", "%26"]
FUZZ_PIECES += ["%3F", "%2F", "%3A", "%40", "%25", "%7B", "{", "}", "[", "]", '"', "'", "\\", " ", "\n", "Bearer "]
FUZZ_PIECES += ["Authorization", META_TOKEN, "eyJa.eyJb.c", "ya29.abcdefghij", "abc123", "***", "secret", "pass", ","]
FUZZ_PIECES += [";", ")", "#", "1", "user:pass@", "%253D", "%2526", '"token":"', "'key':'", "ſ", "K", "é"]
FUZZ_PIECES += ["Cookie: ", "Set-Cookie:", "sessionid", " = ", '="', "='", "tok@", "%3A%2F%2F", "\t"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.sampled_from(FUZZ_PIECES), st.text(max_size=3)), max_size=20).map("".join),
        min_size=1,
        max_size=20,
    )
)
def test_redact_expr_equals_redact_and_is_idempotent(texts: list[str]) -> None:
    expected = [redact(t) for t in texts]
    out = pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(redact_expr(pl.col("t"))).to_series().to_list()
    assert out == expected
    assert [redact(t) for t in expected] == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="bcdfghjlmnqrxz0123456789-_.:/?&=%#{}[]\"', \n", max_size=60))
def test_text_without_secrets_is_unchanged(text: str) -> None:
    # no vowels (so no secret name), no "@": nothing can look like a credential
    assert redact(text) == text


# ------------------------------------------------------------------ IP masking

IP_CASES: list[tuple[str, str]] = [
    ("203.0.113.77", "203.0.113.0"),
    ("10.0.0.1", "10.0.0.0"),
    ("255.255.255.255", "255.255.255.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
    ("2001:DB8:ABCD:0012:0000:0000:0000:0001", "2001:db8:abcd::"),
    ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::"),
    ("2001:db8::1", "2001:db8::"),
    ("2001:db8:0:1::5", "2001:db8::"),
    ("::1", "::"),
    ("fe80::1%eth0", "fe80::"),
    ("::ffff:203.0.113.77", "::ffff:203.0.113.0"),
    ("999.1.1.1", "999.1.1.1"),
    ("01.2.3.4", "01.2.3.4"),
    ("1.2.3", "1.2.3"),
    (" 1.2.3.4", " 1.2.3.4"),
    ("1.2.3.4/24", "1.2.3.4/24"),
    ("unknown", "unknown"),
    ("", ""),
]


@pytest.mark.parametrize(("ip", "expected"), IP_CASES, ids=[c[0] or "empty" for c in IP_CASES])
def test_mask_ip(ip: str, expected: str) -> None:
    assert mask_ip(ip) == expected
    assert mask_ip(expected) == expected


def test_mask_ip_expr_matches_mask_ip() -> None:
    ips = [c[0] for c in IP_CASES] * 2 + [None]
    df = pl.DataFrame({"ip": ips, "g": [i % 3 for i in range(len(ips))]}, schema={"ip": pl.String, "g": pl.Int64})
    out = df.select(mask_ip_expr(pl.col("ip"))).to_series().to_list()
    assert out == [mask_ip(ip) for ip in ips]
    lazy = df.lazy().filter(pl.col("g") == 1).select(mask_ip_expr(pl.col("ip"))).collect().to_series().to_list()
    assert lazy == [mask_ip(ip) for ip, g in zip(ips, df["g"], strict=True) if g == 1]
    empty = pl.DataFrame({"ip": [None, None]}, schema={"ip": pl.String}).select(mask_ip_expr(pl.col("ip")))
    assert empty.to_series().to_list() == [None, None]
