"""Name resolution that refuses a host unless every address it resolves to is allowed."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from tornado.netutil import Resolver

from app.fetch.errors import SourceForbidden, SourceUnreachable
from app.fetch.policy import AddressPolicy, IPAddress

KNOWN_HOSTS = 1024  # hosts whose literal verdict is remembered (GuardedResolver.literal)
_UNJUDGED = object()


class GuardedResolver(Resolver):
    """Resolves through ``inner`` and refuses the host unless every address is allowed."""

    def initialize(self, inner: Resolver, policy: AddressPolicy) -> None:
        self._inner = inner
        self._policy = policy
        # Each host seen: the literal's checked (family, address), or None for a name. The policy is fixed for
        # the resolver's life, so a verdict holds; a refusal raises and is not kept, so it is judged every time.
        self._literals: dict[str, tuple[socket.AddressFamily, str] | None] = {}

    def literal(self, host: str, port: int) -> list[tuple[int, Any]] | None:
        """The address ``host`` names if it is a canonical IP literal, checked; None for a name to look up."""
        known = self._literals.get(host, _UNJUDGED)
        if known is _UNJUDGED:
            known = self._judge_literal(host)
            if len(self._literals) >= KNOWN_HOSTS:
                self._literals.clear()  # bounded: hosts come from clients' URLs
            self._literals[host] = known
        if not isinstance(known, tuple):
            return None
        family, address = known
        return [(family, (address, port) if family == socket.AF_INET else (address, port, 0, 0))]

    def _judge_literal(self, host: str) -> tuple[socket.AddressFamily, str] | None:
        """The checked family and address of a literal (parsing one costs more than the rest of a URL's check)."""
        literal = _canonical_literal(host)
        if literal is None:
            return None
        self._policy.check_host(host)
        self._policy.check_address(literal)
        return (socket.AF_INET if literal.version == 4 else socket.AF_INET6), str(literal)

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        addresses = self.literal(host, port)  # no lookup (and no thread hop) for a plain IP, still checked
        return addresses if addresses is not None else await self.lookup(host, port, family)

    async def lookup(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        """The addresses of ``host``, a name (``literal`` said it is not an IP), each checked."""
        self._policy.check_host(host)
        try:
            addresses = await self._inner.resolve(host, port, family)
        except (OSError, UnicodeError) as exc:
            raise SourceUnreachable(f"cannot resolve host {host}", log_message=repr(exc)) from exc
        if not addresses:
            raise SourceUnreachable(f"host {host} has no addresses")
        for _family, sockaddr in addresses:
            self._policy.check_address(_address_of(sockaddr))
        return list(addresses)


def _canonical_literal(host: str) -> IPAddress | None:
    """The address a host names if it is written as a canonical IP literal; odd spellings go to the resolver."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address_of(sockaddr: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(sockaddr[0])
    except (ValueError, TypeError, IndexError) as exc:
        raise SourceForbidden(
            "the URL's host resolves to something that is not an IP address",
            log_message=f"resolver answered {sockaddr!r}",
        ) from exc
