"""Which addresses a fetch may connect to: the SSRF guard of `fetch_page` and `extract`.

A caller chooses the URL, so without a guard postal is a proxy into the private network (a
cloud metadata endpoint at 169.254.169.254 hands out credentials). The rule: resolve the host
once, check *every* address it resolves to, and connect to the checked address itself (the
caller passes it to the connection), so a DNS server that answers differently the second time
(rebinding) gains nothing. Only public unicast addresses pass, after unwrapping IPv4 inside
IPv6 (mapped, NAT64, 6to4, Teredo); only ports 80 and 443 unless configured. An operator
permits internal hosts with `POSTAL_FETCH_ALLOW` (networks, addresses or host names), which
also lifts the port rule for them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from tasks.errors import FetchConnectionError, PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class ForbiddenTarget(PermanentError):
    """Raised when a URL (or a redirect hop) points at an address or port postal must not reach."""


@dataclass(frozen=True)
class TargetPolicy:
    """What may be fetched: public addresses on `ports`, plus whatever the allow-list names."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443}))

    @classmethod
    def parse(cls, allow: Iterable[str], ports: Iterable[int]) -> TargetPolicy:
        """Entries that parse as an address or network are networks; the rest are host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_networks=tuple(networks), allow_hosts=frozenset(hosts), ports=frozenset(ports))

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.allow_networks)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is one."""
    for candidate in (ip, embedded_ipv4(ip)):
        if candidate is None:
            continue
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address (where cloud metadata services live)"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_private:
            return "a private address"
        if candidate.is_reserved:
            return "a reserved address"
        if not candidate.is_global:
            return "not a public address"
    return None


def resolve_checked(host: str, port: int, policy: TargetPolicy) -> str:
    """Resolve `host` once and return the address to connect to, after checking all of them.

    Raises ForbiddenTarget (permanent) for a refused address or port, FetchConnectionError
    (transient) when the name does not resolve.
    """
    name = host.lower().rstrip(".")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchConnectionError(f"could not resolve host {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchConnectionError(f"could not resolve host {host}: no addresses")
    hint = "; POSTAL_FETCH_ALLOW can permit an internal host"
    for ip in addresses:
        if name in policy.allow_hosts or policy.allows_address(ip):
            continue
        reason = refusal(ip)
        if reason:
            raise ForbiddenTarget(f"refusing to fetch from {host}: it resolves to {ip}, {reason}{hint}")
        if port not in policy.ports:
            allowed = ", ".join(str(p) for p in sorted(policy.ports))
            raise ForbiddenTarget(
                f"refusing to fetch from {host}:{port}: only ports {allowed} are fetched{hint}"
            )
    return str(addresses[0])
