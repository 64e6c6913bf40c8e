"""The gRPC call tool's contenders make real Predicts to the fake backend; the sync future's bridge keeps
``call_backend``'s error mapping and cancels the gRPC call when its awaiting task is cancelled. No time is asserted."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from app.backend.rpc_errors import BackendFailures, call_backend
from app.backend.tensors import encode_predict_request
from app.backend.tfserving import PREDICT_METHOD
from app.errors import ModelNotFound
from tools.bench.grpc_calls import MODEL, contenders, future_bridged, measure, measure_client, request_inputs
from tools.fakeserving import FakeBackend


class RecordingPredict:
    """The real sync multicallable, keeping the futures it hands out so a test can look at them."""

    def __init__(self, method: grpc.UnaryUnaryMultiCallable) -> None:
        self.method = method
        self.futures: list[grpc.Future] = []

    def future(self, request: bytes, timeout: float, metadata: Any = None) -> grpc.Future:
        made = self.method.future(request, timeout=timeout, metadata=metadata)
        self.futures.append(made)
        return made


@pytest.mark.parametrize("name", ["aio", "sync-future", "aio fresh-bytes", "aio+optimize throughput"])
def test_each_contender_makes_real_predicts_and_is_counted(fake: FakeBackend, name: str) -> None:
    (contender,) = contenders([name])
    assert contender.make is not None

    async def run() -> float:
        assert contender.make is not None
        call, close = contender.make(fake.address)
        try:
            sample = await measure(call, "float32", contender.fresh_bytes, calls=8, concurrency=2)
        finally:
            await close()
        return sample.cpu_ms

    assert asyncio.run(run()) > 0
    assert fake.log.batch_sizes[-8:] == [4] * 8  # the warm-up's 2 and the 8 measured, each of 4 images
    assert fake.log.metadata[-1]["x-request-id"] == "bench-grpc-calls"


def test_the_whole_client_contender_reads_the_answer(fake: FakeBackend) -> None:
    sample = asyncio.run(measure_client(fake.address, "uint8", calls=4, concurrency=2))
    assert sample.cpu_ms > 0
    assert fake.log.batch_sizes == [4] * 6


def test_the_bridged_future_maps_errors_as_call_backend_does(fake: FakeBackend) -> None:
    fake.log.fail_with = grpc.StatusCode.NOT_FOUND
    request = encode_predict_request(*request_inputs("uint8"))

    async def run() -> None:
        with grpc.insecure_channel(fake.address) as channel:
            bridged = future_bridged(channel.unary_unary(PREDICT_METHOD))
            await call_backend(bridged, request, 5.0, MODEL, BackendFailures(1))

    with pytest.raises(ModelNotFound):
        asyncio.run(run())


def test_cancelling_the_awaiting_task_cancels_the_grpc_call(fake: FakeBackend) -> None:
    fake.log.delay_s = 3.0  # far longer than cancelling takes; the fake's thread sleeps it out
    request = encode_predict_request(*request_inputs("uint8"))

    async def run() -> RecordingPredict:
        with grpc.insecure_channel(fake.address) as channel:
            recording = RecordingPredict(channel.unary_unary(PREDICT_METHOD))
            task = asyncio.ensure_future(future_bridged(recording)(request, timeout=60.0))
            arrived = await asyncio.get_running_loop().run_in_executor(None, fake.log.arrived.wait, 10.0)
            assert arrived
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return recording

    recording = asyncio.run(run())
    assert len(recording.futures) == 1 and recording.futures[0].cancelled()
