"""Input column names → canonical columns: spellings, kind inference, ``--map``.

Matching is by name, ignoring case, spaces, underscores and punctuation, so the
UI's ``Click ID``, the API's ``ClickID`` and the report's ``clickID`` are one
column.

>>> norm_key("Custom Conversion (ct)")
'customconversionct'
>>> resolve(["Postback ID", "Click ID", "Postback Time", "Is Error"]).kind
'postbacks'
>>> snake_case("Tracking Field 1"), snake_case("trackingField1")
('tracking_field_1', 'tracking_field1')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cfanalytics.exceptions import InputError, UsageError
from cfanalytics.schemas import (
    CONTENT_HASH_COLUMN,
    FLAGS,
    KINDS,
    RESERVED_NAMES,
    check_kind,
    column_names,
)

_NON_ALNUM: Final = re.compile(r"[\W_]+")


def norm_key(name: str) -> str:
    """Matching key of a column name: case-folded, letters and digits only (any script)."""
    return _NON_ALNUM.sub("", name.casefold())


def snake_case(name: str) -> str:
    """snake_case spelling of an input name (``Tracking Field 1`` → ``tracking_field_1``)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"[\W_]+", "_", s).strip("_").lower()
    return s or "column"


# Other names per canonical column. Names match by :func:`norm_key`, so the canonical name matches in any
# case and punctuation (``Click ID``, ``ClickID``, ``clickID``) and is not listed; nor is a second spelling
# of a listed name (the alias index refuses both). The report and event-log names of the ClickFlare API
# (``connectionIP``, ``deviceUserAgent``, ``connectionReferrer``, ``deviceMainLanguage``…) are those its
# public clients use; see cfanalytics/pull/_vocabulary.py for the sources. ``LocationCountryName`` (a full
# country name), ``visitID``, ``postalCode``, ``trackingField1..20`` and ``param1..20`` have no canonical
# column: they are kept as extra columns.
ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "click_id": ("cid",),
    "visit_time": ("Visit Date", "visitTimestamp"),
    "click_time": ("Click Date", "clickTimestamp"),
    "conversion_time": ("Conversion Date", "conversionTimestamp"),
    "postback_time": ("Postback Date", "Fired At"),
    "landing_id": ("Lander ID", "landingPageID"),
    "affiliate_network_id": ("Network ID",),
    "ip": ("IP Address", "connectionIP", "Visitor IP"),
    "country": ("Country Code", "locationCountry"),
    "region": ("locationRegion", "State"),
    "city": ("locationCity",),
    "isp": ("connectionISP",),
    "device_type": ("Device",),
    "os": ("deviceOS", "Operating System"),
    "os_version": ("deviceOSVersion",),
    "browser": ("deviceBrowser",),
    "browser_version": ("deviceBrowserVersion",),
    "device_brand": ("Brand",),
    "device_model": ("Model",),
    "language": ("deviceLanguage", "deviceMainLanguage", "Browser Language"),
    "user_agent": ("deviceUserAgent", "UA"),
    "referrer": ("Referer", "referrerURL", "connectionReferrer"),
    "is_filtered": ("Filtered", "Filtered Traffic"),
    "payout": ("ConversionPayout", "Revenue"),
    "currency": ("Payout Currency",),
    "txid": ("Transaction ID", "ConversionTransaction"),
    "ct": ("Custom Conversion (ct)", "Custom Conversion", "Conversion Type"),
    "status": ("Conversion Status",),
    "is_error": ("Error",),
    "status_code": ("HTTP Status", "HTTP Status Code", "Response Code"),
    "error_message": ("Error Text",),
    "postback_url": ("URL",),
    "event": ("Event Name",),
    "activity_id": ("Log ID",),
    "changed_at": ("Date", "Timestamp", "Time", "Changed On"),
    "author": ("User", "User Email", "Changed By", "Email"),
    "entity_type": ("Entity",),
    "action": ("Action Type",),
    "old_value": ("Before",),
    "new_value": ("After",),
    "campaign_name": ("Campaign",),
    "traffic_source_name": ("Traffic Source",),
    "offer_name": ("Offer",),
    "landing_name": ("Lander", "Landing", "Lander Name", "Landing Page"),
    "affiliate_network_name": ("Affiliate Network", "Network"),
    "integration_name": ("Integration",),
}

# Keys that are canonical only for some kinds; elsewhere they are ordinary extras.
_ACTIVITY_ONLY_ALIASES: Final[frozenset[str]] = frozenset({"date", "time", "timestamp", "email", "before", "after"})


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    canonical = {name for kind in KINDS for name in column_names(kind)} | {"event_type"}
    for name in sorted(canonical):
        index[norm_key(name)] = name
    for name, spellings in ALIASES.items():
        keys = [norm_key(name)]
        for spelling in spellings:
            key = norm_key(spelling)
            if key in keys:
                raise AssertionError(f"alias {spelling!r} of {name} is already matched (names match by norm_key)")
            if index.get(key, name) != name:
                raise AssertionError(f"alias {spelling!r} claimed by {index[key]} and {name}")
            index[key] = name
            keys.append(key)
    return index


ALIAS_INDEX: Final[dict[str, str]] = _build_alias_index()


def parse_map(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``--map "Header=column"`` items into ``{norm_key(Header): column}``.

    >>> parse_map(["Sub ID=click_id"])
    {'subid': 'click_id'}
    """
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else (_split_map_item(i) for i in items)
    known = set(ALIAS_INDEX.values())
    out: dict[str, str] = {}
    for header, column in pairs:
        if column not in known:
            raise UsageError(f"--map {header}={column}: {column!r} is not a canonical column")
        out[norm_key(header)] = column
    return out


def _split_map_item(item: str) -> tuple[str, str]:
    header, sep, column = item.partition("=")
    if not sep or not header.strip() or not column.strip():
        raise UsageError(f"--map {item!r}: expected 'Header=column'")
    return header.strip(), column.strip()


@dataclass
class Resolution:
    """How the columns of one input map to canonical and extra columns of one kind.

    ``kind`` is ``"events"`` for an event-log file that is split by ``event_type``.
    ``canonical`` maps raw header → canonical column; ``extras`` maps raw
    header → stored extra column name; ``ignored`` lists raw headers that map to
    a canonical column already taken by an earlier header (kept as extras too).
    """

    kind: str
    canonical: dict[str, str] = field(default_factory=dict)
    extras: dict[str, str] = field(default_factory=dict)

    def source_of(self, column: str) -> str | None:
        """The raw header that feeds canonical ``column``, if any."""
        for raw, canon in self.canonical.items():
            if canon == column:
                return raw
        return None


def _candidates(headers: Iterable[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Raw header → canonical candidate (first header wins a canonical name)."""
    found: dict[str, str] = {}
    taken: set[str] = set()
    for raw in headers:
        key = norm_key(raw)
        canon = overrides.get(key) or ALIAS_INDEX.get(key)
        if canon and canon not in taken:
            found[raw] = canon
            taken.add(canon)
    return found


def infer_kind(canonical: Iterable[str]) -> str:
    """Kind of an input from the canonical columns it has (docs/contract.md §2 order, first match wins).

    Returns ``"events"`` for an event-log file that must be split by event type.
    """
    cols = set(canonical)
    if cols & {"postback_id", "postback_time"}:
        return "postbacks"
    if {"changed_at", "action", "entity_type"} <= cols:
        return "activity"
    if "event_type" in cols:
        return "events"
    for kind, time_col in (("conversions", "conversion_time"), ("clicks", "click_time"), ("visits", "visit_time")):
        if time_col in cols:
            return kind
    raise InputError("no recognisable log columns")


def resolve(
    headers: list[str],
    *,
    kind: str | None = None,
    overrides: Mapping[str, str] | None = None,
    known_extras: Mapping[str, str] | None = None,
    name: str = "<input>",
) -> Resolution:
    """Map an input's headers to canonical and extra columns, inferring the kind.

    ``known_extras`` maps ``norm_key`` → stored extra column name already in the
    store (first-seen spelling wins across inputs). Raises ``InputError`` naming
    the file when the kind cannot be inferred or a required column is missing.
    """
    overrides = dict(overrides or {})
    candidates = _candidates(headers, overrides)
    explicit = {raw for raw in headers if norm_key(raw) in overrides}
    # Activity-only spellings ("Date", "Time", "Type"…) count only in an activity log.
    loose = {
        raw for raw, canon in candidates.items() if norm_key(raw) in _ACTIVITY_ONLY_ALIASES and raw not in explicit
    }
    strict = {raw: canon for raw, canon in candidates.items() if raw not in loose}
    try:
        inferred = infer_kind(candidates.values())
    except InputError:
        shown = ", ".join(headers[:12]) + (" …" if len(headers) > 12 else "")
        raise InputError(
            f"{name}: no recognisable log columns (found: {shown or 'none'}); use --kind and --map 'Header=column'"
        ) from None
    if inferred != "activity":
        candidates = strict
        inferred = infer_kind(candidates.values()) if candidates else inferred
    if kind is not None and kind != "events":
        check_kind(kind)
        if inferred == "events" and kind in ("visits", "clicks", "conversions"):
            target = "events"
        else:
            target = kind
    else:
        target = inferred
    allowed = set(column_names(target)) if target != "events" else _event_columns()
    if target == "events":
        allowed.add("event_type")
    res = Resolution(kind=target)
    known = dict(known_extras or {})
    used_extra: set[str] = set(known.values())
    keys_here: set[str] = set()
    for raw in headers:
        canon = candidates.get(raw)
        if canon is not None and canon in allowed:
            res.canonical[raw] = canon
            continue
        key = norm_key(raw)
        if key in known and key not in keys_here:
            keys_here.add(key)
            res.extras[raw] = known[key]
            continue
        keys_here.add(key)
        col = snake_case(raw)
        if (
            col in RESERVED_NAMES
            or col in allowed
            or col.startswith("flag_")
            or col in FLAGS
            or col == CONTENT_HASH_COLUMN
        ):
            col = f"{col}_src"
        base, n = col, 2
        while col in used_extra:
            col, n = f"{base}_{n}", n + 1
        used_extra.add(col)
        known.setdefault(key, col)
        res.extras[raw] = col
    _check_required(res, name)
    return res


def _event_columns() -> set[str]:
    return set(column_names("visits")) | set(column_names("clicks")) | set(column_names("conversions"))


_TIME_OF_EVENT: Final = {"visits": "visit_time", "clicks": "click_time", "conversions": "conversion_time"}


def _check_required(res: Resolution, name: str) -> None:
    have = set(res.canonical.values())
    if res.kind == "events":
        required = {"click_id"}
    else:
        required = set(column_names(res.kind, required_only=True))
        if res.kind == "postbacks":
            required.discard("postback_id")  # derived when the column is absent
    missing = sorted(required - have)
    if missing:
        raise InputError(
            f"{name}: {res.kind} input has no {' / '.join(missing)} column (use --map 'Header={missing[0]}')"
        )
