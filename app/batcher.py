"""Micro-batching: rows from concurrent requests for one model go to the backend in one Predict.

Rows wait in an open batch per (backend, model, version or label, signature, input
shape and dtype). The batch is sent when it reaches the model's ``max_batch_size``,
when its first row has waited ``max_wait_ms``, or when a caller has spent half of the
time it had left, whichever comes first, so a batch is never held past any caller's
deadline. A caller with more rows than ``max_batch_size`` is split over several
batches; a caller cancelled or timed out before its batch is sent has its rows
dropped; a failed Predict fails every caller in the batch with the same error. Each
caller gets exactly its own rows of every output and the version that answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from app.pipeline import DirectPredictor, ServedModel
from app.tfserving import ModelRef, PredictResult, TFServingClient
from processing.errors import BackendFailed, BackendTimeout, BackendUnavailable


@dataclass(eq=False)
class _Call:
    """One caller: its rows, split into parts that may travel in different batches."""

    future: asyncio.Future[PredictResult]
    deadline: float  # loop time
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
    key: Hashable
    model: ServedModel
    ref: ModelRef
    parts: list[_Part] = field(default_factory=list)
    rows: int = 0
    send_at: float = float("inf")
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """A ``Predictor`` that coalesces concurrent calls for the same model into one Predict."""

    def __init__(self, client: TFServingClient) -> None:
        self._client = client
        self._direct = DirectPredictor(client)
        self._open: dict[Hashable, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def predict(self, model: ServedModel, ref: ModelRef, batch: np.ndarray, timeout: float) -> PredictResult:
        """The outputs for ``batch``'s rows, predicted together with other callers' rows."""
        if model.max_batch_size <= 1 or len(batch) == 0:
            return await self._direct.predict(model, ref, batch, timeout)
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), loop.time() + timeout)
        self._enqueue(model, ref, batch, call)
        try:
            async with asyncio.timeout_at(call.deadline):
                return await call.future
        except TimeoutError:
            raise BackendTimeout("the model backend did not answer in time") from None
        finally:
            self._withdraw(call)

    def _enqueue(self, model: ServedModel, ref: ModelRef, rows: np.ndarray, call: _Call) -> None:
        key = (model.address, ref, model.input_name, model.output_names, rows.dtype.str, rows.shape[1:])
        loop = asyncio.get_running_loop()
        # Half of what the caller has left goes to waiting for company, the rest to the Predict.
        latest = loop.time() + (call.deadline - loop.time()) / 2
        start = 0
        while start < len(rows):
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = _Batch(key, model, ref)
                latest_for_batch = loop.time() + model.max_wait_ms / 1000
                self._hold_until(batch, latest_for_batch)
            take = min(model.max_batch_size - batch.rows, len(rows) - start)
            part = _Part(call, rows[start : start + take], batch)
            call.parts.append(part)
            call.unanswered += 1
            batch.parts.append(part)
            batch.rows += take
            start += take
            if batch.rows >= model.max_batch_size:
                self._send(batch)
            else:
                self._hold_until(batch, latest)

    def _hold_until(self, batch: _Batch, when: float) -> None:
        if when >= batch.send_at:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        batch.send_at = when
        batch.timer = asyncio.get_running_loop().call_at(when, self._send, batch)

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
                self._discard(batch)

    def _discard(self, batch: _Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    def _send(self, batch: _Batch) -> None:
        self._discard(batch)
        for part in batch.parts:
            part.batch = None
        if not batch.parts:
            return
        task = asyncio.ensure_future(self._predict(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _predict(self, batch: _Batch) -> None:
        model = batch.model
        inputs = batch.parts[0].rows if len(batch.parts) == 1 else np.concatenate([p.rows for p in batch.parts])
        loop = asyncio.get_running_loop()
        timeout = max(p.call.deadline for p in batch.parts) - loop.time()
        try:
            result = await self._client.predict(
                model.address, batch.ref, {model.input_name: inputs}, model.output_names, timeout
            )
            _check_rows(result.outputs, batch.rows)
        except BaseException as exc:
            for part in batch.parts:
                _fail(part.call, exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for part in batch.parts:
            count = len(part.rows)
            outputs = {name: array[offset : offset + count] for name, array in result.outputs.items()}
            part.result = PredictResult(result.version, outputs)
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
    call.future.set_result(PredictResult(results[0].version, outputs))


def _fail(call: _Call, exc: BaseException) -> None:
    if call.future.done():
        return
    if not isinstance(exc, Exception):  # the tier is shutting down and cancelled the Predict
        exc = BackendUnavailable("the tier is shutting down; try again shortly")
    call.future.set_exception(exc)
