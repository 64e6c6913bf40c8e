"""The request pipeline: fetch (async) -> decode+preprocess (thread pool) -> Predict -> postprocess.

The event loop only waits: downloads are non-blocking, CPU work runs in a bounded
thread pool, and the Predict call goes through ``Predictor`` (direct, or the
micro-batcher that coalesces concurrent requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.fetcher import UrlFetcher
from app.tfserving import ModelRef, PredictResult, TFServingClient
from processing.errors import ItemError, ModelNotFound, Overloaded
from processing.image import DecodeLimits, PreprocessSpec, image_to_tensor
from processing.postprocess import PostprocessSpec, classify_batch, raw_batch
from processing.sources import ImageSource


@dataclass(frozen=True)
class ServedModel:
    """A configured model, completed from the backend's metadata at start."""

    name: str  # public name, in our URLs
    served_name: str  # name on the backend
    address: str
    signature: str
    input_name: str
    output_names: tuple[str, ...]
    preprocess: PreprocessSpec
    postprocess: PostprocessSpec
    max_batch_size: int = 0
    max_wait_ms: float = 2.0
    max_in_flight: int = 2  # batched Predicts under way at once

    def ref(self, version: int | None = None, label: str | None = None) -> ModelRef:
        return ModelRef(self.served_name, version, label, self.signature)

    def describe(self) -> dict[str, Any]:
        spec = self.preprocess
        return {
            "name": self.name,
            "signature": self.signature,
            "input": {"name": self.input_name, "dtype": spec.dtype, "shape": [-1, *spec.shape]},
            "output": {"kind": self.postprocess.kind, "names": list(self.output_names)},
            "top_k": self.postprocess.top_k,
        }


def find_model(models: Mapping[str, ServedModel], name: str) -> ServedModel:
    """The configured model called ``name``; raises ModelNotFound."""
    model = models.get(name)
    if model is None:
        raise ModelNotFound(f"model {name!r} is not configured")
    return model


class Predictor(Protocol):
    """Runs one Predict for a batch of preprocessed images of one model."""

    async def predict(self, model: ServedModel, ref: ModelRef, batch: np.ndarray, timeout: float) -> PredictResult: ...


class DirectPredictor:
    """One Predict per call, straight through the shared client."""

    def __init__(self, client: TFServingClient) -> None:
        self._client = client

    async def predict(self, model: ServedModel, ref: ModelRef, batch: np.ndarray, timeout: float) -> PredictResult:
        return await self._client.predict(model.address, ref, {model.input_name: batch}, model.output_names, timeout)


class Admission:
    """Bounds the images in flight across the process; beyond it, refuse at once."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.refused = 0  # requests refused since the last take_refused()

    def acquire(self, count: int) -> None:
        if self.in_flight + count > self.limit:
            self.refused += 1
            raise Overloaded(
                f"the tier is at capacity ({self.limit} images in flight); retry shortly",
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += count

    def release(self, count: int) -> None:
        self.in_flight -= count

    def take_refused(self) -> int:
        refused, self.refused = self.refused, 0
        return refused


@dataclass
class Pipeline:
    models: Mapping[str, ServedModel]
    fetcher: UrlFetcher
    predictor: Predictor
    executor: Executor
    decode_limits: DecodeLimits
    backend_timeout_s: float
    fetch_concurrency_per_request: int
    admission: Admission

    async def predict(
        self,
        name: str,
        sources: Sequence[ImageSource],
        version: int | None = None,
        label: str | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """The JSON answer for ``sources``, in order; item failures are reported in place."""
        model = find_model(self.models, name)
        self.admission.acquire(len(sources))
        try:
            started = time.perf_counter()
            tensors = await self._load_all(model, sources)
            return await self._infer(model, sources, tensors, model.ref(version, label), top_k, started)
        finally:
            self.admission.release(len(sources))

    async def _load_all(self, model: ServedModel, sources: Sequence[ImageSource]) -> list[np.ndarray | ItemError]:
        gate = asyncio.Semaphore(self.fetch_concurrency_per_request)
        shared: dict[str, asyncio.Task[np.ndarray | ItemError]] = {}

        def task_for(source: ImageSource) -> asyncio.Task[np.ndarray | ItemError]:
            key = source.url if source.url is not None else f"#{id(source)}"
            if key not in shared:  # a URL repeated in one request is fetched once
                shared[key] = asyncio.ensure_future(_captured(self._load_one(model, source, gate)))
            return shared[key]

        tasks = [task_for(s) for s in sources]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def _load_one(self, model: ServedModel, source: ImageSource, gate: asyncio.Semaphore) -> np.ndarray:
        if source.error is not None:
            raise source.error
        data = source.data
        if data is None:
            assert source.url is not None
            async with gate:
                data = await self.fetcher.fetch(source.url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, image_to_tensor, data, model.preprocess, self.decode_limits)

    async def _infer(
        self,
        model: ServedModel,
        sources: Sequence[ImageSource],
        tensors: list[np.ndarray | ItemError],
        ref: ModelRef,
        top_k: int | None,
        started: float,
    ) -> dict[str, Any]:
        good = [i for i, t in enumerate(tensors) if isinstance(t, np.ndarray)]
        answered_version = None  # no item reached the backend: nothing answered
        items: list[dict[str, Any]] = [{"source": s.name} for s in sources]
        if good:
            batch = np.stack([t for t in tensors if isinstance(t, np.ndarray)])
            result = await self.predictor.predict(model, ref, batch, self.backend_timeout_s)
            answered_version = result.version
            for i, answer in zip(good, _postprocess(model, result.outputs, top_k), strict=True):
                items[i].update(answer)
        for i, tensor in enumerate(tensors):
            if isinstance(tensor, ItemError):
                items[i]["error"] = {"code": tensor.code, "message": tensor.message}
        return {
            "model": {"name": model.name, "version": answered_version},
            "predictions": items,
            "timing_ms": round((time.perf_counter() - started) * 1000, 2),
        }


async def _captured(work: Awaitable[np.ndarray]) -> np.ndarray | ItemError:
    """The result, or the item's error as a value so it does not fail the other items."""
    try:
        return await work
    except ItemError as exc:
        return exc


def _postprocess(model: ServedModel, outputs: Mapping[str, np.ndarray], top_k: int | None) -> list[dict[str, Any]]:
    if model.postprocess.kind == "raw":
        return raw_batch(outputs)
    return classify_batch(outputs[model.output_names[0]], model.postprocess, top_k)
