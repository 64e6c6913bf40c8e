"""One predict request end to end: admit, load the images, predict, answer.

The event loop only waits: downloads are non-blocking, and the model's input kind turns the images that
arrived into its batch in a bounded thread pool. The predict step (``app/routing/routed.py``) chooses the
version, sends the rows (through the micro-batcher for a model that batches), turns the outputs into typed
answers by the model's output kind, answers a canary's failure from a stable route, and tells the model's
routes how it went. Item failures are data in the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from app.admission import Admission
from app.cache import AnswerCache, Found
from app.errors import Overloaded
from app.fetch.fetcher import UrlFetcher
from app.memory import MemoryBudget
from app.models import ModelRegistry, ServedModel
from app.routing.routed import Answered, RoutedPredict
from handlers.ports import HeldMemory
from processing.context import RequestContext
from processing.errors import ItemError, ItemInternalError
from processing.geometry import ImageGeometry
from processing.image import DecodeLimits
from processing.kinds.base import ItemAnswer
from processing.prediction import ItemResult, PredictCall, Prediction, check_request_params
from processing.sniff import ImageBytes
from processing.sources import ImageSource

log = logging.getLogger("imagegate")


@dataclass
class Pipeline:
    models: ModelRegistry
    fetcher: UrlFetcher
    predictor: RoutedPredict  # which version answers, the Predict, what the model's routes learn (app/routing)
    executor: Executor
    decode_limits: DecodeLimits
    fetch_concurrency_per_request: int
    admission: Admission
    memory: MemoryBudget  # bytes held by requests: downloads and decoding reserve before they allocate
    cache: AnswerCache  # answers to repeated images (app/cache.py); off unless cache.max_bytes

    async def run(self, call: PredictCall, context: RequestContext, hold: HeldMemory | None = None) -> Prediction:
        """Each of the call's images answered or failed, in order, and the version that answered.

        ``context`` receives the model, the version that answered, each stage's times and each item's outcome.
        ``hold`` is the request's share of the memory budget (its body, from the body intake), grown for its
        downloads and decoding; whoever opened it releases it. Without one, the pipeline opens and releases its own.
        """
        model = self.models.get_model(call.model)
        context.model = model.name
        check_request_params(call, model.output_kind)
        self.admission.acquire(len(call.sources))
        own = hold is None
        hold = self.memory.open() if hold is None else hold
        try:
            arrived = await self._download_all(call.sources, context, hold)
            route = self.predictor.route(model, call, context)
            # The answer cache: a hit skips decoding and the Predict; its answer is postprocessed like the others.
            found = self.cache.find(model, route, arrived)
            batch, geometries, failures = await self._decode_all(model, found.missed(arrived), context, hold, found)
            answered = await self.predictor.predict(model, route, batch, geometries, context)
            self.cache.keep(found, failures, geometries, answered)
            return _prediction(model.name, call, found.answers(failures, call), answered, found, context)
        finally:
            if own:
                hold.release()
            self.admission.release(len(call.sources))

    async def _decode_all(
        self,
        model: ServedModel,
        arrived: Sequence[ImageBytes | ItemError],
        context: RequestContext,
        hold: HeldMemory,
        found: Found,
    ) -> tuple[np.ndarray, list[ImageGeometry | None], list[ItemError | None]]:
        """The batch of every image that arrived and became a row, each row's geometry (where its image went in
        the model's frame), and each arrived image's failure (None for a row); ``found``: which of the request's
        images these are (those the answer cache did not have)."""
        datas = [data for data in arrived if not isinstance(data, ItemError)]
        to_batch = model.input_kind.to_batch  # the model's input kind: how the bytes become its batch
        # The memory budget: what the input kind will hold (decoded pixels, the batch), before it exists.
        footprint = model.input_kind.footprint(datas, model.preprocess, self.decode_limits)
        await hold.grow(footprint.peak)
        if datas and model.input_kind.in_thread_pool:
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(self.executor, to_batch, datas, model.preprocess, self.decode_limits)
        else:  # nothing arrived, or nothing worth a hand-off to do: here, without one
            decoded = to_batch(datas, model.preprocess, self.decode_limits)
        hold.shrink(footprint.peak - footprint.kept)  # the decoded pixels are gone; the batch stays
        failures: list[ItemError | None] = []
        decoded_items = iter(zip(decoded.failures, decoded.times, strict=True))
        for item, data in zip(found.missed_items(), arrived, strict=True):
            if not isinstance(data, ItemError):
                failure, (start, end) = next(decoded_items)
                context.record("decode", start, end, item)
                failures.append(None if failure is None else _item_error(failure))
            else:
                failures.append(data)
        return decoded.tensors, decoded.geometry_rows(), failures

    async def _download_all(
        self, sources: Sequence[ImageSource], context: RequestContext, hold: HeldMemory
    ) -> list[ImageBytes | ItemError]:
        """Each source's bytes (uploads as they came, URLs downloaded concurrently), or its error."""
        gate = asyncio.Semaphore(self.fetch_concurrency_per_request)
        shared: dict[str, asyncio.Task[ImageBytes | ItemError]] = {}

        def task_for(item: int, source: ImageSource) -> asyncio.Task[ImageBytes | ItemError]:
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
        self, source: ImageSource, gate: asyncio.Semaphore, context: RequestContext, item: int, hold: HeldMemory
    ) -> ImageBytes:
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


async def _captured(work: Awaitable[ImageBytes]) -> ImageBytes | ItemError:
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


def _prediction(
    model: str,
    call: PredictCall,
    early: list[ItemAnswer | ItemError | None],
    answered: Answered,
    found: Found,
    context: RequestContext,
) -> Prediction:
    """One item per source, in order: its answer from the cache or its error (``early``), else its row's answer."""
    answers = early
    good = [i for i, f in enumerate(early) if f is None]
    for i, row in zip(good, answered.rows, strict=True):
        answers[i] = row
    if answered.version is None and found.hits:  # every image answered from the cache
        answered = Answered(found.version(), answered.rows)
        context.version = answered.version
    items = []
    for source, answer in zip(call.sources, answers, strict=True):
        assert answer is not None  # a row for every image that reached the backend
        context.outcomes[answer.code if isinstance(answer, ItemError) else "ok"] += 1
        items.append(ItemResult(source.name, answer))
    return Prediction(model, answered.version, tuple(items))
