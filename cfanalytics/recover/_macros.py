"""Unreplaced macros and empty click-id parameters of a postback URL, filled from the stored click.

>>> fill_url("https://ts.example/pb?cid={external_id}&p={payout}", {"external_id": "v9", "payout": 1.5})
('https://ts.example/pb?cid=v9&p=1.50', [])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from cfanalytics.recover._platforms import norm

# one macro at a time, for filling: {name}, {{name}}, =[NAME] or /[NAME], %7Bname%7D (also doubled)
MACRO = re.compile(
    r"\{\{?\s*[A-Za-z_][\w.\-]*\s*\}\}?|(?<=[=/])\[[A-Za-z_]+\]|%7[Bb](?:%7[Bb])?[A-Za-z_][\w.\-]*%7[Dd](?:%7[Dd])?"
)
# macros filled from the stored click: name (lower case, no punctuation) → source
_MACRO_SOURCES: Final[dict[str, str]] = {
    "externalid": "external_id",
    "extid": "external_id",
    "clickid": "ts_click_id",
    "cid": "ts_click_id",
    "subid": "ts_click_id",
    "visitorid": "ts_click_id",
    "payout": "payout",
    "revenue": "payout",
    "conversionpayout": "payout",
    "txid": "txid",
    "transactionid": "txid",
    "ct": "ct",
    "conversiontype": "ct",
}
_CLICK_PARAMS: Final = frozenset(
    {"externalid", "extid", "clickid", "cid", "clid", "subid", "visitorid", "gclid", "fbclid", "ttclid", "msclkid"}
)


def fill_url(url: str, values: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``url`` with its macros and empty click-id parameters filled from ``values``; also the macros left.

    ``values`` holds ``external_id``, ``ts_click_id`` (the traffic source's own click id, which
    the tracker stores as the visit's external id), ``payout``, ``txid``, ``ct``. An empty
    click-id parameter left empty is reported as ``name=``.

    >>> fill_url("https://ts.example/pb?visitor_id={clickid}&p={payout}&x={foo}", {"ts_click_id": "v1", "payout": 2.5})
    ('https://ts.example/pb?visitor_id=v1&p=2.50&x={foo}', ['{foo}'])
    >>> fill_url("https://ts.example/pb?cid=&p=1", {"ts_click_id": "v1"})[0]
    'https://ts.example/pb?cid=v1&p=1'
    >>> url = "https://ts.example/pb?s=%7Bsubid%7D&t=[TXID]&r=%7Brevenue%7D"
    >>> fill_url(url, {"ts_click_id": "v", "txid": "T", "payout": 0.125})
    ('https://ts.example/pb?s=v&t=T&r=0.125', [])
    """

    def value_of(source: str) -> str | None:
        v = values.get(source)
        if v is None or v == "":
            return None
        if isinstance(v, float):
            return f"{v:.2f}" if round(v, 2) == v else repr(v)
        return str(v)

    left: list[str] = []

    def macro(m: re.Match[str]) -> str:
        name = norm(m.group(0).replace("%7B", "").replace("%7D", "").replace("%7b", "").replace("%7d", ""))
        source = _MACRO_SOURCES.get(name)
        filled = value_of(source) if source else None
        if filled is None:
            left.append(m.group(0))
            return m.group(0)
        return quote(filled, safe="")

    filled = MACRO.sub(macro, url)

    def empty_param(m: re.Match[str]) -> str:
        if norm(m.group(2)) not in _CLICK_PARAMS:
            return m.group(0)
        if v := value_of("ts_click_id"):
            return f"{m.group(1)}{m.group(2)}={quote(v, safe='')}"
        left.append(f"{m.group(2)}=")
        return m.group(0)

    filled = re.sub(r"([?&])([^=&#]+)=(?=&|#|$)", empty_param, filled)
    return filled, left
