"""The destinations: ad platforms known by their hosts and integration names, their click-id
parameters and upload windows (each rule next to the page that documents it).

>>> platform_of("https://graph.facebook.com/v21.0/1/events?access_token=x", None)
'meta'
>>> platform_of("https://ts.example/pb?cid=1", "Google Ads API - MCC 431")
'google_ads'
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from cfanalytics.values import MACRO_PATTERN

#: Ad-platform destinations, each with the query parameter naming its click id.
CLICK_PARAM: Final[dict[str, str]] = {
    "google_ads": "gclid",
    "meta": "fbclid",
    "tiktok": "ttclid",
    "microsoft": "msclkid",
}
DESTINATIONS: Final = ("google_ads", "meta", "tiktok", "microsoft", "s2s")
#: The destination of an ad platform with an API this package writes no file for (X, Snapchat).
UNSUPPORTED: Final = "unsupported"

#: Upload window per platform: (reference time, longest age at upload, where the rule is documented).
WINDOWS: Final[dict[str, tuple[str, timedelta, str]]] = {
    # Offline click conversions are accepted up to 90 days after the click (the click-through window).
    # https://support.google.com/google-ads/answer/7014069 ; https://support.google.com/google-ads/answer/13321563
    "google_ads": ("click", timedelta(days=90), "https://support.google.com/google-ads/answer/7014069"),
    # event_time "can be up to 7 days before you send an event"; older fails the whole request.
    # https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/
    "meta": (
        "event",
        timedelta(days=7),
        "https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event/",
    ),
    # TikTok's Events API page found no longer limit than Meta's for web events; 7 days is kept as the
    # conservative window. https://ads.tiktok.com/help/article/events-api
    "tiktok": ("event", timedelta(days=7), "https://ads.tiktok.com/help/article/events-api"),
    # Offline conversions are matched to a Microsoft Click ID within the goal's conversion window, 90 days at
    # most; the pages found do not state a separate upload limit, so Google's 90 days from the click is kept.
    # https://learn.microsoft.com/en-us/advertising/campaign-management-service/offlineconversion?view=bingads-13
    "microsoft": (
        "click",
        timedelta(days=90),
        "https://learn.microsoft.com/en-us/advertising/campaign-management-service/offlineconversion?view=bingads-13",
    ),
}

_MACRO = re.compile(MACRO_PATTERN)
_HOSTS: Final = (
    ("facebook.com", "meta"),
    ("facebook.net", "meta"),
    ("googleads.googleapis.com", "google_ads"),
    ("googleadservices.com", "google_ads"),
    ("tiktok.com", "tiktok"),
    ("bing.com", "microsoft"),
    ("microsoft.com", "microsoft"),
    ("ads-api.twitter.com", UNSUPPORTED),
    ("ads-api.x.com", UNSUPPORTED),
    ("tr.snapchat.com", UNSUPPORTED),
)
#: API platforms whose events this package writes no file for (a GET of the old URL would not send them).
_API_ONLY: Final = frozenset({"x", "twitter", "snapchat"})
_NAMES: Final = (
    ("meta", "meta"),
    ("facebook", "meta"),
    ("google", "google_ads"),
    ("tiktok", "tiktok"),
    ("microsoft", "microsoft"),
    ("bing", "microsoft"),
)


def platform_of(url: str | None, integration_name: str | None) -> str:
    """The destination of a postback: an ad platform from its URL host or integration name, else ``s2s``."""
    host = (urlsplit(url).hostname or "") if url else ""
    for suffix, platform in _HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return platform
    name = (integration_name or "").lower()
    for word, platform in _NAMES:
        if word in name:
            return platform
    return "s2s"


def destination_of(platform: Any) -> str:
    """A ``platform`` value from elsewhere (``"Google Ads"``, ``"facebook"``, ``"bing"``…) as a destination here.

    >>> destination_of("Google Ads"), destination_of("microsoft_ads"), destination_of("taboola"), destination_of("x")
    ('google_ads', 'microsoft', 's2s', 'unsupported')
    """
    name = norm(str(platform or ""))
    if name in _API_ONLY:
        return UNSUPPORTED
    for word, dest in _NAMES:
        if word in name:
            return dest
    return "s2s"


def usable_click_id(value: Any) -> str | None:
    """``value`` if it can be a click id: non-empty, no macro, no blank, at most 500 characters."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > 500 or _MACRO.search(value) or any(c.isspace() for c in value):
        return None
    if value.lower() in ("null", "undefined", "none", "nil"):
        return None
    return value


def query_of(url: str | None) -> dict[str, str]:
    """The query parameters of ``url`` (blank values kept; the last of a repeated name wins)."""
    if not url or "?" not in url:
        return {}
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def norm(name: str) -> str:
    """``name`` lower case, letters and digits only (``Visitor_ID`` → ``visitorid``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def endpoint_of(url: str | None) -> tuple[str | None, str | None]:
    """An ad platform's endpoint (scheme, host, path: never the query, which holds tokens) and pixel id.

    >>> endpoint_of("https://graph.facebook.com/v21.0/729/events?access_token=EAAx")
    ('https://graph.facebook.com/v21.0/729/events', '729')
    >>> endpoint_of("https://business-api.tiktok.com/open_api/v1.3/event/track/?pixel_code=CJC&ttclid=E.C.P.x")
    ('https://business-api.tiktok.com/open_api/v1.3/event/track/', 'CJC')
    """
    if not url:
        return None, None
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None, None
    endpoint = f"{parts.scheme}://{parts.hostname}{parts.path}"
    pixel = query_of(url).get("pixel_code")
    if pixel is None:
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) >= 2 and segments[-1] == "events":
            pixel = segments[-2]
    return endpoint, pixel
