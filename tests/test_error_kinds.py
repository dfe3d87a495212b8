"""Error kinds and meanings, status classes and signatures of postbacks (docs/contract.md §6)."""

from __future__ import annotations

from typing import Any, NamedTuple

import polars as pl
import pytest

import cfanalytics as cf
from cfanalytics.diagnose.error_kinds import (
    ERROR_KINDS,
    ERROR_MEANING_COLUMNS,
    KIND_ACTIONS,
    STATUS_CLASSES,
    error_kind,
    kind_actions,
    signature,
    status_class,
    with_error_meaning,
)
from cfanalytics.sample import generate

META = "https://graph.facebook.com/v21.0/1234567890/events?access_token=***"
GOOGLE = (
    "https://googleads.googleapis.com/v17/customers/1234567890:uploadClickConversions"
    "?conversion_action=987654321&gclid=Cj0KCQiA"
)
GOOGLE_NO_GCLID = "https://googleads.googleapis.com/v17/customers/1234567890:uploadClickConversions?conversion_action=987654321&gclid="
TIKTOK = (
    "https://business-api.tiktok.com/open_api/v1.3/event/track/?pixel_code=CABC123&event=CompletePayment&ttclid=E.C.P"
)
ZEROPARK = "https://postback.zeroparkcdn.com/postback?cid=5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab&payout=1.50"
PROPELLER = "http://ad.propellerads.com/conversion.php?aid=123&tid=456&visitor_id=abc123&payout=0.40"

GOOGLE_UNPARSEABLE = (
    '{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT",'
    '"details":[{"errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},"message":"Too short."}]}]}}'
)


def _meta(message: str, code: int, kind: str = "OAuthException", extra: str = "") -> str:
    return f'{{"error":{{"message":"{message}","type":"{kind}","code":{code}{extra},"fbtrace_id":"AbC123xyzQ"}}}}'


def _google(error: str, message: str, status: str = "INVALID_ARGUMENT", code: int = 400) -> str:
    return (
        f'{{"error":{{"code":{code},"message":"Request contains an invalid argument.","status":"{status}",'
        f'"details":[{{"errors":[{{"errorCode":{{"conversionUploadError":"{error}"}},"message":"{message}"}}]}}]}}}}'
    )


NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx/1.18.0 (Ubuntu)</center>\r\n</body>\r\n</html>"
)

CHALLENGE_503 = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title><style>body{margin:0}</style>"
    "<script>(function(){if(!window.x){return}window.x.run({ray:'8e1f2a3b4c5d6e7f'})})();</script>"
    "</head><body>Checking your browser before accessing ts.example.</body></html>"
)
PB = "https://ts.example/pb?"
META_190 = _meta(
    "Error validating access token: Session has expired on Thursday, 19-Nov-26 10:00:00 PST. "
    "The current time is Friday, 20-Nov-26 04:13:07 PST.",
    190,
    extra=',"error_subcode":463',
)
META_TOO_OLD = _meta(
    "Invalid parameter",
    100,
    extra=',"error_subcode":2804003,"error_user_title":"Event Timestamp Too Old",'
    '"error_user_msg":"The timestamp for this event is too far in the past."',
)
META_500 = _meta("An unexpected error has occurred. Please retry your request later.", 2, "FacebookApiException")
TIKTOK_429 = '{"code":40100,"message":"Too many requests. Please retry in some time.","request_id":"2026112017"}'
CURL_28 = "cURL error 28: Operation timed out after 10001 milliseconds with 0 bytes received"
REFUSED = "Failed to connect to ad.propellerads.com port 80: Connection refused"


class Case(NamedTuple):
    """One postback and the error kind it must get."""

    name: str
    is_error: bool | None
    status_code: int | None
    error_message: str | None
    postback_url: str | None
    expected: str | None


# expected kind → (name, status code, error message, postback URL) of failing postbacks
FAILING: dict[str, list[tuple[str, int | None, str | None, str | None]]] = {
    "unreplaced_macro": [
        ("braces", 400, "Invalid click id", PB + "aid=1&visitor_id={clickid}"),
        ("brackets", 200, "error: conversion rejected", PB + "subid=[SUBID]&payout=1"),
        ("encoded", 404, "Not Found", PB + "cid=%7Bclickid%7D&payout=1"),
        ("encoded-lower-case", 400, "bad", PB + "cid=%7bexternal_id%7d"),
        ("double-encoded", 400, "bad", PB + "u=https%3A%2F%2Fx.example%2F%3Fcid%3D%257Bclickid%257D"),
        ("double-braces", 500, "Internal Server Error", PB + "cid={{click_id}}"),
        ("in-message", 400, "Unknown visitor_id '{external_id}'", PROPELLER),
        ("url-in-message", None, "GET http://ad.example/c?cid=${clickid}&p=1 timed out", None),
        ("beats-auth", 401, "Unauthorized", PB + "cid={clickid}&token=***"),
        ("beats-missing", 400, "Too short.", PB + "gclid={gclid}"),
    ],
    "missing_click_id": [
        ("google-unparseable", 400, GOOGLE_UNPARSEABLE, GOOGLE),
        ("google-too-short", 400, "Too short.", GOOGLE),
        ("gclid-empty-at-end", 400, "Request contains an invalid argument.", GOOGLE_NO_GCLID),
        ("cid-empty", 404, "Not Found", "https://postback.zeroparkcdn.com/postback?cid=&payout=1"),
        ("fbclid-empty-at-end", 400, "Bad Request", PB + "payout=1&fbclid="),
        ("click-id-null", 400, "Bad Request", PB + "click_id=null&payout=1"),
        ("external-id-empty", 200, "ERROR", PB + "external_id=&payout=1"),
        ("ttclid-required", 400, '{"code":40002,"message":"ttclid is required","request_id":"2026"}', TIKTOK),
        ("click-id-is-missing", 400, "The click ID is missing.", ZEROPARK),
        ("missing-gclid", 400, "missing gclid", GOOGLE),
        ("invalid-click-id", 400, "Invalid click id", PROPELLER),
        ("url-in-message", None, "GET " + PB + "cid=&payout=1 failed", None),
        ("beats-auth", 401, "Unauthorized", PB + "cid=&token=***"),
    ],
    "auth": [
        ("meta-190-expired-session", 400, META_190, META),
        ("meta-190-code-only", 400, _meta("Malformed access token EAAGm0PX4ZCps", 190), META),
        ("status-401-empty", 401, "", PB + "cid=abc123"),
        ("status-403-html", 403, "<html><body><h1>403 Forbidden</h1></body></html>", ZEROPARK),
        ("tiktok-access-token-invalid", 200, '{"code":40105,"message":"access_token_invalid","data":{}}', TIKTOK),
        ("tiktok-40105", 400, '{"code": 40105, "message": "Access token is invalid or has been revoked."}', TIKTOK),
        ("google-unauthenticated", 400, '{"error":{"code":401,"status":"UNAUTHENTICATED"}}', GOOGLE),
        ("google-permission-denied", 400, '{"error":{"code":403,"status":"PERMISSION_DENIED"}}', GOOGLE),
        ("invalid-token", 400, "Invalid token", PB + "cid=abc123"),
        ("expired-token-no-status", None, "expired token", PB + "cid=abc123"),
        ("beats-rate-limit", 429, "Invalid OAuth access token.", META),
    ],
    "rate_limit": [
        ("status-429-empty", 429, "", PB + "cid=abc123"),
        ("status-429-null", 429, None, PB + "cid=abc123"),
        ("meta-4", 400, _meta("(#4) Application request limit reached", 4, extra=',"is_transient":true'), META),
        ("meta-17", 400, _meta("(#17) User request limit reached", 17, extra=',"error_subcode":2446079'), META),
        ("meta-613-code-only", 400, _meta("Calls to this api have exceeded the limit.", 613), META),
        ("tiktok-too-many", 429, TIKTOK_429, TIKTOK),
        ("tiktok-40100-status-200", 200, '{"code":40100,"message":"Requests too frequent"}', TIKTOK),
        ("google-exhausted", 400, '{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}', GOOGLE),
        ("text-with-503", 503, "Rate limit exceeded, slow down", ZEROPARK),
        ("beats-duplicate", 429, "Duplicate request throttled", ZEROPARK),
    ],
    "duplicate": [
        ("google-exists", 400, _google("CLICK_CONVERSION_ALREADY_EXISTS", "Already uploaded."), GOOGLE),
        ("google-order", 400, _google("DUPLICATE_ORDER_ID", "Duplicate order id."), GOOGLE),
        ("already-exists", 409, "Conversion already exists", ZEROPARK),
        ("status-200", 200, "duplicate conversion", PROPELLER),
    ],
    "time_window": [
        ("google-expired-click", 400, _google("EXPIRED_CLICK", "The click is older than the window."), GOOGLE),
        ("google-too-recent", 400, _google("TOO_RECENT_CLICK", "The click is too recent."), GOOGLE),
        ("google-precedes", 400, _google("CONVERSION_PRECEDES_EVENT", "The conversion precedes the event."), GOOGLE),
        ("meta-too-old", 400, META_TOO_OLD, META),
        ("click-too-old", 400, "click is too old", ZEROPARK),
        ("window-expired", 422, "Conversion window expired", ZEROPARK),
        ("tiktok-event-time", 400, '{"code":40002,"message":"event_time must be within 7 days"}', TIKTOK),
    ],
    "no_response": [
        ("timeout", None, "Connection timed out after 10000 ms", ZEROPARK),
        ("curl-28", None, CURL_28, ZEROPARK),
        ("dns", None, "Could not resolve host: postback.zeroparkcdn.com", ZEROPARK),
        ("refused", None, REFUSED, PROPELLER),
        ("reset", None, "Connection reset by peer", PROPELLER),
        ("expired-certificate", None, "SSL certificate problem: certificate has expired", PROPELLER),
        ("status-0", 0, "Empty reply from server", PROPELLER),
        ("nothing-known", None, None, None),
    ],
    "server_error": [
        ("500", 500, "Internal Server Error", ZEROPARK),
        ("meta-500", 500, META_500, META),
        ("tiktok-500", 500, '{"code":50000,"message":"System error"}', TIKTOK),
        ("nginx-502", 502, NGINX_502, ZEROPARK),
        ("html-script-is-no-macro", 503, CHALLENGE_503, ZEROPARK),
        ("503", 503, "Service Temporarily Unavailable", PROPELLER),
        ("504", 504, "Gateway Timeout", PROPELLER),
    ],
    "bad_request": [
        ("meta-100-invalid-parameter", 400, _meta("Invalid parameter", 100), META),
        ("404", 404, "Not Found", ZEROPARK),
        ("google-invalid-argument", 400, '{"error":{"code":400,"status":"INVALID_ARGUMENT"}}', GOOGLE),
        ("422-no-message", 422, None, ZEROPARK),
        ("array-name-is-no-macro", 400, "Invalid parameter", PB + "cid=abc123&data[value]=1"),
        ("encoded-json-is-no-macro", 400, "Bad Request", PB + "cid=abc123&d=%7B%22v%22%3A1%7D"),
        ("other-empty-param", 400, "Bad Request", PB + "cid=abc123&sub2=&payout="),
    ],
    "other": [
        ("status-200", 200, "", ZEROPARK),
        ("status-302", 302, "Found", ZEROPARK),
    ],
}

NOT_FAILING: list[Case] = [
    Case("ok-200", False, 200, None, ZEROPARK, None),
    Case("ok-with-macro", False, 200, "", PB + "cid={clickid}", None),
    Case("ok-with-500", False, 500, "Internal Server Error", ZEROPARK, None),
    Case("is-error-null", None, 401, "Unauthorized", ZEROPARK, None),
]

CASES: list[Case] = [
    Case(f"{kind}:{name}", True, status, message, url, kind)
    for kind, rows in FAILING.items()
    for name, status, message, url in rows
] + NOT_FAILING


def _frame(cases: list[Case]) -> pl.DataFrame:
    return pl.DataFrame(
        cases,
        schema={
            "name": pl.String,
            "is_error": pl.Boolean,
            "status_code": pl.Int64,
            "error_message": pl.String,
            "postback_url": pl.String,
            "expected": pl.String,
        },
        orient="row",
    )


def _kinds() -> pl.Expr:
    return error_kind(
        is_error=pl.col("is_error"),
        status_code=pl.col("status_code"),
        error_message=pl.col("error_message"),
        postback_url=pl.col("postback_url"),
    )


def test_table_is_large_and_covers_every_kind():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.expected for c in CASES} == {*ERROR_KINDS, None}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_kind(case):
    assert _frame([case]).select(_kinds()).item() == case.expected


def test_error_kind_whole_table_at_once():
    frame = _frame(CASES)
    out = frame.select(_kinds())
    assert out.schema == pl.Schema({"error_kind": pl.String})
    assert out.to_series().to_list() == frame["expected"].to_list()


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_kind_and_signature_in_lazy_and_grouped_contexts(engine):
    """Many rows sharing messages, shuffled: every row gets what it gets alone, also per group."""
    single = {c.error_message: _sig(c.error_message)[0] for c in CASES}
    frame = pl.concat([_frame(CASES)] * 50).sample(fraction=1.0, shuffle=True, seed=7)
    out = (
        frame.lazy()
        .with_columns(
            kind=_kinds(),
            by_group=_kinds().over(pl.int_range(pl.len()) % 3),
            signature=pl.when(pl.col("is_error")).then(signature(pl.col("error_message"))),
        )
        .collect(engine=engine)
    )
    assert out["kind"].to_list() == out["expected"].to_list()
    assert out["by_group"].to_list() == out["expected"].to_list()
    expected = [single[m] if e else None for m, e in zip(out["error_message"], out["is_error"], strict=True)]
    assert out["signature"].to_list() == expected


def test_error_kind_order_and_values():
    assert ERROR_KINDS[:2] == ("unreplaced_macro", "missing_click_id")
    assert ERROR_KINDS[-1] == "other"
    assert len(set(ERROR_KINDS)) == 10
    assert set(_frame(CASES).select(_kinds()).to_series().drop_nulls()) <= set(ERROR_KINDS)


def test_error_kind_is_case_insensitive():
    frame = pl.DataFrame(
        {
            "is_error": [True, True, True],
            "status_code": [400, 400, 400],
            "error_message": ["RATE LIMIT reached", "Already Exists", "session HAS EXPIRED"],
            "postback_url": ["https://x.example/?a=1"] * 3,
        }
    )
    assert frame.select(_kinds()).to_series().to_list() == ["rate_limit", "duplicate", "auth"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (100, "1xx"),
        (204, "2xx"),
        (200, "2xx"),
        (301, "3xx"),
        (404, "4xx"),
        (429, "4xx"),
        (500, "5xx"),
        (599, "5xx"),
        (None, "none"),
        (0, "none"),
        (99, "none"),
        (600, "none"),
    ],
)
def test_status_class(code, expected):
    series = pl.Series("status_code", [code], dtype=pl.Int64)
    assert pl.select(status_class(series)).item() == expected
    assert expected in STATUS_CLASSES


def test_status_class_column():
    frame = pl.DataFrame({"status_code": [200, None, 503]}, schema={"status_code": pl.Int64})
    out = frame.select(status_class(pl.col("status_code")))
    assert out.columns == ["status_class"]
    assert out.to_series().to_list() == ["2xx", "none", "5xx"]


# --------------------------------------------------------------------------- meanings

META_4 = (
    '{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","code":4,"fbtrace_id":"x"}}'
)
GOOGLE_TOO_RECENT = (
    '{"partialFailureError":{"code":3,"message":"The click occurred less than 6 hours ago, at conversions[0]",'
    '"details":[{"errors":[{"errorCode":{"conversionUploadError":"TOO_RECENT_EVENT"}}]}]},"results":[{}]}'
)
MEANING_COLUMNS = ("error_kind", "error_detail", "platform", "platform_code", "retryable", "fix_owner")

# (is_error, status, message, URL, integration name) → (kind, detail, platform, platform code, retryable, fix owner)
MEANING_CASES: list[tuple[tuple[bool | None, int | None, str | None, str | None, str | None], tuple[Any, ...]]] = [
    ((True, 401, META_190, META, None), ("auth", "token_expired", "meta", "190/463", False, "ad_account")),
    # the body wins over the status: Meta's code 4 is throttling, whatever the HTTP status says
    ((True, 403, META_4, META, None), ("rate_limit", "throttled", "meta", "4", True, "nobody")),
    (
        (True, 200, GOOGLE_TOO_RECENT, GOOGLE, None),
        ("time_window", "too_recent", "google_ads", "TOO_RECENT_EVENT", True, "nobody"),
    ),
    (
        (True, 200, '{"code":40105,"message":"access_token_invalid"}', TIKTOK, None),
        ("auth", "token_invalid", "tiktok", "40105", False, "ad_account"),
    ),
    # an error name in an HTTP 200, no URL: the body tells the platform
    (
        (True, 200, "OfflineConversionMicrosoftClickIdInvalid", None, None),
        (
            "missing_click_id",
            "invalid_click_id",
            "microsoft_ads",
            "OfflineConversionMicrosoftClickIdInvalid",
            False,
            "traffic_source",
        ),
    ),
    (
        (True, 200, "Conversion exists", None, "Affise"),
        ("duplicate", "duplicate", "affiliate_network", None, False, "nobody"),
    ),
    ((True, None, CURL_28, ZEROPARK, None), ("no_response", "timeout", "s2s", "28", True, "nobody")),
    # a transport failure's wording only counts without a status: with one, the status decides
    (
        (True, 504, "upstream request timeout", ZEROPARK, None),
        ("server_error", "server_error", "s2s", None, True, "nobody"),
    ),
    (
        (True, 400, "Invalid click id", PB + "cid={clickid}", None),
        ("unreplaced_macro", "unreplaced_macro", "s2s", None, False, "tracker_setup"),
    ),
    (
        (True, 404, "Not Found", ZEROPARK, None),
        ("bad_request", "endpoint_not_found", "s2s", None, False, "tracker_setup"),
    ),
    ((True, 200, "", ZEROPARK, None), ("other", "unexpected_response", "s2s", None, False, "tracker_setup")),
    # platform: the URL host first, then the integration name, then the shape of the body
    (
        (True, 500, "Internal Server Error", META, "Google Ads"),
        ("server_error", "server_error", "meta", None, True, "nobody"),
    ),
    (
        (True, 500, "Internal Server Error", None, "TikTok Ads"),
        ("server_error", "server_error", "tiktok", None, True, "nobody"),
    ),
    ((True, 500, META_500, None, None), ("server_error", "server_error", "meta", "2", True, "nobody")),
    # a network's own click id comes through the tracker: it is the tracker's setup that must pass it
    (
        (True, 200, "Broken clickid", None, "Affise"),
        ("missing_click_id", "invalid_click_id", "affiliate_network", None, False, "tracker_setup"),
    ),
    (
        (True, 400, "Invalid click id", ZEROPARK, None),
        ("missing_click_id", "invalid_click_id", "s2s", None, False, "traffic_source"),
    ),
    ((False, 500, META_500, META, None), (None, None, None, None, None, None)),
    ((None, 401, "Unauthorized", ZEROPARK, None), (None, None, None, None, None, None)),
]


def _meaning_frame(rows: list[tuple[bool | None, int | None, str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "is_error": pl.Boolean,
            "status_code": pl.Int64,
            "error_message": pl.String,
            "postback_url": pl.String,
            "integration_name": pl.String,
        },
        orient="row",
    )


def test_error_meaning_of_each_case():
    frame = _meaning_frame([inputs for inputs, _ in MEANING_CASES])
    out = with_error_meaning(frame.lazy()).collect()
    assert out.columns == [*frame.columns, *ERROR_MEANING_COLUMNS]
    assert out.select(list(ERROR_MEANING_COLUMNS)).schema == pl.Schema(ERROR_MEANING_COLUMNS)
    for (inputs, expected), got in zip(MEANING_CASES, out.select(MEANING_COLUMNS).iter_rows(), strict=True):
        assert got == expected, inputs
    # the sentence to act on is the meaning's (or, at a network, what to pass it), never empty
    actions = out["action"].to_list()
    assert actions[0].startswith("The access token expired")
    assert actions[-2:] == [None, None]
    assert all(a for a in actions[:-2])
    network_click = actions[[e[2] for _, e in MEANING_CASES].index("affiliate_network", 6)]
    assert "network's own click id" in network_click


def test_error_meaning_without_integration_columns_and_in_lazy_engines():
    frame = _meaning_frame([inputs for inputs, _ in MEANING_CASES]).drop("integration_name")
    for engine in ("in-memory", "streaming"):
        out = with_error_meaning(frame.lazy()).collect(engine=engine)
        kinds = [e[0] for _, e in MEANING_CASES]
        assert out["error_kind"].to_list() == kinds
    # the frame function and the expression agree row by row
    expr = frame.select(
        error_kind(
            is_error=pl.col("is_error"),
            status_code=pl.col("status_code"),
            error_message=pl.col("error_message"),
            postback_url=pl.col("postback_url"),
        )
    )
    assert expr.to_series().to_list() == kinds


def test_error_meaning_agrees_with_error_kind_on_the_whole_table():
    frame = _frame(CASES)
    out = with_error_meaning(frame.lazy()).collect()
    assert out["error_kind"].to_list() == frame["expected"].to_list()
    failing = out.filter(pl.col("error_kind").is_not_null())
    assert (
        failing.select(
            pl.col(c).null_count() for c in ("error_detail", "platform", "retryable", "fix_owner", "action")
        ).row(0)
        == (0,) * 5
    )


# The platforms' documented wording, logged without its code: the wording alone must tell the kind.
WORDING: list[tuple[int | None, str, str]] = [
    (400, "Application request limit reached", "rate_limit"),
    (400, "Application does not have permission for this action", "auth"),
    (400, "An unknown error occurred", "server_error"),
    (400, "The imported gclid could not be decoded.", "missing_click_id"),
    (
        400,
        "The click associated with the given identifier or iOS URL parameter occurred less than 6 hours ago.",
        "time_window",
    ),
    (400, "Imported events include multiple conversions with the same order ID and were not processed.", "duplicate"),
    (400, "OAuth token in the header has been revoked.", "auth"),
    (400, "Too many expensive requests from query pattern over a short amount of time.", "rate_limit"),
    (400, "Google Ads API encountered an unexpected transient error.", "server_error"),
    (400, "You have exceeded the number of calls that you are allowed to make in a given time period.", "rate_limit"),
    (200, "No permission to operate advertiser 123", "auth"),
    (200, "Offer is paused", "other"),
    (200, "Transaction ID not found", "missing_click_id"),
    (None, "Temporary failure in name resolution", "no_response"),
    (400, "Deadline specified by the client was too short.", "bad_request"),
]


@pytest.mark.parametrize(("status", "message", "kind"), WORDING, ids=[w[1][:40] for w in WORDING])
def test_documented_wording_alone(status, message, kind):
    frame = _meaning_frame([(True, status, message, None, None)])
    assert with_error_meaning(frame.lazy()).collect()["error_kind"].item() == kind


def test_error_meaning_names_missing_columns():
    with pytest.raises(ValueError, match="no column status_code, postback_url"):
        with_error_meaning(pl.LazyFrame({"is_error": [True], "error_message": ["x"]}))


def test_kind_actions_table():
    table = kind_actions()
    assert table["error_kind"].to_list() == list(ERROR_KINDS)
    assert table.filter(pl.col("retryable"))["error_kind"].to_list() == ["rate_limit", "no_response", "server_error"]
    assert set(KIND_ACTIONS) == set(ERROR_KINDS)
    assert table["action"].str.len_chars().min() > 20


@pytest.fixture(scope="module")
def sample_postbacks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    account = generate(folder / "exports", seed=7, visits=20_000)
    store = cf.LogStore(folder / "store", timezone=account.truth["timezone"])
    result = store.ingest([p for role, p in sorted(account.files.items()) if role != "network_export"])
    assert result.ok, result.failures
    return cf.diagnose.postbacks(store).collect()


def test_postbacks_of_the_sample_account_carry_the_meaning(sample_postbacks):
    pb = sample_postbacks
    assert set(ERROR_MEANING_COLUMNS) <= set(pb.columns)
    ok = pb.filter(~pl.col("is_error"))
    assert ok.select(pl.col(c).null_count() == ok.height for c in ERROR_MEANING_COLUMNS).row(0) == (True,) * 7
    failing = pb.filter(pl.col("is_error"))
    assert failing["error_kind"].null_count() == failing["action"].null_count() == 0

    def meaning(contains: str) -> set[tuple[Any, ...]]:
        rows = failing.filter(pl.col("error_message").str.contains(contains, literal=True))
        assert rows.height > 0, contains
        return set(rows.select(MEANING_COLUMNS).iter_rows())

    # the sample's injected faults, by the generator's own messages
    assert meaning("Session has expired") == {("auth", "token_expired", "meta", "190/463", False, "ad_account")}
    assert meaning('"code":40100') == {("rate_limit", "throttled", "tiktok", "40100", True, "nobody")}
    # the sample's gclid errors come with an empty gclid= in the URL: the URL says it first
    assert meaning("UNPARSEABLE_GCLID") == {
        ("missing_click_id", "missing_click_id", "google_ads", "UNPARSEABLE_GCLID", False, "traffic_source")
    }
    timeouts = failing.filter(pl.col("error_message").str.contains("timed out") & pl.col("status_code").is_null())
    assert timeouts.height > 0
    assert set(timeouts.select("error_kind", "error_detail", "retryable").iter_rows()) == {
        ("no_response", "timeout", True)
    }
    macros = failing.filter(pl.col("postback_url").str.contains("{", literal=True))
    assert macros.height > 0
    assert set(macros["error_detail"]) == {"unreplaced_macro"}


# --------------------------------------------------------------------------- signatures


def _sig(*messages: str | None) -> list[str | None]:
    return pl.select(signature(pl.Series("m", list(messages), dtype=pl.String))).to_series().to_list()


SAME = [
    (
        "Error validating access token: Session has expired on Thursday, 19-Nov-26 10:00:00 PST. "
        "The current time is Thursday, 19-Nov-26 11:30:12 PST.",
        "Error validating access token: Session has expired on Sunday, 01-Nov-26 10:00:00 PDT. "
        "The current time is Monday, 02-Nov-26 09:01:02 PST.",
    ),
    (
        _meta("Invalid parameter", 100),
        '{"error":{"message":"Invalid parameter","type":"OAuthException","code":101,"fbtrace_id":"Zq9yT0pLmN4"}}',
    ),
    ("Connection timed out after 10000 ms", "Connection timed out after 10001 ms"),
    (
        "cURL error 28: Operation timed out after 10001 milliseconds with 0 bytes received",
        "cURL error 28: Operation timed out after 10002 milliseconds with 512 bytes received",
    ),
    (
        TIKTOK_429.replace("2026112017", "20261120170501ABCDEF0123456789"),
        TIKTOK_429.replace("2026112017", "2026112018"),
    ),
    ("Unknown click 5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab", "Unknown click 0b7e8f9a-1111-4222-9333-abcdefabcdef"),
    ("Conversion 65a1f0c2e4b0d3a1f2c3d4e5 rejected", "Conversion 65a1f0c2e4b0d3a1f2c3ffff rejected"),
    ("Invalid value 'abc' for field 'payout'", 'Invalid value "xyz123" for field "currency"'),
    ("Account owner ana@acme.test is suspended", "Account owner ben.smith@example.org is suspended"),
    (
        "GET https://ts.example/pb?cid=abc&payout=1.5 failed",
        "GET https://ts.example/pb?cid=def&payout=2 failed",
    ),
    ("Trace: A7gH2kLmN0pQ  failed\n\nretry", "Trace: Zz81kQ0aaaaa failed retry"),
    ("Request 2026-11-20T10:00:00Z failed", "Request 2026-11-21T23:59:59+01:00 failed"),
    (NGINX_502, NGINX_502.replace("502", "503").replace("1.18.0", "1.24.0")),
]

DIFFERENT = [
    (_meta("Invalid parameter", 100), _meta("Unsupported post request", 100)),
    ("Connection timed out after 10000 ms", "Connection refused"),
    ("Internal Server Error", "Bad Gateway"),
    (GOOGLE_UNPARSEABLE, _google("EXPIRED_CLICK", "The click is older than the conversion window.")),
    ("GET https://ts.example/pb?cid=&payout=1 failed", "GET https://ts.example/pb?cid=abc&payout=1 failed"),
    ("GET https://a.example/pb?cid=1 failed", "GET https://b.example/pb?cid=1 failed"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_signature_groups_one_failure(a, b):
    first, second = _sig(a, b)
    assert first is not None
    assert first == second


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_signature_keeps_failures_apart(a, b):
    first, second = _sig(a, b)
    assert first != second


def test_signature_examples():
    assert _sig(_meta("Invalid parameter", 100)) == [
        '{"error":{"message":"Invalid parameter","type":"OAuthException","code":<n>,"fbtrace_id":"…"}}'
    ]
    assert _sig("Unknown click 5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab (id 65a1f0c2e4b0d3a1)") == [
        "Unknown click <uuid> (id <hex>)"
    ]
    assert _sig("mail ana@acme.test about 'Summer Sale' at https://x.example/a/b?c=1&d=2#top") == [
        'mail <email> about "…" at https://x.example/a/b?c=…&d=…#top'
    ]
    assert _sig(NGINX_502) == ["<n> Bad Gateway <n> Bad Gateway nginx/<n> (Ubuntu)"]
    assert _sig("  several \t spaces\r\nand lines  ") == ["several spaces and lines"]


@pytest.mark.parametrize(
    "message",
    [
        "POST https://graph.facebook.com/v21.0/123/events?access_token=EAAGm0PX4ZCpsBAxyz1234567890abcdefgh failed",
        "Invalid OAuth access token EAAGm0PX4ZCpsBAxyz1234567890abcdefgh",
        '{"error":"bad","access_token":"EAAGm0PX4ZCpsBAxyz1234567890abcdefgh"}',
        "Authorization: Bearer ya29.a0AfH6SMBxyzSECRETsecret123",
        "https://ts.example/pb?cid=1&api_key=supersecretvalue99",
    ],
)
def test_signature_never_shows_a_token(message):
    (sig,) = _sig(message)
    assert sig is not None
    for secret in ("EAAGm0PX4ZCps", "ya29.a0AfH6", "SECRET", "supersecretvalue99"):
        assert secret not in sig


def test_signature_null_blank_and_length():
    assert _sig(None, "", "   ") == [None, None, None]
    (long,) = _sig("word " * 100)
    assert long is not None
    assert len(long) <= 200
    assert long.startswith("word word")
