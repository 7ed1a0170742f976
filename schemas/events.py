"""Python types for what flows through the pipeline, in order:

``Beacon`` (what a page sent, validated against ``beacon.v1.json``)
→ ``RawEvent`` (the beacon plus what the collector saw: time, full IP, headers)
→ ``Event`` (the privacy-filtered row stored in ``beacon.events``).

A ``RawEvent`` holds personal data (the full IP) and only ever lives in memory, in
the raw Kafka topic (≤ 24 h) or the collector's spool; an ``Event`` holds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# No slots=True on the types that are serialised (RawEvent into raw Kafka records,
# Event into rows): orjson writes a dataclass's __dict__ as fast as a dict, but reads
# slotted fields one getattr at a time, 6 to 8 times slower (4.5 µs against 0.6 for
# a RawEvent). Nor frozen=True on one made per request (RequestContext): a frozen
# __init__ sets each field through object.__setattr__.


@dataclass(frozen=True)
class Consent:
    analytics: bool = False
    device_id: bool = False
    mac: bool = False


# Consent is immutable and has eight values: beacons share them (no object per beacon),
# here and when raw records are decoded (streams.records).
CONSENTS = {(a, d, m): Consent(a, d, m) for a in (False, True) for d in (False, True) for m in (False, True)}


def _consent(given: dict[str, bool] | None) -> Consent:
    if not given:
        return CONSENTS[False, False, False]
    return CONSENTS[given.get("analytics", False), given.get("device_id", False), given.get("mac", False)]


@dataclass
class Beacon:
    site: str
    url: str
    type: str = "pageview"
    name: str = ""
    referrer: str = ""
    props: dict[str, str | int | float | bool] = field(default_factory=dict)
    lang: str = ""
    screen: str = ""
    ts: int | None = None
    consent: Consent = Consent()
    device_id: str = ""
    mac: str = ""
    revenue_amount: str = ""  # decimal text, three decimals at most ("" without revenue)
    revenue_currency: str = ""  # ISO 4217, upper case

    @classmethod
    def from_valid(cls, data: dict[str, Any]) -> Beacon:
        """Build from a dict that already passed the JSON Schema; unknown keys are ignored."""
        get = data.get
        # By position, in field order (the comments name them): matching twelve
        # keywords cost ~1 µs of the collector's path.
        revenue = get("revenue")
        return cls(
            data["site"].lower(),
            data["url"],
            get("type", "pageview"),
            get("name", ""),  # site, url, type, name
            get("referrer", ""),
            get("props") or {},
            get("lang", ""),
            get("screen", ""),  # referrer, props, lang, screen
            get("ts"),
            _consent(get("consent")),
            get("device_id", ""),
            get("mac", ""),  # ts, consent, device_id, mac
            *(_revenue(revenue) if revenue else ("", "")),  # revenue_amount, revenue_currency
        )


_THOUSANDTH = Decimal("0.001")


def _revenue(revenue: dict[str, Any]) -> tuple[str, str]:
    """A valid ``revenue`` (beacon.v1.json) as the store keeps it: the amount to three
    decimals (half up: Plausible's Decimal64(3)), the currency in upper case."""
    amount = Decimal(str(revenue["amount"])).quantize(_THOUSANDTH, rounding=ROUND_HALF_UP)
    return str(amount), revenue["currency"].upper()


@dataclass
class RequestContext:
    """What the collector knows about the HTTP request that carried beacons."""

    received_at: float  # server clock, epoch seconds: the time of record
    ip: str  # full client IP: personal data, dropped by the privacy filter
    user_agent: str = ""
    accept_language: str = ""
    dnt: bool = False  # DNT: 1
    gpc: bool = False  # Sec-GPC: 1


@dataclass
class RawEvent:
    event_id: str
    beacon: Beacon
    context: RequestContext
    zone: str = "UTC"  # the site's time zone, stamped by the collector: the visitor hash covers its local day


@dataclass
class Event:
    """One row of ``beacon.events``. Field names are the column names."""

    event_id: str
    site: str
    type: str
    name: str
    ts: float
    client_ts: float | None
    hostname: str
    path: str
    url: str
    referrer: str
    referrer_source: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str
    ip_truncated: str
    country_code: str
    region: str
    city: str
    browser: str
    browser_version: str
    os: str
    os_version: str
    device_class: str
    language: str
    screen: str
    props: dict[str, str]
    device_id: str
    mac: str
    visitor_id: int = 0  # daily-salted hash (streams/visitor.py); 0 when not computed
    revenue_amount: str = "0"  # decimal text: the column is Decimal64(3)
    revenue_currency: str = ""  # ISO 4217; '' without revenue
    batch_id: str = ""  # the collector micro-batch it came in (Kafka mode): the sink's dedup key
