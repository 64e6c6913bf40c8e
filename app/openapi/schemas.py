"""The OpenAPI document's schemas: request forms, answers and error bodies.

The error codes are read from the error classes when the document is built (every ``GatewayError`` subclass
defined by then, which in a running tier is all of them), never listed here: a new class is documented by
being defined. docs/errors.md lists the same codes (tests/test_documented_errors.py).
"""

from __future__ import annotations

from typing import Any

import app.errors
import app.fetch.errors
from handlers.base import _code_for_status
from processing.errors import GatewayError, ItemError
from processing.kinds.base import OutputKind
from processing.kinds.registry import OUTPUT_KINDS
from processing.oip import INPUT_NAME, SOURCE_PARAMETER, SOURCES
from processing.sources import MAX_TOP_K, VECTOR_ENCODINGS

# The tier's error modules beyond processing/errors.py, imported so that their classes are defined when a
# document is built on its own (in a running tier every module that raises an error has imported it already).
ERROR_MODULES = (app.errors, app.fetch.errors)
# Statuses Tornado answers by itself in our handlers: a malformed request (bad percent escapes), an unknown
# path, a method the route does not have, and a bug. Their codes come from the status (handlers/base.py).
TORNADO_STATUSES = (400, 404, 405, 500)


def error_types() -> list[type[GatewayError]]:
    """Every error type defined so far: GatewayError and its subclasses, at any depth."""
    found: list[type[GatewayError]] = []
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def item_error_codes() -> list[str]:
    """The codes an item of an answer can carry: those of the ItemError classes (ItemError itself is abstract)."""
    return sorted({cls.code for cls in error_types() if issubclass(cls, ItemError) and cls is not ItemError})


def request_error_codes() -> list[str]:
    """The codes a whole request can fail with: the other error classes', and those of Tornado's own statuses."""
    codes = {cls.code for cls in error_types() if not issubclass(cls, ItemError)}
    return sorted(codes | {_code_for_status(status) for status in TORNADO_STATUSES})


Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, required: tuple[str, ...] = (), closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


TOP_K: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K}
ENCODING: Schema = {
    "type": "string",
    "enum": list(VECTOR_ENCODINGS),
    "description": "how the answer writes vectors (embeddings): JSON lists, or base64 of little-endian float32",
}
SCORE_THRESHOLD: Schema = {
    "type": "number",
    "minimum": 0,
    "maximum": 1,
    "description": "detection models only (another kind refuses it: 400 invalid_request): boxes scoring at or "
    "below it are dropped, over the model's postprocess.score_threshold",
}
MAX_DETECTIONS: Schema = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_TOP_K,
    "description": "detection models only (another kind refuses it: 400 invalid_request): boxes per image, best "
    "first, over the model's postprocess.max_detections; top_k, when given too, also caps them",
}
# A detection model's own parameters, by name (processing/sources.py's DetectionParams).
DETECTION_PARAMS: dict[str, Schema] = {"score_threshold": SCORE_THRESHOLD, "max_detections": MAX_DETECTIONS}
STRING: Schema = {"type": "string"}
BINARY: Schema = {"type": "string", "format": "binary"}


def request_schemas(max_images: int) -> dict[str, Schema]:
    """The bodies clients send: the three forms of predict and a v2 infer."""
    instance = {
        "oneOf": [
            {"type": "string", "description": "an image URL"},
            obj({"url": STRING}, ("url",)),
            obj({"b64": {"type": "string", "contentEncoding": "base64"}}, ("b64",)),
        ]
    }
    files = {"type": "array", "items": BINARY, "minItems": 1, "maxItems": max_images}
    return {
        "UrlList": {"type": "array", "items": STRING, "minItems": 1, "maxItems": max_images},
        "Instances": obj(
            {
                "instances": {"type": "array", "items": instance, "minItems": 1, "maxItems": max_images},
                "top_k": TOP_K,
                "encoding": ENCODING,
                **DETECTION_PARAMS,
            },
            ("instances",),
        ),
        "PredictJson": {"oneOf": [ref("UrlList"), ref("Instances")]},
        "PredictMultipart": {
            **obj(
                {"image": files, "data": files, "top_k": TOP_K, "encoding": ENCODING, **DETECTION_PARAMS},
                closed=False,
            ),
            "anyOf": [{"required": ["image"]}, {"required": ["data"]}],
            "description": "image files in fields named image or data (or images, file); other fields are ignored",
        },
        "V2InferRequest": v2_infer_request(max_images),
    }


def v2_infer_request(max_images: int) -> Schema:
    source = {"type": "string", "enum": list(SOURCES)}
    tensor = obj(
        {
            "name": {"const": INPUT_NAME},
            "datatype": {"const": "BYTES"},
            "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
            "parameters": obj({SOURCE_PARAMETER: source}),
            "data": {"type": "array", "items": STRING, "minItems": 1, "maxItems": max_images},
        },
        ("name", "datatype", "shape", "data"),
        closed=False,
    )
    output = obj(
        {
            "name": STRING,
            "parameters": obj({"classification": TOP_K, "binary_data": {"type": "boolean"}}, closed=False),
        },
        ("name",),
        closed=False,
    )
    return obj(
        {
            "id": STRING,
            "parameters": obj(
                {SOURCE_PARAMETER: source, "binary_data_output": {"type": "boolean"}, **DETECTION_PARAMS}, closed=False
            ),
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": output},
        },
        ("inputs",),
        closed=False,
    )


def kind_item(kind: OutputKind) -> Schema:
    """A predict answer's item for an image answered by a model of ``kind`` (its answer schema, processing/kinds)."""
    fields = kind.answer_schema
    return obj({"source": STRING, **fields["properties"]}, ("source", *fields["required"]))


def answer_schemas(models: list[str]) -> dict[str, Schema]:
    """What the tier answers."""
    model = {"type": "string", "enum": models}
    failed = obj({"source": STRING, "error": ref("ItemError")}, ("source", "error"))
    prediction = {"oneOf": [*(kind_item(kind) for kind in OUTPUT_KINDS.values()), failed]}
    tensor = {"type": "object", "required": ["name", "datatype", "shape"]}
    return {
        "PredictAnswer": obj(
            {
                "model": obj({"name": model, "version": {"type": ["integer", "null"]}}, ("name", "version")),
                "predictions": {"type": "array", "items": prediction},
                "timing_ms": {"type": "number"},
            },
            ("model", "predictions", "timing_ms"),
        ),
        "ModelList": obj(
            {
                "models": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "limits": obj(
                    {"max_upload_bytes": {"type": "integer"}, "max_images_per_request": {"type": "integer"}},
                    ("max_upload_bytes", "max_images_per_request"),
                ),
            },
            ("models", "limits"),
        ),
        "ModelStatus": obj(
            {"model_version_status": {"type": "array", "items": {"type": "object"}}}, ("model_version_status",)
        ),
        "ModelMetadata": obj(
            {
                "model_spec": obj({"name": model, "version": {"type": "integer"}}, ("name", "version")),
                "metadata": {"type": "object"},
            },
            ("model_spec", "metadata"),
        ),
        "Health": obj({"status": {"const": "ok"}}, ("status",)),
        "Readiness": obj({"ready": {"type": "boolean"}, "models": {"type": "object"}, "state": STRING}, ("ready",)),
        "Error": obj(
            {
                "error": obj(
                    {
                        "code": {"type": "string", "enum": request_error_codes()},
                        "message": STRING,
                        "request_id": STRING,
                    },
                    ("code", "message", "request_id"),
                )
            },
            ("error",),
        ),
        "ItemError": obj(
            {"code": {"type": "string", "enum": item_error_codes()}, "message": STRING}, ("code", "message")
        ),
        "V2Error": obj({"error": STRING}, ("error",)),
        "V2ServerMetadata": obj(
            {"name": STRING, "version": STRING, "extensions": {"type": "array", "items": STRING}},
            ("name", "version", "extensions"),
        ),
        "V2Live": obj({"live": {"type": "boolean"}}, ("live",)),
        "V2Ready": obj({"ready": {"type": "boolean"}}, ("ready",)),
        "V2ModelReady": obj({"name": model, "ready": {"type": "boolean"}}, ("name", "ready")),
        "V2ModelMetadata": obj(
            {
                "name": model,
                "versions": {"type": "array", "items": STRING},
                "platform": STRING,
                "inputs": {"type": "array", "items": tensor},
                "outputs": {"type": "array", "items": tensor},
            },
            ("name", "versions", "platform", "inputs", "outputs"),
        ),
        "V2InferResponse": obj(
            {
                "model_name": model,
                "model_version": STRING,
                "id": STRING,
                "outputs": {"type": "array", "items": tensor},
            },
            ("model_name", "model_version", "outputs"),
        ),
    }
