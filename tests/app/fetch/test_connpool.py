"""The keep-alive pool on its own: which idle connections it hands back, and when it lets them go."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import tornado.ioloop
from tornado.iostream import IOStream

from app.fetch.connpool import ConnectionPool
from tests.support.specs import pool_limits

ORIGIN = ("http", "images.test", 80)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def streams(io_loop: tornado.ioloop.IOLoop) -> Iterator[list[tuple[IOStream, socket.socket]]]:
    """Connected pairs: our end as an IOStream, the peer's end as a plain socket."""
    made: list[tuple[IOStream, socket.socket]] = []

    def pair() -> tuple[IOStream, socket.socket]:
        ours, peer = socket.socketpair()
        made.append((IOStream(ours), peer))
        return made[-1]

    yield [pair() for _ in range(4)]
    for stream, peer in made:
        stream.close()
        peer.close()


def test_hands_back_only_connections_to_a_freshly_resolved_address(
    clock: Clock, streams: list[tuple[IOStream, socket.socket]]
) -> None:
    pool = ConnectionPool(pool_limits(), clock)
    stream, _peer = streams[0]
    pool.put(ORIGIN, stream, "192.0.2.1")
    assert pool.take(ORIGIN, {"192.0.2.9"}) is None
    assert stream.closed()  # not kept for an address the host no longer has
    other, _ = streams[1]
    pool.put(ORIGIN, other, "192.0.2.1")
    assert pool.take(("https", "images.test", 80), {"192.0.2.1"}) is None  # another origin
    assert pool.take(ORIGIN, {"192.0.2.1"}) == (other, "192.0.2.1")
    assert len(pool) == 0


def test_idle_connections_expire(clock: Clock, streams: list[tuple[IOStream, socket.socket]]) -> None:
    pool = ConnectionPool(pool_limits(keepalive_idle_s=4.0), clock)
    old, _ = streams[0]
    pool.put(ORIGIN, old, "192.0.2.1")
    clock.now += 5.0
    assert pool.take(ORIGIN, {"192.0.2.1"}) is None
    assert old.closed()
    quiet, _ = streams[1]
    pool.put(("http", "quiet.test", 80), quiet, "192.0.2.2")
    clock.now += 5.0
    pool.put(ORIGIN, streams[2][0], "192.0.2.1")  # any put sweeps the other origins
    assert quiet.closed()
    assert len(pool) == 1


def test_a_connection_the_peer_closed_or_wrote_to_is_not_reused(
    clock: Clock, streams: list[tuple[IOStream, socket.socket]]
) -> None:
    pool = ConnectionPool(pool_limits(), clock)
    hung_up, peer = streams[0]
    peer.close()
    pool.put(ORIGIN, hung_up, "192.0.2.1")
    chatty, chatty_peer = streams[1]
    chatty_peer.sendall(b"HTTP/1.1 200 OK\r\n")  # bytes nobody asked for
    pool.put(ORIGIN, chatty, "192.0.2.1")
    assert pool.take(ORIGIN, {"192.0.2.1"}) is None
    assert hung_up.closed() and chatty.closed()


def test_the_pool_is_bounded(clock: Clock, streams: list[tuple[IOStream, socket.socket]]) -> None:
    pool = ConnectionPool(pool_limits(keepalive_per_host=2), clock)
    for stream, _peer in streams[:3]:
        pool.put(ORIGIN, stream, "192.0.2.1")
    assert len(pool) == 2
    assert streams[2][0].closed()
    pool.close()
    assert len(pool) == 0 and streams[0][0].closed()


def test_the_pool_is_bounded_across_origins(clock: Clock, streams: list[tuple[IOStream, socket.socket]]) -> None:
    pool = ConnectionPool(pool_limits(keepalive_per_host=16, keepalive_total=3), clock)
    for i, (stream, _peer) in enumerate(streams):
        pool.put(("http", f"host{i}.test", 80), stream, "192.0.2.1")
    assert len(pool) == 3
    assert streams[3][0].closed() and not streams[0][0].closed()
