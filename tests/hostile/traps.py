"""Test doubles for hostile-input tests: listeners that count connections, fake DNS, and a raw slow client.

``ConnectionTrap`` sits on an address the tier must never dial and counts every connection
the kernel completes for it. ``FakeDnsResolver`` answers names from a table (for ranges that
cannot be bound here, and for DNS rebinding); ``RecordingResolver`` passes through to the
system resolver and records what it was asked.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tornado.netutil import DefaultLoopResolver, Resolver


class ConnectionTrap:
    """A listener on a forbidden address; ``connections`` is how many connections reached it."""

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.setblocking(False)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._count = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def url(self, path: str = "x.jpg", host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{name}:{self.port}/{path}"

    @property
    def connections(self) -> int:
        # Drain the kernel's accept queue here too, so a connection that completed just
        # before this call is counted even if the accept loop has not woken up yet.
        self._drain()
        return self._count

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            readable, _, _ = select.select([self._sock], [], [], 0.05)
            if readable:
                self._drain()

    def _drain(self) -> None:
        with self._lock:
            while True:
                try:
                    conn, _ = self._sock.accept()
                except OSError:  # BlockingIOError: nothing queued
                    return
                conn.close()  # hang up at once: a client that got here fails fast
                self._count += 1

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        self._sock.close()


def _sockaddr(address: str, port: int) -> tuple[int, Any]:
    if ":" in address:
        return socket.AF_INET6, (address, port, 0, 0)
    return socket.AF_INET, (address, port)


class FakeDnsResolver(Resolver):
    """Answers from a table instead of DNS; unknown names do not resolve.

    ``answers`` maps a name to its successive answers (each a list of addresses); the
    last answer repeats. Two answers in a row model a rebinding attacker's DNS server.
    """

    def initialize(self, answers: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self.answers = {name: [list(a) for a in seq] for name, seq in answers.items()}
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        self.calls.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the fake DNS table")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [_sockaddr(address, port) for address in answer]


class RecordingResolver(Resolver):
    """The system resolver, recording every (host, port) it is asked for."""

    def initialize(self) -> None:
        self._inner = DefaultLoopResolver()
        self.calls: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        self.calls.append((host, port))
        addresses: list[tuple[int, Any]] = await self._inner.resolve(host, port, family)
        return addresses


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
