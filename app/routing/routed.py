"""The predict step: which version or label answers a request, its Predict (batched or direct), what its route learns.

A request whose path names a version or label goes there; else the model's routes (``router.py``) choose by
the request's key (the ``routes.key_header`` header, else its request id). The rows go through the
micro-batcher for a model that batches (``ServedModel.batched``), else straight to the backend in one Predict.
A routed request's outcome and latency go to its route's window (canary rollback, through ``ModelRouter.record``)
and a share of its rows to another version as shadow traffic (``shadow.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from app.backend.tfserving import TFServingClient, backend_metadata
from app.backend.types import PredictResult
from app.batcher import MicroBatcher
from app.models import ServedModel
from app.routing.router import MODEL_FAILURES, ModelRouter
from app.routing.shadow import Shadow
from app.settings import RouteTarget
from processing.context import RequestContext
from processing.errors import GatewayError
from processing.prediction import PredictCall, Prediction


@dataclass(frozen=True)
class Routed:
    """A request's Predict: the backend's answer (None when no image was sent) and the route that chose it."""

    result: PredictResult | None
    router: ModelRouter | None = None
    target: RouteTarget | None = None
    images: int = 0
    seconds: float = 0.0  # from the rows' hand-over to the backend's answer

    def record(self, prediction: Prediction) -> None:
        """Tell the route how its images came out: how many the model failed, and how long the Predict took."""
        if self.router is None or self.target is None or self.result is None:
            return
        failed = sum(1 for _, _, error in prediction.failures() if error.code in MODEL_FAILURES)
        self.router.record(self.target, self.images, failed, self.seconds)


@dataclass
class RoutedPredict:
    client: TFServingClient
    batcher: MicroBatcher
    routers: Mapping[str, ModelRouter]  # models with routes
    shadow: Shadow
    timeout_s: float  # each Predict's deadline

    async def predict(
        self, model: ServedModel, call: PredictCall, batch: np.ndarray, context: RequestContext
    ) -> Routed:
        """``batch``'s outputs from the version or label the call or the model's routes choose; raises GatewayError.

        ``context`` gets the route's name, the version that answered, and the batch wait and Predict times.
        """
        router = self.routers.get(model.name) if call.version is None and call.label is None else None  # path wins
        target = router.choose(context.headers.get(router.routes.key_header) or context.request_id) if router else None
        version, label = (target.version, target.label) if target is not None else (call.version, call.label)
        context.target = target.name if target is not None else None
        if not len(batch):
            return Routed(None)  # no image arrived: nothing to send, nothing answered
        ref, meta = model.ref(version, label), backend_metadata([context])
        waiting = time.perf_counter()
        inputs = {model.input_name: batch}
        sending = (
            self.batcher.submit(model, ref, batch, self.timeout_s, context)
            if model.batched
            else self.client.predict(model.address, ref, inputs, model.output_names, self.timeout_s, meta)
        )
        try:
            result = await sending
        except GatewayError:
            if router is not None and target is not None:  # every image failed on this route
                router.record(target, len(batch), len(batch), time.perf_counter() - waiting)
            raise
        if router is not None:
            self.shadow.maybe_send(model, router.routes.shadow, batch, self.timeout_s, meta)
        context.record("batch_wait", waiting, result.sent_at)
        context.record("predict", result.sent_at, result.answered_at)
        context.version = result.version
        return Routed(result, router, target, len(batch), result.answered_at - waiting)
