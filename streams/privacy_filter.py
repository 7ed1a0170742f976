"""The privacy filter: ``RawEvent`` (full IP, raw IDs) → ``Event`` (storable) or a drop.

``filter_event`` takes the steps of ``STEPS`` in its order, which is the policy's
(tests/test_filter_steps.py checks that this list, ``STEPS`` and the calls made by
``filter_event`` name the same steps in the same order):
  1. ``opted_out``  – events carrying an ID whose owner objected are dropped, whatever
                      their consent flags say
  2. ``bot``        – crawlers are dropped, not stored
  3. ``location``   – GeoIP lookup on the *full* IP (a truncated IP gives wrong places)
  4. ``visitor``    – the daily-salted visitor hash of the full IP (streams/visitor.py)
  5. ``ip``         – IP truncation: IPv4 → /24, IPv6 → /48 (configurable); the full IP ends here
  6. ``ids``        – device_id / MAC only with their consent flag, never under DNT/GPC,
                      and then only as a keyed hash (pseudonym)
  7. ``user_agent`` – browser, OS, device class; the UA string itself is not kept
  8. ``language``
  9. ``url``        – path + utm_* (+ allowed params); other query params dropped; e-mails,
                      IPs, MACs and UUID-shaped IDs left in the path and kept values become [kind]
 10. ``referrer``   – scheme, host and path, scrubbed likewise; then the referrer source
 11. ``pii``        – the event name and props scrubbed likewise; what was scrubbed is counted
The same function runs in ``beacon serve``, in the Faust worker and in ``beacon dlq``.

The steps are written out in ``filter_event`` rather than run by a loop over
``STEPS``: each value lives in a local named after the ``Event`` field it becomes
(the test checks the names), and ``Event`` is built by position. A loop over step
functions filling a slotted object cost about 18 % of the filter, ~1.6 µs a beacon
(the object 7 %, the calls the rest; bench/filter_bench.py's beacons, both forms
alternated in one process): over the 5 % the filter may spend on its form.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.events import Event, RawEvent
from streams import steps
from streams.geo import GeoLookup
from streams.pii import scrub
from streams.visitor import Salts, visitor_id

# Why an event is dropped: a closed set, each the name of the step that drops. A drop
# is counted in the ``actions`` Counter as ``<reason>_dropped``; actions taken on kept
# events likewise, under closed names (ip_truncated, ip_invalid, device_id_dropped,
# mac_dropped, query_params_dropped, pii_scrubbed, pii_<kind>, visitor_unhashed; and
# filter_error, counted by streams.embedded). They label metrics: none carries data.
DROP_OPTED_OUT = "opted_out"
DROP_BOT = "bot"
DROP_REASONS = frozenset({DROP_OPTED_OUT, DROP_BOT})

MAX_CLIENT_TS_MS = 4102444799999  # 2099-12-31T23:59:59.999Z, the beacon schema's maximum


@dataclass(frozen=True)
class FilterConfig:
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    keep_query_params: frozenset[str] = frozenset()
    # Key of the pseudonyms of consented IDs. The default, random per process, keeps
    # raw IDs out of storage but makes them unfindable: deployments set their own.
    id_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)


@dataclass
class FilterEnv:
    geo: GeoLookup
    config: FilterConfig = field(default_factory=FilterConfig)
    # Pseudonyms of IDs whose owner objected (``use_objections``).
    opted_out: frozenset[str] = frozenset()
    # Daily salts of the cookieless visitor hash; without them visitor_id stays 0.
    salts: Salts | None = None

    def use_objections(self, subjects: frozenset[str]) -> None:
        """How objections reach the filter: the whole current set, replacing the last
        (``storage.privacy.OptOutList`` keeps it in step with the store)."""
        self.opted_out = subjects


@dataclass(frozen=True, slots=True)
class Dropped:
    event_id: str
    reason: str


# The steps, in the policy's order: each name, and the function that takes the step.
STEPS: tuple[tuple[str, Callable], ...] = (
    ("opted_out", steps.objected),
    ("bot", steps.is_bot),
    ("location", GeoLookup.locate),
    ("visitor", visitor_id),
    ("ip", steps.truncate_ip),
    ("ids", steps.consented_ids),
    ("user_agent", steps.parse_user_agent),
    ("language", steps.language),
    ("url", steps.clean_url),
    ("referrer", steps.clean_referrer),
    ("pii", scrub),
)
STEP_NAMES = tuple(name for name, _ in STEPS)


def filter_event(raw: RawEvent, env: FilterEnv, actions: dict[str, int]) -> Event | Dropped:
    """Filter one event, counting what was done in ``actions`` (a Counter, or the
    plain dict ``filter_batch`` uses)."""
    beacon, ctx, config = raw.beacon, raw.context, env.config
    has_ids = beacon.device_id or beacon.mac  # most beacons carry neither: they skip the ids step's work

    if env.opted_out and has_ids and steps.objected(beacon, config.id_key, env.opted_out):
        _count(actions, "opted_out_dropped")
        return Dropped(raw.event_id, DROP_OPTED_OUT)

    if steps.is_bot(ctx.user_agent):
        _count(actions, "bot_dropped")
        return Dropped(raw.event_id, DROP_BOT)

    # What the beacon gives as it is, and the time it came:
    event_id, site, type_, screen, ts = raw.event_id, beacon.site, beacon.type, beacon.screen, ctx.received_at
    # A client clock the column cannot hold (the collector refuses it; a raw record
    # from elsewhere might not) would fail the whole INSERT of its batch.
    client_ts = beacon.ts / 1000 if beacon.ts is not None and 0 <= beacon.ts <= MAX_CLIENT_TS_MS else None

    ip = steps.parse_ip(ctx.ip)
    country_code, region, city = env.geo.locate(ip)

    visitor_id_ = visitor_id(env.salts, ts, site, str(ip), ctx.user_agent, raw.zone) if env.salts else 0
    if env.salts and not visitor_id_:
        _count(actions, "visitor_unhashed")  # the day's salt is gone (a late backlog) or unreachable

    ip_truncated = steps.truncate_ip(ip, config.ipv4_prefix, config.ipv6_prefix)
    _count(actions, "ip_truncated" if ip is not None else "ip_invalid")

    device_id = mac = ""
    if has_ids:
        device_id, mac = steps.consented_ids(beacon, ctx)
        if beacon.device_id and not device_id:
            _count(actions, "device_id_dropped")
        if beacon.mac and not mac:
            _count(actions, "mac_dropped")
        device_id = steps.pseudonymise(device_id, config.id_key) if device_id else ""
        mac = steps.pseudonymise(mac, config.id_key) if mac else ""

    software = steps.parse_user_agent(ctx.user_agent)
    browser, browser_version, device_class = software.browser, software.browser_version, software.device_class
    os_, os_version = software.os, software.os_version

    language = steps.language(beacon.lang, ctx.accept_language)

    pii: dict[str, int] = {}  # kind → count
    page = steps.clean_url(beacon.url, config.keep_query_params, pii)
    hostname, path, url = page.hostname, page.path, page.url
    if page.dropped_params:
        _count(actions, "query_params_dropped")
    # (Most pages have no utm_* parameter: they skip five lookups in an empty dict.)
    utm_source, utm_medium, utm_campaign, utm_term, utm_content = _utm_values(page.utm) if page.utm else _NO_UTM

    referrer, referrer_host = steps.clean_referrer(beacon.referrer, pii)
    referrer_source = steps.referrer_source(referrer_host, hostname, utm_source) if referrer_host or utm_source else ""

    name = scrub(beacon.name, pii) if beacon.name else ""
    props = _scrub_props(beacon.props, pii) if beacon.props else {}
    # Money, not personal data: kept as sent (validated, three decimals) or none.
    revenue_amount, revenue_currency = beacon.revenue_amount or "0", beacon.revenue_currency
    if pii:
        _count(actions, "pii_scrubbed")
        for kind, n in pii.items():
            _count(actions, f"pii_{kind}", n)

    return Event(
        event_id,
        site,
        type_,
        name,
        ts,
        client_ts,
        hostname,
        path,
        url,
        referrer,
        referrer_source,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_term,
        utm_content,
        ip_truncated,
        country_code,
        region,
        city,
        browser,
        browser_version,
        os_,
        os_version,
        device_class,
        language,
        screen,
        props,
        device_id,
        mac,
        visitor_id_,
        revenue_amount,
        revenue_currency,
    )


def filter_batch(raws: Iterable[RawEvent], env: FilterEnv) -> tuple[list[Event], list[Dropped], Counter]:
    # Counted in a plain dict, made a Counter once: a Counter's ``+= 1`` costs three
    # times a dict's get and set, and every beacon counts one to three actions.
    actions: dict[str, int] = {}
    kept: list[Event] = []
    dropped: list[Dropped] = []
    for raw in raws:
        result = filter_event(raw, env, actions)
        (dropped if isinstance(result, Dropped) else kept).append(result)
    return kept, dropped, Counter(actions)


def _count(actions: dict[str, int], action: str, n: int = 1) -> None:
    actions[action] = actions.get(action, 0) + n


_NO_UTM = ("",) * len(steps.UTM_KEYS)


def _utm_values(utm: dict[str, str]) -> tuple[str, ...]:
    return tuple([utm.get(key, "") for key in steps.UTM_KEYS])


def _scrub_props(props: dict[str, str | int | float | bool], pii: dict[str, int]) -> dict[str, str]:
    return {scrub(k, pii): scrub(_prop_text(v), pii) for k, v in props.items()}


def _prop_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
