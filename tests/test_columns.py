"""Column spellings: the ClickFlare API's report and event-log names resolve to canonical columns."""

from __future__ import annotations

import pytest

from cfanalytics import columns
from cfanalytics.columns import ALIASES, norm_key, resolve

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


@pytest.mark.parametrize(
    ("spellings", "column"),
    [
        (["Click ID", "ClickID", "clickID", "Click Id", "Clickid", "click-id"], "click_id"),
        (["Campaign ID", "CampaignID", "campaignID"], "campaign_id"),
        (["Postback URL", "PostbackUrl", "postbackUrl"], "postback_url"),
        (["Status Code", "StatusCode", "status-code"], "status_code"),
    ],
)
def test_a_canonical_name_matches_in_any_case_and_punctuation(spellings: list[str], column: str) -> None:
    """The canonical name itself is never listed among a column's other names: it matches however spelled."""
    assert column not in ALIASES or not {norm_key(s) for s in ALIASES[column]} & {norm_key(column)}
    others = ["Postback ID", "Postback Time", "Is Error"] + ([] if column == "click_id" else ["cid"])
    for spelling in spellings:
        assert resolve([*others, spelling]).canonical.get(spelling) == column, spelling


def test_a_spelling_that_already_matches_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing ``ClickID`` for click_id adds nothing (it is click_id by norm_key): the alias index says so."""
    monkeypatch.setitem(columns.ALIASES, "click_id", ("cid", "ClickID"))
    with pytest.raises(AssertionError, match="'ClickID' of click_id is already matched"):
        columns._build_alias_index()
    monkeypatch.setitem(columns.ALIASES, "click_id", ("cid", "CID"))
    with pytest.raises(AssertionError, match="'CID' of click_id is already matched"):
        columns._build_alias_index()
