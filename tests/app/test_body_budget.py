"""The body intake reserves each body in the memory budget before reading it (handlers/intake.py): by its
Content-Length at once, a chunked body chunk by chunk; no room within ``server.memory_wait_s`` is 503
``overloaded`` with Retry-After; everything is handed back when the request ends. A real tier in this
test's IOLoop, the real local backend, a real photo; the budget's every value is recorded."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.memory import MemoryBudget
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES

PREDICT = "/v1/models/mobilenet_v2:predict"
MIB = 1 << 20
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
LIMITS = [
    "server.max_upload_bytes=1048576",
    "server.max_body_bytes=1048576",
    "server.max_json_bytes=1048576",
    "fetch.max_bytes=1048576",
    f"server.memory_budget_bytes={16 * MIB}",
    "server.memory_wait_s=0.2",
]


async def budgeted(make_tier: TierFactory) -> tuple[Tier, MemoryBudget, list[int]]:
    """A tier with a 16 MiB budget, and every value the budget holds from now on."""
    tier = await make_tier(LIMITS)
    memory = tier.services.pipeline.memory
    history: list[int] = []
    memory.configure(memory.capacity, memory.wait_s, memory.retry_after_s, history.append)
    return tier, memory, history


async def post(tier: Tier, body: bytes, chunked: bool = False) -> HTTPResponse:
    producer: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]] | None = None
    if chunked:

        async def producer(write: Callable[[bytes], Awaitable[None]]) -> None:
            for start in range(0, len(body), 8192):
                await write(body[start : start + 8192])

    return await AsyncHTTPClient().fetch(
        tier.url(PREDICT),
        method="POST",
        body=None if chunked else body,
        body_producer=producer,
        headers={"Content-Type": "image/jpeg"},
        raise_error=False,
    )


@pytest.mark.gen_test(timeout=30)
async def test_a_body_is_reserved_by_its_length_before_it_is_read(make_tier: TierFactory) -> None:
    tier, memory, history = await budgeted(make_tier)
    response = await post(tier, COFFEE)
    assert response.code == 200, response.body
    assert history[0] == len(COFFEE)  # the first thing held: the whole body, at once
    assert history[-1] == 0 and memory.held == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_body_is_reserved_chunk_by_chunk(make_tier: TierFactory) -> None:
    tier, memory, history = await budgeted(make_tier)
    response = await post(tier, COFFEE, chunked=True)
    assert response.code == 200, response.body
    growing = history[: history.index(len(COFFEE)) + 1]
    assert len(growing) > 1 and growing == sorted(growing)  # grown as the chunks came, up to the whole body
    assert history[-1] == 0 and memory.held == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_body_without_room_is_503_overloaded_with_retry_after(make_tier: TierFactory) -> None:
    tier, memory, _ = await budgeted(make_tier)
    taken = await memory.reserve(memory.capacity - len(COFFEE) // 2)  # room for half the body
    try:
        for chunked in (False, True):
            response = await post(tier, COFFEE, chunked)
            assert response.code == 503, response.body
            assert json.loads(response.body)["error"]["code"] == "overloaded"
            assert response.headers["Retry-After"] == "1"
            assert memory.held == taken.nbytes  # what the refused request held is handed back
    finally:
        taken.release()
    assert (await post(tier, COFFEE)).code == 200
