"""Serving the tracker script (collector/tracker_script.py)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from pathlib import Path

import pytest

from collector.tracker_script import (
    IMMUTABLE,
    SHORT_CACHE,
    TrackerScript,
    etag_matches,
    preferred_coding,
    script_version,
)
from web.messages import Request, Response

STATIC = Path(__file__).resolve().parent.parent / "collector" / "static"


@pytest.fixture(scope="module")
def script() -> TrackerScript:
    return TrackerScript.packaged()


def get(script: TrackerScript, path: str, **headers: str) -> Response:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    handler = script.routes()[("GET", path)]
    return asyncio.run(handler(Request(scope, None)))


def header(response: Response, name: bytes) -> bytes | None:
    values = [v for k, v in response.headers if k == name]
    assert len(values) <= 1, f"{name!r} repeated"
    return values[0] if values else None


def test_the_packaged_script_is_served_with_its_version_in_the_pinned_path(script):
    source = (STATIC / "beacon.js").read_bytes()
    assert script.versioned_path == f"/beacon.{hashlib.sha256(source).hexdigest()[:12]}.js"
    assert set(script.routes()) == {("GET", "/beacon.js"), ("GET", script.versioned_path)}
    response = get(script, "/beacon.js")
    assert response.status == 200 and response.body == source
    assert header(response, b"content-encoding") is None


def test_headers_let_any_page_load_it_and_say_how_long_to_cache_it(script):
    latest, pinned = get(script, "/beacon.js"), get(script, script.versioned_path)
    for response in (latest, pinned):
        assert header(response, b"content-type") == b"text/javascript; charset=utf-8"
        assert header(response, b"access-control-allow-origin") == b"*"
        assert header(response, b"cross-origin-resource-policy") == b"cross-origin"
        assert header(response, b"vary") == b"Accept-Encoding"
    assert header(latest, b"cache-control") == SHORT_CACHE and b"max-age=3600" in SHORT_CACHE
    assert header(pinned, b"cache-control") == IMMUTABLE and b"immutable" in IMMUTABLE
    assert pinned.body == latest.body


def test_gzip_and_brotli_when_asked(script):
    source = (STATIC / "beacon.js").read_bytes()
    gzipped = get(script, "/beacon.js", accept_encoding="gzip, deflate")
    assert header(gzipped, b"content-encoding") == b"gzip" and gzip.decompress(gzipped.body) == source
    assert len(gzipped.body) < len(source)
    brotli = get(script, "/beacon.js", accept_encoding="gzip, deflate, br, zstd")  # what Chromium sends
    brotli_file = STATIC / f"beacon.{script_version(source)}.js.br"
    assert header(brotli, b"content-encoding") == b"br" and brotli.body == brotli_file.read_bytes()
    # (The browser tests decode the brotli answer for real: Chromium asks for br.)
    etags = {header(r, b"etag") for r in (get(script, "/beacon.js"), gzipped, brotli)}
    assert len(etags) == 3  # one strong ETag per encoding


@pytest.mark.parametrize(
    "accept, coding",
    [
        ("", b""),
        ("identity", b""),
        ("gzip", b"gzip"),
        ("GZIP;q=0.5", b"gzip"),
        ("br;q=0, gzip", b"gzip"),
        ("br;q=0.0, gzip;q=0", b""),
        ("*", b"br"),
        ("deflate, br;q=1.0", b"br"),
        ("br;q=abc, gzip", b"gzip"),
    ],
)
def test_preferred_coding(accept, coding):
    assert preferred_coding(accept.encode()) == coding


def test_without_its_brotli_file_the_script_is_offered_gzipped():
    # A brotli file of another build has another version in its name: never served.
    source = (STATIC / "beacon.js").read_bytes()
    script = TrackerScript(source, None)
    answer = get(script, "/beacon.js", accept_encoding="gzip, deflate, br, zstd")
    assert header(answer, b"content-encoding") == b"gzip" and gzip.decompress(answer.body) == source


def test_a_revalidation_with_the_etag_is_a_304(script):
    first = get(script, "/beacon.js", accept_encoding="gzip")
    etag = header(first, b"etag").decode()
    again = get(script, "/beacon.js", accept_encoding="gzip", if_none_match=etag)
    assert again.status == 304 and again.body == b"" and header(again, b"etag") == etag.encode()
    assert header(again, b"cache-control") == SHORT_CACHE
    assert get(script, "/beacon.js", accept_encoding="gzip", if_none_match=f'"other", W/{etag}').status == 304
    # The ETag of another encoding is another representation: the full answer.
    assert get(script, "/beacon.js", if_none_match=etag).status == 200


@pytest.mark.parametrize(
    "if_none_match, matches",
    [
        (b"", False),
        (b'"abc"', True),
        (b'W/"abc"', True),
        (b'"x", "abc"', True),
        (b"*", True),
        (b'"abcd"', False),
    ],
)
def test_etag_matches(if_none_match, matches):
    assert etag_matches(if_none_match, b'"abc"') is matches
