"""The routes of the ecosystem's interfaces: the OpenAPI document and the Open Inference Protocol v2.

Kept apart from ``server.py``'s own routes; ``make_app`` adds these in one line.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from app.models import ModelRegistry, ServedModel
from app.openapi.document import ApiConfig, build_document
from app.settings import Settings
from handlers.oip import (
    InferHandler,
    ModelReadyHandler,
    OipModelMetadataHandler,
    OipNotFoundHandler,
    ServerLiveHandler,
    ServerMetadataHandler,
    ServerReadyHandler,
)
from handlers.openapi import OpenApiHandler
from handlers.ports import MemoryGate, ModelCatalog, PredictPipeline, ProcessLifecycle, RequestLimits, TensorModel
from processing.kinds.base import TensorDescription

V2_MODEL = r"/v2/models/([^/]+)(?:/versions/([0-9]{1,18}))?"


def tier_version() -> str:
    try:
        return version("imagegate")
    except PackageNotFoundError:
        return "0+unknown"


def tensor_models(models: ModelRegistry) -> dict[str, TensorModel]:
    return {name: TensorModel(name, m.output_kind, v2_outputs(m)) for name, m in models.items()}


def v2_outputs(model: ServedModel) -> tuple[TensorDescription, ...]:
    """The model's outputs as v2 answers them: its tensors, FP32 (the tier answers numbers so), shaped as its
    signature says (a batch of rows, -1 first; [-1, -1] when the rank is unknown), then its kind's own outputs."""
    own = tuple(
        TensorDescription(name, "FP32", (-1, *shape[1:]) if shape else (-1, -1))  # None or ()
        for name, shape in ((n, model.output_shapes.get(n)) for n in model.output_names)
    )
    extra = tuple(o for o in model.output_kind.v2_outputs if o.name not in model.output_names)
    return own + extra


def api_config(settings: Settings) -> ApiConfig:
    s = settings.server
    return ApiConfig(
        models=tuple(settings.models),
        max_images=s.max_images_per_request,
        max_json_bytes=s.max_json_bytes,
        max_upload_bytes=s.max_upload_bytes,
        max_body_bytes=s.max_body_bytes,
        metrics=s.metrics,
        admin=bool(s.admin_token),
        version=tier_version(),
    )


def interface_routes(
    settings: Settings,
    models: ModelRegistry,
    pipeline: PredictPipeline,
    status: ModelCatalog,
    process: ProcessLifecycle,
    limits: RequestLimits,
    memory: MemoryGate,
) -> list[Any]:
    """``/openapi.json`` and the ``/v2`` routes."""
    tensors = tensor_models(models)
    model = {"models": status, "tensors": tensors}
    return [
        (r"/openapi\.json", OpenApiHandler, {"document": build_document(api_config(settings))}),
        (r"/v2/?", ServerMetadataHandler, {"name": "imagegate", "version": tier_version()}),
        (r"/v2/health/live", ServerLiveHandler),
        (r"/v2/health/ready", ServerReadyHandler, {"models": status, "process": process}),
        (rf"{V2_MODEL}/ready", ModelReadyHandler, model),
        (
            rf"{V2_MODEL}/infer",
            InferHandler,
            {"pipeline": pipeline, "limits": limits, "tensors": tensors, "memory": memory},
        ),
        (rf"{V2_MODEL}/?", OipModelMetadataHandler, model),
        (r"/v2/.*", OipNotFoundHandler),  # the protocol's error form for any other /v2/ path
    ]
