"""Which hosts and addresses the tier may connect to: judged on the address dialled, never on the URL text."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from app.fetch.errors import SourceForbidden

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges that are not global unicast but which some Python versions' ipaddress treats as
# global: the IETF protocol block, translators into IPv4 space (NAT64, 6to4), the
# deprecated site-local scope, and the newer IPv6 documentation prefix.
EXTRA_DENIED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(c)
    for c in ("192.0.0.0/24", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "fec0::/10", "3fff::/20")
)


class AddressPolicy:
    """Which hosts and addresses the tier may connect to.

    Denied by default: everything that is not a global unicast address (loopback,
    unspecified, link-local with the metadata service, private, shared, multicast,
    reserved, documentation) plus the ranges in EXTRA_DENIED. ``allow_cidrs`` and
    ``deny_cidrs`` override that; when both match an address the longer prefix wins,
    and deny wins a tie. ``allow_hosts``, when set, are the only host names allowed;
    ``deny_hosts`` are refused. A host pattern ``*.example.com`` matches subdomains.
    """

    def __init__(
        self,
        allow_cidrs: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        deny_hosts: Iterable[str] = (),
    ) -> None:
        rules = [(ipaddress.ip_network(c, strict=False), True) for c in allow_cidrs]
        rules += [(ipaddress.ip_network(c, strict=False), False) for c in deny_cidrs]
        # Longest prefix first; on a tie the deny rule (False) sorts first.
        self._rules = sorted(rules, key=lambda rule: (-rule[0].prefixlen, rule[1]))
        self._allow_hosts = _HostPatterns(allow_hosts)
        self._deny_hosts = _HostPatterns(deny_hosts)

    def check_host(self, host: str) -> None:
        if self._deny_hosts.matches(host) or (self._allow_hosts and not self._allow_hosts.matches(host)):
            raise SourceForbidden(f"host {host} is not allowed")

    def check_address(self, address: IPAddress) -> None:
        ip = _unmap(address)
        if not self.allows(ip):
            raise SourceForbidden(
                "the URL's host resolves to an address that is not allowed",
                log_message=f"refused to connect to {ip}",
            )

    def allows(self, ip: IPAddress) -> bool:
        for network, allowed in self._rules:
            if network.version == ip.version and ip in network:
                return allowed
        return not _is_special(ip)


class _HostPatterns:
    def __init__(self, patterns: Iterable[str]) -> None:
        names = [_normal_host(p) for p in patterns]
        self._exact = frozenset(n for n in names if not n.startswith("*."))
        self._suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def __bool__(self) -> bool:
        return bool(self._exact or self._suffixes)

    def matches(self, host: str) -> bool:
        if not (self._exact or self._suffixes):
            return False
        name = _normal_host(host)
        return name in self._exact or name.endswith(self._suffixes)


def _normal_host(host: str) -> str:
    name = host.lower().rstrip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(address.compressed.split("%")[0])
    return address


def _is_special(ip: IPAddress) -> bool:
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in network for network in EXTRA_DENIED if network.version == ip.version)
    )
