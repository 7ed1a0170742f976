"""The request type every app reads: its Content-Type helper."""

from __future__ import annotations

import pytest

from web.messages import Request


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    async def no_body() -> dict:
        return {"type": "http.request", "body": b""}

    return Request({"type": "http", "headers": headers}, no_body)


@pytest.mark.parametrize(
    "content_type, media_type",
    [
        (b"application/json", b"application/json"),
        (b"Application/JSON; charset=UTF-8", b"application/json"),
        (b"  text/plain ;charset=utf-8", b"text/plain"),
        (b"text/plain;a=1;b=2", b"text/plain"),
        (b"", b""),
        (b";charset=utf-8", b""),
    ],
)
def test_media_type_is_the_content_type_without_parameters_in_lower_case(content_type, media_type):
    assert _request([(b"content-type", content_type)]).media_type() == media_type


def test_media_type_is_empty_without_a_content_type():
    assert _request([(b"accept", b"application/json")]).media_type() == b""
