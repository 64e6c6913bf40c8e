"""Shadow traffic: a share of a model's requests also goes to another version; the answers are measured, then dropped.

The shadow Predict starts once the request's own answer is ready and never delays it; it carries
the same rows and gRPC metadata. Its outcome (``ok``, ``model_output_invalid`` when an output holds
NaN or infinity, or the backend error's code) and latency go to the metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping

import numpy as np

from app.backend.tfserving import Metadata, TFServingClient
from app.backend.types import ModelRef
from app.models import ServedModel
from app.settings import ShadowSettings
from processing.errors import GatewayError


class Shadow:
    def __init__(
        self,
        client: TFServingClient,
        observe: Callable[[str, str, float], None] = lambda model, outcome, seconds: None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._observe = observe
        self._chance = chance
        self._sending: set[asyncio.Task[None]] = set()

    def maybe_send(
        self, model: ServedModel, settings: ShadowSettings, batch: np.ndarray, timeout: float, metadata: Metadata
    ) -> None:
        if not settings.fraction or self._chance() >= settings.fraction:
            return
        ref = ModelRef(model.served_name, settings.version, settings.label, model.signature)
        task = asyncio.ensure_future(self._send(model, ref, batch, timeout, metadata))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self, model: ServedModel, ref: ModelRef, batch: np.ndarray, timeout: float, metadata: Metadata
    ) -> None:
        started = time.perf_counter()
        try:
            inputs = {model.input_name: batch}
            result = await self._client.predict(model.address, ref, inputs, model.output_names, timeout, metadata)
            outcome = "ok" if _finite(result.outputs) else "model_output_invalid"
        except GatewayError as exc:
            outcome = exc.code
        self._observe(model.name, outcome, time.perf_counter() - started)


def _finite(outputs: Mapping[str, np.ndarray]) -> bool:
    return all(
        not np.issubdtype(array.dtype, np.inexact) or bool(np.isfinite(array).all()) for array in outputs.values()
    )
