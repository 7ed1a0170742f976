"""PII scrubbing: personal-looking values never reach storage as text."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from schemas.events import Beacon, RawEvent, RequestContext
from streams.geo import GeoLookup
from streams.pii import _maybe_personal, scrub
from streams.privacy_filter import FilterEnv, filter_event

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("/users/jane.doe+news@example.co.uk/orders", "/users/[email]/orders", "email"),
        ("/u/jane%40example.com", "/u/[email]", "email"),
        ("Jane@Example.COM", "[email]", "email"),
        ("/dev/AA:BB:CC:DD:EE:FF/x", "/dev/[mac]/x", "mac"),
        ("aa-bb-cc-dd-ee-ff", "[mac]", "mac"),
        ("/ads/6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "/ads/[device_id]", "device_id"),
        ("/ip/203.0.113.77/x", "/ip/[ip]/x", "ip"),
        ("from 10.0.0.1", "from [ip]", "ip"),
        ("/v6/2001:db8:1:2::5", "/v6/[ip]", "ip"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "[ip]", "ip"),
        # Percent-encoded separators hide nothing:
        ("/dev/aa%3Abb%3Acc%3Add%3Aee%3Aff", "/dev/[mac]", "mac"),
        ("/ip/192%2E168%2E1%2E20", "/ip/[ip]", "ip"),
        ("/v6/2001%3Adb8%3A%3A1", "/v6/[ip]", "ip"),
    ],
)
def test_personal_values_are_replaced_and_counted(text, expected, kind):
    found = Counter()
    assert scrub(text, found) == expected
    assert found == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "/p/123",
        "/caf%C3%A9/men%C3%BC",
        "/blog/2024-01-05-my-post",
        "release v1.2.3",
        "/p/1.2.3.4.5",
        "at 12:30:45",
        "pro",
        "",
        "/shop/item-42?color=red",
        "100.5",
    ],
)
def test_ordinary_values_are_kept(text):
    found = Counter()
    assert scrub(text, found) == text
    assert not found


def test_the_filter_scrubs_paths_utm_referrers_names_and_props():
    beacon = Beacon(
        site="example.com",
        type="event",
        name="signup jane@example.com",
        url="https://example.com/account/jane@example.com?utm_source=jane%40mail.com&token=secret",
        referrer="https://mail.example.net/read/6ba7b810-9dad-11d1-80b4-00c04fd430c8?x=1",
        props={"email": "bob@example.org", "ip": "198.51.100.23", "plan": "pro", "n": 3},
    )
    actions = Counter()
    event = filter_event(
        RawEvent("e1", beacon, RequestContext(1.7e9, "203.0.113.5", CHROME)), FilterEnv(GeoLookup(None)), actions
    )
    assert event.path == "/account/[email]"
    assert event.url == "https://example.com/account/[email]?utm_source=%5Bemail%5D"
    assert event.utm_source == "[email]"
    assert event.referrer == "https://mail.example.net/read/[device_id]"
    assert event.name == "signup [email]"
    assert event.props == {"email": "[email]", "ip": "[ip]", "plan": "pro", "n": "3"}
    assert actions["pii_scrubbed"] == 1
    assert (actions["pii_email"], actions["pii_device_id"], actions["pii_ip"]) == (4, 1, 1)


def test_pre_check_says_maybe_exactly_when_one_of_its_patterns_is_present():
    # The pre-check decides whether a value is decoded and scanned, so it must agree
    # with this one regex exactly, on every text.
    spec = re.compile(r"@|%40|:|\d\.\d|[0-9a-f]{8}-|[0-9a-f]{2}-[0-9a-f]{2}-", re.IGNORECASE)
    rng = random.Random(3)
    texts = [  # ٣: \d matches other scripts' digits too
        "".join(rng.choices(alphabet, k=rng.randint(0, 24)))
        for alphabet in ("0123456789abcdefABCDEFgxyz-:.@%4 /é٣", "0123456789abcdefABCDEFgxz-./٣")
        for _ in range(100_000)
    ]
    texts += ["/blog/2024-01-05-my-post", "deadbeef-", "ab-cd-", "1.2", "٣.٣", "a%40b", "a%4"]
    for text in texts:
        assert _maybe_personal(text) == (spec.search(text) is not None), text
