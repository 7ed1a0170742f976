"""The dashboard's built files (``dashboard/static/``, from ``dashboard/frontend/``),
read once at start and served from memory, gzipped for browsers that take it.

The page names each asset with its version (``dashboard.js?v=<sha-256 prefix>``,
written by the build): a request for the current version is cached for a year, any
other request revalidates with the ETag, so a new build reaches browsers at once.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs

from web.messages import Request, Response

VERSION_CHARS = 12
PAGE = "index.html"
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "json": b"application/json",
    "svg": b"image/svg+xml",
}


def version_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:VERSION_CHARS]


@dataclass(frozen=True)
class Asset:
    content_type: bytes
    body: bytes
    gzipped: bytes
    version: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        return cls(TYPES[name.rsplit(".", 1)[-1]], body, gzip.compress(body, 9, mtime=0), version_of(body))

    def response(self, request: Request, cache: bytes) -> Response:
        etag = b'"%s"' % self.version.encode()
        headers = [(b"cache-control", cache), (b"etag", etag), (b"vary", b"Accept-Encoding")]
        if request.header(b"if-none-match") == etag:
            return Response(304, b"", headers)
        headers.append((b"content-type", self.content_type))
        if b"gzip" in request.header(b"accept-encoding"):
            return Response(200, self.gzipped, headers + [(b"content-encoding", b"gzip")])
        return Response(200, self.body, headers)


class Assets:
    def __init__(self, files: dict[str, bytes]):
        self._assets = {name: Asset.of(name, body) for name, body in files.items() if "." in name}

    @classmethod
    def packaged(cls) -> Assets:
        """The files built into this package (dashboard/static/)."""
        folder = resources.files("dashboard") / "static"
        return cls({entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()})

    def page(self, request: Request) -> Response:
        return self._assets[PAGE].response(request, REVALIDATE)

    def asset(self, request: Request, name: str) -> Response:
        asset = self._assets.get(name) if name != PAGE else None
        if asset is None:
            return Response.json(404, {"error": "not found"})
        asked = parse_qs(request.scope["query_string"].decode("latin-1")).get("v", [""])[0]
        return asset.response(request, IMMUTABLE if asked == asset.version else REVALIDATE)
