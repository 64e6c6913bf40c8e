"""Idle keep-alive connections to image sources, for the URL fetcher to reuse.

A connection is filed under its origin (scheme, host, port) and the address it was
dialled to. ``take`` hands one back only when that address is among the ones the
caller has just resolved and had checked by the address policy, so reuse never
skips the check a new connection would get, and a host that now resolves elsewhere
(DNS rebinding) gets a new, checked connection instead of the old one.

Idle connections expire after ``idle_timeout_s`` (servers close them on their own
after a few seconds; nginx after 75 s, Node after 5 s); the fetcher retries once on a
new connection when a reused one turns out to have been closed before it answered.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tornado.iostream import IOStream, SSLIOStream

from app.fetch.limits import PoolLimits

Origin = tuple[str, str, int]  # scheme, host as written in the URL, port


@dataclass
class _Idle:
    stream: IOStream
    address: str
    since: float


class ConnectionPool:
    """Keep-alive connections at rest, newest first out."""

    def __init__(self, limits: PoolLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._idle: dict[Origin, list[_Idle]] = {}
        self._count = 0
        self._swept = clock()

    def __len__(self) -> int:
        return self._count

    def take(self, origin: Origin, addresses: Collection[str]) -> tuple[IOStream, str] | None:
        """An idle connection to one of ``addresses`` (already checked by the caller), or None."""
        entries = self._idle.get(origin)
        now = self._clock()
        while entries:
            entry = entries.pop()
            self._count -= 1
            if entry.address in addresses and self._fresh(entry, now) and _alive(entry.stream):
                return entry.stream, entry.address
            entry.stream.close()
        return None

    def put(self, origin: Origin, stream: IOStream, address: str) -> None:
        """File a connection whose last response was read to its end; closes it when the pool is full."""
        now = self._clock()
        if now - self._swept > self.limits.idle_timeout_s:
            self._sweep(now)
        entries = self._idle.setdefault(origin, [])
        room = len(entries) < self.limits.max_idle_per_origin and self._count < self.limits.max_idle_total
        if not room or stream.closed() or self.limits.idle_timeout_s <= 0:
            stream.close()
            return
        entries.append(_Idle(stream, address, now))
        self._count += 1

    def close(self) -> None:
        for entries in self._idle.values():
            for entry in entries:
                entry.stream.close()
        self._idle.clear()
        self._count = 0

    def _fresh(self, entry: _Idle, now: float) -> bool:
        return now - entry.since < self.limits.idle_timeout_s

    def _sweep(self, now: float) -> None:
        """Close connections idle for too long, so a quiet origin does not keep its sockets."""
        self._swept = now
        for origin in list(self._idle):
            entries = self._idle[origin]
            fresh = []
            for entry in entries:
                if self._fresh(entry, now):
                    fresh.append(entry)
                else:
                    entry.stream.close()
                    self._count -= 1
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]


def _alive(stream: IOStream) -> bool:
    """False when the peer has closed the connection (or sent bytes nobody asked for) while it was idle."""
    if stream.closed():
        return False
    if isinstance(stream, SSLIOStream):
        return True  # TLS records (session tickets) may be pending; a stale one is caught by the retry
    try:
        stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing to read: open and quiet
    except OSError:
        return False
    return False  # end of stream, or bytes nobody asked for
