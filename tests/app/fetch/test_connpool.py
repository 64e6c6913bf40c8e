"""The fetcher's connector on its own: every socket checked where it is created, idle connections bounded.

Against real servers on loopback: the image server counts the connections it accepted,
and a trap on a forbidden address counts any that reach it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from app.fetch.connpool import AddressRefused, BoundedConnector, guarded_socket_factory
from app.fetch.policy import AddressPolicy
from tests.hostile.traps import ConnectionTrap
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.specs import pool_limits, url_fetcher

IMAGE_SERVER_ONLY = AddressPolicy(allow_cidrs=["127.0.0.1/32"])
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()


def test_the_socket_factory_refuses_a_forbidden_address_before_a_socket_exists() -> None:
    create = guarded_socket_factory(IMAGE_SERVER_ONLY)
    for address in ("127.0.0.2", "169.254.169.254", "::1", "::ffff:127.0.0.2", "not-an-address"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with pytest.raises(AddressRefused):
            create((family, socket.SOCK_STREAM, 0, "", (address, 80)))
    allowed = create((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 80)))
    assert allowed.family == socket.AF_INET
    allowed.close()


@pytest.mark.gen_test
async def test_aiohttp_dialling_an_ip_literal_directly_still_meets_the_check() -> None:
    """aiohttp connects to an IP literal without a resolver; the socket factory is what stops it."""
    trap = ConnectionTrap("127.0.0.2")
    connector = BoundedConnector(pool_limits(), IMAGE_SERVER_ONLY, max_busy=4)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(trap.url())
        assert isinstance(caught.value.os_error, AddressRefused)
        assert trap.connections == 0
    finally:
        trap.close()


async def fetch_together(urls: list[str], **settings: Any) -> tuple[list[bytes], list[bytes]]:
    """Two rounds of concurrent downloads of ``urls`` on one fetcher."""
    fetcher = url_fetcher(IMAGE_SERVER_ONLY, **settings)
    try:
        first = await asyncio.gather(*[fetcher.fetch(u) for u in urls])
        second = await asyncio.gather(*[fetcher.fetch(u) for u in urls])
        return first, second
    finally:
        await fetcher.close()


@pytest.mark.gen_test
async def test_idle_connections_are_bounded_per_origin(images: ImageServer) -> None:
    before = images.connections
    first, second = await fetch_together([images.url("coffee.jpg")] * 4, keepalive_per_host=2)
    assert first == second == [COFFEE] * 4
    assert images.connections - before == 4 + 2  # two of the first round's four were kept, two closed


@pytest.mark.gen_test
async def test_idle_connections_are_bounded_in_all() -> None:
    with ImageServer() as one, ImageServer() as other:
        urls = [one.url("coffee.jpg")] * 2 + [other.url("coffee.jpg")] * 2
        first, second = await fetch_together(urls, keepalive_per_host=16, keepalive_total=3)
        assert first == second == [COFFEE] * 4
        assert one.connections + other.connections == 4 + 1  # three of four kept across both origins


@pytest.mark.gen_test
async def test_idle_connections_expire(images: ImageServer) -> None:
    before = images.connections
    first, second = await fetch_together([images.url("coffee.jpg")] * 2, keepalive_idle_s=1e-6)
    assert first == second == [COFFEE] * 2
    assert images.connections - before == 4  # none young enough to reuse
