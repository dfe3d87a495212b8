"""Column spellings: the ClickFlare API's report and event-log names resolve to canonical columns."""

from __future__ import annotations

import pytest

from cfanalytics.columns import resolve

#: Spellings public clients of the API use (report vocabulary in camelCase, event logs in PascalCase;
#: sources in cfanalytics/pull/_vocabulary.py), and the canonical column each must land in.
API_SPELLINGS = {
    "deviceUserAgent": "user_agent",
    "DeviceUserAgent": "user_agent",
    "connectionReferrer": "referrer",
    "ConnectionReferrer": "referrer",
    "deviceMainLanguage": "language",
    "DeviceMainLanguage": "language",
    "connectionIP": "ip",
    "ConnectionIP": "ip",
    "locationCountry": "country",
    "LocationCountry": "country",
    "landingID": "landing_id",
    "LandingID": "landing_id",
    "locationRegion": "region",
    "locationCity": "city",
    "connectionISP": "isp",
    "connectionType": "connection_type",
    "deviceType": "device_type",
    "deviceOS": "os",
    "deviceOsVersion": "os_version",
    "deviceBrowser": "browser",
    "deviceBrowserVersion": "browser_version",
    "deviceBrand": "device_brand",
    "deviceModel": "device_model",
    "botScore": "bot_score",
    "landingName": "landing_name",
    "trafficSourceName": "traffic_source_name",
    "offerName": "offer_name",
    "affiliateNetworkName": "affiliate_network_name",
}


@pytest.mark.parametrize(("spelling", "column"), sorted(API_SPELLINGS.items()))
def test_api_spellings_resolve_to_their_column(spelling: str, column: str) -> None:
    res = resolve(["ClickID", "VisitTime", "CampaignID", spelling], kind="visits")
    assert res.canonical.get(spelling) == column
    assert spelling not in res.extras


@pytest.mark.parametrize(
    ("spelling", "extra"),
    [
        ("LocationCountryName", "location_country_name"),  # a full name: country holds ISO-2 codes
        ("visitID", "visit_id"),
        ("postalCode", "postal_code"),
        ("trackingField20", "tracking_field20"),
        ("param1", "param1"),
    ],
)
def test_api_fields_without_a_canonical_column_are_kept_as_extras(spelling: str, extra: str) -> None:
    res = resolve(["ClickID", "VisitTime", "CampaignID", spelling], kind="visits")
    assert res.extras == {spelling: extra}
    assert set(res.canonical) == {"ClickID", "VisitTime", "CampaignID"}


def test_an_event_log_page_of_the_api_is_recognised() -> None:
    """The default fields of an event-log request make an event log split by EventType."""
    headers = ["EventType", "ClickID", "VisitID", "VisitTime", "ClickTime", "ConversionDate", "CampaignID",
               "ConnectionIP", "ConnectionReferrer", "DeviceUserAgent", "TrackingField1", "Ct"]  # fmt: skip
    res = resolve(headers)
    assert res.kind == "events"
    assert {res.canonical[h] for h in ("ConnectionIP", "ConnectionReferrer", "DeviceUserAgent")} == {
        "ip",
        "referrer",
        "user_agent",
    }
    assert res.extras == {"VisitID": "visit_id", "TrackingField1": "tracking_field1"}
