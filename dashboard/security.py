"""What keeps the dashboard's page and its session safe in a browser.

- Every response carries a strict Content-Security-Policy: scripts, styles, images
  and requests from this origin only, nothing inline, no frames.
- A state change (sign-in, sign-out) must come from a page of this origin: the
  browser says so in ``Sec-Fetch-Site``, or in ``Origin`` where it sends no fetch
  metadata; a request with neither comes from no browser, so no page forged it.
  With the cookie's ``SameSite=Strict``, that is the CSRF defence.
- The cookie is ``Secure`` when the page was served over HTTPS: the scheme of the
  connection, or ``X-Forwarded-Proto`` when a trusted proxy (``--trusted-proxy``)
  sent the request.
"""

from __future__ import annotations

import ipaddress

from web.messages import Request

Headers = list[tuple[bytes, bytes]]

_POLICY_BUT_FRAMES = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
)
CONTENT_SECURITY_POLICY = _POLICY_BUT_FRAMES + b"frame-ancestors 'none'"
SECURITY_HEADERS: Headers = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def framed_by(origins: tuple[str, ...]) -> Headers:
    """The security headers of a page that pages of ``origins`` may frame (a shared
    link's embed); with none, those of every other page. X-Frame-Options cannot name
    origins: it is left out, and browsers follow frame-ancestors."""
    if not origins:
        return SECURITY_HEADERS
    ancestors = b"frame-ancestors " + " ".join(origins).encode("latin-1")
    framed = [(b"content-security-policy", _POLICY_BUT_FRAMES + ancestors)]
    return framed + [h for h in SECURITY_HEADERS if h[0] not in (b"content-security-policy", b"x-frame-options")]


class Proxies:
    """The ``--trusted-proxy`` networks, whose forwarding headers are believed."""

    def __init__(self, cidrs: tuple[str, ...] = ()):
        self.cidrs = cidrs
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def scheme(self, request: Request) -> str:
        """``https`` or ``http``: how the browser reached us."""
        client = request.scope.get("client") or ("", 0)
        if self.trusted(client[0]):
            forwarded = request.header(b"x-forwarded-proto").decode("latin-1").split(",")[0].strip().lower()
            if forwarded in ("http", "https"):
                return forwarded
        return request.scope.get("scheme", "http")


def same_origin(request: Request, scheme: str) -> bool:
    """Whether a state-changing request may be trusted not to be forged by another site."""
    site = request.header(b"sec-fetch-site")
    if site:
        return site == b"same-origin"
    origin = request.header(b"origin")
    if origin:
        return origin.decode("latin-1") == f"{scheme}://{request.header(b'host').decode('latin-1')}"
    return True
