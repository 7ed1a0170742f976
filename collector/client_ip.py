"""Which IP is the client's: the socket peer, unless the peer is a trusted proxy.

Forwarding headers are trivially forged, so they are read only when the request
comes from a ``--trusted-proxy`` network, and only the ONE header that proxy sets
(``--client-ip-header``): a visitor who adds another (say ``Forwarded`` behind a
proxy that appends only ``X-Forwarded-For``) cannot choose their address. In a
list, the right-most address that is not itself a trusted proxy is the client
(proxies append on the right).

    x-forwarded-for   X-Forwarded-For: client, proxy1, …     (the default)
    forwarded         Forwarded: for=client, for=proxy1       (RFC 7239)
    x-real-ip         X-Real-IP: client                       (nginx's single value)
    none              the socket peer, always
"""

from __future__ import annotations

import ipaddress

from streams.steps import parse_ip

HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "none")


class ClientIPResolver:
    def __init__(self, trusted_proxies: tuple[str, ...] = (), header: str = "x-forwarded-for"):
        if header not in HEADERS:
            raise ValueError(f"client_ip_header must be one of {', '.join(HEADERS)}, got {header!r}")
        self._networks = tuple(_Network(ipaddress.ip_network(cidr, strict=False)) for cidr in trusted_proxies)
        self._known_proxies: set[str] = set()  # proxy addresses only, never a client's
        self.kind = header
        # The request header to read (b"" for none: the server never sees an empty name).
        self.header = b"" if header == "none" else header.encode()

    def resolve(self, peer: str, value: str = "") -> str:
        """The client of a request from ``peer`` whose ``self.header`` is ``value``."""
        if not value or not self.header or not self._networks or not self._is_trusted(peer):
            return peer
        if self.kind == "x-forwarded-for":
            if "," not in value:
                # One hop, as behind a single load balancer: the client, trusted or not
                # (the rule below gives the same), without a list or a parse of it.
                return value.strip() or peer
            hops = [h.strip() for h in value.split(",") if h.strip()]
        elif self.kind == "forwarded":
            hops = _forwarded_hops(value)
        else:  # x-real-ip: one address, set by the proxy
            return value.strip() or peer
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` is a trusted proxy (the HTTP server does not cap its
        connections per address: it carries many clients)."""
        return bool(self._networks) and self._is_trusted(address)

    def _is_trusted(self, address: str) -> bool:
        if address in self._known_proxies:
            return True
        trusted = _in_networks(address, self._networks)
        if trusted and len(self._known_proxies) < 1024:
            self._known_proxies.add(address)
        return trusted


class _Network:
    """A trusted network as integers: membership is checked for every hop of every request."""

    __slots__ = ("version", "address", "mask")

    def __init__(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network):
        self.version = network.version
        self.address = int(network.network_address)
        self.mask = int(network.netmask)


def _in_networks(address: str, networks: tuple[_Network, ...]) -> bool:
    ip = parse_ip(address)  # the privacy filter's parser: IPv4-mapped IPv6 counts as IPv4
    if ip is None:
        return False
    for net in networks:  # a loop, not any(<generator>): this runs for every request
        if ip.version == net.version and ip.value & net.mask == net.address:
            return True
    return False


def _forwarded_hops(header: str) -> list[str]:
    """``Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`` (RFC 7239)."""
    hops = []
    for element in header.split(","):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.lower() == "for":
                value = value.strip('"')
                if value.startswith("["):
                    value = value[1:].split("]", 1)[0]
                elif value.count(":") == 1:
                    value = value.split(":", 1)[0]
                hops.append(value)
    return hops
