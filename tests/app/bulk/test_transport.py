"""Which answers the client retries, and how long it waits, against the real tier."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import pytest

from app.bulk.transport import Answer, RetryPolicy, TierClient, TierUnreachable
from app.settings import load_settings
from tests.app.bulk.support import free_port
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES
from tools.fakeserving import FakeBackend, FakeModel, start_fake_backend

T = TypeVar("T")
ANSWER_TIMEOUT_S = 10.0  # far above what the tier takes here; the tests below are about retries


class RecordedWaits(threading.Event):
    """The client's stop event, noting how long each wait before a retry was (it still waits that long)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(timeout)


async def in_thread(call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, call)


def upload(client: TierClient, model: str) -> Answer:
    return client.post(f"/v1/models/{model}:predict", (FIXTURES / "coffee.jpg").read_bytes(), "image/jpeg")


@pytest.mark.gen_test(timeout=60)
async def test_a_4xx_is_answered_at_once_never_retried(tier: Tier) -> None:
    client = TierClient(tier.base_url, ANSWER_TIMEOUT_S, RetryPolicy(retries=5))
    answer = await in_thread(lambda: upload(client, "no_such_model"))
    assert answer.status == 404 and answer.error()[0] == "model_not_found"
    assert client.retried == Counter()


@pytest.fixture
def failing_backend() -> Iterator[FakeBackend]:
    """The fake TF Serving (tools/fakeserving.py), serving ``tiny``, to inject the gRPC status a test needs."""
    backend = start_fake_backend([FakeModel("tiny", 8)])
    yield backend
    backend.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_504_is_retried_after_its_retry_after(make_tier: TierFactory, failing_backend: FakeBackend) -> None:
    """Every Predict misses its deadline: each answer is 504 backend_timeout with Retry-After: 1."""
    failing_backend.log.fail_with = grpc.StatusCode.DEADLINE_EXCEEDED
    overrides = [f"backend.address={failing_backend.address}", "server.port=0", "models.tiny.signature=serving_uint8"]
    tier = await make_tier(settings=load_settings(None, {}, overrides))
    client = TierClient(tier.base_url, ANSWER_TIMEOUT_S, RetryPolicy(retries=2))
    client.stopped = waits = RecordedWaits()
    answer = await in_thread(lambda: upload(client, "tiny"))
    assert (answer.status, answer.error()[0], answer.retry_after) == (504, "backend_timeout", 1.0)
    assert client.retried == Counter({"backend_timeout": 2})
    assert len(waits.waits) == 2 and all(1.0 <= wait < 1.5 for wait in waits.waits)


@pytest.mark.gen_test(timeout=60)
async def test_connection_failures_back_off_then_give_up() -> None:
    client = TierClient(f"http://127.0.0.1:{free_port()}", ANSWER_TIMEOUT_S, RetryPolicy(3, base_s=0.02, cap_s=0.05))
    client.stopped = waits = RecordedWaits()
    with pytest.raises(TierUnreachable, match="Connection refused"):
        await in_thread(lambda: client.get("/v1/models"))
    assert client.retried == Counter({"connection": 3})
    low_high = [(0.01, 0.02), (0.02, 0.04), (0.025, 0.05)]  # half to all of min(cap, base * 2**n)
    assert all(low <= wait <= high for wait, (low, high) in zip(waits.waits, low_high, strict=True))
