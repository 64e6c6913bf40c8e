"""Parsing a predict request's JSON body into the list of image sources it names.

Accepted forms:
- a bare JSON list of image URLs: ``["http://host/a.jpg", "http://host/b.jpg"]``;
- an object: ``{"instances": [{"url": "..."}, {"b64": "..."}, "http://..."], "top_k": 3, "encoding": "base64"}``
  (``b64`` as in TF Serving's REST convention; ``encoding``: how the answer writes vectors, ``VectorEncoding``);
  a detection model's request may set ``score_threshold`` and ``max_detections`` too (``DetectionParams``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from processing.errors import ImageDecodeFailed, InvalidRequest, PayloadTooLarge
from processing.sniff import ImageBytes

MAX_TOP_K = 1000
# How an answer writes a vector of numbers (an embedding): a JSON list, or base64 of little-endian float32.
VectorEncoding = Literal["list", "base64"]
VECTOR_ENCODINGS: tuple[VectorEncoding, ...] = ("list", "base64")
MAX_JSON_DEPTH = 32  # our forms need 3 levels; far below where a parser could run out of stack
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True)
class ImageSource:
    """One input image: a URL to download, or bytes that came with the request.

    ``name`` is what the response echoes as the item's ``source``. ``error`` is set
    when the item is already known to be bad (it is reported in the item's place).
    """

    name: str
    url: str | None = None
    data: ImageBytes | None = None
    error: ImageDecodeFailed | None = None


@dataclass(frozen=True)
class DetectionParams:
    """A detection model's settings the request overrides for itself (None: the model's configured value)."""

    score_threshold: float | None = None  # boxes scoring at or below it are dropped
    max_detections: int | None = None  # boxes per image, best first

    def given(self) -> frozenset[str]:
        """The names of the parameters the request set."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def over(self, fallback: DetectionParams) -> DetectionParams:
        """These values, each unset one taken from ``fallback`` (the body's over the query's)."""
        threshold = self.score_threshold if self.score_threshold is not None else fallback.score_threshold
        cap = self.max_detections if self.max_detections is not None else fallback.max_detections
        return DetectionParams(threshold, cap)


NO_DETECTION_PARAMS = DetectionParams()
DETECTION_FIELDS = frozenset(f.name for f in fields(DetectionParams))


@dataclass(frozen=True)
class PredictRequest:
    sources: tuple[ImageSource, ...]
    top_k: int | None = None
    encoding: VectorEncoding | None = None
    detection: DetectionParams = NO_DETECTION_PARAMS


def parse_json_request(body: ImageBytes, max_items: int) -> PredictRequest:
    """Parse a JSON predict body; raises InvalidRequest or PayloadTooLarge."""
    document = load_json(body, MAX_JSON_DEPTH, "the JSON body", "body")
    if isinstance(document, list):
        return PredictRequest(_parse_instances(document, max_items))
    if isinstance(document, dict):
        return _parse_object(document, max_items)
    raise InvalidRequest("body must be a JSON list of image URLs or an object with 'instances'")


def _parse_object(document: dict[str, Any], max_items: int) -> PredictRequest:
    unknown = sorted(set(document) - {"instances", "top_k", "encoding"} - DETECTION_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    instances = document.get("instances")
    if not isinstance(instances, list):
        raise InvalidRequest("'instances' must be a list")
    # null is no value of either; only an absent field is absent
    if "top_k" in document and document["top_k"] is None:
        raise InvalidRequest(f"'top_k' must be an integer from 1 to {MAX_TOP_K}")
    if "encoding" in document and document["encoding"] is None:
        parse_encoding("null")  # refused, with the message that names the values
    for name in DETECTION_FIELDS & {key for key, value in document.items() if value is None}:
        parse_detection_params({name: "null"})  # refused, with the message that names the range
    sources = _parse_instances(instances, max_items)
    top_k, encoding = parse_top_k(document.get("top_k")), parse_encoding(document.get("encoding"))
    return PredictRequest(sources, top_k, encoding, parse_detection_params(document))


def load_json(data: ImageBytes, max_depth: int, nested_what: str, invalid_what: str) -> Any:
    """``data`` parsed, after its nesting is bounded; InvalidRequest naming what is wrong with it otherwise."""
    if data.count(b"[") + data.count(b"{") > max_depth and json_depth(data) > max_depth:  # counts: C, no copy
        raise InvalidRequest(f"{nested_what} is nested more than {max_depth} levels deep")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"{invalid_what} is not valid JSON: {exc}") from exc


def json_depth(body: ImageBytes) -> int:
    """How deeply arrays and objects nest in ``body``, counted without parsing it (brackets in strings skipped)."""
    brackets = _JSON_STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = np.frombuffer(brackets, dtype=np.uint8)
    return int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max())


def parse_top_k(value: Any) -> int | None:
    """``top_k`` from JSON or a query argument: an integer from 1 to 1000 (ASCII digits in text), or absent."""
    return _count("top_k", value)


def _count(name: str, value: Any) -> int | None:
    """Parameter ``name``, a count from JSON, a form field or a query argument: an integer from 1 to 1000 (ASCII
    digits in text), or absent."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_TOP_K)) else None
    count = json_integer(value)
    if count is None or not 1 <= count <= MAX_TOP_K:
        raise InvalidRequest(f"'{name}' must be an integer from 1 to {MAX_TOP_K}")
    return count


def parse_detection_params(values: Mapping[str, Any]) -> DetectionParams:
    """``score_threshold`` and ``max_detections`` from JSON, form fields or query arguments (text), where given."""
    return DetectionParams(
        _score_threshold(values.get("score_threshold")), _count("max_detections", values.get("max_detections"))
    )


def _score_threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _decimal(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRequest("'score_threshold' must be a number from 0 to 1")
    return float(value)


def _decimal(text: str) -> float | None:
    """``text`` as a number if it is one in JSON's grammar (``0.5``, ``5e-1``; no ``inf``, ``nan`` or ``1_0``)."""
    text = text.strip()
    return float(text) if len(text) <= 32 and _JSON_NUMBER.fullmatch(text) else None


def parse_encoding(value: Any) -> VectorEncoding | None:
    """``encoding`` from JSON, a form field or a query argument: ``list`` or ``base64``, or absent."""
    if value is None:
        return None
    for encoding in VECTOR_ENCODINGS:
        if value == encoding:
            return encoding
    raise InvalidRequest(f"'encoding' must be one of {', '.join(VECTOR_ENCODINGS)}")


def json_integer(value: Any) -> int | None:
    """``value`` as an integer if JSON says it is one: ``3`` or ``3.0`` (JSON Schema's integer), not ``true``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_instances(instances: list[Any], max_items: int) -> tuple[ImageSource, ...]:
    if not instances:
        raise InvalidRequest("no images given: the list of instances is empty")
    if len(instances) > max_items:
        raise PayloadTooLarge(f"{len(instances)} images given; at most {max_items} per request")
    return tuple(_parse_instance(item, index) for index, item in enumerate(instances))


def _parse_instance(item: Any, index: int) -> ImageSource:
    if isinstance(item, str):
        return ImageSource(name=item, url=item)
    if not isinstance(item, dict) or len(item) != 1:
        raise InvalidRequest(f"instances[{index}] must be a URL string, {{'url': ...}} or {{'b64': ...}}")
    ((key, value),) = item.items()
    if key not in ("url", "b64") or not isinstance(value, str):
        raise InvalidRequest(f"instances[{index}] must be a URL string, {{'url': ...}} or {{'b64': ...}}")
    if key == "url":
        return ImageSource(name=value, url=value)
    return decode_b64(value, f"instances[{index}]")


def decode_b64(value: str, name: str) -> ImageSource:
    """The image in base64 ``value``, or an item that fails with image_decode_failed when it is not base64."""
    try:
        return ImageSource(name=name, data=base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return ImageSource(name=name, error=ImageDecodeFailed("'b64' is not valid base64"))
