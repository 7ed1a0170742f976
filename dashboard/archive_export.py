"""A site's own figures as Plausible's CSV archive, downloaded from the dashboard by an
admin of the site (the same archive as ``beacon export plausible``):

    GET /dashboard/export/plausible?site=S[&from=YYYY-MM-DD&to=YYYY-MM-DD]   → application/zip

Days are the site's local days; without ``from``/``to``, all of its own. It is built in
memory: an archive is a few CSV rows per day and property (tens of MB for years of a
large site, as the import bench shows).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from urllib.parse import parse_qsl

from queries.plausible_export import archive_files, export_span
from storage.clickhouse import Store
from storage.plausible_archive import write_archive
from storage.sessions import Principal
from storage.sites import find_site
from web.messages import Request, Response

log = logging.getLogger("beacon.dashboard")

PATH = "/dashboard/export/plausible"


class ArchiveExport:
    def __init__(self, store: Store, admin_of: Callable[[Request], Awaitable[Principal | None]]):
        self.store = store
        self.admin_of = admin_of

    async def answer(self, request: Request) -> Response:
        if request.scope["method"] not in ("GET", "HEAD"):
            return Response.json(405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
        admin = await self.admin_of(request)
        if admin is None:
            return Response.json(403, {"error": "only an admin's session exports a site's archive"})
        asked = _parse(request.scope["query_string"].decode("latin-1"))
        if isinstance(asked, Response):
            return asked
        site, first, last = asked
        if not admin.administers(site):
            return Response.json(403, {"error": "you are not an admin of this site", "field": "site"})
        answer = await asyncio.get_running_loop().run_in_executor(None, self._archive, site, first, last)
        if isinstance(answer, Response):
            return answer
        name, body = answer
        log.info("plausible archive exported", extra={"site": site, "bytes": len(body)})
        disposition = f'attachment; filename="{name}"'.encode()
        headers = [(b"content-type", b"application/zip"), (b"content-disposition", disposition)]
        return Response(200, body, headers + [(b"cache-control", b"no-store")])

    def _archive(self, domain: str, first: date | None, last: date | None) -> tuple[str, bytes] | Response:
        site = find_site(self.store, domain)
        if site is None:
            return Response.json(404, {"error": f"'{domain[:100]}' is not a registered site", "field": "site"})
        try:
            lo, hi = export_span(self.store, site.domain, site.timezone, first, last)
        except ValueError as exc:
            return Response.json(400, {"error": f"{exc} (from, to)", "field": "to"})
        zipped = io.BytesIO()
        write_archive(zipped, archive_files(self.store, site.domain, site.timezone, lo, hi))
        return f"plausible-{site.domain}-{lo:%Y%m%d}-{hi:%Y%m%d}.zip", zipped.getvalue()


def _parse(query: str) -> tuple[str, date | None, date | None] | Response:
    pairs = parse_qsl(query, keep_blank_values=True)
    given = dict(pairs)
    if len(given) != len(pairs):
        return Response.json(400, {"error": "each parameter once"})
    site = given.get("site", "").strip().lower()
    if not site:
        return Response.json(400, {"error": "site is required", "field": "site"})
    days: list[date | None] = []
    for name in ("from", "to"):
        text = given.get(name, "")
        try:
            days.append(date.fromisoformat(text) if text else None)
        except ValueError:
            return Response.json(400, {"error": f"{name} must be a date, YYYY-MM-DD", "field": name})
    return site, days[0], days[1]
