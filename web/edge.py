"""Headers the server adds to every answer, whichever app gave it (the collector's
direct path, the router's routes, the mounted API and dashboard):

- ``X-Content-Type-Options: nosniff``: a browser takes each body as its declared type
  (a JSON answer quoting visitor text is never run as a script or read as HTML).
- ``Strict-Transport-Security`` when the request came over HTTPS through a trusted
  proxy (``X-Forwarded-Proto: https`` from a ``--trusted-proxy`` address): beacon
  itself speaks plain HTTP, so HTTPS is known only from the proxy that ended it.
- ``Cache-Control: no-store`` on an answer to a request with credentials
  (``Authorization``, a cookie) and on a 401, unless the app chose its own (the
  dashboard's fingerprinted assets): no cache keeps a signed-in answer for another.
"""

from __future__ import annotations

from collections.abc import Callable

NOSNIFF = b"x-content-type-options: nosniff\r\n"
HSTS = b"strict-transport-security: max-age=31536000\r\n"
NO_STORE = b"cache-control: no-store\r\n"
_CREDENTIALS = (b"authorization", b"cookie")


def edge_header_lines(scope: dict, status: int, app_headers, is_trusted_proxy: Callable[[str], bool]) -> bytes:
    """The header lines to add to the answer of ``scope`` with ``status`` and the app's ``app_headers``."""
    lines = NOSNIFF
    credentials, forwarded_https = _read_request(scope["headers"])
    if forwarded_https and is_trusted_proxy((scope.get("client") or ("", 0))[0]):
        lines += HSTS
    if (credentials or status == 401) and not any(name.lower() == b"cache-control" for name, _ in app_headers):
        lines += NO_STORE
    return lines


def _read_request(headers) -> tuple[bool, bool]:
    """(carries credentials, says it came over HTTPS), in one pass over the request's headers."""
    credentials = forwarded_https = False
    for name, value in headers:
        if name in _CREDENTIALS:
            credentials = True
        elif name == b"x-forwarded-proto":
            forwarded_https = value.split(b",")[0].strip().lower() == b"https"
    return credentials, forwarded_https
