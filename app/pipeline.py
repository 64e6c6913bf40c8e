"""One predict request end to end: admit, fetch (async), decode+preprocess (thread pool), Predict, answer.

The event loop only waits: downloads are non-blocking, CPU work runs in a bounded thread
pool, and the Predict goes straight to the TF Serving client, or through the micro-batcher
for a model that batches (``ServedModel.batched``). Item failures are data in the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.admission import Admission
from app.backend.client import TFServingClient, backend_metadata
from app.backend.types import PredictResult
from app.batcher import MicroBatcher
from app.errors import Overloaded
from app.fetch.client import UrlFetcher
from app.memory import MemoryBudget, Reservation
from app.models import ModelRegistry, ServedModel
from app.routing.router import MODEL_FAILURES, ModelRouter
from app.routing.shadow import Shadow
from processing.batch import decode_batch
from processing.context import RequestContext
from processing.errors import GatewayError, ItemError, ItemInternalError
from processing.footprint import decode_footprint
from processing.image import DecodeLimits
from processing.postprocess import classify_batch, raw_batch
from processing.sources import ImageSource

log = logging.getLogger("imagegate")


@dataclass
class Pipeline:
    models: ModelRegistry
    fetcher: UrlFetcher
    client: TFServingClient
    batcher: MicroBatcher
    executor: Executor
    decode_limits: DecodeLimits
    backend_timeout_s: float
    fetch_concurrency_per_request: int
    admission: Admission
    memory: MemoryBudget  # bytes held by requests: downloads and decoding reserve before they allocate
    routers: Mapping[str, ModelRouter]  # models with routes: which version or label answers (app/routing)
    shadow: Shadow  # routes' shadow traffic

    async def run(
        self,
        name: str,
        sources: Sequence[ImageSource],
        context: RequestContext,
        version: int | None = None,
        label: str | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """The JSON answer for ``sources``, in order; item failures are reported in place.

        ``context`` receives the model, the version that answered, each stage's times and each item's outcome.
        """
        model = self.models.get_model(name)
        context.model = model.name
        router = self.routers.get(model.name) if version is None and label is None else None  # the path wins
        target = router.choose(context.headers.get(router.routes.key_header) or context.request_id) if router else None
        if target is not None:
            version, label, context.target = target.version, target.label, target.name
        self.admission.acquire(len(sources))
        hold = self.memory.open()
        try:
            batch, failures = await self._load_all(model, sources, context, hold)
            images = len(batch)
            result = None  # no item reached the backend: nothing answered
            if images:
                ref, timeout = model.ref(version, label), self.backend_timeout_s
                waiting, meta = time.perf_counter(), backend_metadata([context])
                try:
                    if model.batched:
                        result = await self.batcher.submit(model, ref, batch, timeout, context)
                    else:
                        inputs = {model.input_name: batch}
                        result = await self.client.predict(
                            model.address, ref, inputs, model.output_names, timeout, meta
                        )
                except GatewayError:
                    if router is not None and target is not None:  # every image failed on this route
                        router.record(target, images, images, time.perf_counter() - waiting)
                    raise
                if router is not None:
                    self.shadow.maybe_send(model, router.routes.shadow, batch, timeout, meta)
                context.record("batch_wait", waiting, result.sent_at)
                context.record("predict", result.sent_at, result.answered_at)
                context.version = result.version
            with context.timed("postprocess"):
                answer = _answer(model, sources, failures, result, top_k, context)
            if router is not None and target is not None and result is not None:
                failed = sum(context.outcomes[code] for code in MODEL_FAILURES)
                router.record(target, images, failed, result.answered_at - waiting)
            return answer
        finally:
            hold.release()
            self.admission.release(len(sources))

    async def _load_all(
        self, model: ServedModel, sources: Sequence[ImageSource], context: RequestContext, hold: Reservation
    ) -> tuple[np.ndarray, list[ItemError | None]]:
        """The batch of every image that arrived and decoded, and each source's failure (None for a row)."""
        arrived = await self._download_all(sources, context, hold)
        datas = [data for data in arrived if isinstance(data, bytes)]
        footprint = decode_footprint(datas, model.preprocess, self.decode_limits)
        await hold.grow(footprint.peak)  # the memory budget: decoded pixels and the batch, before they exist
        if datas:
            loop = asyncio.get_running_loop()
            decode = loop.run_in_executor(self.executor, decode_batch, datas, model.preprocess, self.decode_limits)
            decoded = await decode
        else:  # nothing arrived: an empty batch, without a hand-off
            decoded = decode_batch(datas, model.preprocess, self.decode_limits)
        hold.shrink(footprint.peak - footprint.kept)  # the decoded pixels are gone; the batch stays
        failures: list[ItemError | None] = []
        decoded_items = iter(zip(decoded.failures, decoded.times, strict=True))
        for item, data in enumerate(arrived):
            if isinstance(data, bytes):
                failure, (start, end) = next(decoded_items)
                context.record("decode", start, end, item)
                failures.append(None if failure is None else _item_error(failure))
            else:
                failures.append(data)
        return decoded.tensors, failures

    async def _download_all(
        self, sources: Sequence[ImageSource], context: RequestContext, hold: Reservation
    ) -> list[bytes | ItemError]:
        """Each source's bytes (uploads as they came, URLs downloaded concurrently), or its error."""
        gate = asyncio.Semaphore(self.fetch_concurrency_per_request)
        shared: dict[str, asyncio.Task[bytes | ItemError]] = {}

        def task_for(item: int, source: ImageSource) -> asyncio.Task[bytes | ItemError]:
            key = source.url if source.url is not None else f"#{id(source)}"
            if key not in shared:  # a URL repeated in one request is fetched once
                shared[key] = asyncio.ensure_future(_captured(self._download(source, gate, context, item, hold)))
            return shared[key]

        tasks = [task_for(item, source) for item, source in enumerate(sources)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            # A refusal raised here (no memory for a download) holds this frame in its traceback, and the
            # tasks it failed hold it too: let go of the downloads' bytes now, not when the collector runs.
            tasks.clear()
            shared.clear()

    async def _download(
        self, source: ImageSource, gate: asyncio.Semaphore, context: RequestContext, item: int, hold: Reservation
    ) -> bytes:
        if source.error is not None:
            raise source.error
        if source.data is not None:
            return source.data
        assert source.url is not None
        async with gate:
            with context.timed("download", item):
                data = await self.fetcher.fetch(source.url, hold)  # the body's bytes are added to the request's hold
        context.bytes_downloaded += len(data)
        return data


async def _captured(work: Awaitable[bytes]) -> bytes | ItemError:
    """The result, or the item's error as a value so it does not fail the other items.

    No memory for a download fails the whole request (503 overloaded), as no memory for its body would.
    """
    try:
        return await work
    except Overloaded:
        raise
    except Exception as exc:
        return _item_error(exc)


def _item_error(exc: Exception) -> ItemError:
    """An item's failure as the error its answer reports: an unexpected one is a logged ``internal_error``."""
    if isinstance(exc, ItemError):
        return exc
    log.error("unexpected failure on one input; answered as that item's internal_error", exc_info=exc)
    return ItemInternalError("the tier failed on this input; this is a bug and has been logged")


def _answer(
    model: ServedModel,
    sources: Sequence[ImageSource],
    failures: Sequence[ItemError | None],
    result: PredictResult | None,
    top_k: int | None,
    context: RequestContext,
) -> dict[str, Any]:
    """The response document: one item per source, in order, with its classes or its error."""
    items: list[dict[str, Any]] = [{"source": s.name} for s in sources]
    outcomes: list[dict[str, Any] | ItemError] = [f if f is not None else {} for f in failures]
    if result is not None:
        good = [i for i, f in enumerate(failures) if f is None]
        for i, answer in zip(good, _postprocess(model, result.outputs, top_k), strict=True):
            outcomes[i] = answer
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, ItemError):
            item["error"] = {"code": outcome.code, "message": outcome.message}
        else:
            item.update(outcome)
        context.outcomes[outcome.code if isinstance(outcome, ItemError) else "ok"] += 1
    return {
        "model": {"name": model.name, "version": result.version if result is not None else None},
        "predictions": items,
        "timing_ms": round((time.perf_counter() - context.started) * 1000, 2),
    }


def _postprocess(
    model: ServedModel, outputs: Mapping[str, np.ndarray], top_k: int | None
) -> list[dict[str, Any] | ItemError]:
    if model.postprocess.kind == "raw":
        return raw_batch(outputs)
    return classify_batch(outputs[model.output_names[0]], model.postprocess, top_k)
