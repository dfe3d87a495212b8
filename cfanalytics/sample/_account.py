"""The sample account's entities: traffic sources, campaigns, offers, landers, networks.

The tables below are the fictional account every sample shares; :func:`build_account`
gives each entity a seeded 24-hex id, as ClickFlare's entity ids look.

>>> import random
>>> account = build_account(random.Random(7))
>>> [ts.name for ts in account.traffic_sources][:3]
['Meta Ads', 'Google Ads', 'TikTok Ads']
>>> len(account.campaigns), len(account.traffic_sources[0].id)
(9, 24)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["Account", "Campaign", "Entity", "Offer", "TrafficSource", "build_account", "hex24", "random_text"]

ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class TrafficSource:
    """A traffic source and how conversions are sent back to it."""

    id: str
    name: str
    mode: str  # "s2s" | "capi" | "none"
    share: float
    external_id_name: str
    referrer: str
    integration_id: str | None = None
    integration_name: str | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign; it buys traffic from exactly one traffic source."""

    id: str
    name: str
    traffic_source_id: str
    offer_ids: tuple[str, ...]
    lander_ids: tuple[str, ...]
    weight: float
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer of an affiliate network: its conversion steps as (ct, payout)."""

    id: str
    name: str
    affiliate_network_id: str
    steps: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Entity:
    """A lander or an affiliate network."""

    id: str
    name: str
    txid_prefix: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    """Every entity of the sample account."""

    traffic_sources: tuple[TrafficSource, ...]
    campaigns: tuple[Campaign, ...]
    offers: tuple[Offer, ...]
    landers: tuple[Entity, ...]
    networks: tuple[Entity, ...]
    pixels: dict[str, str]

    def source(self, name: str) -> TrafficSource:
        """The traffic source called ``name``."""
        return next(ts for ts in self.traffic_sources if ts.name == name)

    def source_by_id(self, ts_id: str) -> TrafficSource:
        """The traffic source with id ``ts_id``."""
        return next(ts for ts in self.traffic_sources if ts.id == ts_id)

    def campaigns_of(self, ts: TrafficSource) -> list[Campaign]:
        """Campaigns buying from ``ts``."""
        return [c for c in self.campaigns if c.traffic_source_id == ts.id]


# (name, mode, share, external id parameter, referrer, integration name)
_SOURCES: Final = (
    ("Meta Ads", "capi", 0.27, "fbclid", "https://m.facebook.com/", "Meta CAPI - Main Pixel"),
    ("Google Ads", "capi", 0.17, "gclid", "https://www.google.com/", "Google Ads API - MCC 431"),
    ("TikTok Ads", "capi", 0.14, "ttclid", "https://www.tiktok.com/", "TikTok Events API"),
    ("PropellerAds", "s2s", 0.17, "visitor_id", "", None),
    ("ZeroPark", "s2s", 0.15, "cid", "", None),
    ("NativeX", "none", 0.10, "subid", "https://news.dailytrend-hub.com/", None),
)
# (name, txid prefix); the last network sends no transaction ids
_NETWORKS: Final = (("MaxBounty", "MB"), ("ClickDealer", "CD"), ("Solaris Direct", ""))
# (name, network index, steps)
_OFFERS: Final = (
    ("Keto Gummies US", 0, (("sale", 38.0),)),
    ("VPN Pro Trial", 1, (("signup", 2.5), ("sale", 24.0))),
    ("iPhone 17 Sweepstakes", 1, (("lead", 1.8),)),
    ("Solar Quotes", 0, (("lead", 11.0),)),
    ("Casual Dating DOI", 2, (("", 3.2),)),
    ("Crypto Wallet Install", 2, (("install", 1.1), ("deposit", 45.0))),
)
_LANDERS: Final = ("Advertorial v1", "Quiz Funnel", "Listicle Top 5", "Sweeps Wheel Prelander", "Native Article v3")
# (name, traffic source index, offer indexes, lander indexes, weight within the source, countries)
_CAMPAIGNS: Final = (
    ("US | Meta | Keto | Broad", 0, (0,), (0, 2), 0.6, ("US",)),
    ("US-CA | Meta | VPN | Lookalike", 0, (1,), (1,), 0.4, ("US", "CA")),
    ("US | Google | Solar | Search", 1, (3,), (2,), 0.55, ("US",)),
    ("CA | Google | VPN | Search", 1, (1,), (1,), 0.45, ("CA",)),
    ("T1 | TikTok | Sweeps | Spark", 2, (2, 5), (3,), 1.0, ("US", "GB", "AU", "CA")),
    ("T1 | Propeller | Sweeps | Onclick", 3, (2,), (3,), 0.6, ("US", "GB", "DE", "FR")),
    ("T2 | Propeller | Crypto | Push", 3, (5,), (4,), 0.4, ("BR", "MX", "PH", "IN")),
    ("WW | ZeroPark | Dating | Domain", 4, (4,), (4,), 1.0, ("US", "GB", "DE", "AU", "BR")),
    ("US | NativeX | Keto | Native", 5, (0,), (0, 4), 1.0, ("US",)),
)
_CITIES: Final[dict[str, tuple[str, ...]]] = {
    "US": ("New York", "Los Angeles", "Chicago", "Houston", "Phoenix"),
    "CA": ("Toronto", "Vancouver", "Montréal"),
    "GB": ("London", "Manchester"),
    "DE": ("Berlin", "München"),
    "FR": ("Paris", "Lyon"),
    "AU": ("Sydney", "Melbourne"),
    "BR": ("São Paulo", "Rio de Janeiro"),
    "MX": ("Mexico City", "Guadalajara"),
    "PH": ("Manila", "Cebu City"),
    "IN": ("Mumbai", "Delhi"),
}
_WEBKIT: Final = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_MOBILE_SAFARI: Final = "Version/18.1 Mobile/15E148 Safari/604.1"
_BLINK: Final = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
_AGENTS: Final = {
    "iphone": f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_WEBKIT} {_MOBILE_SAFARI}",
    "android": f"Mozilla/5.0 (Linux; Android 14; SM-S918B) {_BLINK} Mobile Safari/537.36",
    "chrome": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Safari/537.36",
    "edge": f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Safari/537.36 Edg/130.0.0.0",
    "mac": f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Version/18.1 Safari/605.1.15",
    "ipad": f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_WEBKIT} {_MOBILE_SAFARI}",
}
# (device type, OS, browser, user agent, weight)
_DEVICES: Final = (
    ("mobile", "iOS", "Safari", _AGENTS["iphone"], 0.30),
    ("mobile", "Android", "Chrome", _AGENTS["android"], 0.30),
    ("desktop", "Windows", "Chrome", _AGENTS["chrome"], 0.18),
    ("desktop", "Windows", "Edge", _AGENTS["edge"], 0.07),
    ("desktop", "macOS", "Safari", _AGENTS["mac"], 0.08),
    ("tablet", "iPadOS", "Safari", _AGENTS["ipad"], 0.07),
)


def hex24(rng: random.Random) -> str:
    """A 24-hex id, like ClickFlare's entity ids."""
    return f"{rng.getrandbits(96):024x}"


def random_text(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """``n`` random characters of ``alphabet``."""
    return "".join(rng.choices(alphabet, k=n))


def build_account(rng: random.Random) -> Account:
    """Networks, offers, landers, traffic sources (and integrations), campaigns."""
    networks = tuple(Entity(hex24(rng), name, prefix) for name, prefix in _NETWORKS)
    offers = tuple(Offer(hex24(rng), name, networks[n].id, steps) for name, n, steps in _OFFERS)
    landers = tuple(Entity(hex24(rng), name) for name in _LANDERS)
    sources = []
    for name, mode, share, ext, referrer, integration in _SOURCES:
        ts_id = hex24(rng)
        integration_id = hex24(rng) if integration else None
        sources.append(TrafficSource(ts_id, name, mode, share, ext, referrer, integration_id, integration))
    campaigns = tuple(
        Campaign(
            hex24(rng),
            name,
            sources[ts].id,
            tuple(offers[i].id for i in offer_ix),
            tuple(landers[i].id for i in lander_ix),
            weight,
            countries,
        )
        for name, ts, offer_ix, lander_ix, weight, countries in _CAMPAIGNS
    )
    pixels = {"meta": "".join(rng.choices("0123456789", k=16)), "tiktok": "C" + random_text(rng, 19).upper()}
    pixels["google_customer"] = "".join(rng.choices("0123456789", k=10))
    pixels["google_action"] = "".join(rng.choices("0123456789", k=9))
    pixels["propeller_aid"] = str(rng.randrange(1000, 9999))
    pixels["propeller_tid"] = str(rng.randrange(10000, 99999))
    return Account(tuple(sources), campaigns, offers, landers, networks, pixels)
