"""Which IP is the client's: the socket peer, unless the peer is a trusted proxy.

Forwarding headers are trivially forged, so they are read only when the request
comes from a ``--trusted-proxy`` network; then the right-most address that is not
itself a trusted proxy is the client (X-Forwarded-For is appended to left to right).
"""
from __future__ import annotations

import ipaddress

from streams.steps import parse_ip


class ClientIPResolver:
    def __init__(self, trusted_proxies: tuple[str, ...] = ()):
        self._networks = tuple(_Network(ipaddress.ip_network(cidr, strict=False)) for cidr in trusted_proxies)
        self._known_proxies: set[str] = set()  # proxy addresses only, never a client's

    def resolve(self, peer: str, forwarded_for: str = "", forwarded: str = "") -> str:
        if not self._networks or not self._is_trusted(peer):
            return peer
        if forwarded:
            hops = _forwarded_hops(forwarded)
        elif "," not in forwarded_for:
            # One hop, as behind a single load balancer: the client, trusted or not
            # (the rule below gives the same), without a list or a parse of it.
            return forwarded_for.strip() or peer
        else:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

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
