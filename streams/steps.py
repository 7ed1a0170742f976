"""The privacy filter's steps: small pure functions over parts of an event.

``streams.privacy_filter.filter_event`` takes them in the order of its ``STEPS``. None of
them does I/O (the GeoIP reader is a memory-mapped file) and none keeps state except
bounded caches that hold no personal data: user-agent results, languages, the
text of truncated networks (what is stored; never a full IP), and page URLs and
referrers that cleaning leaves unchanged (what is stored, likewise). ``streams.geo`` keeps
locations per /24 or /48 network, likewise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import SplitResult, quote_plus, unquote_plus, urlsplit

from crawlerdetect import CrawlerDetect
from ua_parser import parse as parse_ua

from schemas.events import Beacon, RequestContext
from streams.pii import scrub

# --- bot ------------------------------------------------------------------------------

_crawlers = CrawlerDetect()


@lru_cache(maxsize=20_000)
def is_bot(user_agent: str) -> bool:
    """Crawlers, spiders, HTTP libraries and an empty UA are not visitors.
    The patterns are the CrawlerDetect project's maintained list."""
    if not user_agent.strip():
        return True
    return bool(_crawlers.isCrawler(user_agent))


def warm_up() -> None:
    """Build the bot list's and the UA parser's matchers now (~0.25 s) rather than in
    the first requests, whose latency would carry it."""
    sample = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    is_bot.__wrapped__(sample)
    parse_user_agent.__wrapped__(sample)


# --- location (streams.geo locates), ip: parse, truncate ------------------------------


class ClientIP(NamedTuple):
    """A parsed client address. Plain integers and text rather than ``ipaddress``
    objects: that module parses and prints in Python, ~12 µs per IPv6 address, for
    every beacon. (A named tuple: as immutable as a frozen dataclass, and made in a
    third of the time.)"""

    version: int  # 4 or 6; IPv4-mapped IPv6 (::ffff:a.b.c.d) is 4
    value: int  # the address as an integer
    text: str  # canonical text form

    def __str__(self) -> str:
        return self.text


_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def parse_ip(value: str) -> ClientIP | None:
    """The client IP, with IPv4-mapped IPv6 (::ffff:a.b.c.d) treated as IPv4."""
    value = value.strip()
    if ":" not in value:  # IPv4, or nothing: every IPv6 address has a colon
        try:
            packed = socket.inet_pton(socket.AF_INET, value)
        except (OSError, ValueError):  # ValueError: a NUL or an unencodable character
            return None
        # inet_pton takes only the canonical dotted quad (no leading zeros), so the
        # text is already what inet_ntop would print
        return ClientIP(4, int.from_bytes(packed, "big"), value)
    try:
        packed = socket.inet_pton(socket.AF_INET6, value)
    except (OSError, ValueError):  # a zone (fe80::1%eth0) names a local interface, not part of the client's address
        packed = _parse_ipv6_with_zone(value)
        if packed is None:
            return None
    if packed.startswith(_MAPPED_PREFIX):
        return ClientIP(4, int.from_bytes(packed[12:], "big"), socket.inet_ntop(socket.AF_INET, packed[12:]))
    return ClientIP(6, int.from_bytes(packed, "big"), socket.inet_ntop(socket.AF_INET6, packed))


def _parse_ipv6_with_zone(value: str) -> bytes | None:
    address, percent, zone = value.partition("%")
    if not percent or not zone:
        return None
    try:
        return socket.inet_pton(socket.AF_INET6, address)
    except (OSError, ValueError):  # ValueError: a NUL or an unencodable character
        return None


def truncate_ip(ip: ClientIP | None, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> str:
    """Keep only the network part: 203.0.113.77 → 203.0.113.0, 2001:db8:1:2::5 → 2001:db8:1::."""
    if ip is None:
        return ""
    # (IPv4, most clients, without the call to dropped_bits)
    shift = 32 - ipv4_prefix if ip.version == 4 else dropped_bits(ip, ipv4_prefix, ipv6_prefix)
    return _network_text(ip.version, ip.value >> shift << shift)


def dropped_bits(ip: ClientIP, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> int:
    """How many trailing bits of ``ip`` the truncation drops."""
    if ip.version == 4:
        return 32 - ipv4_prefix
    if is_6to4(ip):
        return 128 - min(ipv6_prefix, 16 + ipv4_prefix)
    return 128 - ipv6_prefix


def is_6to4(ip: ClientIP) -> bool:
    """2002::/16 carries the client's whole IPv4 address in the next 32 bits, inside
    the /48 an IPv6 address keeps: such an address keeps what its IPv4 address would
    (2002 + /24 = /40)."""
    return ip.version == 6 and ip.value >> 112 == 0x2002


@lru_cache(maxsize=4096)
def _network_text(version: int, network: int) -> str:
    """The text of a truncated address. Remembered: it is the value stored (a network,
    not a client's address), and printing it was half the cost of truncating."""
    family, size = (socket.AF_INET, 4) if version == 4 else (socket.AF_INET6, 16)
    return socket.inet_ntop(family, network.to_bytes(size, "big"))


# --- ids, opted_out -------------------------------------------------------------------


def device_consent_withdrawn(context: RequestContext) -> bool:
    """DNT: 1 and Sec-GPC: 1 withdraw device-level consent whatever the beacon says."""
    return context.dnt or context.gpc


def consented_ids(beacon: Beacon, context: RequestContext) -> tuple[str, str]:
    """(device_id, mac) as may be stored: each only with its own consent flag, and
    neither under DNT or GPC."""
    if device_consent_withdrawn(context):
        return "", ""
    device_id = beacon.device_id if beacon.consent.device_id else ""
    mac = normalise_mac(beacon.mac) if beacon.consent.mac and beacon.mac else ""
    return device_id, mac


def pseudonymise(value: str, key: bytes) -> str:
    """A keyed hash of a consented identifier: the same ID always gives the same
    pseudonym (so a data-subject request can find its rows), but without the key,
    which is never stored with the data, the ID cannot be recovered or tested."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def subject_pseudonyms(device_id: str, mac: str, key: bytes) -> list[str]:
    """The pseudonyms under which a subject named by these IDs is known."""
    out = [pseudonymise(device_id, key)] if device_id else []
    return out + ([pseudonymise(normalise_mac(mac), key)] if mac else [])


def objected(beacon: Beacon, key: bytes, opted_out: frozenset[str]) -> bool:
    """Whether the beacon's device ID or MAC belongs to someone who objected."""
    return any(p in opted_out for p in subject_pseudonyms(beacon.device_id, beacon.mac, key))


def normalise_mac(mac: str) -> str:
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


# --- user_agent -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Software:
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device_class: str = ""  # desktop | mobile | tablet | other


_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk/", "playbook")


@lru_cache(maxsize=20_000)
def parse_user_agent(user_agent: str) -> Software:
    """Browser, OS and device class from the uap-core rules (ua-parser)."""
    result = parse_ua(user_agent)
    ua, os_, device = result.user_agent, result.os, result.device
    return Software(
        browser=ua.family if ua else "",
        browser_version=ua.major or "" if ua else "",
        os=os_.family if os_ else "",
        os_version=".".join(p for p in (os_.major, os_.minor) if p) if os_ else "",
        device_class=_device_class(user_agent.lower(), os_.family if os_ else "", device is not None),
    )


def _device_class(ua: str, os_family: str, has_device: bool) -> str:
    if any(hint in ua for hint in _TABLET_HINTS) or (os_family == "Android" and "mobile" not in ua):
        return "tablet"
    if "mobi" in ua or os_family in ("iOS", "Android", "Windows Phone"):
        return "mobile"
    if os_family in ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "FreeBSD"):
        return "desktop"
    return "other" if has_device or os_family else ""


# --- language -------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def language(beacon_lang: str, accept_language: str) -> str:
    """The beacon's BCP 47 tag, else the first of Accept-Language; normalised (fr-CA)."""
    tag = beacon_lang or accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    if not tag or tag == "*" or len(tag) > 35:
        return ""
    first, *rest = tag.replace("_", "-").split("-")
    if not first.isalpha():
        return ""
    parts = [first.lower()] + [p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p.lower() for p in rest]
    return "-".join(parts)


# --- url, referrer --------------------------------------------------------------------

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


class CleanURL(NamedTuple):
    url: str  # scheme://host/path?<kept params>, no fragment, no credentials
    hostname: str
    path: str
    utm: dict[str, str]  # shared by the results clean_url remembers: read, never change
    dropped_params: int  # query parameters removed


def clean_url(url: str, keep_params: frozenset[str] = frozenset(), pii: dict[str, int] | None = None) -> CleanURL:
    """Keep scheme, host, path, ``utm_*`` and explicitly allowed parameters; drop the
    rest of the query (it often carries e-mails, tokens or session IDs), the fragment
    and any user:password. With ``pii``, personal-looking values left in the path
    and kept parameters are replaced (``streams.pii``) and counted there."""
    if pii is None:
        return _clean_url(url, keep_params, None)
    return _cleaned_once(_verbatim_urls, (url, keep_params), url, pii, _clean_url, url, keep_params)


def _clean_url(url: str, keep_params: frozenset[str], pii: dict[str, int] | None) -> CleanURL:
    scheme, netloc, path, query = _split_url(url)
    hostname, port = _host_and_port(scheme, netloc)
    path = path or "/"
    if pii is not None:
        path = scrub(path, pii)
    kept, dropped = _kept_params(query, keep_params) if query else ([], 0)
    if not kept:  # most page views: nothing more to do
        return CleanURL(f"{scheme}://{hostname}{port}{path}", hostname, path, {}, dropped)
    if pii is not None:
        kept = [(k, scrub(v, pii)) for k, v in kept]
    utm = {k: v[:256] for k, v in kept if k in UTM_KEYS}
    return CleanURL(f"{scheme}://{hostname}{port}{path}?{_encode_params(kept)}", hostname, path, utm, dropped)


# Pages and referrers repeat: every visitor of a page sends its URL, and most come
# from a few referrers. Cleaning a URL cost ~5 µs, a referrer ~1.5 µs; a dict lookup
# 0.1 µs. Only a URL or referrer that cleaning, scrubbing included, leaves exactly as
# it came is remembered (keyed by that text): one that loses a parameter, a
# fragment, credentials or a personal-looking value is cleaned every time, so these
# caches hold nothing that is not stored in the rows anyway. (For clean_url with
# ``pii``, the filter's call: without it nothing is scrubbed.)
_VERBATIM_CACHE_SIZE = 4096  # entries per cache (a URL is ≤ 2 kB); emptied when full
_verbatim_urls: dict[tuple[str, frozenset[str]], CleanURL] = {}
_verbatim_referrers: dict[str, tuple[str, str]] = {}


def _cleaned_once(cache: dict, key: object, text: str, pii: dict[str, int], clean, *args):
    """``clean(*args, found)``, or what it gave for ``key`` before. Its result's first
    item is the cleaned text: only a result equal to ``text``, with nothing scrubbed,
    is remembered."""
    result = cache.get(key)
    if result is None:
        found: dict[str, int] = {}
        result = clean(*args, found)
        if found:
            for kind, n in found.items():
                pii[kind] = pii.get(kind, 0) + n
        elif result[0] == text:
            if len(cache) >= _VERBATIM_CACHE_SIZE:
                cache.clear()
            cache[key] = result
    return result


# The usual URL: lower-case http(s), a bare host name, then path, query and fragment,
# with no tab or line break before the fragment (urlsplit deletes those first).
_PLAIN_URL = re.compile(r"(https?)://([A-Za-z0-9.-]+)(/[^?#\t\n\r]*)?(?:\?([^#\t\n\r]*))?(?:#|\Z)")


def _split_url(url: str) -> tuple[str, str, str, str]:
    """(scheme, netloc, path, query) as ``urlsplit`` gives them. For the usual URL one
    regex finds them at a fifth of urlsplit's cost; every other URL goes to urlsplit."""
    match = _PLAIN_URL.match(url)
    if match is not None:
        return match.groups("")  # type: ignore[return-value]
    parts = urlsplit(url)
    return parts.scheme, parts.netloc, parts.path, parts.query


def _host_and_port(scheme: str, netloc: str) -> tuple[str, str]:
    """(lower-case host, ":port" when it is not the scheme's default, else "")."""
    if "@" not in netloc and ":" not in netloc and "[" not in netloc:  # the usual case: a bare host name
        return netloc.lower(), ""
    parts = SplitResult(scheme, netloc, "", "", "")  # its hostname and port come from the netloc only
    hostname = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return hostname, ""
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return hostname, ""
    return hostname, f":{port}"


_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode_params(params: list[tuple[str, str]]) -> str:
    """``urlencode``, without its per-character quoting for the usual plain pairs
    (quote_plus leaves these characters as they are)."""
    return "&".join(
        [f"{k}={v}" if _URL_SAFE.fullmatch(k + v) else f"{quote_plus(k)}={quote_plus(v)}" for k, v in params]
    )


def _kept_params(query: str, keep_params: frozenset[str]) -> tuple[list[tuple[str, str]], int]:
    """The (name, value) pairs to keep, decoded like ``parse_qsl``, and how many
    others were dropped; only kept values are decoded."""
    kept, dropped = [], 0
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        name = _unquote_plus(name)
        if name in UTM_KEYS or name in keep_params:
            kept.append((name, _unquote_plus(value)))
        else:
            dropped += 1
    return kept, dropped


def _unquote_plus(text: str) -> str:
    """``unquote_plus``, skipped (it would return the text) when there is nothing to decode."""
    return unquote_plus(text) if "%" in text or "+" in text else text


def clean_referrer(referrer: str, pii: dict[str, int] | None = None) -> tuple[str, str]:
    """(referrer without query or fragment, its host) – or empty when unusable. The
    referrer keeps a port that is not its scheme's default, as the page URL does; the
    host, which names the source, has none."""
    if not referrer or pii is None:
        return _clean_referrer(referrer, pii)
    return _cleaned_once(_verbatim_referrers, referrer, referrer, pii, _clean_referrer, referrer)


def _clean_referrer(referrer: str, pii: dict[str, int] | None) -> tuple[str, str]:
    if not referrer:
        return "", ""
    scheme, netloc, path, _query = _split_url(referrer)
    if scheme not in ("http", "https"):
        return "", ""
    host, port = _host_and_port(scheme, netloc)
    if not host:
        return "", ""
    path = scrub(path or "/", pii) if pii is not None else path or "/"
    return f"{scheme}://{host}{port}{path}", host


# --- referrer: its source -------------------------------------------------------------


def referrer_source(referrer_host: str, page_host: str, utm_source: str) -> str:
    """Where the visit came from: ``utm_source`` when the page says so, else the
    referring host without ``www.``; empty for direct visits and internal navigation."""
    if utm_source:
        return utm_source.lower()[:100]
    if not referrer_host or _same_site(referrer_host, page_host):
        return ""
    return referrer_host.removeprefix("www.")


def _same_site(a: str, b: str) -> bool:
    return a.removeprefix("www.") == b.removeprefix("www.")
