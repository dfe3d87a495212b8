"""The simulation: one seeded generator drives traffic, faults, postbacks, activity and bad rows.

:class:`Simulation` holds every record it makes; the writers (``_write``) and the
truth (``_truth``) read them. Every draw comes from ``rng`` in a fixed order, so the
same parameters give the same records.

>>> from datetime import date
>>> sim = Simulation(seed=7, visits=500, days=2, start=date(2026, 11, 16), tz=ZoneInfo("UTC"))
>>> sim.run()
>>> len(sim.visits) > 400, sim.faults[0].name
(True, 'postback_url_edit')
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any, Final
from zoneinfo import ZoneInfo

from cfanalytics.sample._account import (
    _CITIES,
    _DEVICES,
    ALNUM,
    Campaign,
    Entity,
    Offer,
    TrafficSource,
    build_account,
    hex24,
    random_text,
)
from cfanalytics.sample._records import ALREADY_STORED, STORED, Activity, Conversion, Fault, Postback, Row, Visit

__all__ = ["Simulation"]


#: Relative traffic by local hour of day (0…23).
_CURVE_AM: Final = (45, 30, 22, 18, 18, 25, 45, 70, 95, 115, 130, 140)  # local 00–11 h, % of the mean
_CURVE_PM: Final = (145, 145, 140, 140, 145, 150, 160, 170, 170, 150, 110, 75)  # local 12–23 h
DAILY_CURVE: Final[tuple[float, ...]] = tuple(w / 100 for w in (*_CURVE_AM, *_CURVE_PM))
P_CONVERT: Final = 0.076  # a visit converts (first step of its offer)
P_SECOND_STEP: Final = 0.30  # a converted visit also reaches the offer's second step
P_CLICK: Final = 0.38  # a visit that does not convert still clicks through the lander
P_SECOND_CLICK: Final = 0.05
P_MISSING_GCLID: Final = 0.08  # Google Ads visits arriving without a gclid
P_BACKGROUND_ERROR: Final = 0.015
P_SOURCE_COLUMN: Final = 0.8  # UI postback rows that carry their own traffic source id
#: Extra visits per hour on the failing traffic source around each incident, as a share of
#: ``visits``: gives every incident hour enough postbacks for the default rule (n ≥ 10).
PUSH_PER_HOUR: Final = 0.024
PUSH_LEAD: Final = timedelta(minutes=45)

_FIRST_OCTETS: Final = (24, 31, 45, 66, 73, 81, 89, 98, 104, 142, 176, 185, 187, 201)
_CAPI_EVENTS: Final = {
    "sale": "Purchase",
    "deposit": "Purchase",
    "lead": "Lead",
    "signup": "CompleteRegistration",
    "install": "Download",
    "": "Lead",
}
#: A postback fired with another ct than its conversion's (an event mapping slip).
_CT_SLIPS: Final = {
    "sale": "purchase",
    "lead": "Lead",
    "signup": "registration",
    "install": "app_install",
    "deposit": "ftd",
}
_GCLID_ERROR: Final = (
    '{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT",'
    '"details":[{"errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},"message":"Too short."}]}]}}'
)
_META_500: Final = (
    '{"error":{"message":"An unexpected error has occurred. Please retry your request later.",'
    '"type":"FacebookApiException","code":2,"is_transient":true}}'
)
#: Occasional errors unrelated to any fault, by traffic source (S2S receivers share one list).
_BACKGROUND_ERRORS: Final[dict[str, tuple[tuple[int | None, str], ...]]] = {
    "Meta Ads": ((500, _META_500), (503, "Service temporarily unavailable")),
    "Google Ads": ((500, "Internal error encountered."), (503, "The service is currently unavailable.")),
    "TikTok Ads": ((500, '{"code":50000,"message":"System error"}'), (503, "Service Unavailable")),
    "s2s": (
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Temporarily Unavailable"),
        (None, "Operation timed out after 10001 milliseconds with 0 bytes received"),
    ),
}
_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Simulation:
    """Builds the account, simulates its traffic and injects faults and bad rows (seeded, no wall clock)."""

    def __init__(self, *, seed: int, visits: int, days: int, start: date, tz: ZoneInfo) -> None:
        """Set up the window (local midnights of the first and after the last day) and the account."""
        self.rng = random.Random(seed)
        self.n_visits = visits
        self.days = days
        self.start = start
        self.tz = tz
        self.window_start = self._local_midnight(start)
        self.window_end = self._local_midnight(start + timedelta(days=days))
        self.account = build_account(self.rng)
        self.visits: list[Visit] = []
        self.clicks: list[tuple[Visit, datetime, int]] = []
        self.conversions: list[Conversion] = []
        self.postbacks: list[Postback] = []
        self.activity: list[Activity] = []
        self.faults: list[Fault] = []
        self.visit_rows: list[Row] = []
        self.junk_visits: list[Visit] = []  # stored rows that are not simulated traffic
        self.network_rows: list[dict[str, str]] = []
        self.tokens: list[str] = []
        self.double_fired: list[str] = []

    # -- helpers --

    def _local_midnight(self, day: date) -> datetime:
        """UTC instant of local midnight starting ``day``."""
        return datetime(day.year, day.month, day.day, tzinfo=self.tz).astimezone(UTC)

    def _hex24(self) -> str:
        """A 24-hex id, like ClickFlare's entity ids."""
        return hex24(self.rng)

    def _uuid(self) -> str:
        """A UUID4-shaped click id from the seeded generator."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _text(self, n: int, alphabet: str = ALNUM) -> str:
        """``n`` random characters of ``alphabet``."""
        return random_text(self.rng, n, alphabet)

    def _ambiguous(self, t: datetime) -> bool:
        """True when ``t``'s local wall time occurs twice (DST fall-back)."""
        naive = t.astimezone(self.tz).replace(tzinfo=None)
        return naive.replace(tzinfo=self.tz, fold=0).utcoffset() != naive.replace(tzinfo=self.tz, fold=1).utcoffset()

    def _settle(self, t: datetime) -> datetime:
        """Move ``t`` out of a DST fall-back hour, so every local time written is unambiguous."""
        while self._ambiguous(t):
            t += timedelta(hours=1)
        return t

    def local(self, t: datetime) -> str:
        """Local ``YYYY-MM-DD HH:MM:SS`` of ``t``."""
        return t.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def _between(self, a: datetime, b: datetime) -> datetime:
        """A random whole second in ``[a, b)``, moved out of ambiguous local hours."""
        return self._settle(a + timedelta(seconds=self.rng.randrange(max(1, int((b - a).total_seconds())))))

    def _local_hour(self, day: int, hour: int) -> datetime:
        """UTC hour bucket holding local ``hour``:00 of window day ``day``."""
        t = datetime.combine(self.start + timedelta(days=day), datetime.min.time()).replace(hour=hour, tzinfo=self.tz)
        return t.astimezone(UTC).replace(minute=0, second=0)

    # -- entities --

    # -- traffic --

    def run(self) -> None:
        """Simulate the account: faults first (they shape traffic), then events, then bad rows."""
        self._plan_faults()
        self._simulate_visits()
        self._simulate_clicks_and_conversions()
        self._double_fire()
        self._simulate_postbacks()
        self._slip_postbacks()
        self._simulate_activity()
        self._bad_visits()
        self._bad_conversions()
        self._bad_postbacks()
        self._network_export()

    def _plan_faults(self) -> None:
        """Place the four time-boxed faults, after one clean day, near UTC hour boundaries."""
        acc, rng = self.account, self.rng
        last = self.days - 1
        plan = (  # (fault, source, day, local hour, hours, share failing, error kind)
            ("postback_url_edit", "PropellerAds", 1, 10, 3, 1.0, "unreplaced_macro"),
            ("receiver_timeout", "ZeroPark", min(2, last), 10, 2, 0.85, "no_response"),
            ("rate_limit", "TikTok Ads", min(2, last), 17, 2, 0.75, "rate_limit"),
            ("token_expired", "Meta Ads", min(3, last), 12, 3, 1.0, "auth"),
        )
        self.tokens = ["EAAG" + self._text(120), "EAAG" + self._text(120)]
        for name, source, day, hour, hours, share, kind in plan:
            bucket = self._local_hour(day, hour)
            begin = bucket + timedelta(minutes=rng.randint(1, 4), seconds=rng.randrange(60))
            end = bucket + timedelta(hours=hours, minutes=-rng.randint(4, 8), seconds=rng.randrange(60))
            push = (bucket - PUSH_LEAD, end - timedelta(minutes=10))
            fault = Fault(name, acc.source(source), bucket, begin, end, share, kind, push)
            if name == "postback_url_edit":  # the edit lands a little before its effect
                fault.cause = self._edit_postback_url(
                    begin - timedelta(minutes=2, seconds=rng.randrange(30)), broken=True
                )
                fault.fix = self._edit_postback_url(end, broken=False)
            if name == "token_expired":  # nobody's edit; a reconnect ends it
                fault.fix = self._reconnect(end)
            self.faults.append(fault)

    def _quiet(self, source: TrafficSource, t: datetime) -> bool:
        """True in the hour buckets of a fault of ``source``: no background errors there."""
        bucket = t.replace(minute=0, second=0)
        return any(
            f.source.id == source.id and f.hour <= bucket <= f.end.replace(minute=0, second=0) for f in self.faults
        )

    def _simulate_visits(self) -> None:
        """Visits along the daily curve, plus each fault's traffic push."""
        acc, rng = self.account, self.rng
        pushes = [
            (f, round(self.n_visits * PUSH_PER_HOUR * (f.push[1] - f.push[0]).total_seconds() / 3600))
            for f in self.faults
        ]
        n_base = self.n_visits - sum(n for _, n in pushes)
        hours = []
        t = self.window_start
        while t < self.window_end:
            hours.append(t)
            t += timedelta(hours=1)
        hour_weights = list(
            accumulate(DAILY_CURVE[(h + timedelta(minutes=30)).astimezone(self.tz).hour] for h in hours)
        )
        campaign_weights = list(
            accumulate(acc.source_by_id(c.traffic_source_id).share * c.weight for c in acc.campaigns)
        )
        for _ in range(n_base):
            while True:
                when = self._settle(
                    rng.choices(hours, cum_weights=hour_weights)[0] + timedelta(seconds=rng.randrange(3600))
                )
                if when < self.window_end:
                    break
            campaign = rng.choices(acc.campaigns, cum_weights=campaign_weights)[0]
            self.visits.append(self._visit(when, campaign))
        for fault, n in pushes:
            campaigns = acc.campaigns_of(fault.source)
            weights = list(accumulate(c.weight for c in campaigns))
            for _ in range(n):
                when = self._between(*fault.push)
                self.visits.append(self._visit(when, rng.choices(campaigns, cum_weights=weights)[0]))
        self.visits.sort(key=lambda v: (v.time, v.click_id))

    def _visit(self, when: datetime, campaign: Campaign, click_id: str | None = None) -> Visit:
        """One visit to ``campaign`` at ``when``."""
        acc, rng = self.account, self.rng
        source = acc.source_by_id(campaign.traffic_source_id)
        offer_id, lander_id = rng.choice(campaign.offer_ids), rng.choice(campaign.lander_ids)
        offer = next(o for o in acc.offers if o.id == offer_id)
        lander = next(lp for lp in acc.landers if lp.id == lander_id)
        network = next(n for n in acc.networks if n.id == offer.affiliate_network_id)
        country = rng.choice(campaign.countries)
        device = rng.choices(_DEVICES, weights=[d[4] for d in _DEVICES])[0]
        ip = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        return Visit(
            click_id=click_id if click_id is not None else self._uuid(),
            time=when,
            campaign=campaign,
            source=source,
            offer=offer,
            lander=lander,
            network=network,
            external_id=self._external_id(source),
            ip=ip,
            country=country,
            city=rng.choice(_CITIES[country]),
            device=device[:4],
            referrer=source.referrer,
            tracking=(
                f"zone_{rng.randrange(100000, 999999)}" if source.mode == "s2s" else "",
                f"cr{rng.randrange(1, 9)}",
            ),
        )

    def _external_id(self, source: TrafficSource) -> str:
        """The click id the traffic source passes (gclid, fbclid…); Google's is sometimes missing."""
        rng = self.rng
        match source.external_id_name:
            case "fbclid":
                return "IwAR" + self._text(58)
            case "gclid":
                return "" if rng.random() < P_MISSING_GCLID else "Cj0KCQiA" + self._text(80, ALNUM + "_-")
            case "ttclid":
                return "E.C.P." + self._text(72)
            case "visitor_id":
                return self._text(26).lower()
            case "cid":
                return self._uuid()
            case _:
                return f"{rng.getrandbits(64):016x}"

    def _simulate_clicks_and_conversions(self) -> None:
        """Lander clicks (≈ 45 % of visits) and conversions (≈ 8 %), one or two steps each."""
        rng = self.rng
        for visit in self.visits:
            converts = rng.random() < P_CONVERT
            if not converts and rng.random() >= P_CLICK:
                continue
            cta = visit.campaign.offer_ids.index(visit.offer.id) + 1
            click_time = self._settle(visit.time + timedelta(seconds=rng.randint(4, 90)))
            if click_time >= self.window_end:
                continue
            self.clicks.append((visit, click_time, cta))
            if rng.random() < P_SECOND_CLICK:
                again = self._settle(click_time + timedelta(seconds=rng.randint(20, 600)))
                if again < self.window_end:
                    self.clicks.append((visit, again, cta))
            if not converts:
                continue
            when = click_time + self._conversion_delay()
            for step, (ct, payout) in enumerate(visit.offer.steps):
                if step and rng.random() >= P_SECOND_STEP:
                    break
                if step:
                    when += timedelta(seconds=rng.randint(600, 8 * 3600))
                when = self._settle(when)
                if when >= self.window_end:
                    break
                prefix = visit.network.txid_prefix
                txid = f"{prefix}-{rng.randrange(10**9, 10**10)}" if prefix else ""
                self.conversions.append(Conversion(visit.click_id, when, visit, ct, txid, payout, payout))
        self.clicks.sort(key=lambda c: (c[1], c[0].click_id))
        self.conversions.sort(key=lambda c: (c.time, c.click_id, c.ct))

    def _conversion_delay(self) -> timedelta:
        """Time from the click to the conversion: mostly minutes, sometimes hours."""
        r = self.rng.random()
        if r < 0.7:
            return timedelta(seconds=min(3600, int(self.rng.expovariate(1 / 360)) + 15))
        if r < 0.95:
            return timedelta(seconds=self.rng.randint(1200, 6 * 3600))
        return timedelta(seconds=self.rng.randint(6 * 3600, 30 * 3600))

    def _double_fire(self) -> None:
        """A few conversions the network posted twice: same click, ct and txid, seconds apart."""
        candidates = [c for c in self.conversions if c.visit and c.visit.source.mode != "none"]
        picked = self.rng.sample(candidates, max(2, self.n_visits // 5000))
        for c in picked:
            twin = Conversion(
                c.click_id,
                self._settle(c.time + timedelta(seconds=self.rng.randint(2, 60))),
                c.visit,
                c.ct,
                c.txid,
                c.payout,
                c.payout_written,
            )
            if twin.time < self.window_end:
                self.conversions.append(twin)
        self.conversions.sort(key=lambda c: (c.time, c.click_id, c.ct))
        self.double_fired = sorted(c.click_id for c in picked)

    # -- postbacks and their faults --

    def _simulate_postbacks(self) -> None:
        """One postback per conversion to its traffic source, unless none is configured."""
        rng = self.rng
        for conv in self.conversions:
            visit = conv.visit
            if visit is None or visit.source.mode == "none":
                continue
            when = self._settle(conv.time + timedelta(seconds=rng.randint(1, 25)))
            if when >= self.window_end:
                continue
            self.postbacks.append(self._postback(visit, conv, when))
        self.postbacks.sort(key=lambda p: (p.time, p.postback_id))

    def _postback(self, visit: Visit, conv: Conversion, when: datetime) -> Postback:
        """The postback fired for ``conv`` at ``when``: fault errors first, then missing gclids, then noise."""
        rng, source = self.rng, visit.source
        fault = next((f for f in self.faults if f.active(source, when)), None)
        failing = fault is not None and rng.random() < fault.fail_share
        url = self._postback_url(visit, conv, when, broken=fault is not None and fault.name == "postback_url_edit")
        status: int | None = 200
        message = ""
        if failing and fault is not None:
            status, message = self._fault_error(fault, when)
        elif source.external_id_name == "gclid" and not visit.external_id:
            status, message = 400, _GCLID_ERROR
        elif not self._quiet(source, when) and rng.random() < P_BACKGROUND_ERROR:
            status, message = self._background_error(source)
        return Postback(
            postback_id=self._hex24(),
            click_id=conv.click_id,
            time=when,
            is_error=status is None or status >= 400,
            status=status,
            status_written="" if status is None else str(status),
            message=message,
            url=url,
            ct=conv.ct,
            source_id=source.id,
            integration_id=source.integration_id or "",
            campaign_id=visit.campaign.id,
            event=_CAPI_EVENTS[conv.ct] if source.mode == "capi" else "postback",
            source_column=rng.random() < P_SOURCE_COLUMN,
        )

    def _postback_url(self, visit: Visit, conv: Conversion, when: datetime, *, broken: bool) -> str:
        """The fully populated postback URL (CAPI endpoints carry their pixel, Meta's its token)."""
        px, ext = self.account.pixels, visit.external_id
        payout = f"{conv.payout:.2f}" if conv.payout is not None else ""
        match visit.source.name:
            case "Meta Ads":
                reconnect = next(f.end for f in self.faults if f.name == "token_expired")
                token = self.tokens[0] if when < reconnect else self.tokens[1]
                return f"https://graph.facebook.com/v21.0/{px['meta']}/events?access_token={token}"
            case "Google Ads":
                return (
                    f"https://googleads.googleapis.com/v17/customers/{px['google_customer']}:uploadClickConversions"
                    f"?conversion_action={px['google_action']}&gclid={ext}"
                )
            case "TikTok Ads":
                event = _CAPI_EVENTS[conv.ct]
                return (
                    "https://business-api.tiktok.com/open_api/v1.3/event/track/"
                    f"?pixel_code={px['tiktok']}&event={event}&ttclid={ext}"
                )
            case "PropellerAds":
                return self._propeller_template(broken=broken).replace("{external_id}", ext).replace("{payout}", payout)
            case _:
                return f"https://postback.zeroparkcdn.com/postback?cid={ext}&payout={payout}"

    def _propeller_template(self, *, broken: bool) -> str:
        """PropellerAds' postback URL template; ``broken`` has the unknown ``{clickid}`` token."""
        px = self.account.pixels
        token = "{clickid}" if broken else "{external_id}"
        return (
            f"http://ad.propellerads.com/conversion.php?aid={px['propeller_aid']}&tid={px['propeller_tid']}"
            f"&visitor_id={token}&payout={{payout}}"
        )

    def _fault_error(self, fault: Fault, when: datetime) -> tuple[int | None, str]:
        """Status code and message of a postback failing because of ``fault``."""
        rng = self.rng
        match fault.name:
            case "postback_url_edit":
                return 400, "Invalid click id"
            case "token_expired":
                pacific = ZoneInfo("America/Los_Angeles")
                trace = "A" + self._text(22)
                return 401, (
                    '{"error":{"message":"Error validating access token: Session has expired on '
                    f"{_meta_time(fault.begin, pacific)}. The current time is {_meta_time(when, pacific)}."
                    f'","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"{trace}"}}}}'
                )
            case "rate_limit":
                request = f"{when:%Y%m%d%H%M%S}{rng.getrandbits(64):016X}"
                return 429, (
                    '{"code":40100,"message":"Too many requests. Please retry in some time.",'
                    f'"request_id":"{request}"}}'
                )
            case _:
                return None, "Connection timed out after 10000 ms"

    def _background_error(self, source: TrafficSource) -> tuple[int | None, str]:
        """One of the rare errors every receiver returns now and then."""
        return self.rng.choice(_BACKGROUND_ERRORS.get(source.name, _BACKGROUND_ERRORS["s2s"]))

    def _slip_postbacks(self) -> None:
        """Add postbacks that match no conversion: ct slips, test fires and one for an unknown click."""
        rng = self.rng
        last_day = self._local_midnight(self.start + timedelta(days=self.days - 1))
        slips = [p for p in self.postbacks if not p.is_error and p.ct in _CT_SLIPS and p.time < last_day]
        for p in rng.sample(slips, 3):
            p.ct = _CT_SLIPS[p.ct]
        converted = {c.click_id for c in self.conversions}
        first_day = self.window_start + timedelta(hours=18)
        idle = [v for v in self.visits if v.click_id not in converted and v.source.mode == "s2s" and v.time < first_day]
        for visit in rng.sample(idle, 2):  # a tracking engineer's test fires
            when = self._settle(visit.time + timedelta(minutes=rng.randint(30, 180)))
            conv = Conversion(visit.click_id, when, visit, "", "", 0.0, 0.0)
            pb = self._postback(visit, conv, when)
            pb.is_error, pb.status, pb.status_written, pb.message = False, 200, "200", ""
            pb.source_column = False
            self.postbacks.append(pb)
        stray = self.rng.choice(self.visits[: len(self.visits) // 3])
        self.postbacks.append(
            Postback(
                postback_id=self._hex24(),
                click_id=self._uuid(),
                time=self._settle(stray.time + timedelta(minutes=7)),
                is_error=True,
                status=404,
                status_written="404",
                message="Not Found",
                url="https://postback.zeroparkcdn.com/postback?cid=&payout=0.00",
                ct="",
                source_id="",
                integration_id="",
                campaign_id="",
                event="postback",
                source_column=False,
            )
        )
        self.postbacks.sort(key=lambda p: (p.time, p.postback_id))

    # -- activity --

    def _edit_postback_url(self, when: datetime, *, broken: bool) -> Activity:
        """PropellerAds' postback URL edit: ``broken`` swaps its click id token for an unknown ``{clickid}``."""
        good, bad = self._propeller_template(broken=False), self._propeller_template(broken=True)
        old, new = (good, bad) if broken else (bad, good)
        author = "ana@acme.test" if broken else "ben@acme.test"
        source = self.account.source("PropellerAds")
        return self._edit(when, author, ("Traffic Source", source), {"postback_url": old}, {"postback_url": new})

    def _reconnect(self, when: datetime) -> Activity:
        """Meta's integration reconnected with a fresh token, ending the expiry."""
        ts = self.account.source("Meta Ads")
        integration = Entity(ts.integration_id or "", ts.integration_name or "")
        when -= timedelta(seconds=self.rng.randint(5, 40))
        old = {"access_token": self.tokens[0], "status": "expired"}
        new = {"access_token": self.tokens[1], "status": "connected"}
        return self._edit(when, "mia@acme.test", ("Integration", integration), old, new)

    def _edit(
        self,
        when: datetime,
        author: str,
        target: tuple[str, TrafficSource | Campaign | Offer | Entity],
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        *,
        action: str = "Updated",
    ) -> Activity:
        """Log one edit of ``target`` (entity type as exported, entity) in the system activity."""
        entity_type, entity = target
        row = Activity(self._settle(when), author, entity_type, entity.id, entity.name, action, old, new)
        self.activity.append(row)
        return row

    def _simulate_activity(self) -> None:
        """Benign edits: offers, landers, networks, budgets; never postback fields of a failing scope."""
        rng, acc = self.rng, self.account
        authors = ("ana@acme.test", "ben@acme.test", "mia@acme.test", "ops-bot@acme.test")
        quiet_sources = [acc.source("Google Ads"), acc.source("NativeX")]
        for day in range(self.days):
            for _ in range(6):
                when = self._between(self._local_hour(day, 8), self._local_hour(day, 20))
                author, kind = rng.choice(authors), rng.randrange(7)
                if kind == 0:
                    offer = rng.choice(acc.offers)
                    payout = offer.steps[-1][1]
                    self._edit(when, author, ("Offer", offer), {"payout": payout}, {"payout": round(payout * 1.1, 2)})
                elif kind == 1:
                    lander = rng.choice(acc.landers)
                    url = f"https://lp.acme-offers.com/{lander.name.lower().replace(' ', '-')}/"
                    self._edit(when, author, ("Lander", lander), {"url": url}, {"url": f"{url}b/"})
                elif kind in (2, 3):
                    campaign, budget = rng.choice(acc.campaigns), rng.choice((100, 150, 200, 300))
                    self._edit(
                        when, author, ("Campaign", campaign), {"daily_budget": budget}, {"daily_budget": budget + 50}
                    )
                elif kind == 4:
                    source = rng.choice(quiet_sources)
                    self._edit(
                        when, author, ("Traffic Source", source), {"default_cost": 0.02}, {"default_cost": 0.025}
                    )
                elif kind == 5:
                    lander = Entity(self._hex24(), f"{rng.choice(('Quiz Funnel', 'Spin Wheel'))} v{rng.randint(2, 9)}")
                    created = {"name": lander.name, "url": "https://lp.acme-offers.com/new/"}
                    self._edit(when, author, ("Lander", lander), None, created, action="Created")
                else:
                    network = rng.choice(acc.networks)
                    new = {"currency": "USD", "payout_delay_days": 30}
                    self._edit(when, author, ("Affiliate Network", network), {"currency": "USD"}, new)
        gone = Entity(self._hex24(), "Diet Drops (paused)")
        when = self._between(self.window_start + timedelta(hours=14), self.window_start + timedelta(hours=15))
        self._edit(when, "ben@acme.test", ("Offer", gone), {"name": gone.name, "payout": 22.0}, None, action="Deleted")
        for fault in self.faults:  # the traffic push before each incident starts with a budget raise
            campaign = acc.campaigns_of(fault.source)[0]
            when = fault.push[0] - timedelta(minutes=rng.randint(3, 20))
            push = self._edit(
                when, "ben@acme.test", ("Campaign", campaign), {"daily_budget": 200}, {"daily_budget": 800}
            )
            if fault.error_kind == "rate_limit":  # four times the traffic is what trips the receiver's rate limit
                fault.cause = push
            else:  # a decoy: more traffic does not break a URL, expire a token or slow a receiver down
                fault.decoys.append(push)
        self.activity.sort(key=lambda a: (a.time, a.entity_id, a.action))

    # -- bad input --

    def _bad_visits(self) -> None:
        """The visits file: every visit plus rows that exercise quarantine, dedup and flags."""
        rng = self.rng
        rows = [Row(self._visit_values(v), (v.time, i)) for i, v in enumerate(self.visits)]
        early = self.visits[: len(self.visits) // 3]

        def junk(click_id: str | None = None) -> tuple[Visit, tuple[datetime, int]]:
            """A fresh visit that no conversion refers to, and its place in the file."""
            when = self._between(self.window_start, self.window_end)
            campaign = rng.choice(self.account.campaigns)
            return self._visit(when, campaign, click_id), (when, -1)

        for _ in range(2):
            v, order = junk()
            rows.append(Row(["", *self._visit_values(v)[1:]], order, "missing_required"))
        v, order = junk()
        rows.append(Row(self._visit_values(v, when="2026-02-30 10:00:00"), order, "unparseable_required"))
        first, twin = rng.sample(early, 2)
        other = self._visit_values(first)
        other[13] = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        rows.append(Row(other, (first.time + timedelta(hours=rng.randint(2, 20)), -1), "conflicting_key"))
        rows.append(
            Row(self._visit_values(twin), (twin.time + timedelta(hours=rng.randint(2, 20)), -1), ALREADY_STORED)
        )
        v, order = junk()
        values = self._visit_values(v)
        values[14], values[15] = "Narnia", "Cair Paravel"
        rows.append(Row(values, order, STORED, ("flag_invalid_country",)))
        self.junk_visits.append(v)
        v, order = junk()
        rows.append(Row([*self._visit_values(v), "unexpected"], order, "ragged_row"))
        for macro in ("{subid}", "[CLICKID]"):
            v, order = junk(macro)
            rows.append(Row(self._visit_values(v), order, STORED, ("flag_click_id_macro",)))
            self.junk_visits.append(v)
        rows.sort(key=lambda r: r.order)
        self.visit_rows = rows

    def _visit_values(self, v: Visit, when: str | None = None) -> list[str]:
        """The visits.csv row of ``v``."""
        return [
            v.click_id,
            when or self.local(v.time),
            v.campaign.id,
            v.campaign.name,
            v.source.id,
            v.source.name,
            v.offer.id,
            v.offer.name,
            v.lander.id,
            v.lander.name,
            v.network.id,
            v.network.name,
            v.external_id,
            v.ip,
            v.country,
            v.city,
            *v.device,
            v.referrer,
            *v.tracking,
        ]

    def _bad_conversions(self) -> None:
        """Refunds, bad payouts, macro and unknown click ids (the double fires are already in)."""
        rng = self.rng
        others = [c for c in self.conversions if c.visit and c.visit.network.txid_prefix != "MB"]
        negative, garbage = rng.sample(others, 2)
        negative.payout, negative.payout_written, negative.flags = -5.0, "-5", ("flag_negative_payout",)
        garbage.payout, garbage.payout_written, garbage.flags = None, "abc", ("flag_invalid_payout",)
        extra: list[Conversion] = []
        for c in rng.sample(self.conversions[: len(self.conversions) // 2], 2):
            extra.append(
                Conversion(
                    c.click_id,
                    self._settle(c.time + timedelta(hours=rng.randint(1, 6))),
                    c.visit,
                    c.ct,
                    c.txid,
                    None,
                    -(c.payout or 0.0),
                    "Refund",
                    "unknown_event_type",
                )
            )
        strays = [
            ("%7Bclick_id%7D", ("flag_click_id_macro",)),
            ("%7Bclick_id%7D", ("flag_click_id_macro",)),
            (self._uuid(), ()),
            (self._uuid(), ()),
            (self._uuid(), ()),
            (self._uuid()[:18], ("flag_click_id_malformed",)),
        ]
        for click_id, flags in strays:
            when = self._between(self.window_start, self.window_end)
            payout = rng.choice((1.8, 11.0, 38.0))
            extra.append(Conversion(click_id, when, None, "", "", payout, payout, flags=flags))
        self.conversions = sorted(
            (c for c in [*self.conversions, *extra] if c.time < self.window_end),
            key=lambda c: (c.time, c.click_id, c.ct),
        )

    def _bad_postbacks(self) -> None:
        """Invalid status codes, a mismatch, an unparseable is_error and a conflicting id (UI file only)."""
        rng = self.rng
        ui = [p for p in self.postbacks if not self.in_api(p)]
        ok = [p for p in ui if not p.is_error and p.source_id and not self._quiet_any(p)]
        picked = rng.sample(ok[: len(ok) // 2], 6)  # early rows: a repeat seconds later stays in this file
        for p, written in zip(picked[:3], ("abc", "abc", "999"), strict=True):
            p.status, p.status_written, p.flags = None, written, ("flag_invalid_status_code",)
        picked[3].status, picked[3].status_written = 500, "500"
        picked[3].flags = ("flag_error_status_mismatch",)
        for p in ui:
            if p.status is None and p.is_error and "timed out" in p.message and rng.random() < 0.5:
                p.status_written = "0"  # another spelling of "no response"
        maybe, first = picked[4:]
        extra = [
            replace(maybe, postback_id=self._hex24(), is_error_written="maybe", fate="unparseable_required", flags=()),
            replace(
                first,
                time=first.time + timedelta(seconds=95),
                is_error=True,
                status=502,
                status_written="502",
                message="Bad Gateway",
                fate="conflicting_key",
                flags=(),
            ),
        ]
        self.postbacks = sorted([*self.postbacks, *extra], key=lambda p: (p.time, p.fate != STORED, p.postback_id))
        for p in self.postbacks:
            if self.in_api(p):
                p.flags = (*p.flags, "flag_derived_postback_id")

    def in_api(self, p: Postback) -> bool:
        """Postbacks of the last local day come from the API; the others from the UI export."""
        return p.time >= self._local_midnight(self.start + timedelta(days=self.days - 1))

    def _quiet_any(self, p: Postback) -> bool:
        """True in or right after any fault's window."""
        return any(f.hour <= p.time < f.end + timedelta(hours=1) for f in self.faults)

    def _network_export(self) -> None:
        """MaxBounty's own conversion list: matches, payout differences and rows the tracker never saw."""
        rng = self.rng
        network = self.account.networks[0]
        seen: set[tuple[str, str, str]] = set()
        theirs = []
        for c in self.conversions:
            key = (c.click_id, c.ct, c.txid)
            if c.fate == STORED and c.network_id == network.id and key not in seen:
                seen.add(key)
                theirs.append(c)
        dropped = rng.sample(range(len(theirs)), 2)  # reversed by the network: missing in its export
        mismatched = set(rng.sample([i for i in range(len(theirs)) if i not in dropped], 3))
        rows: list[tuple[datetime, dict[str, str]]] = []
        for i, c in enumerate(theirs):
            if i in dropped:
                continue
            payout = (c.payout or 0.0) + (2.5 if i in mismatched else 0.0)
            rows.append((c.time, {"Sub ID": c.click_id, "Transaction ID": c.txid, "Payout": f"{payout:.2f}"}))
        converted = {c.click_id for c in self.conversions}
        idle = [v for v in self.visits if v.click_id not in converted and v.network.id == network.id]
        lost = rng.sample(idle, 4)
        specials = [
            lost[0].click_id[:20],  # truncated by the network
            lost[1].click_id[:20],
            "{clickid}",  # unreplaced macro
            "ZX-00912-B",  # malformed
            lost[2].click_id,  # a real visit whose conversion never reached the tracker
            lost[3].click_id,
            self._uuid(),  # unknown
        ]
        for sub_id in specials:
            when = self._between(self.window_start + timedelta(hours=6), self.window_end - timedelta(hours=1))
            rows.append(
                (
                    when,
                    {
                        "Sub ID": sub_id,
                        "Transaction ID": f"MB-{rng.randrange(10**9, 10**10)}",
                        "Payout": f"{rng.choice((11.0, 38.0)):.2f}",
                    },
                )
            )
        rows.sort(key=lambda r: (r[0], r[1]["Sub ID"]))
        self.network_rows = [{**values, "Conversion Time": self.local(when)} for when, values in rows]


def _meta_time(t: datetime, zone: ZoneInfo) -> str:
    """A time as Meta's Graph API writes it: ``Thursday, 19-Nov-26 09:03:17 PST``."""
    local = t.astimezone(zone)
    return (
        f"{_DAY_NAMES[local.weekday()]}, {local.day:02d}-{_MONTHS[local.month - 1]}-{local.year % 100:02d} "
        f"{local:%H:%M:%S} {local.tzname()}"
    )
