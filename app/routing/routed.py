"""The predict step: which version or label answers a request, its Predict (batched or direct), the rows' answers,
and what its route learns.

A request whose path names a version or label goes there, and only there; else the model's routes
(``router.py``) choose by the request's key (the ``routes.key_header`` header, else its request id). The rows
go through the micro-batcher for a model that batches (``ServedModel.batched``), else straight to the backend in
one Predict; the model's output kind turns the outputs into each row's answer or error.

No client sees a canary fail. A canary's Predict gets ``routes.canary_timeout_share`` of the deadline; when it
fails the request (a backend error, its share of the time spent, or a model failure on any row, such as NaN
outputs), the same rows go to the heaviest route that is no canary (``ModelRouter.fallback_for``) within the
rest of the deadline, and that route's answer and version are the request's. Whether to answer again needs the
postprocessed rows, so the decision is made here, after postprocessing, and nowhere else.

Every attempt's outcome and latency go to its route's window (canary rollback, through ``ModelRouter.record``):
the canary's failure counts against it although no client saw it, and is counted by ``on_fallback`` (the
metrics). A share of the answered rows goes to another version as shadow traffic (``shadow.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.backend.tfserving import Metadata, TFServingClient, backend_metadata
from app.backend.types import ModelRef, PredictResult
from app.batcher import MicroBatcher
from app.errors import BackendFailed, BackendTimeout, BackendUnavailable, ModelNotFound
from app.models import ServedModel
from app.routing.router import MODEL_FAILURES, ModelRouter, ServedVersions
from app.routing.shadow import Shadow
from app.settings import RouteTarget
from processing.context import RequestContext
from processing.errors import GatewayError, InternalError, ItemError
from processing.geometry import ImageGeometry
from processing.kinds.base import ItemAnswer, ModelOutputs
from processing.prediction import PredictCall

# A canary's Predict failed on the backend's side (UNAVAILABLE, NOT_FOUND, INTERNAL and the like, its deadline, or a
# request it refused, as when its signature changed): answered again by a route that is no canary.
BACKEND_FAILURES = frozenset(
    error.code for error in (BackendUnavailable, ModelNotFound, BackendFailed, BackendTimeout, InternalError)
)


@dataclass(frozen=True)
class Route:
    """Where a request goes: its model's router and the target it chose (None: the call's version or label, or the
    model's default), and the router's ``generation`` when it chose (what the answer cache keys on)."""

    router: ModelRouter | None
    target: RouteTarget | None
    generation: int
    call: PredictCall

    def key(self, target: RouteTarget | None) -> str:
        """What answers through ``target`` (this route's, or its fallback) are kept under in the answer cache."""
        if target is not None:
            return f"route:{target.name}@{self.generation}"
        if self.call.version is not None:
            return f"version:{self.call.version}"
        return (
            f"label:{self.call.label}@{self.generation}"
            if self.call.label is not None
            else f"default@{self.generation}"
        )


@dataclass(frozen=True)
class Answered:
    """Each row's answer or error, in order, and the version that answered them (None when no image was sent).

    ``outputs`` are the answering Predict's output tensors (a row per image sent), ``target`` what answered
    (``Route.key``): the answer cache keeps the rows that were answered under it.
    """

    version: int | None
    rows: Sequence[ItemAnswer | ItemError]
    outputs: Mapping[str, np.ndarray] | None = None
    target: str = ""


@dataclass
class RoutedPredict:
    client: TFServingClient
    batcher: MicroBatcher
    routers: Mapping[str, ModelRouter]  # models with routes
    shadow: Shadow
    timeout_s: float  # each request's deadline for its Predicts
    on_fallback: Callable[[str, str, str], None] = lambda model, route, code: None  # a canary's failure, answered
    versions: ServedVersions | None = None  # the models without routes, watched by the poller for the answer cache

    def route(self, model: ServedModel, call: PredictCall, context: RequestContext) -> Route:
        """The version or label the call or the model's routes choose; ``context`` gets the route's name."""
        router = self.routers.get(model.name) if call.version is None and call.label is None else None  # path wins
        target = router.choose(context.headers.get(router.routes.key_header) or context.request_id) if router else None
        context.target = target.name if target is not None else None
        if router is not None:
            return Route(router, target, router.generation, call)
        return Route(None, None, self.versions.generation(model.name) if self.versions is not None else 0, call)

    async def predict(
        self,
        model: ServedModel,
        route: Route,
        batch: np.ndarray,
        geometries: Sequence[ImageGeometry | None],
        context: RequestContext,
    ) -> Answered:
        """``batch``'s answers from ``route`` (``route()``'s choice); raises GatewayError.

        ``context`` gets the route and the version that answered, and the answering Predict's batch wait, Predict
        and postprocess times.
        """
        router, target, call = route.router, route.target, route.call
        if not len(batch):
            return Answered(None, ())  # no image arrived: nothing to send, nothing answered
        deadline = time.perf_counter() + self.timeout_s
        fallback = router.fallback_for(target) if router is not None and target is not None else None
        # ``batch`` (the request's rows, whether micro-batched or not) is held until the request is answered, so that
        # a canary's failure can be answered again; the request's memory hold counts it (InputKind.footprint's kept).
        for attempt, last in ((target, fallback is None), (fallback, True)):
            share = 1.0 if last or router is None else router.routes.canary_timeout_share
            waiting = time.perf_counter()
            try:
                result = await self._sending(model, call, attempt, batch, (deadline - waiting) * share, context)
            except GatewayError as exc:
                self._record(router, attempt, len(batch), len(batch), time.perf_counter() - waiting)
                if last or exc.code not in BACKEND_FAILURES:
                    raise
                self._fell_back(model, attempt, exc.code)
                continue
            postprocessing = time.perf_counter()
            outputs = ModelOutputs(
                result.outputs, model.output_names, model.postprocess, call.top_k, geometries, call.detection
            )
            rows = model.output_kind.postprocess(outputs)
            failed = [row.code for row in rows if isinstance(row, ItemError) and row.code in MODEL_FAILURES]
            self._record(router, attempt, len(batch), len(failed), result.answered_at - waiting)
            if failed and not last:
                self._fell_back(model, attempt, failed[0])
                continue
            context.record("batch_wait", waiting, result.sent_at)
            context.record("predict", result.sent_at, result.answered_at)
            context.record("postprocess", postprocessing, time.perf_counter())
            context.target, context.version = (attempt.name if attempt is not None else None), result.version
            if router is not None:
                self.shadow.maybe_send(model, router.routes.shadow, batch, self.timeout_s, backend_metadata([context]))
            return Answered(result.version, rows, result.outputs, route.key(attempt))
        raise AssertionError("unreachable: the last attempt answers or raises")

    def _sending(
        self,
        model: ServedModel,
        call: PredictCall,
        target: RouteTarget | None,
        batch: np.ndarray,
        timeout: float,
        context: RequestContext,
    ) -> Coroutine[Any, Any, PredictResult]:
        """The Predict of ``batch`` on ``target`` (else the call's version or label), not yet started."""
        version, label = (target.version, target.label) if target is not None else (call.version, call.label)
        ref: ModelRef = model.ref(version, label)
        if model.batched:
            return self.batcher.submit(model, ref, batch, timeout, context)
        meta: Metadata = backend_metadata([context])
        return self.client.predict(model.address, ref, model.predict_inputs(batch), model.output_names, timeout, meta)

    @staticmethod
    def _record(
        router: ModelRouter | None, target: RouteTarget | None, images: int, failed: int, seconds: float
    ) -> None:
        """Tell the route how its images came out: how many the model or the backend failed, and how long it took."""
        if router is not None and target is not None:
            router.record(target, images, failed, seconds)

    def _fell_back(self, model: ServedModel, canary: RouteTarget | None, code: str) -> None:
        assert canary is not None  # only a canary's failure is answered again
        self.on_fallback(model.name, canary.name, code)
