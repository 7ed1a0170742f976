"""``/reports/unsubscribe/<token>``: the link every mail carries.

    GET   a page naming what the link stops, with a button that POSTs (mail scanners
          and link previews fetch links by GET: that alone must unsubscribe nobody)
    POST  unsubscribes: from the button, or from a mail client's one-click request
          (RFC 8058: body ``List-Unsubscribe=One-Click``), which needs no page

An unknown or expired token is a 404 page. The token is the whole authority: it is
random, one per mail, and stored only as its SHA-256."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from html import escape
from typing import TypeVar

from common import metrics
from reports.sending import UNSUBSCRIBE_PATH
from storage.clickhouse import Store
from storage.reports import SPIKE, UnsubscribeLink, find_unsubscribe_link, unsubscribe
from web.messages import Request, Response
from web.routing import failed

PREFIX = "/reports/"
MAX_BODY = 1024
T = TypeVar("T")
HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),  # the token is in the URL
    (b"x-robots-tag", b"noindex"),
]


class UnsubscribeApp:
    def __init__(self, store: Store):
        self.store = store

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._answer(request)
        except Exception as exc:
            response = failed(scope, exc)
        metrics.api_request("reports_unsubscribe", response.status)
        await response.send(send)

    async def _answer(self, request: Request) -> Response:
        method, path = request.scope["method"], request.scope["path"]
        if not path.startswith(UNSUBSCRIBE_PATH):
            return _page(404, "Not found", "There is nothing here.")
        token = path[len(UNSUBSCRIBE_PATH) :]
        if method in ("GET", "HEAD"):
            link = await _off_loop(find_unsubscribe_link, self.store, token)
            return _confirm(link) if link else _unknown()
        if method == "POST":
            if await request.body(MAX_BODY) is None:
                return _page(413, "Too large", "This request is too large.")
            link = await _off_loop(unsubscribe, self.store, token)
            return _done(link) if link else _unknown()
        return Response(405, b"", [(b"allow", b"GET, HEAD, POST")])


def _what(link: UnsubscribeLink) -> str:
    if link.kind == SPIKE:
        return f"traffic-spike notices of {link.site}"
    return f"the {'weekly' if link.kind == 'week' else 'monthly'} report of {link.site}"


def _confirm(link: UnsubscribeLink) -> Response:
    body = (
        f"<p>Stop receiving {escape(_what(link))}?</p>"
        '<form method="post"><button type="submit">Unsubscribe</button></form>'
    )
    return _page(200, "Unsubscribe", body, raw=True)


def _done(link: UnsubscribeLink) -> Response:
    return _page(200, "Unsubscribed", f"You will receive no more {_what(link)}.")


def _unknown() -> Response:
    return _page(404, "Unknown link", "This unsubscribe link is unknown or has expired.")


def _page(status: int, title: str, text: str, raw: bool = False) -> Response:
    body = text if raw else f"<p>{escape(text)}</p>"
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(status, html.encode(), list(HEADERS))


async def _off_loop(work: Callable[..., T], *args) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, partial(work, *args))
