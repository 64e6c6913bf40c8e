"""Fixtures for hostile-input tests: URL fetchers with short limits, and connection traps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.ioloop
from tornado.netutil import Resolver

from app.fetch.fetcher import UrlFetcher
from app.fetch.policy import AddressPolicy
from tests.hostile.traps import ConnectionTrap
from tests.support.specs import url_fetcher

# The policy of a production tier: nothing on this machine is allowed.
PRODUCTION_POLICY = AddressPolicy()
# The image server (127.0.0.1) stands in for the public internet; the rest of loopback
# (127.0.0.2 and up, ::1, 0.0.0.0) stays forbidden and hosts the traps.
IMAGE_SERVER_ONLY = AddressPolicy(allow_cidrs=["127.0.0.1/32"])

FetcherFactory = Callable[..., UrlFetcher]
TrapFactory = Callable[..., ConnectionTrap]


@pytest.fixture
def fetchers(io_loop: tornado.ioloop.IOLoop) -> Iterator[FetcherFactory]:
    """Makes URL fetchers with short timeouts (override any ``fetch.*`` setting); closes them after."""
    made: list[UrlFetcher] = []

    def make(policy: AddressPolicy = IMAGE_SERVER_ONLY, resolver: Resolver | None = None, **limits: Any) -> UrlFetcher:
        fetcher = url_fetcher(policy, resolver, **{"connect_timeout_s": 0.5, "total_timeout_s": 3.0, **limits})
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        io_loop.run_sync(fetcher.close)


@pytest.fixture
def traps() -> Iterator[TrapFactory]:
    """Opens connection traps on forbidden addresses; closes them after."""
    opened: list[ConnectionTrap] = []

    def open_trap(host: str, port: int = 0) -> ConnectionTrap:
        trap = ConnectionTrap(host, port)
        opened.append(trap)
        return trap

    yield open_trap
    for trap in opened:
        trap.close()
