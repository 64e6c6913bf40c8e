"""A tiny authoritative DNS server on loopback whose answers a test changes (dnslib, UDP and TCP on one port).

It stands in for the cluster DNS behind a headless Service: ``A`` records for one name, the replicas'
addresses, changed as replicas come and go. gRPC reaches it with a target such as
``dns://127.0.0.1:<port>/tfserving.test:8500`` (the c-ares resolver takes a DNS server in the authority).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

TTL_SECONDS = 0  # every lookup asks again; gRPC decides when to look up


class _Silent:
    """dnslib's logger interface, logging nothing (its default prints every packet)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class _Records(BaseResolver):  # type: ignore[misc]
    """Answers ``A`` queries for ``name`` from a list the test changes; other names are NXDOMAIN."""

    def __init__(self, name: str) -> None:
        self.name = name.rstrip(".").lower()
        self.addresses: tuple[str, ...] = ()
        self.queries = 0  # A queries for the name: how often a client looked it up
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".").lower() != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if question.qtype == QTYPE.A:
            with self.lock:
                self.queries += 1
                addresses = self.addresses
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL_SECONDS))
        return reply  # AAAA, TXT, ...: no records, NOERROR


class LoopbackDNS:
    """``with LoopbackDNS("tfserving.test") as dns: dns.answer(["127.0.0.2"])``; ``dns.port`` serves UDP and TCP."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.host = host
        self._records = _Records(name)
        self._servers: list[DNSServer] = []
        self.port = 0

    def answer(self, addresses: Iterable[str]) -> None:
        """From now on, lookups of the name answer ``addresses`` (in this order)."""
        with self._records.lock:
            self._records.addresses = tuple(addresses)

    @property
    def queries(self) -> int:
        with self._records.lock:
            return self._records.queries

    def start(self) -> LoopbackDNS:
        for _ in range(20):  # the free UDP port may be taken for TCP: try another
            udp = DNSServer(self._records, address=self.host, port=0, logger=_Silent())
            port = int(udp.server.server_address[1])
            try:
                tcp = DNSServer(self._records, address=self.host, port=port, tcp=True, logger=_Silent())
            except OSError:
                udp.server.server_close()
                continue
            self._servers = [udp, tcp]
            self.port = port
            for server in self._servers:
                server.start_thread()
            return self
        raise RuntimeError("no port free for both UDP and TCP")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> LoopbackDNS:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
