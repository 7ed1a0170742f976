"""Cross-origin answers: which page origins may read a response, and the preflight.

An app passes the origins it trusts (a collector: its sites' registered origins);
an origin outside them gets no CORS header, so the browser keeps the answer from
the page (a beacon it sent was still received: CORS guards reading, not sending).
"""

from __future__ import annotations

from collections.abc import Container

from web.messages import Response

Headers = list[tuple[bytes, bytes]]


def allow_origin(origin: str, allowed: Container[str]) -> Headers:
    """The headers that let ``origin`` read the response, when it is allowed."""
    if origin and origin in allowed:
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
    return []


def preflight(
    origin: str,
    allowed: Container[str],
    methods: bytes = b"POST",
    headers: bytes = b"Content-Type",
    max_age: int = 86400,
) -> Response:
    """The answer to ``OPTIONS``: 204 with what ``origin`` may send, or 403."""
    cors = allow_origin(origin, allowed)
    if not cors:
        return Response.json(403, {"error": "origin not registered"})
    return Response(
        204,
        b"",
        cors
        + [
            (b"access-control-allow-methods", methods),
            (b"access-control-allow-headers", headers),
            (b"access-control-max-age", b"%d" % max_age),
        ],
    )
