"""Plausible's CSV archive uploaded from the dashboard by an admin of the site, and
imported as ``beacon import plausible`` does (docs/plausible-archive.md):

    POST /dashboard/import/plausible?site=S[&replace=true]   the zip as the body → 200, what was imported

The whole archive is checked before anything is stored; a fault is a 400 naming it,
and nothing is imported. Uploads are capped at ``MAX_UPLOAD_BYTES`` zipped (years of a
large site's archive are tens of MB); larger archives go through the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from common import clock
from dashboard.security import Proxies, same_origin
from storage.clickhouse import Store
from storage.plausible_archive import ArchiveError, read_archive
from storage.plausible_import import Outcome, import_archive, retention_window
from storage.sessions import Principal
from storage.sites import find_site
from web.messages import Request, Response

log = logging.getLogger("beacon.dashboard")

PATH = "/dashboard/import/plausible"
MAX_UPLOAD_BYTES = 256 << 20
ZIP_TYPES = (b"application/zip", b"application/x-zip-compressed", b"application/octet-stream")


@dataclass(frozen=True)
class ImportLimits:
    """The settings ``beacon import plausible`` reads (``--archive-max-bytes`` and the others)."""

    max_bytes: int  # unzipped
    max_ratio: int
    retention_days: int


class ArchiveImport:
    def __init__(
        self,
        store: Store,
        admin_of: Callable[[Request], Awaitable[Principal | None]],
        proxies: Proxies,
        limits: ImportLimits,
    ):
        self.store = store
        self.admin_of = admin_of
        self.proxies = proxies
        self.limits = limits

    async def answer(self, request: Request) -> Response:
        if request.scope["method"] != "POST":
            return Response.json(405, {"error": "method not allowed"}, [(b"allow", b"POST")])
        if not same_origin(request, self.proxies.scheme(request)):
            return Response.json(403, {"error": "archives are imported from this dashboard's own pages only"})
        admin = await self.admin_of(request)
        if admin is None:
            return Response.json(403, {"error": "only an admin's session imports an archive"})
        query = dict(parse_qsl(request.scope["query_string"].decode("latin-1")))
        site, replace = query.get("site", "").strip().lower(), query.get("replace", "false")
        if not site or replace not in ("true", "false"):
            return Response.json(400, {"error": "give site=DOMAIN (and replace=true or false)", "field": "site"})
        if not admin.administers(site):
            return Response.json(403, {"error": "you are not an admin of this site", "field": "site"})
        if request.media_type() not in ZIP_TYPES:
            return Response.json(415, {"error": "send the archive as application/zip"})
        body = await request.body(MAX_UPLOAD_BYTES)
        if body is None:
            return Response.json(413, {"error": f"archives over {MAX_UPLOAD_BYTES >> 20} MiB: beacon import plausible"})
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._import, site, body, replace == "true")

    def _import(self, domain: str, body: bytes, replace: bool) -> Response:
        site = find_site(self.store, domain)
        if site is None:
            return Response.json(404, {"error": f"'{domain[:100]}' is not a registered site", "field": "site"})
        today = datetime.fromtimestamp(clock.now(), site.zone).date()
        window = retention_window(self.store, site.domain, site.timezone, today, self.limits.retention_days)
        try:
            with tempfile.TemporaryDirectory() as folder:
                upload = Path(folder) / "archive.zip"
                upload.write_bytes(body)
                checked = read_archive(upload, self.limits.max_bytes, self.limits.max_ratio)
            outcome = import_archive(self.store, site.domain, checked, window, replace=replace)
        except ArchiveError as exc:
            return Response.json(400, {"error": f"{exc} (nothing imported)"})
        log.info("plausible archive imported", extra={"site": site.domain, "import": outcome.import_id})
        return Response.json(200, _described(outcome), [(b"cache-control", b"no-store")])


def _described(outcome: Outcome) -> dict[str, Any]:
    return {
        "import_id": str(outcome.import_id),
        "first": str(outcome.first),
        "last": str(outcome.last),
        "rows": outcome.rows,
        "replaced": [str(i) for i in outcome.replaced],
    }
