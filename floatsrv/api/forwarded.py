"""The client's address behind trusted reverse proxies (`server.trusted_proxies`).

`X-Forwarded-For` is believed only when the TCP peer is a trusted proxy; the client is then the right-most
address in it that is not a trusted proxy (the left part is whatever the client claimed, so it is never
trusted). With no trusted proxies configured the header is ignored. Login throttling, the audit log's
peer, the request log and `address:` policy rules all see the address this returns. `X-Forwarded-Proto`
from a trusted proxy tells the console that the browser's connection was HTTPS (its cookie is then Secure).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(peer: str | None, forwarded: Iterable[str], trusted: Sequence[Network]) -> str | None:
    """The client's address: `peer`, or from `forwarded` (every X-Forwarded-For header, in order) when the
    peer is a trusted proxy."""
    peer_ip = _ip(peer) if peer else None
    if peer_ip is None or not _trusted(peer_ip, trusted):
        return peer
    client = peer
    hops = [hop for value in forwarded for hop in value.split(",")]
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # garbage: the last address a trusted hop vouched for stands
        client = str(hop_ip)
        if not _trusted(hop_ip, trusted):
            break
    return client


def forwarded_https(peer: str | None, proto: str | None, trusted: Sequence[Network]) -> bool:
    """Whether a trusted proxy (the TCP peer) says the client's connection was HTTPS (`X-Forwarded-Proto`)."""
    peer_ip = _ip(peer) if peer else None
    if peer_ip is None or not proto or not _trusted(peer_ip, trusted):
        return False
    return proto.split(",")[0].strip().lower() == "https"
