"""Beacon validation against schemas/beacon.v1.json, and client-IP resolution."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.client_ip import ClientIPResolver
from schemas.events import Beacon
from schemas.validation import MAX_BATCH, Rejection, parse_json_body, validate_beacon, validate_optout

SITES = frozenset({"example.com"})
GOOD = {"site": "example.com", "url": "https://example.com/"}


def test_minimal_beacon_is_a_pageview():
    beacon = validate_beacon(GOOD, SITES)
    assert isinstance(beacon, Beacon)
    assert (beacon.type, beacon.consent.device_id, beacon.props) == ("pageview", False, {})


def test_site_is_case_insensitive_and_unknown_keys_ignored():
    beacon = validate_beacon(GOOD | {"site": "Example.COM", "ip": "1.2.3.4"}, SITES)
    assert isinstance(beacon, Beacon) and beacon.site == "example.com"
    assert not hasattr(beacon, "ip")


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"site": None}, "site", "schema"),
        ({"url": None}, "url", "schema"),
        ({"site": 42}, "site", "schema"),
        ({"url": "javascript:alert(1)"}, "url", "invalid_url"),
        ({"url": "/relative"}, "url", "invalid_url"),
        ({"url": "https://example.com/" + "a" * 3000}, "url", "schema"),
        ({"site": "unknown.org"}, "site", "unknown_site"),
        ({"type": "click"}, "type", "schema"),
        ({"type": "event"}, "name", "schema"),
        ({"props": {"k": {"nested": 1}}}, "props.k", "schema"),
        ({"props": {f"k{i}": i for i in range(31)}}, "props", "schema"),
        ({"props": {"k": "v" * 600}}, "props.k", "schema"),
        ({"lang": "not a tag!"}, "lang", "schema"),
        ({"screen": "big"}, "screen", "schema"),
        ({"ts": -5}, "ts", "schema"),
        ({"ts": "yesterday"}, "ts", "schema"),
        ({"ts": 4102444800000}, "ts", "schema"),  # 2100-01-01: past what client_ts stores
        ({"consent": {"analytics": "yes"}}, "consent.analytics", "schema"),
        ({"consent": {"ads": True}}, "consent", "schema"),
        ({"mac": "not-a-mac"}, "mac", "schema"),
        ({"device_id": ""}, "device_id", "schema"),
    ],
)
def test_bad_beacons_name_the_field(change, field, reason):
    data = {k: v for k, v in (GOOD | change).items() if v is not None}
    result = validate_beacon(data, SITES)
    assert isinstance(result, Rejection)
    assert (result.field, result.reason, result.status) == (field, reason, 400)
    assert result.error


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lang": "en\n"}, "lang"),  # a pattern's $ is the end of the text, not of a line
        ({"ts": True}, "ts"),  # a boolean is not an integer
        ({"props": {"": "v"}}, "props"),
        ({"props": {"k" * 65: "v"}}, "props"),
    ],
)
def test_schema_edge_cases_are_refused(change, field):
    result = validate_beacon(GOOD | change, SITES)
    assert isinstance(result, Rejection) and (result.field, result.reason) == (field, "schema")


def test_a_message_quoting_a_long_value_keeps_what_is_wrong_and_stays_short():
    result = validate_beacon(GOOD | {"url": "https://example.com/" + "a" * 3000}, SITES)
    assert isinstance(result, Rejection)
    assert len(result.error) <= 200
    assert result.error.startswith('"https://example.com/aaa') and result.error.endswith(
        "is longer than 2048 characters"
    )


def test_event_with_name_is_valid():
    beacon = validate_beacon(
        GOOD | {"type": "event", "name": "signup", "props": {"plan": "pro", "n": 3, "ok": True}}, SITES
    )
    assert isinstance(beacon, Beacon) and beacon.name == "signup"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"site": "\xed\xa0\x80"}', "invalid_utf8"),
        (b"[]", "empty_batch"),
        (b"[" + b",".join([b"{}"] * (MAX_BATCH + 1)) + b"]", "batch_too_large"),
        (b'"a string"', "invalid_json"),
        (b"", "invalid_json"),
    ],
)
def test_bad_bodies(body, reason):
    result = parse_json_body(body)
    assert isinstance(result, Rejection) and result.reason == reason


@pytest.mark.parametrize(
    "peer, header, value, expected",
    [
        ("198.51.100.9", "x-forwarded-for", "203.0.113.5", "198.51.100.9"),  # untrusted peer: header ignored
        ("127.0.0.1", "x-forwarded-for", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "x-forwarded-for", "203.0.113.5, 10.0.0.2", "10.0.0.2"),  # right-most untrusted hop
        ("127.0.0.1", "x-forwarded-for", "203.0.113.5, 127.0.0.9", "203.0.113.5"),  # trusted hops skipped
        ("127.0.0.1", "forwarded", 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"', "2001:db8::1"),
        ("127.0.0.1", "forwarded", "for=192.0.2.43:8080", "192.0.2.43"),
        ("127.0.0.1", "forwarded", "for=192.0.2.43, for=127.0.0.5", "192.0.2.43"),
        ("127.0.0.1", "x-real-ip", "192.0.2.44", "192.0.2.44"),
        ("127.0.0.1", "x-forwarded-for", "", "127.0.0.1"),
        ("127.0.0.1", "x-forwarded-for", "127.0.0.9", "127.0.0.9"),  # only trusted hops: the left-most
        ("127.0.0.1", "x-forwarded-for", " ", "127.0.0.1"),
        ("::ffff:127.0.0.1", "x-forwarded-for", "203.0.113.5", "203.0.113.5"),  # an IPv4-mapped proxy is an IPv4 one
        ("::1", "x-forwarded-for", "203.0.113.5", "::1"),
        ("127.0.0.1", "none", "203.0.113.5", "127.0.0.1"),
    ],
)
def test_client_ip_trusts_only_configured_proxies(peer, header, value, expected):
    assert ClientIPResolver(("127.0.0.0/8",), header).resolve(peer, value) == expected


def test_client_ip_reads_only_the_header_named():
    assert ClientIPResolver(("127.0.0.0/8",)).header == b"x-forwarded-for"
    assert ClientIPResolver(("127.0.0.0/8",), "forwarded").header == b"forwarded"
    assert ClientIPResolver(("127.0.0.0/8",), "none").header == b""
    with pytest.raises(ValueError):
        ClientIPResolver((), "x-client-ip")


def test_client_ip_without_trusted_proxies_is_the_peer():
    assert ClientIPResolver().resolve("127.0.0.1", "203.0.113.5") == "127.0.0.1"


def test_the_url_fast_path_decides_like_urlsplit():
    import random
    from urllib.parse import urlsplit

    from schemas.validation import _is_web_url

    def by_urlsplit(value: str) -> bool | str:
        try:
            parts = urlsplit(value)
            return parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            return "error"

    def decided(value: str) -> bool | str:
        try:
            return _is_web_url(value)
        except ValueError:
            return "error"

    rng = random.Random(5)
    corpus = [
        "http://a",
        "https://a.b/c",
        "http://a:80/",
        "http://:80/",
        "http://a.",
        "http://-/",
        "HTTP://x/",
        "http://user@x/",
        "http:///x",
        "https://[::1]/",
        "http://x?q",
        "http://x#f",
        "http://a b/",
    ]
    corpus += [
        rng.choice(["http://", "https://", "", "ftp://", "http:/"])
        + "".join(rng.choice("abcXYZ09.-:/?#@[]%_ \t") for _ in range(rng.randint(0, 16)))
        for _ in range(30_000)
    ]
    assert [decided(v) for v in corpus] == [by_urlsplit(v) for v in corpus]


def test_event_ids_are_version_4_uuids_as_uuid_prints_them():
    import random
    import uuid

    from collector.app import new_event_id

    random.seed(11)
    ours = [new_event_id() for _ in range(2000)]
    random.seed(11)
    assert ours == [str(uuid.UUID(int=random.getrandbits(128), version=4)) for _ in range(2000)]
    assert len(set(ours)) == 2000 and all(uuid.UUID(i).version == 4 for i in ours)


def test_client_ip_trusted_proxies_over_ipv6_and_mapped_ipv4():
    resolver = ClientIPResolver(("127.0.0.0/8", "2001:db8:ffff::/48"))
    assert resolver.resolve("::ffff:127.0.0.1", "203.0.113.5") == "203.0.113.5"  # a mapped loopback peer
    assert resolver.resolve("2001:db8:ffff::7", "2001:db8:1::9, 2001:db8:ffff::8") == "2001:db8:1::9"
    assert resolver.resolve("2001:db8:fffe::7", "203.0.113.5") == "2001:db8:fffe::7"  # not a trusted network
    assert resolver.resolve("fe80::1%eth0", "203.0.113.5") == "fe80::1%eth0"


def test_the_filter_bounds_client_time_where_the_schema_does():
    from schemas.validation import _SCHEMA
    from streams.privacy_filter import MAX_CLIENT_TS_MS

    assert _SCHEMA["properties"]["ts"]["maximum"] == MAX_CLIENT_TS_MS


NESTINGS = st.sampled_from([('{"a":', "}"), ("[", "]"), ('{"a":[', "]}")])


@settings(max_examples=200, deadline=None)
@given(depth=st.integers(2, 1100), nesting=NESTINGS, field=st.sampled_from(["props", "consent", "site", "extra"]))
def test_a_value_nested_at_any_depth_gets_a_rejection_naming_its_field(depth, nesting, field):
    """jsonschema-rs raises ValueError past about 256 levels (a 500 at 300 deep, found
    by a probe): every depth must give an answer instead, a 400 naming the field once
    orjson could read it (an unknown key is ignored, unless too deep to check)."""
    opening, closing = nesting
    nested = opening * depth + "1" + closing * depth
    body = f'{{"site":"example.com","url":"https://example.com/","{field}":{nested}}}'.encode()
    parsed = parse_json_body(body)
    result = parsed if isinstance(parsed, Rejection) else validate_beacon(parsed, SITES)
    if field == "extra" and isinstance(result, Beacon):
        return
    assert isinstance(result, Rejection) and result.status == 400
    if not isinstance(parsed, Rejection) and result.reason == "too_deep":
        assert result.field == field


@pytest.mark.parametrize("depth", [300, 500, 1000])
def test_an_opt_out_nested_deep_is_refused_naming_the_field(depth):
    result = validate_optout({"device_id": orjson.loads("[" * depth + "]" * depth)})
    assert isinstance(result, Rejection)
    assert (result.reason, result.field, result.status) == ("too_deep", "device_id", 400)
