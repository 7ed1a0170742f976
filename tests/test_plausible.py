"""Plausible Events API bodies → beacon v1 dicts (collector/plausible.py)."""

from __future__ import annotations

import orjson
import pytest

from collector.plausible import MAX_SITES, accepted, errors_body, refused, to_beacons
from schemas.events import Beacon
from schemas.validation import Rejection, validate_beacon

SITES = frozenset({"example.com", "shop.example.com"})


def test_what_the_npm_tracker_sends_for_a_pageview_becomes_a_valid_pageview():
    # As @plausible-analytics/tracker 0.4 sends it: short keys, "r": null, a version.
    body = {"n": "pageview", "v": 36, "u": "https://example.com/pricing?utm_source=x", "d": "example.com", "r": None}
    beacons = to_beacons(body)
    assert beacons == [{"site": "example.com", "url": "https://example.com/pricing?utm_source=x", "type": "pageview"}]
    beacon = validate_beacon(beacons[0], SITES)
    assert isinstance(beacon, Beacon) and beacon.type == "pageview" and beacon.referrer == ""


def test_long_keys_and_a_custom_event_with_props():
    body = {
        "name": "Signup",
        "url": "https://example.com/join",
        "domain": "example.com",
        "referrer": "https://news.example.org/a",
        "props": {"plan": "pro", "seats": 3, "trial": False},
    }
    [beacon] = to_beacons(body)
    assert beacon == {
        "site": "example.com",
        "url": "https://example.com/join",
        "type": "event",
        "name": "Signup",
        "referrer": "https://news.example.org/a",
        "props": {"plan": "pro", "seats": 3, "trial": False},
    }
    valid = validate_beacon(beacon, SITES)
    assert isinstance(valid, Beacon) and valid.name == "Signup" and valid.props == body["props"]


def test_short_keys_win_over_long_ones_and_meta_is_an_alias_of_props():
    [beacon] = to_beacons({"n": "A", "name": "B", "u": "https://example.com/", "d": "example.com", "m": {"k": "v"}})
    assert beacon["name"] == "A" and beacon["props"] == {"k": "v"}


def test_props_in_a_json_string_and_the_values_plausible_drops():
    props = {"plan": "pro", "list": [1], "map": {"a": 1}, "none": None, "blank": "  ", "n": 1.5}
    [beacon] = to_beacons(
        {"n": "E", "u": "https://example.com/", "d": "example.com", "p": orjson.dumps(props).decode()}
    )
    assert beacon["props"] == {"plan": "pro", "n": 1.5}


def test_a_comma_list_of_domains_is_one_beacon_per_site():
    beacons = to_beacons(
        {"n": "pageview", "u": "https://example.com/", "d": " Example.com, shop.example.com,example.com,"}
    )
    assert [b["site"] for b in beacons] == ["example.com", "shop.example.com"]
    assert all(isinstance(validate_beacon(b, SITES), Beacon) for b in beacons)


def test_without_a_domain_the_site_is_the_url_host_without_www():
    [beacon] = to_beacons({"n": "pageview", "u": "https://www.Example.com:8443/a"})
    assert beacon["site"] == "example.com"


def test_an_engagement_carries_its_time_and_scroll_depth_as_props():
    [beacon] = to_beacons(
        {
            "n": "engagement",
            "u": "https://example.com/a",
            "d": "example.com",
            "p": {"k": "v"},
            "e": 4321,
            "sd": 140,
            "v": 36,
        }
    )
    assert beacon["type"] == "event" and beacon["name"] == "engagement"
    assert beacon["props"] == {"k": "v", "engaged_ms": 4321, "scroll_depth": 100}  # depth clamped as Plausible does
    assert isinstance(validate_beacon(beacon, SITES), Beacon)


@pytest.mark.parametrize("engagement", [{}, {"e": -1}, {"e": "5"}, {"sd": True}, {"e": 30 * 24 * 3600 * 1000}])
def test_an_engagement_without_a_valid_time_or_depth_is_refused(engagement):
    result = to_beacons({"n": "engagement", "u": "https://example.com/", "d": "example.com"} | engagement)
    assert isinstance(result, Rejection) and result.field == "engagement"


def test_hash_mode_is_passed_on():
    [beacon] = to_beacons({"n": "pageview", "u": "https://example.com/#/settings", "d": "example.com", "h": 1})
    assert beacon["hash"] is True and beacon["url"] == "https://example.com/#/settings"


def test_a_number_is_a_name_as_plausible_takes_it():
    [beacon] = to_beacons({"n": 404, "u": "https://example.com/", "d": "example.com"})
    assert beacon["name"] == "404"


def test_a_long_referrer_is_cut_to_what_the_schema_takes():
    [beacon] = to_beacons(
        {"n": "pageview", "u": "https://example.com/", "d": "example.com", "r": "https://ref.example.org/" + "a" * 5000}
    )
    assert len(beacon["referrer"]) == 2048 and isinstance(validate_beacon(beacon, SITES), Beacon)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"u": "https://example.com/", "d": "example.com"}, "name"),
        ({"n": "  ", "u": "https://example.com/", "d": "example.com"}, "name"),
        ({"n": True, "u": "https://example.com/", "d": "example.com"}, "name"),
        ({"n": "x" * 121, "u": "https://example.com/", "d": "example.com"}, "name"),
        ({"n": "pageview", "d": "example.com"}, "url"),
        ({"n": "pageview", "u": 5, "d": "example.com"}, "url"),
        ({"n": "pageview", "u": "data:text/html,hi", "d": "example.com"}, "url"),
        ({"n": "pageview", "u": "https://example.com/", "d": " , "}, "domain"),
        ({"n": "pageview", "u": "https://example.com/", "d": ["example.com"]}, "domain"),
        ({"n": "pageview", "u": "/relative"}, "domain"),
        (
            {"n": "pageview", "u": "https://example.com/", "d": ",".join(f"s{i}.com" for i in range(MAX_SITES + 1))},
            "domain",
        ),
        ({"n": "E", "u": "https://example.com/", "d": "example.com", "p": "{not json"}, "props"),
        ({"n": "E", "u": "https://example.com/", "d": "example.com", "p": [1, 2]}, "props"),
    ],
)
def test_invalid_events_are_refused_with_the_plausible_field(body, field):
    result = to_beacons(body)
    assert isinstance(result, Rejection) and result.status == 400 and result.reason == "schema"
    assert list(errors_body(result)["errors"]) == [field]


@pytest.mark.parametrize("body", [[{"n": "pageview"}], "text", 3])
def test_a_body_that_is_not_one_event_is_refused(body):
    result = to_beacons(body)
    assert isinstance(result, Rejection) and result.reason == "invalid_type"
    assert errors_body(result) == {"errors": {"request": ["must be one event, a JSON object"]}}


def test_what_the_collector_refuses_is_reported_under_plausible_field_names():
    [unknown] = to_beacons({"n": "pageview", "u": "https://example.com/", "d": "elsewhere.org"})
    rejection = validate_beacon(unknown, SITES)
    assert isinstance(rejection, Rejection) and rejection.reason == "unknown_site"
    assert errors_body(rejection) == {"errors": {"domain": [rejection.error]}}
    [big] = to_beacons({"n": "E", "u": "https://example.com/", "d": "example.com", "p": {"k": "v" * 600}})
    rejection = validate_beacon(big, SITES)
    assert isinstance(rejection, Rejection) and list(errors_body(rejection)["errors"]) == ["props"]


def test_the_answers_are_plausibles():
    ok = accepted(0, [(b"access-control-allow-origin", b"https://example.com")])
    assert (ok.status, ok.body) == (202, b"ok")
    assert (b"access-control-allow-origin", b"https://example.com") in ok.headers
    assert not any(name == b"x-plausible-dropped" for name, _ in ok.headers)
    assert (b"x-plausible-dropped", b"2") in accepted(2, []).headers
    bad = refused(Rejection("schema", "is required", "url"), [])
    assert (bad.status, orjson.loads(bad.body)) == (400, {"errors": {"url": ["is required"]}})
    too_large = refused(Rejection("too_large", "body exceeds 65536 bytes", status=413), [])
    assert (too_large.status, orjson.loads(too_large.body)) == (413, {"error": "body exceeds 65536 bytes"})
