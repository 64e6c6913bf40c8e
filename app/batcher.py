"""Micro-batching: rows from concurrent requests for one model go to the backend in one Predict.

Rows join the newest batch of their key (backend, model, version or label, signature,
input shape and dtype). A batch is ready when it holds the model's ``max_batch_size``
rows or its first row has waited ``max_wait_ms``; a ready batch is sent as soon as the
key has fewer than ``max_in_flight`` Predicts under way, and until then it keeps
taking rows, so batches grow by themselves while the backend is busy and a request on
an idle backend waits no more than ``max_wait_ms``. A batch whose caller has spent
half of the time it had left goes at once, slot or not, so no batch is held past a
caller's deadline. A caller with more rows than ``max_batch_size`` is split over
several batches; a caller cancelled or timed out before its batch is sent has its
rows dropped; a failed Predict fails every caller in the batch with the same error.
Each caller gets exactly its own rows of every output, and the version that answered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from app.backend.tfserving import TFServingClient, backend_metadata
from app.backend.types import ModelRef, PredictResult
from app.errors import BackendFailed, BackendTimeout, BackendUnavailable
from app.models import ServedModel
from processing.context import RequestContext


@dataclass(eq=False)
class _Call:
    """One caller: its rows, split into parts that may travel in different batches."""

    future: asyncio.Future[PredictResult]
    deadline: float  # loop time
    context: RequestContext
    parts: list[_Part] = field(default_factory=list)
    unanswered: int = 0


@dataclass(eq=False)
class _Part:
    call: _Call
    rows: np.ndarray
    batch: _Batch | None = None  # None once sent
    result: PredictResult | None = None


@dataclass(eq=False)
class _Batch:
    lane: _Lane
    model: ServedModel
    ref: ModelRef
    parts: list[_Part] = field(default_factory=list)
    rows: int = 0
    send_at: float = float("inf")  # ready to go once a Predict slot is free
    force_at: float = float("inf")  # goes even if none is: a caller would run out of time
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Lane:
    """The batches of one key, oldest first; only the last one takes new rows."""

    key: Hashable
    batches: deque[_Batch] = field(default_factory=deque)
    in_flight: int = 0


class MicroBatcher:
    """Coalesces concurrent calls for the same model into one Predict (models with ``batched`` only).

    The model's ``max_in_flight`` bounds its Predicts in flight per key. While the backend
    is busy with them, rows keep filling the waiting batch, so batches grow with the load
    by themselves; with ``max_wait_ms: 0`` a lone request is sent at once.
    """

    def __init__(
        self, client: TFServingClient, on_batch: Callable[[str, int], None] = lambda model, rows: None
    ) -> None:
        self._client = client
        self._on_batch = on_batch  # told each batch's size as it is sent (the metrics' batch size histogram)
        self._lanes: dict[Hashable, _Lane] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(
        self, model: ServedModel, ref: ModelRef, batch: np.ndarray, timeout: float, context: RequestContext
    ) -> PredictResult:
        """The outputs for ``batch``'s rows, predicted together with other callers' rows."""
        if len(batch) == 0:
            raise ValueError("an empty batch has no rows to predict")
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), loop.time() + timeout, context)
        self._enqueue(model, ref, batch, call)
        try:
            async with asyncio.timeout_at(call.deadline):
                return await call.future
        except TimeoutError:
            timeout_error = BackendTimeout(
                "the model backend did not answer in time", retry_after_s=self._client.failures.retry_after_s
            )
            raise self._client.failures.record(timeout_error) from None
        finally:
            self._withdraw(call)

    def _enqueue(self, model: ServedModel, ref: ModelRef, rows: np.ndarray, call: _Call) -> None:
        key = (model.address, ref, model.input_name, model.output_names, rows.dtype.str, rows.shape[1:])
        lane = self._lanes.get(key) or self._lanes.setdefault(key, _Lane(key))
        now = asyncio.get_running_loop().time()
        # Half of what the caller has left may go to waiting; the rest is the Predict's.
        force_at = now + (call.deadline - now) / 2
        start = 0
        while start < len(rows):
            batch = lane.batches[-1] if lane.batches else None
            if batch is None or batch.rows >= model.max_batch_size:
                batch = _Batch(lane, model, ref, send_at=now + model.max_wait_ms / 1000)
                lane.batches.append(batch)
            take = min(model.max_batch_size - batch.rows, len(rows) - start)
            part = _Part(call, rows[start : start + take], batch)
            call.parts.append(part)
            call.unanswered += 1
            batch.parts.append(part)
            batch.rows += take
            batch.force_at = min(batch.force_at, force_at)
            start += take
        self._pump(lane)
        for batch in lane.batches:
            self._arm(batch)

    def _arm(self, batch: _Batch) -> None:
        """A timer for the batch's next moment: ready to send, or forced out."""
        loop = asyncio.get_running_loop()
        when = batch.send_at if batch.send_at > loop.time() else batch.force_at
        when = min(when, batch.force_at)
        if batch.timer is not None:
            if batch.timer.when() == when:
                return
            batch.timer.cancel()
        batch.timer = loop.call_at(when, self._on_timer, batch)

    def _on_timer(self, batch: _Batch) -> None:
        batch.timer = None
        if not batch.parts:
            return
        if asyncio.get_running_loop().time() >= batch.force_at:
            self._send(batch)
        self._pump(batch.lane)
        if batch.parts and batch in batch.lane.batches:
            self._arm(batch)

    def _pump(self, lane: _Lane) -> None:
        """Send the oldest batches that are ready while the lane has Predict slots free."""
        now = asyncio.get_running_loop().time()
        while lane.batches and lane.in_flight < lane.batches[0].model.max_in_flight:
            head = lane.batches[0]
            if head.rows < head.model.max_batch_size and now < head.send_at:
                return
            self._send(head)

    def _withdraw(self, call: _Call) -> None:
        """Drop the caller's rows that have not been sent yet."""
        for part in call.parts:
            batch = part.batch
            if batch is None:
                continue
            batch.parts.remove(part)
            batch.rows -= len(part.rows)
            part.batch = None
            if not batch.parts:
                self._unqueue(batch)

    def _unqueue(self, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        lane = batch.lane
        if batch in lane.batches:
            lane.batches.remove(batch)
        self._forget_if_idle(lane)

    def _forget_if_idle(self, lane: _Lane) -> None:
        if not lane.batches and not lane.in_flight and self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]

    def _send(self, batch: _Batch) -> None:
        if batch.parts:
            batch.lane.in_flight += 1  # first, so that unqueueing keeps the lane
        self._unqueue(batch)
        for part in batch.parts:
            part.batch = None
        if not batch.parts:
            return
        task = asyncio.ensure_future(self._run(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            await self._call_backend(batch)
        finally:
            lane = batch.lane
            lane.in_flight -= 1
            if _loop_is_running():  # not when the loop is being torn down around an unfinished Predict
                self._pump(lane)
                self._forget_if_idle(lane)

    async def _call_backend(self, batch: _Batch) -> None:
        model = batch.model
        inputs = batch.parts[0].rows if len(batch.parts) == 1 else np.concatenate([p.rows for p in batch.parts])
        loop = asyncio.get_running_loop()
        timeout = max(p.call.deadline for p in batch.parts) - loop.time()
        self._on_batch(model.name, batch.rows)
        metadata = backend_metadata([part.call.context for part in batch.parts])
        try:
            result = await self._client.predict(
                model.address, batch.ref, {model.input_name: inputs}, model.output_names, timeout, metadata
            )
            _check_rows(result.outputs, batch.rows)
        except BaseException as exc:
            for part in batch.parts:
                _fail(part.call, exc, self._client.failures.retry_after_s)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for part in batch.parts:
            count = len(part.rows)
            outputs = {name: array[offset : offset + count] for name, array in result.outputs.items()}
            part.result = PredictResult(result.version, outputs, result.sent_at, result.answered_at)
            offset += count
            _answer(part.call)


def _check_rows(outputs: Mapping[str, np.ndarray], rows: int) -> None:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise BackendFailed(
                "the backend answered a batch with the wrong number of rows",
                log_message=f"output {name} has shape {list(array.shape)} for a batch of {rows}",
            )


def _answer(call: _Call) -> None:
    call.unanswered -= 1
    if call.unanswered or call.future.done():
        return
    results = [p.result for p in call.parts if p.result is not None]
    if len(results) == 1:
        call.future.set_result(results[0])
        return
    names = results[0].outputs.keys()
    outputs = {name: np.concatenate([r.outputs[name] for r in results]) for name in names}
    sent_at, answered_at = min(r.sent_at for r in results), max(r.answered_at for r in results)
    call.future.set_result(PredictResult(results[0].version, outputs, sent_at, answered_at))


def _fail(call: _Call, exc: BaseException, retry_after_s: int) -> None:
    if call.future.done():
        return
    if not isinstance(exc, Exception):  # the tier is shutting down and cancelled the Predict
        exc = BackendUnavailable("the tier is shutting down; try again shortly", retry_after_s=retry_after_s)
    call.future.set_exception(exc)


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
