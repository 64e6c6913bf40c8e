"""``--enable_batching`` over real gRPC: max_batch_size 4, a 4 s batch timeout, one enqueued batch per queue.

A batch that is not full waits out the timeout, so a request that comes back quickly was either full on
its own or merged with others: the timing shows batching happened without any hook into the server.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest

from tests.support.backend import LocalBackend
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import BATCH_TIMEOUT_SECONDS, Served
from tests.tools.localserving.rpc import END, Client, predict_request, rpc_error, to_numpy, wait_until

FAST = BATCH_TIMEOUT_SECONDS / 2  # well under the batch timeout


def rows(count: int, start: float = 0.0) -> np.ndarray[Any, np.dtype[np.float32]]:
    return ((np.arange(count * 3).reshape(count, 3) + start) / 7).astype(np.float32)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def until_accepted(client: Client, request: Any) -> Any:
    """Predict, retrying while the queue refuses; the caller makes room."""
    while True:
        try:
            return client.predict(request)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise


def first_refusal(client: Client, request: Any, timeout: float = 30.0) -> grpc.RpcError:
    """Send ``request`` (a full batch, answered at once) until the queue refuses it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.predict(request)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return error
    raise AssertionError(f"the queue never refused within {timeout} s")


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(batching: Served, served: Served) -> None:
    inputs = [rows(1, start=10 * n) for n in range(4)]  # 4 x 1 row fill one batch of 4

    with ThreadPoolExecutor(4) as pool:
        answers, elapsed = timed(lambda: list(pool.map(lambda x: batching.client.outputs("affine", {"x": x}), inputs)))

    assert elapsed < FAST, "the four requests waited for the batch timeout instead of filling one batch"
    for x, outputs in zip(inputs, answers, strict=True):
        unbatched = served.client.outputs("affine", {"x": x}, version=3)
        for name in ("y", "total"):
            np.testing.assert_array_equal(outputs[name], unbatched[name])
        np.testing.assert_array_equal(outputs["y"], affine(x, 3))


def test_a_request_of_max_batch_size_runs_at_once(batching: Served) -> None:
    response, elapsed = timed(lambda: batching.client.predict(predict_request("affine", {"x": rows(4)})))
    assert elapsed < FAST
    y = response.outputs["y"]
    assert not y.tensor_content and len(y.float_val) == 12  # --predict_response_tensor_serialization=fields
    np.testing.assert_array_equal(to_numpy(y), affine(rows(4), 3))


@pytest.mark.parametrize(
    ("inputs", "signature"),
    [({"x": rows(5)}, ""), ({"a": rows(2), "b": np.ones((1, 1), np.float32)}, "pair")],
    ids=["larger-than-max-batch", "unequal-0th-dims"],
)
def test_requests_that_cannot_be_batched_are_invalid(batching: Served, inputs: Any, signature: str) -> None:
    error = rpc_error(lambda: batching.client.predict(predict_request("affine", inputs, signature=signature)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()


def test_full_queue_is_unavailable_and_the_waiting_request_still_gets_its_answer(batching: Served) -> None:
    client = batching.client
    with ThreadPoolExecutor(1) as pool:
        # One row opens a batch that waits for more; with max_enqueued_batches 1 a full batch of 4 cannot be
        # queued behind it, so the first refusal proves the waiting request is in the queue.
        waiting = pool.submit(until_accepted, client, predict_request("affine", {"x": rows(1, start=100)}))
        refusal = first_refusal(client, predict_request("affine", {"x": rows(4)}))
        assert "full" in refusal.details()

        filler, elapsed = timed(lambda: client.outputs("affine", {"x": rows(3, start=200)}))  # 1 + 3 = 4: runs
        assert elapsed < FAST

        np.testing.assert_array_equal(filler["y"], affine(rows(3, start=200), 3))
        np.testing.assert_array_equal(to_numpy(waiting.result(FAST).outputs["y"]), affine(rows(1, start=100), 3))
    np.testing.assert_array_equal(client.outputs("affine", {"x": rows(4)})["y"], affine(rows(4), 3))


def test_a_request_waiting_in_a_batch_is_answered_by_the_version_unloaded_meanwhile(batching: Served) -> None:
    client = batching.client
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[Any] = pool.submit(
            until_accepted, client, predict_request("inflight", {"x": rows(1)}, version=1)
        )
        first_refusal(client, predict_request("inflight", {"x": rows(4)}, version=1))

        shutil.rmtree(batching.base("inflight") / "1")
        wait_until(lambda: client.states("inflight").get(1) == END, "version 1 unloaded")
        assert not waiting.done(), "the batch ran before version 1 was unloaded; the test proved nothing"

        response = waiting.result(BATCH_TIMEOUT_SECONDS + 5)
    assert response.model_spec.version.value == 1
    np.testing.assert_array_equal(to_numpy(response.outputs["y"]), affine(rows(1), 1))


@pytest.mark.parametrize("model", ["mobilenet_v2", "tiny"])
def test_demo_models_give_the_same_numbers_with_and_without_batching(
    batching: Served, demo_backend: LocalBackend, model: str
) -> None:
    images = [np.random.default_rng(n).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32) for n in range(4)]
    unbatched = Client.connect(demo_backend.address)
    try:
        alone = [unbatched.outputs(model, {"images": image}) for image in images]
    finally:
        unbatched.close()

    with ThreadPoolExecutor(4) as pool:
        merged, elapsed = timed(lambda: list(pool.map(lambda x: batching.client.outputs(model, {"images": x}), images)))

    assert elapsed < BATCH_TIMEOUT_SECONDS
    for one, batched in zip(alone, merged, strict=True):
        assert one.keys() == batched.keys()
        for name in one:
            np.testing.assert_allclose(batched[name], one[name], rtol=1e-5, atol=1e-6)
