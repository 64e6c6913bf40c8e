"""Server-side batching of concurrent Predict calls, with the semantics of TF Serving's SharedBatchScheduler.

Each (servable, signature, input layout) has a queue of batches; the last batch is open until it is full,
its ``batch_timeout_micros`` have passed since it was opened, or a task does not fit and a new batch is
started. A task that needs a new batch when the queue already holds ``max_enqueued_batches`` (counting the
open one) is refused with UNAVAILABLE. ``num_batch_threads`` threads, shared by all queues, run ready
batches: the tasks' inputs are concatenated along dimension 0, the signature runs once, and each task gets
its rows of every output back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tools.localserving.config import BatchingOptions
from tools.localserving.errors import Internal, InvalidArgument, Unavailable
from tools.localserving.tensors import Array

RunBatch = Callable[[Mapping[str, Array]], Mapping[str, Array]]
Outputs = dict[str, Array]


@dataclass(eq=False)
class _Task:
    inputs: Mapping[str, Array]
    size: int
    future: Future[Outputs] = field(default_factory=Future)


@dataclass(eq=False)
class _Batch:
    deadline: float
    limit: int
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    closed: bool = False

    def add(self, task: _Task) -> None:
        self.tasks.append(task)
        self.size += task.size
        self.closed = self.size >= self.limit


@dataclass(eq=False)
class _Queue:
    run: RunBatch
    batches: deque[_Batch] = field(default_factory=deque)


def batch_size_of(inputs: Mapping[str, Array]) -> int:
    """The common 0th dimension of a request's inputs; InvalidArgument, as TF Serving, if there is none."""
    if not inputs or any(array.ndim == 0 for array in inputs.values()):
        raise InvalidArgument("Batching Run() input tensors must have at least one dimension")
    sizes = {int(array.shape[0]) for array in inputs.values()}
    if len(sizes) > 1:
        raise InvalidArgument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


class BatchScheduler:
    """Queues of batches keyed by what can be concatenated, and the threads that run them."""

    def __init__(self, options: BatchingOptions) -> None:
        self._options = options
        self._timeout = options.batch_timeout_micros / 1e6
        self._queues: dict[Hashable, _Queue] = {}
        self._ready = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"localserving-batch-{n}", daemon=True)
            for n in range(options.num_batch_threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Refuse new tasks, run every queued batch now, and wait for the threads to finish them."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def submit(self, key: Hashable, run: RunBatch, inputs: Mapping[str, Array]) -> Future[Outputs]:
        """Queue one request's inputs; the future gets its rows of the outputs of ``run`` on the batch."""
        task = _Task(inputs, batch_size_of(inputs))
        limit = self._options.max_batch_size
        if task.size > limit:
            raise InvalidArgument(f"Task size {task.size} is larger than maximum input batch size {limit}")
        with self._ready:
            if self._stopping:
                raise Unavailable("localserving is stopping")
            queue = self._queues.setdefault(key, _Queue(run))
            self._batch_for(queue, task.size).add(task)
            self._ready.notify()
        return task.future

    def _batch_for(self, queue: _Queue, size: int) -> _Batch:
        last = queue.batches[-1] if queue.batches else None
        if last is not None and not last.closed and last.size + size <= last.limit:
            return last
        if len(queue.batches) >= self._options.max_enqueued_batches:
            raise Unavailable("The batch scheduling queue to which this task was submitted is full")
        if last is not None:
            last.closed = True
        batch = _Batch(deadline=time.monotonic() + self._timeout, limit=self._options.max_batch_size)
        queue.batches.append(batch)
        return batch

    def _work(self) -> None:
        while (picked := self._next_batch()) is not None:
            run, batch = picked
            _process(run, batch.tasks)

    def _next_batch(self) -> tuple[RunBatch, _Batch] | None:
        with self._ready:
            while True:
                now = time.monotonic()
                for key, queue in self._queues.items():
                    front = queue.batches[0]
                    if front.closed or front.deadline <= now or self._stopping:
                        return queue.run, self._take_front(key, queue)
                if self._stopping:
                    return None
                self._ready.wait(self._time_to_next_deadline(now))

    def _take_front(self, key: Hashable, queue: _Queue) -> _Batch:
        batch = queue.batches.popleft()
        batch.closed = True
        # Re-insert at the end, so the queues take turns.
        del self._queues[key]
        if queue.batches:
            self._queues[key] = queue
        return batch

    def _time_to_next_deadline(self, now: float) -> float | None:
        deadlines = [queue.batches[0].deadline for queue in self._queues.values()]
        return max(min(deadlines) - now, 0.0) if deadlines else None


def _process(run: RunBatch, tasks: list[_Task]) -> None:
    try:
        results = _split(run(_concatenate(tasks)), [task.size for task in tasks])
    except Exception as exc:  # every task of the batch gets the batch's error
        for task in tasks:
            task.future.set_exception(exc)
        return
    for task, result in zip(tasks, results, strict=True):
        task.future.set_result(result)


def _concatenate(tasks: list[_Task]) -> Mapping[str, Array]:
    if len(tasks) == 1:
        return tasks[0].inputs
    return {name: np.concatenate([task.inputs[name] for task in tasks]) for name in tasks[0].inputs}


def _split(outputs: Mapping[str, Array], sizes: list[int]) -> list[Outputs]:
    total = sum(sizes)
    offsets = np.cumsum(sizes)[:-1]
    parts: dict[str, list[Array]] = {}
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise Internal(
                f"batched output {name!r} has shape {list(value.shape)}: its 0th dimension must be the "
                f"batch size {total} for batching to split it"
            )
        parts[name] = np.split(value, offsets)
    return [{name: split[index] for name, split in parts.items()} for index in range(len(sizes))]
