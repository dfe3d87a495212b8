"""What the ad platforms, networks and S2S receivers mean by their error answers (docs/contract.md §6).

Pure data, read by :mod:`cfanalytics.diagnose.error_kinds`: the platforms and how to recognise them
(URL host, integration name, the shape of the body), the meanings a failed postback can have
(:data:`MEANINGS`: kind, detail, whether a re-send later can succeed, who fixes it, what to do) and the
ordered rules (:data:`BODY_RULES`) that map an answer's body to a meaning. The codes and wording come
from the platforms' own code tables: Meta Graph API error codes and subcodes, the Google Ads API error
enums and their documented messages, TikTok Business API return codes, Microsoft Advertising operation
error codes, X Ads API error constants, Snapchat Conversions API statuses, affiliate-network postback
errors (Affise, HasOffers/TUNE, Everflow style) and the usual S2S transport failures (curl, Node, Go, Java).

Patterns are Rust ``regex`` syntax (no look-around, no backreferences); enum names are matched
case-sensitively, wording case-insensitively.

>>> MEANINGS["token_expired"].kind, MEANINGS["token_expired"].fix_owner
('auth', 'ad_account')
>>> [r.meaning for r in BODY_RULES[:2]]
['token_expired', 'token_expired']
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = [
    "BODY_MARKERS",
    "BODY_RULES",
    "FIX_OWNERS",
    "HOST_PATTERNS",
    "KIND_DEFAULTS",
    "MEANINGS",
    "NAME_PATTERNS",
    "PLATFORMS",
    "STATUS_MEANINGS",
    "URL_HOST",
    "Meaning",
    "Rule",
]

#: Platforms an answer can come from; ``s2s`` is any other server-to-server receiver.
PLATFORMS: Final[tuple[str, ...]] = (
    "s2s",
    "meta",
    "google_ads",
    "tiktok",
    "microsoft_ads",
    "x",
    "snapchat",
    "taboola",
    "outbrain",
    "mgid",
    "affiliate_network",
)

#: Who can fix a failure: the tracker's postback/integration setup, the ad account (tokens, permissions,
#: conversion settings), the traffic source's campaign (click-id passing), the affiliate network, or
#: nobody (transient, or the answer needs no fix).
FIX_OWNERS: Final[tuple[str, ...]] = ("tracker_setup", "ad_account", "traffic_source", "network", "nobody")


class Meaning(NamedTuple):
    """What a failed postback means."""

    kind: str
    detail: str
    retryable: bool
    fix_owner: str
    action: str


_M = Meaning

#: Meaning id → :class:`Meaning`. Ids are the ``error_detail`` values except where one detail has
#: several actions (a platform's own wording of the fix).
MEANINGS: Final[dict[str, Meaning]] = {
    # ---- unreplaced macro / click id
    "unreplaced_macro": _M(
        "unreplaced_macro",
        "unreplaced_macro",
        False,
        "tracker_setup",
        "A macro such as {clickid} reached the receiver unreplaced: fix the macro name in the postback URL",
    ),
    "missing_click_id": _M(
        "missing_click_id",
        "missing_click_id",
        False,
        "traffic_source",
        "The click id is empty: pass the click-id macro in the traffic source campaign URL",
    ),
    "invalid_click_id": _M(
        "missing_click_id",
        "invalid_click_id",
        False,
        "traffic_source",
        "The click id was truncated or altered: fix the click-id macro in the traffic source campaign URL",
    ),
    "google_invalid_click_id": _M(
        "missing_click_id",
        "invalid_click_id",
        False,
        "traffic_source",
        "The gclid was truncated or altered: fix the click-id macro on the Google Ads campaign",
    ),
    "microsoft_invalid_click_id": _M(
        "missing_click_id",
        "invalid_click_id",
        False,
        "traffic_source",
        "The msclkid was rejected: pass {msclkid} unchanged from the Microsoft Ads campaign",
    ),
    "unknown_click": _M(
        "missing_click_id",
        "click_not_found",
        False,
        "tracker_setup",
        "The receiver knows no such click id: check that the postback sends the id the receiver gave the click",
    ),
    "click_not_found": _M(
        "missing_click_id",
        "click_not_found",
        False,
        "nobody",
        "The platform matched no click of its ads (often a click from elsewhere): act only if it is frequent",
    ),
    # ---- auth
    "token_expired": _M(
        "auth",
        "token_expired",
        False,
        "ad_account",
        "The access token expired: reconnect the integration to get a new token",
    ),
    "token_invalid": _M(
        "auth",
        "token_invalid",
        False,
        "ad_account",
        "The token or key was refused: paste a valid token into the integration",
    ),
    "no_permission": _M(
        "auth",
        "no_permission",
        False,
        "ad_account",
        "The token lacks access to this account, pixel or action: grant it in the ad account",
    ),
    "account_disabled": _M(
        "auth",
        "account_disabled",
        False,
        "ad_account",
        "The ad account is disabled or suspended: resolve it with the platform",
    ),
    "developer_token_invalid": _M(
        "auth",
        "token_invalid",
        False,
        "tracker_setup",
        "The API developer token of the integration was refused: the tracker's integration needs a valid token",
    ),
    "developer_token_access": _M(
        "auth",
        "no_permission",
        False,
        "tracker_setup",
        "The integration's developer token or API project lacks access level: it must be approved for production",
    ),
    "network_ip": _M(
        "auth",
        "no_permission",
        False,
        "network",
        "The network refuses postbacks from this IP: ask the network to allow-list the tracker's IP",
    ),
    "network_auth": _M(
        "auth",
        "token_invalid",
        False,
        "tracker_setup",
        "The network refused the postback's secure code: put the code the network gives into the postback URL",
    ),
    # ---- rate limits
    "throttled": _M(
        "rate_limit",
        "throttled",
        True,
        "nobody",
        "The platform is throttling requests: resends later will pass; spread postbacks out if it persists",
    ),
    "daily_quota": _M(
        "rate_limit",
        "daily_quota",
        True,
        "nobody",
        "The daily API quota is used up: resend tomorrow or ask the platform for a higher quota",
    ),
    # ---- duplicates
    "duplicate": _M(
        "duplicate",
        "duplicate",
        False,
        "nobody",
        "Already recorded: nothing to do unless the conversions were distinct (then send a unique order id)",
    ),
    # ---- time window
    "too_old": _M(
        "time_window",
        "too_old",
        False,
        "tracker_setup",
        "The click is outside the platform's attribution window: send postbacks sooner after the conversion",
    ),
    "too_recent": _M(
        "time_window",
        "too_recent",
        True,
        "nobody",
        "The click or conversion action is too recent: a resend after a few hours will pass",
    ),
    "before_click": _M(
        "time_window",
        "before_click",
        False,
        "tracker_setup",
        "The conversion time is before the click: check the conversion time and time zone sent",
    ),
    "in_future": _M(
        "time_window",
        "in_future",
        False,
        "tracker_setup",
        "The event time is in the future: check the time and time zone sent in the postback",
    ),
    # ---- no response
    "timeout": _M(
        "no_response",
        "timeout",
        True,
        "nobody",
        "The receiver did not answer in time: resends will pass once it recovers",
    ),
    "dns_failure": _M(
        "no_response",
        "dns_failure",
        False,
        "tracker_setup",
        "The postback host name does not resolve: check the domain in the postback URL",
    ),
    "connection_failed": _M(
        "no_response",
        "connection_failed",
        True,
        "nobody",
        "The connection was refused or dropped: resends will pass once the receiver is back",
    ),
    "tls_error": _M(
        "no_response",
        "tls_error",
        False,
        "tracker_setup",
        "The TLS handshake failed: check the https URL (or the receiver's certificate)",
    ),
    "no_response": _M(
        "no_response",
        "no_response",
        True,
        "nobody",
        "No answer from the receiver: resends will pass once it is reachable",
    ),
    # ---- server errors
    "server_error": _M(
        "server_error",
        "server_error",
        True,
        "nobody",
        "The receiver failed on its side: resends later will pass",
    ),
    # ---- bad requests
    "payload_invalid": _M(
        "bad_request",
        "payload_invalid",
        False,
        "tracker_setup",
        "A field of the postback is missing or malformed: fix the parameters of the postback template",
    ),
    "wrong_conversion_action": _M(
        "bad_request",
        "wrong_conversion_action",
        False,
        "tracker_setup",
        "The conversion action, goal, pixel or event named does not exist or cannot take uploads: fix its name or id",
    ),
    "wrong_account": _M(
        "bad_request",
        "wrong_account",
        False,
        "tracker_setup",
        "The click belongs to another ad account: send it to the account that owns the campaign",
    ),
    "consent_or_policy": _M(
        "bad_request",
        "consent_or_policy",
        False,
        "ad_account",
        "Refused for consent, data terms or policy: accept the terms or send only consented, non-PII data",
    ),
    "conversion_action_setup": _M(
        "bad_request",
        "wrong_conversion_action",
        False,
        "ad_account",
        "The conversion action or goal is not set up to take these uploads: fix its settings in the ad account",
    ),
    "data_policy": _M(
        "bad_request",
        "consent_or_policy",
        False,
        "tracker_setup",
        "The data sent breaks the platform's data rules: hash personal data, drop PII, send the consent fields",
    ),
    "no_consent": _M(
        "bad_request",
        "consent_or_policy",
        False,
        "nobody",
        "The user did not consent to tracking: this conversion cannot be sent, nothing to fix",
    ),
    "endpoint_not_found": _M(
        "bad_request",
        "endpoint_not_found",
        False,
        "tracker_setup",
        "The postback URL does not exist on the receiver: correct the URL",
    ),
    "bad_request": _M(
        "bad_request",
        "bad_request",
        False,
        "tracker_setup",
        "The receiver rejected the request: compare the postback URL with its documentation",
    ),
    # ---- other
    "receiver_state": _M(
        "other",
        "receiver_state",
        False,
        "network",
        "The offer or campaign is paused, capped or inactive at the receiver: check it with the network",
    ),
    "unexpected_response": _M(
        "other",
        "unexpected_response",
        False,
        "tracker_setup",
        "The receiver answered without a recognised error: check what it expects",
    ),
}

#: Meaning of a failed postback whose body says nothing recognisable, by HTTP status (``none`` = no status).
STATUS_MEANINGS: Final[dict[str, str]] = {
    "none": "no_response",
    "401": "token_invalid",
    "403": "no_permission",
    "404": "endpoint_not_found",
    "410": "endpoint_not_found",
    "408": "timeout",
    "413": "payload_invalid",
    "429": "throttled",
    "4xx": "bad_request",
    "5xx": "server_error",
    "other": "unexpected_response",
}

#: The default meaning of each error kind, for summaries by kind.
KIND_DEFAULTS: Final[dict[str, str]] = {
    "unreplaced_macro": "unreplaced_macro",
    "missing_click_id": "missing_click_id",
    "auth": "token_invalid",
    "rate_limit": "throttled",
    "duplicate": "duplicate",
    "time_window": "too_old",
    "no_response": "no_response",
    "server_error": "server_error",
    "bad_request": "bad_request",
    "other": "unexpected_response",
}

# --------------------------------------------------------------------------- recognising the platform

#: The host of a URL (lower case, without port), for :data:`HOST_PATTERNS`.
URL_HOST: Final = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)"


def _domains(*names: str) -> str:
    """A host that is one of ``names`` or a subdomain of one."""
    return r"(?:^|\.)(?:" + "|".join(n.replace(".", r"\.") for n in names) + ")$"


#: URL host → platform, first match wins.
HOST_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("meta", _domains("facebook.com", "facebook.net", "fb.com", "instagram.com")),
    (
        "google_ads",
        _domains(
            "googleads.googleapis.com",
            "googleadservices.com",
            "googleads.g.doubleclick.net",
            "adwords.google.com",
            "ads.google.com",
        ),
    ),
    ("tiktok", _domains("tiktok.com", "tiktokapis.com", "tiktokv.com")),
    ("microsoft_ads", _domains("bingads.microsoft.com", "bing.com", "ads.microsoft.com")),
    ("x", _domains("twitter.com", "x.com", "t.co")),
    ("snapchat", _domains("snapchat.com", "snap.com", "sc-static.net")),
    ("taboola", _domains("taboola.com")),
    ("outbrain", _domains("outbrain.com")),
    ("mgid", _domains("mgid.com")),
    (
        "affiliate_network",
        _domains(
            "affise.com",
            "affisereach.com",
            "everflow.io",
            "eflow.team",
            "hasoffers.com",
            "go2cloud.org",
            "tune.com",
            "cakemarketing.com",
            "offerslook.com",
            "scaleo.io",
            "trackier.com",
        )
        + r"|(?:^|\.)affiliate\.",
    ),
)

#: Integration (or traffic source) name → platform, first match wins.
NAME_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("meta", r"(?i)meta|facebook|instagram|(?-u:\b)fb(?-u:\b)"),
    ("google_ads", r"(?i)google|adwords|gclid"),
    ("tiktok", r"(?i)tik[ _-]?tok"),
    ("microsoft_ads", r"(?i)microsoft|bing"),
    ("x", r"(?i)twitter|^x(?:[ _-]?ads)?$|(?-u:\b)x ads(?-u:\b)"),
    ("snapchat", r"(?i)snap"),
    ("taboola", r"(?i)taboola"),
    ("outbrain", r"(?i)outbrain"),
    ("mgid", r"(?i)mgid"),
    ("affiliate_network", r"(?i)affise|everflow|hasoffers|tune|cake|network|affiliate|offerslook|scaleo"),
    ("s2s", r"(?i)^s2s$|postback|server"),
)

_META_MARK = r'OAuthException|FacebookApiException|GraphMethodException|CodedException|fbtrace_id|"error_subcode"'
_GOOGLE_MARK = (
    r"type\.googleapis\.com/google\.ads|googleads|[A-Za-z]+Error\.[A-Z][A-Z_]{3,}|(?:conversionUpload"
    r"|conversionAdjustmentUpload|authentication"
    r"|authorization|quota|request|internal|header|field|mutate)Error\b|[A-Z]+(?:_[A-Z]+)*_(?:GCLID|GBRAID|WBRAID)"
    r"|(?:EXPIRED|TOO_RECENT|UNPARSEABLE)_[A-Z_]+|OAUTH_TOKEN_[A-Z_]+|DEVELOPER_TOKEN_[A-Z_]+|CUSTOMER_NOT_[A-Z_]+"
)
_TIKTOK_MARK = r'"code"\s*:\s*"?[45]0[0-9]{3}(?:[^0-9]|$)|"code"\s*:\s*"?51[0-9]{3}(?:[^0-9]|$)'
_MICROSOFT_MARK = (
    r"OfflineConversion[A-Z][A-Za-z]*|AdApiFaultDetail|ApiFaultDetail|<ErrorCode>|\"ErrorCode\"|OperationError"
    r"|AuthenticationTokenExpired|CallRateExceeded|bingads|Microsoft Advertising|ArrayOfApiError|IPAddressNotAllowed"
)
_X_MARK = r'"errors"\s*:\s*\[\s*\{\s*"code"\s*:\s*(?:"[A-Z_]+"|[0-9]+)|twclid'
_SNAP_MARK = r'"request_status"\s*:\s*"(?:ERROR|FAILED)"|"debug_message"|"display_message"|"status"\s*:\s*"INVALID"'
_NETWORK_MARK = (
    r"(?i)conversion exists|offer (?:is )?(?:disabled|paused|inactive|not active)|secure (?:postback )?code"
    r"|broken click_?id|transaction[ _]?id (?:not found|already exists|is (?:missing|invalid))|payouts? not found"
    r"|goal not found|\"status\"\s*:\s*2\b"
)

#: Body shape → platform, first match wins (used when neither the URL nor the integration says).
BODY_MARKERS: Final[tuple[tuple[str, str], ...]] = (
    ("meta", _META_MARK),
    ("google_ads", _GOOGLE_MARK),
    ("microsoft_ads", _MICROSOFT_MARK),
    ("snapchat", _SNAP_MARK),
    ("x", _X_MARK),
    ("tiktok", _TIKTOK_MARK),
    ("affiliate_network", _NETWORK_MARK),
)

# --------------------------------------------------------------------------- body rules


class Rule(NamedTuple):
    """A body that contains ``pattern`` (and ``within``, when given) has meaning :data:`MEANINGS` ``[meaning]``."""

    meaning: str
    pattern: str
    within: str | None = None


def _enum(*names: str) -> str:
    """Google-style enum names as whole words (case-sensitive)."""
    return r"(?-u:\b)(?:" + "|".join(names) + r")(?-u:\b)"


def _code(key: str, codes: str) -> str:
    """A JSON ``"key": codes`` (number or quoted) not followed by another digit."""
    return rf'"{key}"\s*:\s*"?(?:{codes})(?:[^0-9]|$)'


#: Meaning of the gRPC status of a Google Ads API answer.
_GRPC_STATUS: Final[dict[str, str]] = {
    "UNAUTHENTICATED": "token_invalid",
    "PERMISSION_DENIED": "no_permission",
    "RESOURCE_EXHAUSTED": "throttled",
    "UNAVAILABLE": "server_error",
    "INTERNAL": "server_error",
}
_META_CODE = rf"{_code('code', '[0-9]+')}|\(#[0-9]+\)"
_META = f"{_META_MARK}|\\(#[0-9]+\\)"

# Where a platform's answer carries a documented code, the code decides; the platform's wording comes next
# (the same rules match the wording of networks and plain receivers); the generic codes of each platform
# (Meta 100, TikTok 40002, Google INVALID_ARGUMENT …) only apply when nothing more precise matched.
_PRECISE: Final[tuple[Rule, ...]] = (
    # --- Meta Graph API: OAuthException 190/102 and its subcodes, throttling, permissions, transient errors
    Rule("token_expired", _code("error_subcode", "463"), _META),
    Rule(
        "token_expired",
        r"(?i)(?:session|token) (?:has |is )?expired|expired (?:access )?token",
        _code("code", "190|102"),
    ),
    Rule("account_disabled", _code("error_subcode", "459|464"), _META),
    Rule("token_invalid", f"{_code('code', '190|102|2500')}|\\(#190\\)", _META),
    Rule(
        "throttled",
        f"{_code('code', '4|17|32|341|613|80000|8000[1-9]|8001[0-4]')}|\\(#(?:4|17|32|341|613)\\)"
        f"|{_code('error_subcode', '2446079|1487742|1504022|1504039')}",
        _META,
    ),
    Rule("no_permission", f"{_code('code', '3|10|2[0-9][0-9]')}|\\(#(?:3|10|2[0-9][0-9])\\)", _META),
    Rule("data_policy", _code("code", "2804030"), _META),
    Rule("consent_or_policy", f"{_code('code', '368')}|\\(#368\\)", _META),
    Rule("duplicate", _code("code", "506"), _META),
    Rule("server_error", f"{_code('code', '1|2')}|\\(#[12]\\)", _META),
    # --- Google Ads API enums (ConversionUploadError, ConversionAdjustmentUploadError, AuthenticationError,
    # AuthorizationError, QuotaError, InternalError …) and legacy AdWords OfflineConversionError reasons
    Rule("token_expired", _enum("OAUTH_TOKEN_EXPIRED")),
    Rule(
        "token_invalid",
        _enum(
            "OAUTH_TOKEN_INVALID",
            "OAUTH_TOKEN_REVOKED",
            "OAUTH_TOKEN_DISABLED",
            "OAUTH_TOKEN_HEADER_INVALID",
            "AUTHENTICATION_ERROR",
            "GOOGLE_ACCOUNT_AUTHENTICATION_FAILED",
            "GOOGLE_ACCOUNT_COOKIE_INVALID",
            "GOOGLE_ACCOUNT_USER_AND_ADS_USER_MISMATCH",
            "GOOGLE_ACCOUNT_DELETED",
            "LOGIN_COOKIE_REQUIRED",
            "LOGIN_COOKIE_INVALID",
            "USER_ID_INVALID",
            "INVALID_EMAIL_ADDRESS",
            "CLIENT_CUSTOMER_ID_INVALID",
            "CUSTOMER_NOT_FOUND",
            "TWO_STEP_VERIFICATION_NOT_ENROLLED",
            "ADVANCED_PROTECTION_NOT_ENROLLED",
        ),
    ),
    Rule("developer_token_invalid", _enum("DEVELOPER_TOKEN_INVALID")),
    Rule(
        "developer_token_access",
        _enum(
            "DEVELOPER_TOKEN_NOT_ON_ALLOWLIST",
            "DEVELOPER_TOKEN_PROHIBITED",
            "DEVELOPER_TOKEN_NOT_APPROVED",
            "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION",
            "CLOUD_PROJECT_NOT_UNDER_ORGANIZATION",
            "ORGANIZATION_NOT_RECOGNIZED",
            "ORGANIZATION_NOT_APPROVED",
            "ORGANIZATION_NOT_ASSOCIATED_WITH_DEVELOPER_TOKEN",
            "MISSING_TOS",
            "PROJECT_DISABLED",
            "DEVELOPER_TOKEN_PARAMETER_MISSING",
        ),
    ),
    Rule("account_disabled", _enum("CUSTOMER_NOT_ENABLED", "ACTION_NOT_PERMITTED_FOR_SUSPENDED_ACCOUNT")),
    Rule(
        "no_permission",
        _enum(
            "USER_PERMISSION_DENIED",
            "NOT_ADS_USER",
            "AUTHORIZATION_ERROR",
            "ACTION_NOT_PERMITTED",
            "INCOMPLETE_SIGNUP",
            "INVALID_LOGIN_CUSTOMER_ID_SERVING_CUSTOMER_ID_COMBINATION",
            "INVALID_LOGIN_CUSTOMER_ID",
            "SERVICE_ACCESS_DENIED",
            "ACCESS_DENIED_FOR_ACCOUNT_TYPE",
            "METRIC_ACCESS_DENIED",
            "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
            "UNAUTHORIZED_CUSTOMER",
            "UNAUTHORIZED_USER",
            "ACCESS_PROHIBITED",
        ),
    ),
    Rule(
        "daily_quota",
        r'"quotaError"\s*:\s*"RESOURCE_EXHAUSTED"|'
        + _enum("EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION", "PAYMENTS_PROFILE_ACTIVATION_RATE_LIMIT_EXCEEDED"),
    ),
    Rule(
        "throttled",
        _enum("RESOURCE_TEMPORARILY_EXHAUSTED", "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION"),
    ),
    Rule("google_invalid_click_id", _enum("UNPARSEABLE_GCLID", "UNPARSEABLE_GBRAID", "UNPARSEABLE_WBRAID")),
    Rule("click_not_found", _enum("EVENT_NOT_FOUND", "CLICK_NOT_FOUND", "CALL_NOT_FOUND", "INVALID_CLICK")),
    Rule("unknown_click", _enum("CONVERSION_NOT_FOUND")),
    Rule("too_old", _enum("EXPIRED_EVENT", "EXPIRED_CALL", "EXPIRED_CLICK", "CONVERSION_EXPIRED")),
    Rule(
        "too_recent",
        _enum(
            "TOO_RECENT_EVENT",
            "TOO_RECENT_CALL",
            "TOO_RECENT_CLICK",
            "TOO_RECENT_CONVERSION_ACTION",
            "TOO_RECENT_CONVERSION_TYPE",
            "TOO_RECENT_CONVERSION",
        ),
    ),
    Rule(
        "before_click",
        _enum(
            "CONVERSION_PRECEDES_EVENT",
            "CONVERSION_PRECEDES_CALL",
            "CONVERSION_PRECEDES_CLICK",
            "ADJUSTMENT_PRECEDES_CONVERSION",
        ),
    ),
    Rule("before_click", r"(?i)(?:occurred |is )?(?:before|earlier than|precedes) the (?:associated )?conversion"),
    Rule("in_future", _enum("FUTURE_CONVERSION_TIME", "LATER_THAN_MAXIMUM_DATE")),
    Rule(
        "duplicate",
        _enum(
            "CLICK_CONVERSION_ALREADY_EXISTS",
            "CALL_CONVERSION_ALREADY_EXISTS",
            "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
            "DUPLICATE_CALL_CONVERSION_IN_REQUEST",
            "ORDER_ID_ALREADY_IN_USE",
            "DUPLICATE_ORDER_ID",
            "CONVERSION_ALREADY_RETRACTED",
            "CONVERSION_ALREADY_ENHANCED",
            "RESTATEMENT_ALREADY_EXISTS",
            "DUPLICATE_ADJUSTMENT_IN_REQUEST",
            "DUPLICATE_ENHANCEMENT_IN_REQUEST",
            "MORE_RECENT_RESTATEMENT_FOUND",
        ),
    ),
    Rule("wrong_account", _enum("INVALID_CUSTOMER_FOR_CLICK", "INVALID_CUSTOMER_FOR_CALL", "INVALID_CUSTOMER_ID")),
    Rule("no_consent", _enum("CONVERSION_NOT_COMPLIANT_WITH_ATT_POLICY")),
    Rule("data_policy", _enum("CUSTOM_VARIABLE_VALUE_CONTAINS_PII", "ORDER_ID_CONTAINS_PII")),
    Rule(
        "consent_or_policy",
        _enum(
            "CUSTOMER_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS",
            "CUSTOMER_DATA_POLICY_PROHIBITS_ENHANCEMENT",
            "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
        ),
    ),
    Rule("wrong_conversion_action", _enum("NO_CONVERSION_ACTION_FOUND", "INVALID_CONVERSION_TYPE")),
    Rule(
        "conversion_action_setup",
        _enum(
            "INVALID_CONVERSION_ACTION_TYPE",
            "CONVERSION_TRACKING_NOT_ENABLED_AT_IMPRESSION_TIME",
            "CONVERSION_TRACKING_NOT_ENABLED_AT_CALL_TIME",
            "CLICK_MISSING_CONVERSION_LABEL",
            "CUSTOM_VARIABLE_NOT_ENABLED",
            "CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
            "EXTERNAL_ATTRIBUTION_DATA_SET_FOR_NON_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
            "EXTERNAL_ATTRIBUTION_DATA_NOT_SET_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
            "ORDER_ID_NOT_PERMITTED_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
            "EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION_NOT_PERMITTED_WITH_USER_IDENTIFIER",
            "ONE_PER_CLICK_CONVERSION_ACTION_NOT_PERMITTED_WITH_BRAID",
            "CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCEMENT",
            "CANNOT_RESTATE_CONVERSION_ACTION_THAT_ALWAYS_USES_DEFAULT_CONVERSION_VALUE",
        ),
    ),
    Rule("server_error", _enum("INTERNAL_ERROR", "TRANSIENT_ERROR", "DEADLINE_EXCEEDED")),
    # the gRPC status of a Google answer, when no finer error code was given
    *(Rule(meaning, _enum(status)) for status, meaning in _GRPC_STATUS.items()),
    # --- Microsoft Advertising operation error codes (SOAP faults and JSON)
    Rule("token_expired", _enum("AuthenticationTokenExpired", "OAuthTokenExpired")),
    Rule(
        "token_invalid",
        _enum(
            "InvalidCredentials", "InvalidAuthenticationToken", "AuthenticationTokenInvalid", "InvalidDeveloperToken"
        ),
    ),
    Rule(
        "no_permission",
        _enum("UserIsNotAuthorized", "CustomerIdHasToBeSpecified", "AccountIdHasToBeSpecified", "UserNotAuthorized"),
    ),
    Rule("throttled", _enum("CallRateExceeded", "ConcurrentRequestOverLimit", "CallLimitExceeded")),
    Rule("no_permission", _enum("IPAddressNotAllowed")),
    Rule("microsoft_invalid_click_id", r"OfflineConversion[A-Za-z]*ClickId(?:Invalid|Format)[A-Za-z]*"),
    Rule("missing_click_id", r"OfflineConversion[A-Za-z]*ClickId(?:Null|Empty|Required|Missing)[A-Za-z]*"),
    Rule("duplicate", r"OfflineConversion[A-Za-z]*(?:Duplicate|AlreadyExists|AlreadyApplied)[A-Za-z]*"),
    Rule("in_future", r"(?:OfflineConversion|Future)[A-Za-z]*(?:Future[A-Za-z]*|TimeCannotBeSet)"),
    Rule("before_click", r"[A-Za-z]*TimeEarlierThan(?:Click|Conversion)Time|OfflineConversion[A-Za-z]*BeforeClick"),
    Rule(
        "too_old",
        r"OfflineConversion[A-Za-z]*(?:OutOfWindow|TooOld|Expired)|ClickIdDateTimeOutsideGoalConversionWindow",
    ),
    Rule("too_recent", r"OfflineConversion[A-Za-z]*TooRecent"),
    Rule("data_policy", _enum("ConversionEmailAddressIsNotHashed", "ConversionPhoneNumberIsNotHashed")),
    Rule(
        "conversion_action_setup", _enum("NotEligibleForEnhancedConversions", "GoalNotEligibleForExternalAttribution")
    ),
    Rule("wrong_conversion_action", r"OfflineConversion[A-Za-z]*Name(?:Invalid|NullOrEmpty)"),
    Rule("server_error", _enum("InternalError") + r"|<Code>0</Code>"),
    # --- TikTok Business API return codes
    Rule("throttled", _code("code", "40100|40133|51021|rate_limit_exceeded")),
    Rule("token_expired", _code("code", "40102|40107")),
    Rule("no_permission", _code("code", "40001|40106|40120|40121|scope_not_authorized|scope_permission_missed")),
    Rule("token_invalid", _code("code", "401[0-9][0-9]|access_token_invalid")),
    Rule("server_error", _code("code", "5[01][0-9]{3}|internal_error")),
    # --- X (Twitter) API error codes
    Rule("token_invalid", _code("code", "32|89|99|135|215|416"), _X_MARK),
    Rule("account_disabled", _code("code", "64|326"), _X_MARK),
    Rule("no_permission", _code("code", "87|220|261|UNAUTHORIZED_ACCESS|UNAUTHORIZED_CLIENT_APPLICATION"), _X_MARK),
    Rule("throttled", _code("code", "88|TOO_MANY_REQUESTS|OVER_CAPACITY"), _X_MARK),
    Rule("server_error", _code("code", "130|131|SERVICE_UNAVAILABLE|INTERNAL_ERROR"), _X_MARK),
)

_IDS = (
    r"(?-u:\b)(?:gclid|gbraid|wbraid|fbclid|fbc|ttclid|msclkid|twclid|scclid|click[ _-]?id|clickid|external[ _-]?id"
    r"|sub[ _]?id|cid|transaction[ _]?id|trans\. ?id)"
)
_FIELD = r"(?:[ _-]?(?:param(?:eter)?|value|field))?"
_TOKEN = r"(?:(?:oauth|2\.0|access|auth|authentication|bearer|api|developer|refresh|session|capi)[ _-]?){0,3}token"

_WORDING: Final[tuple[Rule, ...]] = (
    # --- click id
    Rule(
        "missing_click_id",
        rf"(?i)(?-u:\b)(?:missing|no|empty|blank|without)(?: the| a)? {_IDS}|missing[ _]mandatory[ _]param[a-z]* click"
        rf"|{_IDS}{_FIELD}[^A-Za-z0-9]{{0,3}}(?:is |was |are )?(?:missing|required|empty|blank|null|not (?:provided"
        rf"|set|present"
        rf"|passed|specified))|{_IDS}[^A-Za-z0-9]{{0,3}}(?:cannot|can't|can not|must not|should not|may not) be"
        r" (?:empty|blank|null)|missing_gclid|missing_click_?id|at least one user identifier",
    ),
    Rule("google_invalid_click_id", r"(?i)gclid could not be decoded|google click id could not be decoded"),
    Rule(
        "invalid_click_id",
        rf"(?i)(?:^|\")too short\.?(?:\"|$)|unparseable_gclid|could not be decoded|(?:broken|invalid|malformed|bad"
        rf"|wrong|incorrect)"
        rf"[ _]{_IDS}|{_IDS}{_FIELD}[^A-Za-z0-9]{{0,3}}(?:is |was |has )?(?:invalid|malformed|incorrect|not valid"
        rf"|been modified"
        r"|modified|incorrectly formatted|not parsable|unparsable|could not be parsed|too (?:long|short))|(?:gbraid"
        r"|wbraid) parameter was not modified",
    ),
    Rule(
        "click_not_found",
        rf"(?i){_IDS}[^A-Za-z0-9]{{0,3}}(?:was |is )?not found|click (?:was |is )?not found|unknown (?:click|{_IDS})"
        r"|no (?:such )?click|could not be attributed to a click|can't be matched to a click"
        r"|does not exist in the system"
        r"|transaction[ _]?id (?:was |is )?not found|could not find (?:the )?click"
        r"|(?:click|call)[^.]{0,60}(?:can't|cannot|could not) be found|could not be found in the system",
    ),
    Rule("unknown_click", r"(?i)conversion (?:for|with)[^.]{0,60}(?:can't|cannot|could not) be found"),
    # --- auth
    Rule(
        "developer_token_access",
        r"(?i)developer token is (?:only approved|not (?:approved|allowed|on the allow))|apply for (?:basic|standard)"
        r" access|project (?:is only approved|does not have permission)|developer must sign the terms of service"
        r"|cloud organization associated with the project|google cloud project is not|developer-token parameter",
    ),
    Rule("developer_token_invalid", r"(?i)developer token is (?:not valid|invalid)|invalid developer token"),
    Rule(
        "token_expired",
        r"(?i)(?:session|token|credentials?|password|api[ _-]?key|login)[^.\n]{0,30}(?:has|is|was"
        r"|had) (?:been )?expired"
        rf"|expired (?:{_TOKEN}|session|credentials?)|token_expired|token (?:has )?expired",
    ),
    Rule("network_auth", r"(?i)secure (?:postback )?code"),
    Rule(
        "network_ip",
        r"(?i)ip[ -]?address is denied|ip (?:address )?(?:is )?not (?:whitelisted|allowed)|access denied for ip"
        r"|whitelist",
    ),
    Rule(
        "token_invalid",
        rf"(?i)error validating access token|session key invalid|(?:invalid|revoked|malformed|missing|bad|wrong"
        rf"|incorrect)"
        rf" {_TOKEN}|{_TOKEN}[^A-Za-z0-9]{{0,3}}(?:is |has |has been |was )?(?:invalid|revoked|incorrect|not valid"
        r"|malformed|missing|required|null|empty)|(?:password|credentials?|api[ _-]?key) (?:is "
        r"|has been )?(?:revoked|invalid)"
        r"|access token (?:could not|cannot) be (?:decrypted|parsed)|cannot parse access token"
        r"|access_token_invalid|unauthenticated|unauthori[sz]ed|invalid_grant|invalid_client|oauth_token_[a-z_]+"
        r"|developer_token_[a-z_]+|authentication (?:failed|error|required)|could not authenticate|bad authentication"
        r"|invalid (?:api[ _-]?key|credentials|authentication|authorization|signature)|not authenticated",
    ),
    Rule(
        "token_invalid",
        r"(?i)(?:token|cookie|credentials?)[^.]{0,30} (?:is|was|has been) (?:invalid|not valid|revoked|disabled"
        r"|malformed)"
        r"|authentication (?:of the request )?failed|google account is deleted|no customer found"
        r"|authentication settings|required for authentication",
    ),
    Rule(
        "no_permission",
        r"(?i)permission(?:s)? (?:denied|error)|permission_denied|insufficient (?:permission|scope|privilege)"
        r"|(?:does not|doesn't|do not|don't) have (?:the )?(?:permission|access)|not (?:authori[sz]ed|allowed"
        r"|permitted) to (?:access|perform|use|operate|call|make|manage|view|send|upload|post)"
        r"|forbidden|access (?:is )?denied|requires? (?:the )?(?:[a-z_]+ )?permission|you don't have access"
        r"|(?:has|have) no (?:permission|access)",
    ),
    Rule(
        "no_permission",
        r"(?i)authori[sz]ation (?:of the client )?failed|signup not complete|(?:^|[^a-z])no permission to"
        r"|belongs to another ads system"
        r"|access (?:is )?prohibited|not allowlisted|not on the allow-?list|login customer id"
        r"|not associated with a google ads account",
    ),
    Rule(
        "account_disabled",
        r"(?i)account (?:is |has been )?(?:temporarily )?(?:disabled|suspended|deactivated|locked|banned|restricted)"
        r"|suspended account|not yet enabled or has been deactivated|has been deactivated",
    ),
    # --- rate limits
    Rule(
        "daily_quota",
        r"(?i)daily (?:quota|limit|operations? limit|request limit)|quota(?: [a-z]+)? (?:exceeded|exhausted|reached)"
        r"|exceeded (?:the |your |its )?(?:[a-z]+ )?quota|per day|(?:request|call|api) quota",
    ),
    Rule(
        "throttled",
        r"(?i)rate[ _-]?limit|too many (?:[a-z]+ )?(?:requests|calls)|exceeded the (?:number of calls|call limit"
        r"|request limit)|request limit reached|resource_exhausted"
        r"|resource has been exhausted|(?:request|call|api|usage|hourly|qps) limit|throttl"
        r"|requests? (?:made )?too frequent"
        r"|slow down|over capacity|too many connections",
    ),
    # --- duplicates
    Rule(
        "duplicate",
        r"(?i)duplicat|already[ _]exists|conversion exists|(?:same|this) (?:click|call) and conversion_date_time"
        r"|previously recorded|already (?:been )?(?:recorded|processed|uploaded|tracked|registered|reported|counted"
        r"|received|converted|imported|applied|approved|retracted)|double conversion|repeated conversion",
    ),
    Rule(
        "duplicate",
        r"(?i)with the same (?:order id|conversion_date_time|adjustment_date_time)"
        r"|same conversion_date_time as an existing"
        r"|already has enhancements|prior a restatement|multiple enhancements have the same",
    ),
    # --- time window
    Rule(
        "before_click",
        r"(?i)(?:precedes|before|earlier than) (?:the |its |associated )*click|_precedes_|conversion_precedes"
        r"|happened before the click|before the (?:associated )?(?:call|impression)",
    ),
    Rule(
        "too_recent",
        r"(?i)too[ _](?:recent|early)|less than [0-9]+ hours ago|occurred too recently|(?:created"
        r"|happened) too recently"
        r"|just created|after [0-9]+ hours have passed|try (?:importing|uploading)? ?again (?:in|after) [0-9]+ hours",
    ),
    Rule(
        "in_future",
        r"(?i)in the future|too far in the future|future (?:conversion |event )?(?:time|date|timestamp)",
    ),
    Rule(
        "too_old",
        r"(?i)too[ _](?:old|late)|too far in the past|older than|outside (?:of )?(?:the )?[a-z ]{0,30}window"
        r"|(?:lookback|attribution|conversion|click-through) window|timestamp (?:invalid|out of range)|out of range"
        r"|event[ _]?time[^.]{0,40}(?:within|older|old|past|days|window|range)|more than [0-9]+ days"
        r"|(?:click|conversion|event|offer|link|window|lookback)[a-z ]{0,20}(?:has |is )?expired"
        r"|expired (?:click|event|conversion|call)",
    ),
    # --- consent and policy, conversion action
    Rule("payload_invalid", r"(?i)insufficient (?:pii|user data|identifiers|customer information)"),
    Rule("no_consent", r"(?i)(?:didn't|did not|has not|hasn't) consent|(?:att|app tracking transparency) polic"),
    Rule(
        "data_policy",
        r"(?i)limited data use|data_processing_options|personally[ -]identifiable|(?-u:\b)pii(?-u:\b)|unhashed"
        r"|not (?:been )?hashed|must be hashed",
    ),
    Rule(
        "consent_or_policy",
        r"(?i)consent|gdpr|customer data (?:processing )?terms|data policies|not compliant"
        r"|violat[a-z]* [a-z ]{0,20}polic|polic(?:y|ies) violation",
    ),
    Rule(
        "wrong_conversion_action",
        r"(?i)conversion action (?:specified )?(?:in the [a-z ]+ )?(?:cannot be found|isn't set up|is not set up)"
        r"|(?:goal|payouts?|payments?|event[ _]?(?:type|name|source)|pixel|dataset|conversion (?:action|goal|name))"
        r" (?:was |is )?(?:not found|does not exist|invalid|unknown)|invalid (?:conversion (?:action|goal|name)|event"
        r"[ _]?(?:name|type)|pixel)|not a single event tag|event id was not found|does not have an import conversion"
        r"|(?:campaign|offer|goal) (?:id )?(?:was |is )?not found|unsupported post request"
        r"|does not exist, cannot be loaded"
        r"|(?:object|pixel|event source|dataset|goal|conversion)[^.]{0,40}(?:doesn't|does not|don't|do not) exist",
    ),
    # --- receiver state
    Rule(
        "receiver_state",
        r"(?i)offer (?:is |was )?(?:disabled|paused|inactive|not active|expired|stopped|archived)|campaign (?:is )?"
        r"(?:not active|paused|inactive|disabled)|(?:daily |monthly |total )?caps? (?:is |are )?(?:reached|exceeded)"
        r"|capped|over caps?"
        r"|budget (?:is )?(?:exhausted|reached)|conversion status is not pending|affiliate (?:is )?(?:blocked|banned)",
    ),
    # --- no response (applies only when there was no HTTP status)
    Rule(
        "dns_failure",
        r"(?i)could ?n[o']t resolve|could not resolve|no such host|enotfound|eai_again|name or service not known"
        r"|unknownhostexception|getaddrinfo|temporary failure in name resolution|name resolution|dns",
    ),
    Rule(
        "tls_error",
        r"(?i)ssl|tls|certificate|x509|handshake",
    ),
    Rule(
        "timeout",
        r"(?i)timed? ?out|timeout|deadline exceeded|etimedout|esockettimedout|curl error 28",
    ),
    Rule(
        "connection_failed",
        r"(?i)connection (?:refused|reset|aborted|closed|was closed)|econnrefused|econnreset|econnaborted|epipe"
        r"|failed to (?:connect|establish a new connection)|could ?n[o']t connect|socket hang up|broken pipe"
        r"|empty reply"
        r"|network is unreachable"
        r"|no route to host|unexpected eof|(?-u:\b)eof(?-u:\b)|recv failure|send failure|remote end closed",
    ),
    # --- server side
    Rule(
        "server_error",
        r"(?i)internal (?:server )?error|an unknown error (?:has )?occurred|transient error"
        r"|unexpected (?:[a-z]+ )?error|took longer than (?:a"
        r"|the) deadline|service (?:is )?(?:temporarily )?unavailable|bad gateway|system error"
        r"|unexpected error|please retry (?:your request )?later|try again later|temporar(?:y|ily) (?:error|issue"
        r"|failure)"
        r"|\"is_transient\"\s*:\s*true|backend error|server error",
    ),
)

_GENERIC: Final[tuple[Rule, ...]] = (
    # --- last resort codes: Meta 100 (invalid parameter), TikTok 40002 and friends, Google INVALID_ARGUMENT
    Rule("payload_invalid", f"{_code('code', '100|[0-9]+')}|\\(#[0-9]+\\)", _META),
    Rule("payload_invalid", _code("code", "400[0-9]{2}|40[2-9][0-9]{2}|41[0-9]{3}|invalid_params")),
    Rule("payload_invalid", _enum("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE")),
    Rule("endpoint_not_found", _enum("NOT_FOUND")),
    Rule("payload_invalid", r"OfflineConversion[A-Z][A-Za-z]*|<ErrorCode>[A-Za-z]+</ErrorCode>"),
    Rule("payload_invalid", r'"errors"\s*:\s*\[\s*\{\s*"code"\s*:\s*"(?:INVALID|MISSING)_[A-Z_]+"'),
    Rule(
        "payload_invalid",
        r"(?i)invalid (?:parameter|value|request|json|payload|field|format|argument)|is (?:required|invalid|not valid)"
        r"|missing (?:required |mandatory )?(?:parameter|field|value|argument)|malformed|unprocessable|validation"
        r"|must be (?:a|an|one of|provided|present)|not a valid|bad request|required (?:parameter|field)"
        r"|can't use both|cannot (?:set|use) both|use only (?:1|one)|fewer than [0-9]+|exceeds? the (?:allowed|maximum)"
        r"|not parsable|unparsable|deprecated version|no longer supported|has been sunset"
        r"|(?-u:\b)(?:missing|invalid)(?-u:\b)",
    ),
)

#: Body rules, first match wins.
BODY_RULES: Final[tuple[Rule, ...]] = (*_PRECISE, *_WORDING, *_GENERIC)

#: Platform code extraction: (``within`` marker or None, pattern with one capture group), first match wins.
CODE_PATTERNS: Final[tuple[tuple[str | None, str], ...]] = (
    (_META_MARK, r'"code"\s*:\s*([0-9]+)'),
    (None, r"\(#([0-9]+)\)"),
    (None, r'"[a-z][A-Za-z]*Error"\s*:\s*"([A-Z][A-Z0-9_]+)"'),
    (None, r"[A-Za-z]+Error\.([A-Z][A-Z0-9_]+)"),
    (None, r"(OfflineConversion[A-Za-z]+)"),
    (None, r'(?:<ErrorCode>|"ErrorCode"\s*:\s*")([A-Za-z]+)'),
    (None, r"<Code>([A-Za-z][A-Za-z0-9]+)</Code>"),
    (None, r'"(?:error_)?code"\s*:\s*"?([0-9]{3,6})(?:[^0-9]|$)'),
    (None, r'"(?:error_)?code"\s*:\s*"([A-Za-z][A-Za-z0-9_]+)"'),
    (None, r"(?-u:\b)([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)(?-u:\b)"),
    (None, r"(?i)curl error ([0-9]+)"),
    (None, r"(?i)error code:? ([0-9]{3,4})(?-u:\b)"),
    (None, r'"status"\s*:\s*"([A-Z][A-Z_]+)"'),
    (None, r"(?-u:\b)(E[A-Z]{4,})(?-u:\b)"),
    (None, r'"(?:error_)?code"\s*:\s*"?([0-9]{1,2})(?:[^0-9]|$)'),
)
#: A Meta answer's subcode, appended to its code (``190/463``).
META_SUBCODE: Final = r'"error_subcode"\s*:\s*([0-9]+)'
META_MARK: Final = _META_MARK

_unknown = {r.meaning for r in BODY_RULES} - set(MEANINGS)
_unknown |= (set(STATUS_MEANINGS.values()) | set(KIND_DEFAULTS.values())) - set(MEANINGS)
assert not _unknown, f"rules name unknown meanings: {sorted(_unknown)}"
