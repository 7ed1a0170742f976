"""The tracker script for site pages: ``GET /beacon.js`` and ``GET /beacon.<version>.js``.

The file is built from ``tracker/src/beacon.js`` (``npm run build`` in ``tracker/``)
and shipped inside this package, so serving it needs no Node. Every answer is made
once at start: the bytes, their gzip (here) and brotli forms, and the header lists.
The brotli form is built beside the script (Python's standard library has no
brotli) as ``beacon.<version>.js.br``: one left from another build has another
name, so it is never served for this script; without it, gzip is the best offered.

- ``/beacon.js``: a short cache, so that a new version reaches pages within the hour;
  the ETag makes the revalidation a 304.
- ``/beacon.<version>.js`` (``version`` = start of the script's SHA-256): cached for a
  year, immutable; for pages that pin one version (with Subresource Integrity).
  Only the version this process serves has a route: an old one answers 404.
- ``Access-Control-Allow-Origin: *`` and ``Cross-Origin-Resource-Policy: cross-origin``:
  any page may load it, also with ``crossorigin`` or under COEP.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Container
from dataclasses import dataclass
from importlib import resources

from web.messages import Request, Response

SHORT_CACHE = b"public, max-age=3600"
IMMUTABLE = b"public, max-age=31536000, immutable"
VERSION_CHARS = 12  # hex characters of SHA-256 in the versioned path

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Variant:
    """One encoding of the script: its bytes and its (strong) ETag."""

    coding: bytes  # the Content-Encoding, b"" for none
    body: bytes
    etag: bytes


class TrackerScript:
    def __init__(self, script: bytes, brotli: bytes | None):
        self.version = script_version(script)
        self.versioned_path = f"/beacon.{self.version}.js"
        tag = self.version.encode()
        self._variants = {
            b"gzip": Variant(b"gzip", gzip.compress(script, 9, mtime=0), b'"%s-gz"' % tag),
            b"": Variant(b"", script, b'"%s"' % tag),
        }
        if brotli is not None:
            self._variants[b"br"] = Variant(b"br", brotli, b'"%s-br"' % tag)
        self._latest = {v.coding: self._headers(v, SHORT_CACHE) for v in self._variants.values()}
        self._pinned = {v.coding: self._headers(v, IMMUTABLE) for v in self._variants.values()}

    @classmethod
    def packaged(cls) -> TrackerScript:
        """The script built into this package (collector/static/)."""
        static = resources.files("collector") / "static"
        script = (static / "beacon.js").read_bytes()
        brotli = static / f"beacon.{script_version(script)}.js.br"
        return cls(script, brotli.read_bytes() if brotli.is_file() else None)

    def routes(self) -> dict:
        return {("GET", "/beacon.js"): self.latest, ("GET", self.versioned_path): self.pinned}

    async def latest(self, request: Request) -> Response:
        return self._answer(request, self._latest)

    async def pinned(self, request: Request) -> Response:
        return self._answer(request, self._pinned)

    def _answer(self, request: Request, headers: dict[bytes, Headers]) -> Response:
        variant = self._variants[preferred_coding(request.header(b"accept-encoding"), self._variants)]
        if etag_matches(request.header(b"if-none-match"), variant.etag):
            return Response(304, b"", headers[variant.coding])
        return Response(200, variant.body, headers[variant.coding])

    @staticmethod
    def _headers(variant: Variant, cache_control: bytes) -> Headers:
        headers = [
            (b"content-type", b"text/javascript; charset=utf-8"),
            (b"cache-control", cache_control),
            (b"etag", variant.etag),
            (b"vary", b"Accept-Encoding"),
            (b"access-control-allow-origin", b"*"),
            (b"cross-origin-resource-policy", b"cross-origin"),
        ]
        return headers + ([(b"content-encoding", variant.coding)] if variant.coding else [])


def script_version(script: bytes) -> str:
    return hashlib.sha256(script).hexdigest()[:VERSION_CHARS]


def preferred_coding(accept_encoding: bytes, offered: Container[bytes] = (b"br", b"gzip")) -> bytes:
    """br, else gzip, else none: the first ``offered`` that the client accepts
    (``q=0`` refuses)."""
    accepted = set()
    for item in accept_encoding.lower().split(b","):
        coding, _, params = item.partition(b";")
        if not _refused(params):
            accepted.add(coding.strip())
    for coding in (b"br", b"gzip"):
        if coding in offered and (coding in accepted or b"*" in accepted):
            return coding
    return b""


def _refused(params: bytes) -> bool:
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip() == b"q":
            try:
                return float(value) == 0
            except ValueError:
                return True  # a q-value nobody can read is no promise to decode
    return False


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """If-None-Match's weak comparison: ``*``, or any listed tag, W/ or not."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")}
    return b"*" in tags or etag in tags
