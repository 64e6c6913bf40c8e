"""The OpenAPI 3.1 document of the running tier: every route it serves, built from its configuration.

Model names are an enum of the configured models, and limits are the configured ones. The browser
page's files (``/`` and ``/static/...``) are left out on purpose: they are a page, not an API
(docs/browser-page.md). ``tests/app/test_openapi.py`` holds the document to the application's routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.openapi.schemas import Schema, answer_schemas, ref, request_schemas

JSON = "application/json"


@dataclass(frozen=True)
class ApiConfig:
    models: tuple[str, ...]
    max_images: int
    max_json_bytes: int
    max_upload_bytes: int
    max_body_bytes: int
    metrics: bool
    admin: bool  # server.admin_token set: the /admin/ routes exist
    version: str


def build_document(config: ApiConfig) -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagegate",
            "version": config.version,
            "description": "Image classification in front of TensorFlow Serving; errors: docs/errors.md, "
            "the Open Inference Protocol v2 routes: docs/interfaces.md.",
        },
        "paths": {**v1_paths(config), **v2_paths(config)},
        "components": {
            "schemas": {**request_schemas(config.max_images), **answer_schemas(list(config.models))},
            "parameters": _parameters(config),
            "headers": _headers(),
        },
    }


def _parameters(config: ApiConfig) -> dict[str, Schema]:
    def path(name: str, schema: Schema) -> Schema:
        return {"name": name, "in": "path", "required": True, "schema": schema}

    return {
        "model": path("model", {"type": "string", "enum": list(config.models)}),
        "version": path("version", {"type": "string", "pattern": "^[0-9]{1,18}$"}),
        "label": path("label", {"type": "string", "pattern": "^[^/:]+$"}),
        "top_k": {
            "name": "top_k",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    }


def _headers() -> dict[str, Schema]:
    return {
        "X-Request-Id": {
            "description": "the request's id (the client's, when valid)",
            "required": True,
            "schema": {"type": "string"},
        },
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "required": True,
            "schema": {"type": "integer"},
        },
        "Server-Timing": {
            "description": "each stage's duration in ms (docs/observability.md)",
            "required": True,
            "schema": {"type": "string"},
        },
        "Inference-Header-Content-Length": {
            "description": "the JSON header's length when binary tensors follow it",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
        },
    }


def _header_refs(*names: str) -> dict[str, Schema]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in ("X-Request-Id", *names)}


def answer(description: str, schema: Schema | None, *headers: str, media: str = JSON) -> Schema:
    response: Schema = {"description": description, "headers": _header_refs(*headers)}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


ERROR_DESCRIPTIONS = {
    400: "the request is malformed",
    401: "no or a wrong admin bearer token",
    404: "no such model, version or label",
    413: "a limit is exceeded",
    415: "unsupported Content-Type",
    500: "a bug in the tier",
    502: "the backend answered with an unexpected error",
    503: "overloaded, or the backend is unavailable",
    504: "the backend did not answer in time",
}
BACKEND = (500, 502, 503, 504)


def errors(statuses: tuple[int, ...], body: str = "Error") -> dict[str, Schema]:
    return {
        str(s): answer(ERROR_DESCRIPTIONS[s], ref(body), *(("Retry-After",) if s in (503, 504) else ()))
        for s in statuses
    }


def operation(op_id: str, summary: str, responses: dict[str, Schema], *params: str, **extra: Any) -> Schema:
    parameters = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    return {"operationId": op_id, "summary": summary, "parameters": parameters, "responses": responses, **extra}


def predict_operation(op_id: str, config: ApiConfig, *params: str) -> Schema:
    raw = {"schema": {"type": "string", "format": "binary", "minLength": 1}}
    body = {
        "required": True,
        "description": f"JSON (at most {config.max_json_bytes} bytes), "
        f"multipart (at most {config.max_body_bytes} bytes, each file at most {config.max_upload_bytes}) "
        f"or one raw image (at most {config.max_upload_bytes} bytes)",
        "content": {
            JSON: {"schema": ref("PredictJson")},
            "multipart/form-data": {"schema": ref("PredictMultipart")},
            "image/*": raw,
            "application/octet-stream": raw,
        },
    }
    responses = {
        "200": answer(
            "one prediction per input, in order; a failed input has an error", ref("PredictAnswer"), "Server-Timing"
        ),
        **errors((400, 404, 413, 415, *BACKEND)),
    }
    return operation(op_id, "classify images", responses, *params, "top_k", requestBody=body)


def v1_paths(config: ApiConfig) -> dict[str, Schema]:
    status = {"200": answer("the versions and their states", ref("ModelStatus")), **errors((400, 404, *BACKEND))}
    metadata = {"200": answer("the signatures", ref("ModelMetadata")), **errors((400, 404, *BACKEND))}
    paths: dict[str, Schema] = {
        "/v1/models/{model}:predict": {"post": predict_operation("predict", config, "model")},
        "/v1/models/{model}/versions/{version}:predict": {
            "post": predict_operation("predictVersion", config, "model", "version")
        },
        "/v1/models/{model}/labels/{label}:predict": {
            "post": predict_operation("predictLabel", config, "model", "label")
        },
        "/v1/models": {
            "get": operation(
                "listModels",
                "the configured models",
                {"200": answer("models and limits", ref("ModelList")), **errors((500,))},
            )
        },
        "/v1/models/{model}": {"get": operation("modelStatus", "status on TF Serving", status, "model")},
        "/v1/models/{model}/versions/{version}": {
            "get": operation("modelVersionStatus", "a version's status", status, "model", "version")
        },
        "/v1/models/{model}/metadata": {"get": operation("modelMetadata", "signatures", metadata, "model")},
        "/v1/models/{model}/versions/{version}/metadata": {
            "get": operation("modelVersionMetadata", "a version's signatures", metadata, "model", "version")
        },
        "/healthz": {"get": operation("healthz", "alive", {"200": answer("alive", ref("Health")), **errors((500,))})},
        "/readyz": {
            "get": operation(
                "readyz",
                "ready: the process serves (the backend's state: /v2/health/ready)",
                {
                    "200": answer("ready", ref("Readiness")),
                    "503": answer("not ready", ref("Readiness")),
                    **errors((500,)),
                },
            )
        },
        "/openapi.json": {
            "get": operation(
                "openapi", "this document", {"200": answer("OpenAPI 3.1", {"type": "object"}), **errors((500,))}
            )
        },
    }
    if config.metrics:
        scrape = answer("Prometheus text format", {"type": "string"}, media="text/plain")
        paths["/metrics"] = {"get": operation("metrics", "the Prometheus scrape", {"200": scrape, **errors((500,))})}
    if config.admin:
        paths.update(admin_paths())
    return paths


def admin_paths() -> dict[str, Schema]:
    """Route promote and reset (docs/rollouts.md), behind ``Authorization: Bearer <server.admin_token>``."""
    route = {"name": "route", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[^/:]+$"}}
    routes = answer("the model's routes after the change", {"type": "object"})
    responses = {"200": routes, **errors((400, 401, 404, 500))}
    promote = operation("promoteRoute", "give one route all the traffic", responses, "model")
    promote["parameters"].append(route)
    reset = operation("resetRoutes", "the configured weights again, windows emptied", responses, "model")
    return {
        "/admin/models/{model}/routes/{route}:promote": {"post": promote},
        "/admin/models/{model}/routes:reset": {"post": reset},
    }


def v2_paths(config: ApiConfig) -> dict[str, Schema]:
    def v2_errors(*statuses: int) -> dict[str, Schema]:
        return errors(statuses, "V2Error")

    model_meta = {"200": answer("the model's tensors", ref("V2ModelMetadata")), **v2_errors(400, 404, *BACKEND)}
    model_ready = {
        "200": answer("ready", ref("V2ModelReady")),
        **v2_errors(400, 404, *BACKEND),
    }
    model_ready["400"] = answer("not ready, or a malformed request", {"oneOf": [ref("V2ModelReady"), ref("V2Error")]})
    infer_body = {
        "required": True,
        "content": {
            JSON: {"schema": ref("V2InferRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    infer_ok = answer("the outputs", ref("V2InferResponse"), "Server-Timing", "Inference-Header-Content-Length")
    infer_ok["content"]["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    length = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
    }

    def infer(op_id: str, *params: str) -> Schema:
        op = operation(
            op_id, "infer", {"200": infer_ok, **v2_errors(400, 404, 413, *BACKEND)}, *params, requestBody=infer_body
        )
        op["parameters"].append(length)
        return op

    ready = {"200": answer("ready", ref("V2Ready")), "400": answer("not ready", ref("V2Ready")), **v2_errors(500)}
    return {
        "/v2": {
            "get": operation(
                "v2ServerMetadata",
                "server metadata",
                {"200": answer("name, version, extensions", ref("V2ServerMetadata")), **v2_errors(500)},
            )
        },
        "/v2/health/live": {
            "get": operation("v2Live", "live", {"200": answer("live", ref("V2Live")), **v2_errors(500)})
        },
        "/v2/health/ready": {"get": operation("v2Ready", "ready", ready)},
        "/v2/models/{model}": {"get": operation("v2ModelMetadata", "model metadata", model_meta, "model")},
        "/v2/models/{model}/versions/{version}": {
            "get": operation("v2ModelVersionMetadata", "model version metadata", model_meta, "model", "version")
        },
        "/v2/models/{model}/ready": {"get": operation("v2ModelReady", "model ready", model_ready, "model")},
        "/v2/models/{model}/versions/{version}/ready": {
            "get": operation("v2ModelVersionReady", "model version ready", model_ready, "model", "version")
        },
        "/v2/models/{model}/infer": {"post": infer("v2Infer", "model")},
        "/v2/models/{model}/versions/{version}/infer": {"post": infer("v2InferVersion", "model", "version")},
    }
