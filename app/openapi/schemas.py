"""The OpenAPI document's schemas: request forms, answers and error bodies, with the codes of docs/errors.md."""

from __future__ import annotations

from typing import Any

from processing.oip import INPUT_NAME, SOURCE_PARAMETER, SOURCES
from processing.sources import MAX_TOP_K

# The codes of docs/errors.md, in its two tables (tests/app/test_openapi.py holds them to it).
REQUEST_ERROR_CODES = (
    "invalid_request",
    "payload_too_large",
    "unsupported_media_type",
    "model_not_found",
    "bad_request",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "overloaded",
    "backend_unavailable",
    "backend_timeout",
    "backend_error",
    "internal_error",
)
ITEM_ERROR_CODES = (
    "url_invalid",
    "source_forbidden",
    "redirect_forbidden",
    "too_many_redirects",
    "source_unreachable",
    "source_http_error",
    "source_timeout",
    "source_too_large",
    "content_type_forbidden",
    "image_too_large",
    "image_decode_failed",
    "model_output_invalid",
    "internal_error",
)

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, required: tuple[str, ...] = (), closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


TOP_K: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K}
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
            {"instances": {"type": "array", "items": instance, "minItems": 1, "maxItems": max_images}, "top_k": TOP_K},
            ("instances",),
        ),
        "PredictJson": {"oneOf": [ref("UrlList"), ref("Instances")]},
        "PredictMultipart": {
            **obj({"image": files, "data": files, "top_k": TOP_K}, closed=False),
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
            "parameters": obj({SOURCE_PARAMETER: source, "binary_data_output": {"type": "boolean"}}, closed=False),
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": output},
        },
        ("inputs",),
        closed=False,
    )


def answer_schemas(models: list[str]) -> dict[str, Schema]:
    """What the tier answers."""
    model = {"type": "string", "enum": models}
    item_error = obj(
        {"code": {"type": "string", "enum": list(ITEM_ERROR_CODES)}, "message": STRING}, ("code", "message")
    )
    score = obj(
        {"class_id": {"type": "integer"}, "label": STRING, "score": {"type": "number"}}, ("class_id", "label", "score")
    )
    prediction = {
        "oneOf": [
            obj({"source": STRING, "classes": {"type": "array", "items": score}}, ("source", "classes")),
            obj({"source": STRING, "outputs": {"type": "object"}}, ("source", "outputs")),
            obj({"source": STRING, "error": item_error}, ("source", "error")),
        ]
    }
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
                        "code": {"type": "string", "enum": list(REQUEST_ERROR_CODES)},
                        "message": STRING,
                        "request_id": STRING,
                    },
                    ("code", "message", "request_id"),
                )
            },
            ("error",),
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
