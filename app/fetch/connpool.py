"""The connections the URL fetcher dials and keeps: aiohttp's connector, bounded and guarded.

aiohttp's ``TCPConnector`` parses HTTP in C (llhttp) and files idle keep-alive connections
under a key that holds the host it dialled, the port and the TLS server name. The fetcher
always dials an address it has just resolved and had the policy check (the URL's host
is replaced by that address, the name kept for ``Host`` and TLS), so a kept connection is
reused only when it leads to one of the addresses the host resolves to *now*: a host that
rebinds to another address gets a new connection, which is checked like any other.

On top of aiohttp this module adds:

- a dial-time check: every socket is made by the function ``guarded_socket_factory`` returns, which refuses any
  address the policy does not allow before a socket exists (a second line behind the
  resolver; aiohttp dials IP literals without asking a resolver);
- bounds on idle connections, per origin and in all (aiohttp bounds only busy ones).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from app.fetch.errors import SourceForbidden
from app.fetch.limits import PoolLimits
from app.fetch.policy import AddressPolicy


class AddressRefused(PermissionError):
    """Raised instead of creating a socket for an address the policy does not allow."""


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[Any], socket.socket]:
    """An aiohttp ``socket_factory`` that creates a socket only for an address ``policy`` allows."""

    def create(addr_info: Any) -> socket.socket:
        family, kind, proto, _name, sockaddr = addr_info
        try:
            policy.check_address(ipaddress.ip_address(sockaddr[0]))
        except (ValueError, SourceForbidden) as exc:
            raise AddressRefused(f"refused to dial {sockaddr[0]!r}") from exc
        return socket.socket(family=family, type=kind, proto=proto)

    return create


class BoundedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that keeps at most ``limits.max_idle_per_origin`` idle connections per
    origin and ``limits.max_idle_total`` in all, closing the oldest beyond that."""

    def __init__(self, limits: PoolLimits, policy: AddressPolicy, max_busy: int) -> None:
        keep = limits.idle_timeout_s > 0
        super().__init__(
            limit=max_busy,
            keepalive_timeout=limits.idle_timeout_s if keep else None,
            force_close=not keep,
            use_dns_cache=False,
            happy_eyeballs_delay=None,  # the fetcher dials one checked address at a time
            socket_factory=guarded_socket_factory(policy),
        )
        self.limits = limits

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._conns.values())

    def _release(self, key: Any, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        if not idle:
            return
        while len(idle) > self.limits.max_idle_per_origin:
            idle.popleft()[0].close()
        excess = self.idle_count() - self.limits.max_idle_total
        while excess > 0 and idle:
            idle.popleft()[0].close()
            excess -= 1
        if not idle:
            del self._conns[key]
