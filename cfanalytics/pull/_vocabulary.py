"""What the pull asks the ClickFlare API for: endpoints, fields, sort keys and paging limits.

ClickFlare documents its public API at developers.clickflare.io; its public
clients show what the endpoints accept in practice. The pull requests by default
only fields that such clients are seen sending or reading, and everything else
only on request (:data:`OPTIONAL_FIELDS`, ``PullOptions.extra_fields`` or
:func:`cfanalytics.pull.configure`), because the API answers a field it does
not know with HTTP 400, which would stop every pull.

Public sources (repository, path):

- ``eugeneleychenko/shophealthrates``, ``scripts/clickflare-api.mjs``:
  ``POST /api/event-logs`` with ``EventType``, ``ClickID``,
  ``ConversionTransaction``, ``ConversionDate``, ``ConversionPayout``,
  ``CustomConversionNumber``, sorted by ``ConversionDate``; and
  ``POST /api/postback-status/logs`` with ``ClickID``, ``IsError``,
  ``ErrorMessage``, ``StatusCode``, ``PostbackUrl``, ``IntegrationID``, ``Ct``,
  ``Event``, ``CustomConversionIndex``, ``PostbackTime``, sorted by ``ClickTime``.
- ``G-ier/efflux_be_backup``, ``services/clickflareService.js`` and
  ``services/clickflareServiceArchive.js``: ``POST event-logs`` pages of 1 000
  sorted by ``ClickTime`` (``VisitTime`` in one revision), paging while
  ``totals.counter`` exceeds ``page × pageSize``; the items read are
  ``ClickID``, ``ClickTime``, ``VisitTime``, ``VisitID``, ``EventType``,
  ``ExternalID``, ``FlowID``, ``TrafficSourceID``, ``ConnectionIP``,
  ``ConnectionReferrer``, ``DeviceUserAgent``, ``ConversionPayout``,
  ``TrackingField1`` … ``TrackingField6``.
- Python scripts of a campaign tool calling ``public-api.clickflare.io`` (seen
  in the same public code corpus; their repository could not be named) request
  ``ClickID``, ``EventType``, ``CampaignID``, ``VisitTime``, ``ClickTime`` with
  ``includeFilteredEvents``, sorted by ``ClickTime`` or ``ClickID``. No public
  client sorts by an ``EventTime``.
- The report endpoint (``POST /api/report``, developers.clickflare.io
  ``#/paths/api-report/post``) requires ``sortBy`` to be one of the requested
  metrics and caps ``page`` and ``pageSize`` at 1 000; its grouping vocabulary
  spells the visit's fields ``campaignID``, ``offerID``, ``landingID``,
  ``affiliateNetworkID``, ``connectionIP``, ``connectionReferrer``,
  ``connectionISP``, ``connectionType``, ``deviceUserAgent``, ``deviceType``,
  ``deviceOS``, ``deviceOsVersion``, ``deviceBrowser``, ``deviceBrowserVersion``,
  ``deviceBrand``, ``deviceModel``, ``deviceMainLanguage``, ``locationCountry``,
  ``locationRegion``, ``locationCity``, ``postalCode``, ``botScore``,
  ``visitID``, ``trackingField1..20``, ``param1..20``, with ``trafficSourceName``,
  ``offerName``, ``landingName`` and ``affiliateNetworkName`` as metrics. The
  event logs spell the same fields in PascalCase (``ConnectionIP``,
  ``DeviceUserAgent`` above): :data:`OPTIONAL_FIELDS` are those spellings.

>>> SORT_BY["events"] in FIELDS["events"], SORT_BY["postbacks"] in FIELDS["postbacks"]
(True, True)
>>> request_fields("events", ["LocationCountry", "ClickID"])[-1]
'LocationCountry'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "ENDPOINTS",
    "FIELDS",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "OPTIONAL_FIELDS",
    "SORT_BY",
    "request_fields",
]

ENDPOINTS: Final[dict[str, str]] = {"events": "/event-logs", "postbacks": "/postback-status/logs"}
#: Rows per page, at most (report endpoint: ``pageSize`` 1…1000; event-log clients ask for 1 000).
MAX_PAGE_SIZE: Final = 1000
#: The last page the API serves (report endpoint: ``page`` 1…1000); a window needing more is split first.
MAX_PAGE: Final = 1000

#: Fields requested by default: each is seen in public use (see the module docstring).
# fmt: off
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "events": (
        "EventType", "ClickID", "VisitID", "VisitTime", "ClickTime", "ConversionDate",
        "CampaignID", "TrafficSourceID", "FlowID", "ExternalID",
        "ConnectionIP", "ConnectionReferrer", "DeviceUserAgent",
        *(f"TrackingField{i}" for i in range(1, 7)),
        "ConversionPayout", "ConversionTransaction", "CustomConversionNumber",
        "Ct",  # postback-status/logs spells the custom conversion so; conversions need it to meet their postbacks
    ),
    "postbacks": (
        "ClickID", "PostbackTime", "IsError", "StatusCode", "ErrorMessage", "PostbackUrl", "Ct",
        "CustomConversionIndex", "IntegrationID", "Event", "ClickTime",
    ),
}
#: Fields asked only on request: the report vocabulary in the event logs' PascalCase, not seen
#: in public event-log or postback-log requests.
OPTIONAL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "events": (
        "OfferID", "LandingID", "AffiliateNetworkID",
        "TrafficSourceName", "OfferName", "LandingName", "AffiliateNetworkName",
        "LocationCountry", "LocationCountryName", "LocationRegion", "LocationCity", "PostalCode",
        "ConnectionISP", "ConnectionType", "DeviceType", "DeviceOS", "DeviceOsVersion", "DeviceBrowser",
        "DeviceBrowserVersion", "DeviceBrand", "DeviceModel", "DeviceMainLanguage", "BotScore",
        *(f"TrackingField{i}" for i in range(7, 21)),
        *(f"Param{i}" for i in range(1, 21)),
    ),
    "postbacks": ("TrafficSourceID", "CampaignID"),
}
# fmt: on
#: The sort of each endpoint: the click's time, as the public clients sort both logs.
SORT_BY: Final[dict[str, str]] = {"events": "ClickTime", "postbacks": "ClickTime"}

_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def request_fields(kind: str, extra: Iterable[str] = (), sort_by: str | None = None) -> list[str]:
    """The ``metrics`` of one request: the defaults, then ``extra`` and the sort field, each once.

    ``sortBy`` must be one of the requested metrics, so the sort field is added
    when missing. Raises ``ValueError`` for a name that is not a field name.

    >>> request_fields("postbacks", ["CampaignID", "ClickID"])[-1]
    'CampaignID'
    >>> request_fields("postbacks", ["Campaign ID"])
    Traceback (most recent call last):
    ...
    ValueError: 'Campaign ID' is not an API field name (letters and digits, e.g. LocationCountry)
    """
    out: list[str] = []
    for name in (*FIELDS[kind], *extra, sort_by or SORT_BY[kind]):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not an API field name (letters and digits, e.g. LocationCountry)")
        if name not in out:
            out.append(name)
    return out
