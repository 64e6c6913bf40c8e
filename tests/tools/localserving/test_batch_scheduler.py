"""The batch scheduler's queueing rules, driven directly with a numpy function (no server, no TensorFlow)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from tools.localserving.batching import BatchScheduler
from tools.localserving.config import BatchingOptions
from tools.localserving.errors import Internal, InvalidArgument, Unavailable

Array = np.ndarray[Any, Any]


class Model:
    """Doubles ``x``; records each batch size; can be held to keep a batch thread busy."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.running = threading.Event()

    def __call__(self, inputs: Mapping[str, Array]) -> Mapping[str, Array]:
        self.running.set()
        self.release.wait(10)
        self.batch_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "first": inputs["x"][:, 0]}


@pytest.fixture
def model() -> Model:
    return Model()


def scheduler(**options: int) -> Iterator[BatchScheduler]:
    running = BatchScheduler(BatchingOptions(**{"num_batch_threads": 1, **options}))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def slow_to_fill() -> Iterator[BatchScheduler]:
    """Batches of up to 4 that wait up to 10 s for more rows, one batch per queue."""
    yield from scheduler(max_batch_size=4, batch_timeout_micros=10_000_000, max_enqueued_batches=1)


@pytest.fixture
def immediate() -> Iterator[BatchScheduler]:
    """Batches of up to 4 that run as soon as a thread is free, two batches per queue."""
    yield from scheduler(max_batch_size=4, batch_timeout_micros=0, max_enqueued_batches=2)


def rows(count: int, start: int = 0) -> dict[str, Array]:
    return {"x": np.arange(start, start + count * 2, dtype=np.float32).reshape(count, 2)}


def test_tasks_are_merged_and_each_gets_its_own_rows(slow_to_fill: BatchScheduler, model: Model) -> None:
    futures = [slow_to_fill.submit("k", model, rows(n, start=10 * n)) for n in (1, 2, 1)]
    for n, future in zip((1, 2, 1), futures, strict=True):
        result = future.result(5)
        np.testing.assert_array_equal(result["y"], rows(n, start=10 * n)["x"] * 2)
        np.testing.assert_array_equal(result["first"], rows(n, start=10 * n)["x"][:, 0])
    assert model.batch_sizes == [4]


def test_different_keys_never_share_a_batch(immediate: BatchScheduler, model: Model) -> None:
    first, second = immediate.submit("a", model, rows(1)), immediate.submit("b", model, rows(1))
    first.result(5), second.result(5)
    assert model.batch_sizes == [1, 1]


def test_a_task_that_does_not_fit_needs_room_for_a_new_batch(slow_to_fill: BatchScheduler, model: Model) -> None:
    waiting = slow_to_fill.submit("k", model, rows(3))
    with pytest.raises(Unavailable, match=r"queue .* is full"):
        slow_to_fill.submit("k", model, rows(2))
    slow_to_fill.submit("k", model, rows(1)).result(5)
    assert waiting.result(5)["y"].shape == (3, 2)


def test_queue_counts_batches_waiting_for_a_busy_thread(immediate: BatchScheduler, model: Model) -> None:
    model.release.clear()
    busy = immediate.submit("k", model, rows(4))
    assert model.running.wait(5)
    queued = [immediate.submit("k", model, rows(4)) for _ in range(2)]
    with pytest.raises(Unavailable):
        immediate.submit("k", model, rows(1))
    model.release.set()
    for future in [busy, *queued]:
        assert future.result(5)["y"].shape == (4, 2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (rows(5), "Task size 5 is larger than maximum input batch size 4"),
        ({"x": np.array(1.0, dtype=np.float32)}, "at least one dimension"),
        ({"x": rows(2)["x"], "z": rows(1)["x"]}, "equal 0th-dimension size"),
    ],
)
def test_tasks_that_cannot_be_batched(immediate: BatchScheduler, model: Model, inputs: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        immediate.submit("k", model, inputs)


def test_an_output_without_the_batch_dimension_fails_every_task_of_the_batch(immediate: BatchScheduler) -> None:
    future = immediate.submit("k", lambda inputs: {"y": np.array(1.0)}, rows(2))
    with pytest.raises(Internal, match="0th dimension"):
        future.result(5)


def test_stop_runs_what_is_queued_and_then_refuses(model: Model) -> None:
    running = BatchScheduler(BatchingOptions(max_batch_size=4, batch_timeout_micros=60_000_000, num_batch_threads=1))
    running.start()
    waiting = running.submit("k", model, rows(1))
    running.stop()
    assert waiting.result(0)["y"].shape == (1, 2)
    with pytest.raises(Unavailable):
        running.submit("k", model, rows(1))
