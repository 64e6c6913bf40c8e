"""The OpenAPI 3.1 document of the running tier: every route it serves, built from its configuration.

Model names are an enum of the configured models, and limits are the configured ones. The browser
page's files (``/`` and ``/static/...``) are left out on purpose: they are a page, not an API
(docs/browser-page.md). ``tests/app/test_openapi.py`` holds the document to the application's routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.openapi.schemas import DETECTION_PARAMS, ENCODING, Schema, answer_schemas, ref, request_schemas

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
        "encoding": {"name": "encoding", "in": "query", "required": False, "schema": ENCODING},
        **{name: {"name": name, "in": "query", "required": False, "schema": s} for name, s in DETECTION_PARAMS.items()},
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
V2 = "V2Error"  # the v2 routes' error body


def errors(statuses: tuple[int, ...], body: str = "Error") -> dict[str, Schema]:
    return {
        str(s): answer(ERROR_DESCRIPTIONS[s], ref(body), *(("Retry-After",) if s in (503, 504) else ()))
        for s in statuses
    }


def operation(op_id: str, summary: str, responses: dict[str, Schema], *params: str, **extra: Any) -> Schema:
    parameters = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    return {"operationId": op_id, "summary": summary, "parameters": parameters, "responses": responses, **extra}


def plain_get(
    op_id: str, summary: str, description: str, schema: Schema, body: str = "Error", media: str = JSON
) -> Schema:
    """A GET that answers ``schema``, or 500 with the error ``body``."""
    return {"get": operation(op_id, summary, {"200": answer(description, schema, media=media), **errors((500,), body)})}


def versioned(base: str, tail: str, op_ids: tuple[str, str], summaries: tuple[str, str], responses: Schema) -> Schema:
    """A GET of a model at ``base + tail``, and of one of its versions at ``base/versions/{version} + tail``."""
    return {
        f"{base}{tail}": {"get": operation(op_ids[0], summaries[0], responses, "model")},
        f"{base}/versions/{{version}}{tail}": {
            "get": operation(op_ids[1], summaries[1], responses, "model", "version")
        },
    }


def predict_operation(op_id: str, config: ApiConfig, *params: str) -> Schema:
    image_body = {"schema": {"type": "string", "format": "binary", "minLength": 1}}
    body = {
        "required": True,
        "description": f"JSON (at most {config.max_json_bytes} bytes), "
        f"multipart (at most {config.max_body_bytes} bytes, each file at most {config.max_upload_bytes}) "
        f"or an image body, the image itself (at most {config.max_upload_bytes} bytes)",
        "content": {
            JSON: {"schema": ref("PredictJson")},
            "multipart/form-data": {"schema": ref("PredictMultipart")},
            "image/*": image_body,
            "application/octet-stream": image_body,
        },
    }
    responses = {
        "200": answer(
            "one prediction per input, in order; a failed input has an error", ref("PredictAnswer"), "Server-Timing"
        ),
        **errors((400, 404, 413, 415, *BACKEND)),
    }
    queries = ("top_k", "encoding", *DETECTION_PARAMS)
    return operation(op_id, "classify images", responses, *params, *queries, requestBody=body)


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
        "/v1/models": plain_get("listModels", "the configured models", "models and limits", ref("ModelList")),
        **versioned(
            "/v1/models/{model}",
            "",
            ("modelStatus", "modelVersionStatus"),
            ("status on TF Serving", "a version's status"),
            status,
        ),
        **versioned(
            "/v1/models/{model}",
            "/metadata",
            ("modelMetadata", "modelVersionMetadata"),
            ("signatures", "a version's signatures"),
            metadata,
        ),
        "/healthz": plain_get("healthz", "alive", "alive", ref("Health")),
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
        "/openapi.json": plain_get("openapi", "this document", "OpenAPI 3.1", {"type": "object"}),
    }
    if config.metrics:
        text = {"type": "string"}
        paths["/metrics"] = plain_get(
            "metrics", "the Prometheus scrape", "Prometheus text format", text, media="text/plain"
        )
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
        return errors(statuses, V2)

    model_meta = {"200": answer("the model's tensors", ref("V2ModelMetadata")), **v2_errors(400, 404, *BACKEND)}
    model_ready = {
        "200": answer("ready", ref("V2ModelReady")),
        **v2_errors(400, 404, *BACKEND),
    }
    model_ready["400"] = answer("not ready, or a malformed request", {"oneOf": [ref("V2ModelReady"), ref(V2)]})
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
        "/v2": plain_get(
            "v2ServerMetadata", "server metadata", "name, version, extensions", ref("V2ServerMetadata"), V2
        ),
        "/v2/health/live": plain_get("v2Live", "live", "live", ref("V2Live"), V2),
        "/v2/health/ready": {"get": operation("v2Ready", "ready", ready)},
        **versioned(
            "/v2/models/{model}",
            "",
            ("v2ModelMetadata", "v2ModelVersionMetadata"),
            ("model metadata", "model version metadata"),
            model_meta,
        ),
        **versioned(
            "/v2/models/{model}",
            "/ready",
            ("v2ModelReady", "v2ModelVersionReady"),
            ("model ready", "model version ready"),
            model_ready,
        ),
        "/v2/models/{model}/infer": {"post": infer("v2Infer", "model")},
        "/v2/models/{model}/versions/{version}/infer": {"post": infer("v2InferVersion", "model", "version")},
    }
