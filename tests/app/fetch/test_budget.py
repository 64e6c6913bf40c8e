"""Downloads count against the memory budget: the connection's read-ahead from the dial, the body by
Content-Length before it is read, else chunk by chunk; given back when the download fails. Against a real image
server and a real ``MemoryBudget``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.ioloop

from app.errors import Overloaded
from app.fetch.fetcher import READ_AHEAD_BYTES, UrlFetcher
from app.fetch.policy import AddressPolicy
from app.memory import MemoryBudget
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.specs import url_fetcher

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
CHUNKS = [COFFEE[i : i + 8192] for i in range(0, len(COFFEE), 8192)]


class Watched(MemoryBudget):
    """A budget that keeps every value of what it holds, and says when it first holds something."""

    def __init__(self, capacity: int = 1 << 30, wait_s: float = 10.0) -> None:
        super().__init__(capacity, wait_s, retry_after_s=1, on_change=self._record)
        self.history: list[int] = []
        self.holding = asyncio.Event()

    def _record(self, held: int) -> None:
        self.history.append(held)
        if held:
            self.holding.set()


@pytest.fixture
def fetcher(io_loop: tornado.ioloop.IOLoop) -> Iterator[UrlFetcher]:
    made = url_fetcher(AddressPolicy(allow_cidrs=["127.0.0.1/32"]), total_timeout_s=30.0)
    yield made
    io_loop.run_sync(made.close)


def chunked(chunks: list[bytes], delay_s: float = 0.0) -> Any:
    return lambda handler: handler.send_chunked(chunks, "image/jpeg", delay_s=delay_s)


@pytest.mark.gen_test
async def test_a_declared_length_is_reserved_before_the_read_and_stays_with_the_request(
    fetcher: UrlFetcher, images: ImageServer
) -> None:
    budget = Watched()
    hold = budget.open()
    assert await fetcher.fetch(images.url("coffee.jpg"), hold) == COFFEE
    ahead, size = READ_AHEAD_BYTES, len(COFFEE)
    # The read-ahead from the dial; then all of the body at once, and the copy aiohttp joins it into.
    assert budget.history == [ahead, ahead + 2 * size, ahead + size, size]
    assert (hold.nbytes, budget.held) == (size, size)  # the caller gives it back with the bytes
    hold.release()
    assert budget.held == 0


@pytest.mark.gen_test
async def test_a_big_declared_body_is_read_into_one_buffer_within_its_reservation(
    fetcher: UrlFetcher, images: ImageServer
) -> None:
    body = COFFEE * 40  # 2.9 MB: read into one buffer (app.fetch.response.ONE_BUFFER_BYTES)
    images.route("budget/big.jpg", lambda handler: handler.send_bytes(200, body, "image/jpeg"))
    budget = Watched()
    hold = budget.open()
    assert await fetcher.fetch(images.url("budget/big.jpg"), hold) == body
    ahead = READ_AHEAD_BYTES
    assert budget.history == [ahead, ahead + 2 * len(body), ahead + len(body), len(body)]
    assert hold.nbytes == len(body)


@pytest.mark.gen_test
async def test_a_chunked_body_is_reserved_chunk_by_chunk(fetcher: UrlFetcher, images: ImageServer) -> None:
    body = COFFEE * 20  # 1.4 MB: more than the event loop reads from a socket at once (256 KiB)
    images.route("budget/chunked.jpg", chunked([body[i : i + 8192] for i in range(0, len(body), 8192)]))
    budget = Watched()
    hold = budget.open()
    assert await fetcher.fetch(images.url("budget/chunked.jpg"), hold) == body
    growing = budget.history[1 : budget.history.index(max(budget.history))]
    assert len(growing) > 1 and growing == sorted(growing) and growing[-1] == READ_AHEAD_BYTES + len(body)
    assert max(budget.history) == READ_AHEAD_BYTES + 2 * len(body)  # the chunks and their joined copy, a moment
    assert hold.nbytes == len(body)


@pytest.mark.gen_test
async def test_a_refused_download_gives_back_what_it_reserved(fetcher: UrlFetcher, images: ImageServer) -> None:
    images.route("budget/endless.jpg", chunked(CHUNKS * 400))  # past fetch.max_bytes (20 MiB)
    images.route("budget/not-an-image", chunked([b"<html>" * 100]))
    budget = Watched()
    hold = budget.open()
    for path, code in [("budget/endless.jpg", "source_too_large"), ("budget/not-an-image", "content_type_forbidden")]:
        with pytest.raises(Exception) as caught:
            await fetcher.fetch(images.url(path), hold)
        assert getattr(caught.value, "code", None) == code
        assert (hold.nbytes, budget.held) == (0, 0)
    assert max(budget.history) > 0


@pytest.mark.gen_test
async def test_no_room_refuses_the_download_before_it_is_read(fetcher: UrlFetcher, images: ImageServer) -> None:
    budget = Watched(capacity=2 * READ_AHEAD_BYTES + 4 * len(COFFEE), wait_s=0.0)
    other = await budget.reserve(READ_AHEAD_BYTES + 3 * len(COFFEE))  # room to dial, not to read the body
    hold = budget.open()
    with pytest.raises(Overloaded):
        await fetcher.fetch(images.url("coffee.jpg"), hold)
    assert max(budget.history) == other.nbytes + READ_AHEAD_BYTES  # it dialled, and read nothing
    assert (hold.nbytes, budget.held) == (0, other.nbytes)
    other.release()
    assert await fetcher.fetch(images.url("coffee.jpg"), hold) == COFFEE


@pytest.mark.gen_test
async def test_a_download_cancelled_midway_gives_back_what_it_reserved(
    fetcher: UrlFetcher, images: ImageServer
) -> None:
    images.route("budget/slow.jpg", chunked(CHUNKS * 50, delay_s=0.02))
    budget = Watched()
    hold = budget.open()
    download = asyncio.ensure_future(fetcher.fetch(images.url("budget/slow.jpg"), hold))
    await asyncio.wait_for(budget.holding.wait(), 10.0)
    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    assert (hold.nbytes, budget.held) == (0, 0)
