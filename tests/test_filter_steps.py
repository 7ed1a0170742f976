"""The privacy filter's steps, one by one, on the edge cases the policy cares about."""

from __future__ import annotations

import ipaddress
import itertools
import random
import socket
from collections import Counter
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from schemas.events import Beacon, Consent, RawEvent, RequestContext
from storage.sink import encode_rows
from streams import steps
from streams.geo import GeoLookup
from streams.privacy_filter import Dropped, FilterConfig, FilterEnv, filter_event
from streams.records import RawBatch, decode_raw_batch, encode_raw_batch
from streams.visitor import DailySalts, visitor_id

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
IPAD = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"


@pytest.mark.parametrize(
    "raw, truncated",
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.1.2.3", "10.1.2.0"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::"),
        ("2001:DB8:abcd:ffff::1", "2001:db8:abcd::"),
        ("::ffff:198.51.100.7", "198.51.100.0"),  # IPv4-mapped IPv6 is IPv4
        ("::1", "::"),
        (" 203.0.113.9 ", "203.0.113.0"),
        ("fe80::1:2:3%eth0", "fe80::"),
        # 6to4: 2002:c633:6401:: is 198.51.100.1 whole; it keeps what the IPv4 /24 keeps.
        ("2002:c633:6401::1", "2002:c633:6400::"),
        ("2002:cb00:71ff:1::5", "2002:cb00:7100::"),
    ],
)
def test_truncate_ip(raw, truncated):
    assert steps.truncate_ip(steps.parse_ip(raw)) == truncated


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "unknown",
        "999.1.1.1",
        "203.0.113",
        "1.2.3.4.5",
        "fe80::zz",
        "<script>",
        "203.0.113.5:8080",
        "203.0.113.5\x00",
        "::1\x00",
        "\ud800",
        "01.2.3.4",
        "203.0.113.5%eth0",
        "%",
        "1:2",
    ],
)
def test_invalid_ip_is_none_and_truncates_to_empty(raw):
    assert steps.parse_ip(raw) is None
    assert steps.truncate_ip(None) == ""


def test_ipv4_text_is_canonical():
    rng = random.Random(7)
    texts = [
        ".".join(
            rng.choice(["0", "1", "00", "01", "9", "10", "99", "100", "255", "256", "0255", "+1", " 1", "1 "])
            for _ in range(rng.choice([3, 4, 4, 4, 5]))
        )
        for _ in range(20_000)
    ]
    parsed = 0
    for text in texts:
        ip = steps.parse_ip(text)
        try:
            packed = socket.inet_pton(socket.AF_INET, text.strip())
        except OSError:
            assert ip is None or ip.version == 6, text
            continue
        assert ip.text == socket.inet_ntop(socket.AF_INET, packed), text
        parsed += 1
    assert parsed > 1000


@pytest.mark.parametrize("raw", ["203.0.113.77", "::ffff:198.51.100.7", "2001:db8:1:2::5", "fe80::1%eth0"])
def test_parsed_ip_agrees_with_the_ipaddress_module(raw):
    ip = steps.parse_ip(raw)
    assert type(ip) is steps.ClientIP and str(ip) == ip.text
    assert (ip.version, ip.value) == (ipaddress.ip_address(ip.text).version, int(ipaddress.ip_address(ip.text)))


def test_truncation_prefix_is_configurable():
    ip = steps.parse_ip("203.0.113.77")
    assert steps.truncate_ip(ip, ipv4_prefix=16) == "203.0.0.0"
    ip6 = steps.parse_ip("2001:db8:1:2::5")
    assert steps.truncate_ip(ip6, ipv6_prefix=32) == "2001:db8::"
    assert (steps.truncate_ip(ip, ipv4_prefix=0), steps.truncate_ip(ip6, ipv6_prefix=0)) == ("0.0.0.0", "::")


def test_mapped_ipv6_is_located_as_ipv4(geoip_db):
    geo = GeoLookup(geoip_db)
    assert geo.locate(steps.parse_ip("::ffff:198.51.100.7")).city == "Paris"
    assert geo.locate(steps.parse_ip("2001:db8:1::9")).country_code == "DE"
    assert geo.locate(steps.parse_ip("8.8.8.8")).country_code == ""
    assert geo.locate(None).country_code == ""


def test_geo_remembers_truncated_networks_only_and_never_a_full_ip(geoip_db):
    geo = GeoLookup(geoip_db)
    for _ in range(2):  # the second round answers from what the first one remembered
        # The two halves of 203.0.113.0/24 are different cities: that /24 is remembered as the database's map of it.
        assert geo.locate(steps.parse_ip("203.0.113.5")).city == "Montreal"
        assert geo.locate(steps.parse_ip("203.0.113.200")).city == "Toronto"
        assert geo.locate(steps.parse_ip("198.51.100.7")).city == "Paris"
        assert geo.locate(steps.parse_ip("2001:db8:1:2::9")).city == "Berlin"
        assert geo.locate(steps.parse_ip("2001:db8:3::1")).country_code == ""
    remembered = geo._by_network
    assert (4, 0xC6336400 >> 8) in remembered and (6, 0x20010DB80001) in remembered  # 198.51.100/24, 2001:db8:1::/48
    assert not any(version == 4 and network >> 24 or version == 6 and network >> 48 for version, network in remembered)
    split = remembered[4, 0xCB007100 >> 8]
    assert split.starts == [0xCB007100, 0xCB007180]  # the database's halves, whoever came
    assert [location.city for location in split.locations] == ["Montreal", "Toronto"]


@pytest.mark.parametrize("ipv4_prefix", [24, 16, 8])  # 8: a map of more than 16 parts, looked up every time
def test_every_address_of_a_split_network_gets_the_database_answer(geoip_db, ipv4_prefix):
    geo, fresh = GeoLookup(geoip_db, ipv4_prefix=ipv4_prefix), GeoLookup(geoip_db)
    addresses = [f"203.0.113.{n}" for n in range(256)] + ["203.0.112.255", "203.0.114.0", "203.0.0.1"]
    for text in addresses + addresses[::-1]:  # first from the database, then from the map
        assert geo.locate(steps.parse_ip(text)) == fresh._lookup(text)[0], text
    assert set(geo._by_network) == {(4, steps.parse_ip(text).value >> (32 - ipv4_prefix)) for text in addresses}


def test_geo_remembers_a_6to4_address_by_its_ipv4_network_only(geoip_db):
    geo = GeoLookup(geoip_db)
    geo.locate(steps.parse_ip("2002:c633:6401::1"))  # 198.51.100.1 inside
    assert all(network >> 40 == 0 for version, network in geo._by_network if version == 6)
    assert (6, 0x2002C6336401) not in geo._by_network


def test_geo_remembers_no_more_of_an_address_than_the_truncation_keeps(geoip_db):
    """With --ipv4-prefix 16 / --ipv6-prefix 32, not even a /24 or /48 stays in memory
    (the /16 and /32 around the test database's /24 and /48 networks are remembered
    as the database's maps of them), and the answers stay right."""
    geo = GeoLookup(geoip_db, ipv4_prefix=16, ipv6_prefix=32)
    for _ in range(2):
        assert geo.locate(steps.parse_ip("198.51.100.7")).city == "Paris"
        assert geo.locate(steps.parse_ip("2001:db8:1:2::9")).city == "Berlin"
        geo.locate(steps.parse_ip("2002:c633:6401::1"))
    assert all(network >> 16 == 0 if version == 4 else network >> 32 == 0 for version, network in geo._by_network)


def test_geo_without_database_is_empty():
    assert GeoLookup(None).locate(steps.parse_ip("203.0.113.5")).country_code == ""


# --- consent × DNT × GPC ---------------------------------------------------------

CONSENT_CASES = list(itertools.product([False, True], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("consent_device, consent_mac, dnt, gpc", CONSENT_CASES)
def test_identifiers_need_their_own_consent_and_no_dnt_or_gpc(consent_device, consent_mac, dnt, gpc):
    beacon = Beacon(
        site="example.com",
        url="https://example.com/",
        device_id="dev-123",
        mac="AA-BB-CC-DD-EE-FF",
        consent=Consent(analytics=True, device_id=consent_device, mac=consent_mac),
    )
    context = RequestContext(received_at=0.0, ip="203.0.113.5", dnt=dnt, gpc=gpc)
    device_id, mac = steps.consented_ids(beacon, context)
    withdrawn = dnt or gpc
    assert device_id == ("dev-123" if consent_device and not withdrawn else "")
    assert mac == ("aa:bb:cc:dd:ee:ff" if consent_mac and not withdrawn else "")


def test_missing_consent_flags_mean_not_granted():
    beacon = Beacon(site="example.com", url="https://example.com/", device_id="dev-1", mac="aabbccddeeff")
    assert steps.consented_ids(beacon, RequestContext(0.0, "203.0.113.5")) == ("", "")


# --- user agent, bots -----------------------------------------------------------


@pytest.mark.parametrize(
    "ua, browser, os_, device_class",
    [
        (CHROME, "Chrome", "Windows", "desktop"),
        (IPHONE, "Mobile Safari", "iOS", "mobile"),
        (IPAD, "Mobile Safari", "iOS", "tablet"),
    ],
)
def test_user_agent_is_reduced_to_browser_os_and_class(ua, browser, os_, device_class):
    software = steps.parse_user_agent(ua)
    assert (software.browser, software.os, software.device_class) == (browser, os_, device_class)


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.4.0",
        "python-requests/2.31.0",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "",
    ],
)
def test_bots_are_detected(ua):
    assert steps.is_bot(ua)


@pytest.mark.parametrize("ua", [CHROME, IPHONE, IPAD])
def test_browsers_are_not_bots(ua):
    assert not steps.is_bot(ua)


# --- language, URLs, referrers --------------------------------------------------


@pytest.mark.parametrize(
    "beacon_lang, accept, expected",
    [
        ("fr-ca", "", "fr-CA"),
        ("", "de-DE,de;q=0.9,en;q=0.8", "de-DE"),
        ("", "", ""),
        ("", "*", ""),
        ("zh-hant-tw", "en", "zh-Hant-TW"),
        ("EN", "fr", "en"),
    ],
)
def test_language(beacon_lang, accept, expected):
    assert steps.language(beacon_lang, accept) == expected


def test_url_keeps_path_and_utm_only():
    page = steps.clean_url(
        "https://User:Pw@Example.com:443/shop/item?id=7&email=a%40b.c&utm_source=news&utm_medium=mail#top"
    )
    assert page.url == "https://example.com/shop/item?utm_source=news&utm_medium=mail"
    assert (page.hostname, page.path) == ("example.com", "/shop/item")
    assert page.utm == {"utm_source": "news", "utm_medium": "mail"}
    assert page.dropped_params == 2


def test_url_allowed_params_and_ports():
    page = steps.clean_url("http://example.com:8080?q=shoes&session=abc", keep_params=frozenset({"q"}))
    assert page.url == "http://example.com:8080/?q=shoes"
    assert page.dropped_params == 1


def test_url_parts_are_urlsplits_own():
    """clean_url's fast split gives what urlsplit gives, on odd URLs and on random ones."""
    odd = [
        "https://example.com",
        "https://example.com?q=1",
        "https://example.com#f?x",
        "https://Example.COM/A?B#C",
        "HTTPS://example.com/",
        "https://exa\tmple.com/p",
        "https://example.com/p\n?q",
        "https://example.com/p#a\tb",
        " https://example.com/",
        "\x00https://example.com/",
        "https://example.com:8080/",
        "https://u:p@example.com/",
        "https://[2001:db8::1]:8443/x",
        "https://example.com./",
        "https://ex_ample.com/",
        "https://exämple.com/",
        "https:///path",
        "https://",
        "http://a/b?c?d#e#f",
        "ftp://example.com/",
        "https:example.com",
        "//example.com/x",
        "https://example.com/a b?c d",
        "https://example.com/%zz?%41=%42",
        "https://ex%41mple.com/",
        "https://example.com\\x",
    ]
    rng = random.Random(5)
    pieces = [
        "example.com",
        "E.x-1",
        "/",
        "?",
        "#",
        "&",
        "=",
        ":",
        "@",
        "[",
        "]",
        "%41",
        " ",
        "\t",
        "\n",
        "\r",
        "é",
        "a",
        "9",
        ".",
        ";",
        "+",
        "//",
    ]
    fuzz = [
        rng.choice(["https://", "http://", "HTTP://", "https:", ""])
        + rng.choice(["example.com", "E.x-1", "", "é"])
        + rng.choice("/?#")
        + "".join(rng.choices(pieces, k=rng.randint(0, 12)))
        for _ in range(5000)
    ]
    for url in odd + fuzz:
        try:
            expected = urlsplit(url)[:4]
        except ValueError:
            with pytest.raises(ValueError):
                steps._split_url(url)
            continue
        assert steps._split_url(url) == expected, url


def test_kept_parameters_are_encoded_as_urlencode_does():
    rng = random.Random(9)
    alphabet = ["a", "Z", "0", "_", ".", "~", "-", " ", "+", "&", "=", "%", "é", "€", "/", "?", "#"]
    for _ in range(5000):
        pairs = [
            ("".join(rng.choices(alphabet, k=rng.randint(0, 5))), "".join(rng.choices(alphabet, k=rng.randint(0, 8))))
            for _ in range(rng.randint(1, 3))
        ]
        assert steps._encode_params(pairs) == urlencode(pairs), pairs


def test_referrer_is_cut_to_host_and_path():
    assert steps.clean_referrer("https://www.google.com/search?q=my+name@mail.com") == (
        "https://www.google.com/search",
        "www.google.com",
    )
    assert steps.clean_referrer("android-app://com.example") == ("", "")
    assert steps.clean_referrer("") == ("", "")


def test_a_referrer_keeps_its_port_as_the_page_url_does():
    """A page on a non-default port (a local server, a staging host) is the referrer
    of the next page: the stored referrer names the same origin as the stored URL."""
    assert steps.clean_referrer("http://127.0.0.1:8765/index.html?x=1") == (
        "http://127.0.0.1:8765/index.html",
        "127.0.0.1",
    )
    assert steps.clean_referrer("https://Shop.Example:8443/a#top") == ("https://shop.example:8443/a", "shop.example")
    assert steps.clean_referrer("https://shop.example:443/a") == ("https://shop.example/a", "shop.example")
    page = steps.clean_url("http://127.0.0.1:8765/index.html")
    assert steps.clean_referrer("http://127.0.0.1:8765/index.html")[0] == page.url


URLS = [
    "https://example.com/docs/",
    "https://example.com/p?utm_source=news&utm_medium=mail",
    "https://Example.com/p",
    "https://example.com/p?q=1",
    "https://example.com/p#top",
    "https://u@example.com/p",
    "https://example.com:443/p",
    "https://example.com/u/jane@example.com",
    "https://example.com/p?utm_source=jane%40example.com",
    "https://example.com/u/jane%40example.com",
    "https://example.com/p?utm_source=a%2Bb",
    "https://example.com",
]
REFERRERS = [
    "https://www.google.com/",
    "https://t.co/abc",
    "https://www.google.com/search?q=x",
    "https://Google.com/",
    "https://mail.example/u/jane@example.com",
    "https://example.com/#f",
    "https://example.com:8080/x",
    "ftp://x/",
    "https://example.com",
]


@pytest.mark.parametrize("keep", [frozenset(), frozenset({"q"})])
def test_remembered_urls_and_referrers_clean_as_the_first_time(keep):
    """The second cleaning of a URL or referrer (from the cache when it came out
    unchanged) gives the same result and counts the same personal values."""
    steps._verbatim_urls.clear()
    steps._verbatim_referrers.clear()
    for _ in range(2):
        for url in URLS:
            pii: dict[str, int] = {}
            assert (steps.clean_url(url, keep, pii), pii) == (
                steps._clean_url(url, keep, {}),
                _pii_of_url(url, keep),
            ), url
        for ref in REFERRERS:
            pii = {}
            assert (steps.clean_referrer(ref, pii), pii) == (steps._clean_referrer(ref, {}), _pii_of_referrer(ref)), ref


def _pii_of_url(url: str, keep: frozenset[str]) -> dict[str, int]:
    pii: dict[str, int] = {}
    steps._clean_url(url, keep, pii)
    return pii


def _pii_of_referrer(ref: str) -> dict[str, int]:
    pii: dict[str, int] = {}
    steps._clean_referrer(ref, pii)
    return pii


def test_only_urls_and_referrers_stored_as_they_came_are_remembered():
    steps._verbatim_urls.clear()
    steps._verbatim_referrers.clear()
    for url in URLS:
        steps.clean_url(url, frozenset(), {})
    for ref in REFERRERS:
        steps.clean_referrer(ref, {})
    assert sorted(url for url, _keep in steps._verbatim_urls) == [
        "https://example.com/docs/",
        "https://example.com/p?utm_source=a%2Bb",
        "https://example.com/p?utm_source=news&utm_medium=mail",
    ]
    assert sorted(steps._verbatim_referrers) == [
        "https://example.com:8080/x",
        "https://t.co/abc",
        "https://www.google.com/",
    ]


def test_a_url_cleaned_without_scrubbing_is_not_remembered_for_the_filter():
    steps._verbatim_urls.clear()
    url = "https://example.com/u/jane@example.com"
    assert steps.clean_url(url).path == "/u/jane@example.com"  # no pii dict: not scrubbed, and not remembered
    pii: dict[str, int] = {}
    assert steps.clean_url(url, frozenset(), pii).path == "/u/[email]" and pii == {"email": 1}


@pytest.mark.parametrize(
    "ref_host, page_host, utm, expected",
    [
        ("www.google.com", "example.com", "", "google.com"),
        ("example.com", "www.example.com", "", ""),
        ("", "example.com", "", ""),
        ("t.co", "example.com", "Newsletter", "newsletter"),
    ],
)
def test_referrer_source(ref_host, page_host, utm, expected):
    assert steps.referrer_source(ref_host, page_host, utm) == expected


# --- the whole filter -----------------------------------------------------------


def _raw(ip="203.0.113.200", ua=CHROME, **beacon_fields) -> RawEvent:
    fields = {"site": "example.com", "url": "https://example.com/a?x=1"} | beacon_fields
    return RawEvent("00000000-0000-4000-8000-000000000001", Beacon(**fields), RequestContext(1.7e9, ip, ua, "fr-CA"))


def test_filter_locates_on_the_full_ip_then_truncates(geoip_db):
    env = FilterEnv(GeoLookup(geoip_db))
    actions = Counter()
    event = filter_event(_raw(ip="203.0.113.200"), env, actions)
    # 203.0.113.200 is in Toronto's half; its /24 network address would say Montreal.
    assert (event.country_code, event.region, event.city) == ("CA", "Ontario", "Toronto")
    assert event.ip_truncated == "203.0.113.0"
    assert event.url == "https://example.com/a"
    assert event.language == "fr-CA"
    assert actions == Counter(ip_truncated=1, query_params_dropped=1)


def test_filter_drops_bots_and_identifiers(geoip_db):
    env = FilterEnv(GeoLookup(geoip_db), FilterConfig())
    actions = Counter()
    assert filter_event(_raw(ua="Googlebot/2.1 (+http://www.google.com/bot.html)"), env, actions) == Dropped(
        "00000000-0000-4000-8000-000000000001", "bot"
    )
    event = filter_event(
        _raw(device_id="dev-9", mac="aa:bb:cc:dd:ee:ff", consent=Consent(analytics=True)), env, actions
    )
    assert (event.device_id, event.mac) == ("", "")
    assert actions["bot_dropped"] == 1 and actions["device_id_dropped"] == 1 and actions["mac_dropped"] == 1


def test_filter_keeps_invalid_ip_events_without_ip(geoip_db):
    actions = Counter()
    event = filter_event(_raw(ip="not-an-ip"), FilterEnv(GeoLookup(geoip_db)), actions)
    assert (event.ip_truncated, event.country_code) == ("", "")
    assert actions["ip_invalid"] == 1


def test_filtered_event_holds_no_field_with_the_full_ip(geoip_db):
    event = filter_event(_raw(ip="2001:db8:1:77::5"), FilterEnv(GeoLookup(geoip_db)), Counter())
    assert event.ip_truncated == "2001:db8:1::"
    text = repr(event)
    assert "2001:db8:1:77" not in text and ipaddress.ip_address("2001:db8:1:77::5").exploded not in text


def test_consented_ids_are_stored_as_keyed_pseudonyms(geoip_db):
    consent = Consent(analytics=True, device_id=True, mac=True)
    raw = _raw(device_id="dev-42", mac="AA-BB-CC-DD-EE-FF", consent=consent)
    env = FilterEnv(GeoLookup(geoip_db), FilterConfig(id_key=b"k1"))
    event = filter_event(raw, env, Counter())
    assert event.device_id == steps.pseudonymise("dev-42", b"k1") != "dev-42"
    assert event.mac == steps.pseudonymise("aa:bb:cc:dd:ee:ff", b"k1")
    assert filter_event(raw, env, Counter()).device_id == event.device_id  # stable: requests can find it
    other = filter_event(raw, FilterEnv(GeoLookup(geoip_db), FilterConfig(id_key=b"k2")), Counter())
    assert other.device_id != event.device_id  # without the key, nothing links the two


def test_encoded_rows_are_one_json_object_per_line_whatever_the_values(geoip_db):
    tricky = '},{"event_id":"x"}\n{"event_id":'
    raws = [
        _raw(name=tricky, type="event", props={tricky: tricky, "n": 1}),
        _raw(url="https://example.com/%7D,%7B"),
        _raw(),
    ]
    events = [filter_event(raw, FilterEnv(GeoLookup(geoip_db)), Counter()) for raw in raws]
    lines = encode_rows(events).split(b"\n")
    assert lines == [orjson.dumps(e) for e in events]
    assert [orjson.loads(line)["name"] for line in lines] == [tricky, "", ""]
    assert encode_rows([]) == b""


def test_raw_records_decode_to_the_events_encoded():
    consents = [Consent(), Consent(analytics=True, device_id=True), Consent(False, False, True)]
    events = [
        _raw(
            name="n",
            type="event",
            referrer="https://r.example/",
            props={"a": 1, "b": True, "c": "x"},
            lang="fr",
            screen="1x1",
            ts=1_700_000_000_123,
            device_id="d",
            mac="m",
            consent=consents[1],
            revenue_amount="5.000",
            revenue_currency="USD",
        ),
        RawEvent(
            "e2",
            Beacon(site="example.com", url="https://example.com/", consent=consents[2]),
            RequestContext(1.7e9 + 0.25, "2001:db8::1", "ua", "de", dnt=True, gpc=True),
        ),
        RawEvent("e3", Beacon(site="example.com", url="https://example.com/"), RequestContext(1.7e9, "")),
    ]
    batch = decode_raw_batch(encode_raw_batch(RawBatch("b1", events)))
    assert batch == RawBatch("b1", events)
    # A record without the fields that have defaults still decodes (an older writer).
    short = b'{"v":1,"batch_id":"b2","events":[{"event_id":"e4","beacon":{"site":"s","url":"u","consent":{}},"context":{"received_at":1.0,"ip":"x"}}]}'
    assert decode_raw_batch(short).events == [RawEvent("e4", Beacon("s", "u"), RequestContext(1.0, "x"))]


def test_every_column_gets_its_own_value(geoip_db, tmp_path):
    raw = RawEvent(
        "e-1",
        Beacon(
            site="example.com",
            type="event",
            name="N",
            screen="1x2",
            lang="fr-ca",
            ts=1_700_000_000_500,
            url="https://Example.com/p/x?utm_source=S1&utm_medium=m2&utm_campaign=c3&utm_term=t4&utm_content=c5&x=1",
            referrer="https://ref.example/r?q",
            props={"k": "v", "n": 2},
            consent=Consent(True, True, True),
            device_id="d",
            mac="AA-BB-CC-DD-EE-FF",
            revenue_amount="12.500",
            revenue_currency="EUR",
        ),
        RequestContext(1.7e9 + 1, "203.0.113.200", CHROME, "de"),
    )
    salts = DailySalts(tmp_path)
    event = filter_event(raw, FilterEnv(GeoLookup(geoip_db), FilterConfig(id_key=b"k"), salts=salts), Counter())
    assert orjson.loads(encode_rows([event])) == {
        "event_id": "e-1",
        "site": "example.com",
        "type": "event",
        "name": "N",
        "ts": 1.7e9 + 1,
        "client_ts": 1_700_000_000.5,
        "hostname": "example.com",
        "path": "/p/x",
        "url": "https://example.com/p/x?utm_source=S1&utm_medium=m2&utm_campaign=c3&utm_term=t4&utm_content=c5",
        "referrer": "https://ref.example/r",
        "referrer_source": "s1",
        "utm_source": "S1",
        "utm_medium": "m2",
        "utm_campaign": "c3",
        "utm_term": "t4",
        "utm_content": "c5",
        "ip_truncated": "203.0.113.0",
        "country_code": "CA",
        "region": "Ontario",
        "city": "Toronto",
        "browser": "Chrome",
        "browser_version": "120",
        "os": "Windows",
        "os_version": "10",
        "device_class": "desktop",
        "language": "fr-CA",
        "screen": "1x2",
        "props": {"k": "v", "n": "2"},
        "device_id": steps.pseudonymise("d", b"k"),
        "mac": steps.pseudonymise("aa:bb:cc:dd:ee:ff", b"k"),
        "visitor_id": visitor_id(salts, 1.7e9 + 1, "example.com", "203.0.113.200", CHROME),
        "revenue_amount": "12.500",
        "revenue_currency": "EUR",
        "batch_id": "",
    }


@pytest.mark.parametrize(
    "ts, client_ts", [(1_700_000_000_500, 1_700_000_000.5), (10**16, None), (-5, None), (None, None)]
)
def test_a_client_time_the_store_cannot_hold_is_left_out(geoip_db, ts, client_ts):
    event = filter_event(_raw(ts=ts), FilterEnv(GeoLookup(geoip_db)), Counter())
    assert event.client_ts == client_ts


# --- the order of the steps -----------------------------------------------------------


def _calls_in_source_order(function) -> list[str]:
    """The names of the functions ``function`` calls, in the order its source has them."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    calls = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Call)), key=lambda node: (node.lineno, node.col_offset)
    )
    return [call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "") for call in calls]


def test_the_filter_takes_its_steps_in_the_order_of_STEPS():
    from streams.privacy_filter import STEPS

    step_functions = [function.__name__ for _, function in STEPS]
    called = [name for name in _calls_in_source_order(filter_event) if name in step_functions]
    first_calls = list(dict.fromkeys(called))
    assert first_calls == step_functions


def test_the_docstring_lists_the_steps_of_STEPS_in_their_order():
    import re

    from streams import privacy_filter

    listed = re.findall(r"^\s*\d+\. ``(\w+)``", privacy_filter.__doc__, re.MULTILINE)
    assert listed == list(privacy_filter.STEP_NAMES)


def test_the_order_of_the_steps_keeps_the_policy():
    from streams.privacy_filter import DROP_REASONS, STEP_NAMES

    order = {name: i for i, name in enumerate(STEP_NAMES)}
    assert len(order) == len(STEP_NAMES)  # each step once
    assert STEP_NAMES[0] == "opted_out"  # an objection wins over any consent flag
    assert set(STEP_NAMES[: len(DROP_REASONS)]) == DROP_REASONS  # dropped events go no further
    assert order["location"] < order["ip"] and order["visitor"] < order["ip"]  # both need the full IP
    assert order["url"] < order["referrer"]  # the referrer source reads the page's utm_source
    assert STEP_NAMES[-1] == "pii"  # it counts what every step before it scrubbed


def test_each_event_field_is_named_where_its_value_is_decided():
    """``Event`` is built by position (keywords cost a tenth of the filter), from
    locals named after its fields (a trailing _ where the name is a builtin's)."""
    import ast
    import dataclasses
    import inspect
    import textwrap

    from schemas.events import Event

    tree = ast.parse(textwrap.dedent(inspect.getsource(filter_event)))
    [built] = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Event"
    ]
    arguments = [arg.id.rstrip("_") if isinstance(arg, ast.Name) else ast.dump(arg) for arg in built.args]
    assert arguments == [f.name for f in dataclasses.fields(Event) if f.name != "batch_id"]  # batch_id: the worker's


def test_a_drop_has_a_reason_of_the_closed_set_and_counts_under_it(geoip_db):
    from streams.privacy_filter import DROP_REASONS

    actions = Counter()
    dropped = filter_event(_raw(ua=""), FilterEnv(GeoLookup(geoip_db)), actions)
    assert isinstance(dropped, Dropped) and dropped.reason in DROP_REASONS
    assert actions == Counter({f"{dropped.reason}_dropped": 1})
