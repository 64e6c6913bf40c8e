"""Our own REST API's answer to ``:predict`` (v1): a JSON rendering of the pipeline's ``Prediction``.

``{"model": {"name", "version"}, "predictions": [{"source", ...the kind's fields | "error"}], "timing_ms"}``,
one item per input, in order; a failed input has ``{"code", "message"}`` in place of its answer.
"""

from __future__ import annotations

import time
from typing import Any

from processing.context import RequestContext
from processing.errors import ItemError
from processing.prediction import ItemResult, Prediction


def predict_document(prediction: Prediction, context: RequestContext) -> dict[str, Any]:
    """The answer document; ``timing_ms`` is the time since the request's context started."""
    return {
        "model": {"name": prediction.model, "version": prediction.version},
        "predictions": [item_document(item) for item in prediction.items],
        "timing_ms": round((time.perf_counter() - context.started) * 1000, 2),
    }


def item_document(item: ItemResult) -> dict[str, Any]:
    if isinstance(item.answer, ItemError):
        return {"source": item.source, "error": {"code": item.answer.code, "message": item.answer.message}}
    return {"source": item.source, **item.answer.to_json()}
