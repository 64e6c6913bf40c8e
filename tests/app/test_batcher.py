"""The micro-batcher against a real gRPC backend: the benchmark's trivial one, then the local one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import numpy as np
import pytest
import tornado.ioloop
from tornado.httpclient import AsyncHTTPClient

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelRef, PredictResult
from app.batcher import MicroBatcher
from app.errors import BackendFailed, BackendTimeout
from app.models import ServedModel
from processing.context import RequestContext
from tests.conftest import TierFactory
from tests.support.imageserver import ImageServer
from tests.support.specs import postprocess_spec, preprocess_spec
from tools.fakeserving import FakeBackend

TIMEOUT = 30.0
CONTEXT = RequestContext("test-request")


@pytest.fixture
def client(io_loop: tornado.ioloop.IOLoop) -> Iterator[TFServingClient]:
    client = TFServingClient("pick_first", retry_after_s=1)
    yield client
    io_loop.run_sync(client.close)


def served(backend: FakeBackend, max_batch_size: int = 8, max_wait_ms: float = 50.0) -> ServedModel:
    return ServedModel(
        name="tiny",
        served_name="tiny",
        address=backend.address,
        signature="serving_uint8",
        input_name="images",
        output_names=("logits",),
        preprocess=preprocess_spec(4, 4, dtype="uint8"),
        postprocess=postprocess_spec(),
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_in_flight=2,
    )


def rows(*values: int) -> np.ndarray:
    """Small images, each filled with one value; the fake echoes it in output column 0."""
    return np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in values])


def echoed(result: PredictResult) -> list[int]:
    return [int(v) for v in result.outputs["logits"][:, 0]]


async def predict_all(
    batcher: MicroBatcher, model: ServedModel, batches: list[np.ndarray], timeout: float = TIMEOUT
) -> list[PredictResult]:
    ref = model.ref()
    return list(await asyncio.gather(*(batcher.submit(model, ref, b, timeout, CONTEXT) for b in batches)))


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_calls_share_one_predict_and_get_their_own_rows(
    fake: FakeBackend, client: TFServingClient
) -> None:
    model = served(fake, max_batch_size=8)
    results = await predict_all(MicroBatcher(client), model, [rows(i) for i in range(8)])
    assert fake.log.batch_sizes == [8]
    assert [echoed(r) for r in results] == [[i] for i in range(8)]
    assert all(r.version == 1 and r.outputs["logits"].shape == (1, 8) for r in results)


@pytest.mark.gen_test(timeout=30)
async def test_uneven_callers_are_routed_their_row_ranges(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=16)
    batches = [rows(1), rows(2, 3), rows(4, 5, 6), rows(7, 8, 9, 10)]
    results = await predict_all(MicroBatcher(client), model, batches)
    assert fake.log.batch_sizes == [10]
    assert [echoed(r) for r in results] == [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10]]


@pytest.mark.gen_test(timeout=30)
async def test_max_batch_size_is_never_exceeded(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=4, max_wait_ms=20)
    batcher = MicroBatcher(client)
    results = await predict_all(batcher, model, [rows(i) for i in range(10)])
    assert sorted(fake.log.batch_sizes, reverse=True) == [4, 4, 2]
    assert [echoed(r) for r in results] == [[i] for i in range(10)]

    fake.log.batch_sizes.clear()
    (big,) = await predict_all(batcher, model, [rows(*range(10, 20))])
    assert fake.log.batch_sizes == [4, 4, 2]
    assert echoed(big) == list(range(10, 20))


@pytest.mark.gen_test(timeout=30)
async def test_a_lone_call_waits_at_most_max_wait(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=64, max_wait_ms=100)
    started = time.monotonic()
    (result,) = await predict_all(MicroBatcher(client), model, [rows(5)], timeout=60)
    waited = time.monotonic() - started
    assert echoed(result) == [5] and fake.log.batch_sizes == [1]
    # It held the batch for company, then sent it long before its deadline.
    assert 0.09 <= waited < 20


@pytest.mark.gen_test(timeout=30)
async def test_a_batch_is_never_held_past_a_callers_deadline(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=64, max_wait_ms=600_000)
    (result,) = await predict_all(MicroBatcher(client), model, [rows(9)], timeout=2.0)
    assert echoed(result) == [9] and fake.log.batch_sizes == [1]


@pytest.mark.gen_test(timeout=30)
async def test_rows_wait_for_a_free_slot_and_fill_the_batch_meanwhile(
    fake: FakeBackend, client: TFServingClient
) -> None:
    fake.log.delay_s = 0.3
    model = dataclasses.replace(served(fake, max_batch_size=8, max_wait_ms=0), max_in_flight=1)
    batcher = MicroBatcher(client)
    first = asyncio.ensure_future(batcher.submit(model, model.ref(), rows(1), TIMEOUT, CONTEXT))
    assert await asyncio.to_thread(fake.log.arrived.wait, 10)  # the first Predict is under way
    rest = await predict_all(batcher, model, [rows(i) for i in range(2, 6)])
    assert echoed(await first) == [1]
    assert [echoed(r) for r in rest] == [[2], [3], [4], [5]]
    assert fake.log.batch_sizes == [1, 4]


@pytest.mark.gen_test(timeout=30)
async def test_a_cancelled_caller_has_its_rows_dropped(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=8, max_wait_ms=300)
    batcher = MicroBatcher(client)
    ref = model.ref()
    calls = [asyncio.ensure_future(batcher.submit(model, ref, rows(i, i), TIMEOUT, CONTEXT)) for i in (1, 2, 3)]
    await asyncio.sleep(0)  # one loop turn: every call has queued its rows
    calls[1].cancel()
    first, third = await asyncio.gather(calls[0], calls[2])
    assert calls[1].cancelled()
    assert fake.log.batch_sizes == [4]
    assert (echoed(first), echoed(third)) == ([1, 1], [3, 3])


@pytest.mark.gen_test(timeout=30)
async def test_when_every_caller_is_cancelled_nothing_is_sent(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake, max_batch_size=8, max_wait_ms=50)
    batcher = MicroBatcher(client)
    calls = [asyncio.ensure_future(batcher.submit(model, model.ref(), rows(i), TIMEOUT, CONTEXT)) for i in (1, 2)]
    await asyncio.sleep(0)  # one loop turn: both calls have queued their rows
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    assert fake.log.batch_sizes == []
    # Withdrawn before the batch was due: a later caller's batch carries only its own row.
    result = await batcher.submit(model, model.ref(), rows(7), TIMEOUT, CONTEXT)
    assert echoed(result) == [7] and fake.log.batch_sizes == [1]


@pytest.mark.gen_test(timeout=30)
async def test_a_failed_predict_fails_every_caller_with_the_same_error(
    fake: FakeBackend, client: TFServingClient
) -> None:
    fake.log.fail_with = grpc.StatusCode.INTERNAL
    model = served(fake, max_batch_size=8)
    batcher = MicroBatcher(client)
    outcomes = await asyncio.gather(
        *(batcher.submit(model, model.ref(), rows(i), TIMEOUT, CONTEXT) for i in range(3)), return_exceptions=True
    )
    assert fake.log.batch_sizes == [3]
    assert all(isinstance(o, BackendFailed) for o in outcomes)
    assert outcomes[0] is outcomes[1] is outcomes[2]


@pytest.mark.gen_test(timeout=30)
async def test_a_slow_backend_times_each_caller_out(fake: FakeBackend, client: TFServingClient) -> None:
    fake.log.delay_s = 2.0
    model = served(fake, max_batch_size=8, max_wait_ms=1)
    with pytest.raises(BackendTimeout):
        await predict_all(MicroBatcher(client), model, [rows(1)], timeout=0.3)


@pytest.mark.gen_test(timeout=30)
async def test_the_answered_version_comes_from_the_response(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake)
    batcher = MicroBatcher(client)
    results = await asyncio.gather(
        *(batcher.submit(model, ModelRef("tiny", 7), rows(i), TIMEOUT, CONTEXT) for i in (1, 2))
    )
    assert [r.version for r in results] == [7, 7]


def test_a_model_batches_only_when_its_batch_size_is_above_one(fake: FakeBackend) -> None:
    assert [served(fake, max_batch_size=n).batched for n in (0, 1, 2, 8)] == [False, False, True, True]


@pytest.mark.gen_test(timeout=30)
async def test_an_empty_batch_is_refused_rather_than_left_waiting(fake: FakeBackend, client: TFServingClient) -> None:
    model = served(fake)
    with pytest.raises(ValueError):
        await MicroBatcher(client).submit(model, model.ref(), np.zeros((0, 4, 4, 3), np.uint8), TIMEOUT, CONTEXT)
    assert fake.log.batch_sizes == []


def count_predicts(client: TFServingClient) -> list[int]:
    """Wraps the client's predict to record the batch size of every call."""
    sizes: list[int] = []
    real = client.predict

    async def counting(address: str, model: ModelRef, inputs: Mapping[str, np.ndarray], *args: Any) -> Any:
        sizes.append(len(next(iter(inputs.values()))))
        return await real(address, model, inputs, *args)

    client.predict = counting  # type: ignore[method-assign,assignment]
    return sizes


@pytest.mark.gen_test(timeout=120)
async def test_batching_on_and_off_give_the_same_numbers(make_tier: TierFactory, images: ImageServer) -> None:
    urls = [images.url(name) for name in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg", "rocket.jpg")]
    answers, predicts = [], []
    for overrides in (
        ["models.mobilenet_v2.batching.max_batch_size=0"],
        ["models.mobilenet_v2.batching.max_batch_size=8", "models.mobilenet_v2.batching.max_wait_ms=300"],
    ):
        tier = await make_tier(overrides)
        predicts.append(count_predicts(tier.services.client))
        responses = await asyncio.gather(
            *(
                AsyncHTTPClient().fetch(
                    tier.url("/v1/models/mobilenet_v2:predict"),
                    method="POST",
                    body=json.dumps([url]),
                    headers={"Content-Type": "application/json"},
                )
                for url in urls
            )
        )
        answers.append([json.loads(r.body)["predictions"][0]["classes"] for r in responses])
    assert (len(predicts[0]), 0 < len(predicts[1]) < len(urls)) == (len(urls), True)
    unbatched, batched = answers
    for one, other in zip(unbatched, batched, strict=True):
        assert [c["class_id"] for c in one] == [c["class_id"] for c in other]
        np.testing.assert_allclose([c["score"] for c in one], [c["score"] for c in other], rtol=1e-3, atol=1e-5)
