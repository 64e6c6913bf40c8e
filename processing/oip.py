"""The Open Inference Protocol v2 (KServe v2, Triton's HTTP API) on the wire: an infer request in, its answer out.

The answer is a rendering of the pipeline's ``Prediction`` (``processing/prediction.py``): each output
tensor stacks every image's row, as its model's output kind gives it (``ItemAnswer.tensor_row``).

A model is presented with one ``BYTES`` input, ``image``, whose elements are encoded images (or URLs, or
base64 text, as the ``image_source`` parameter says), and its outputs: the model's own, and those its output kind
adds (a detection model's ``detections``). A detection model's request may carry ``score_threshold`` and
``max_detections`` in its ``parameters``. The binary tensor data
extension carries tensors after the JSON header (``Inference-Header-Content-Length``); a ``BYTES`` tensor is
each element's length as a little-endian uint32, then its bytes. The classification extension turns the
output into the top ``k`` classes as ``"<score>:<index>:<label>"`` strings, as Triton writes them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from processing.errors import InvalidRequest, PayloadTooLarge
from processing.kinds.base import ItemAnswer
from processing.prediction import Prediction
from processing.sniff import ImageBytes
from processing.sources import (
    MAX_TOP_K,
    NO_DETECTION_PARAMS,
    DetectionParams,
    ImageSource,
    decode_b64,
    json_integer,
    load_json,
    parse_detection_params,
)

INPUT_NAME = "image"
SOURCE_PARAMETER = "image_source"  # on the request or the input: "bytes" (the default), "url" or "b64"
SOURCES = ("bytes", "url", "b64")
MAX_HEADER_DEPTH = 8
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int | None = None  # the classification extension's k


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    sources: tuple[ImageSource, ...]
    outputs: tuple[RequestedOutput, ...]  # empty: every output, in binary when ``binary_output``
    binary_output: bool = False
    detection: DetectionParams = NO_DETECTION_PARAMS  # the request's parameters score_threshold, max_detections

    def class_count(self) -> int | None:
        """The most classes an output asks for (the classification extension), if any does."""
        return max((o.classification for o in self.outputs if o.classification), default=None)

    def wanted(self, outputs: Sequence[str], classifies: bool) -> list[str]:
        """The outputs to answer, of a model with ``outputs``; raises InvalidRequest for one it cannot answer."""
        unknown = [o.name for o in self.outputs if o.name not in outputs]
        if unknown:
            raise InvalidRequest(f"unknown output(s) {', '.join(unknown)}; the model has {', '.join(outputs)}")
        if not classifies and self.class_count():
            raise InvalidRequest("the classification extension needs a model that classifies")
        return [o.name for o in self.outputs] or list(outputs)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: Literal["FP32", "BYTES"]
    shape: tuple[int, ...]
    data: np.ndarray | list[str]  # FP32 values, or BYTES as text


def parse_infer_request(body: ImageBytes, header_length: str | None, max_items: int) -> InferRequest:
    """The request's images and wanted outputs; raises InvalidRequest or PayloadTooLarge."""
    header, binary = _split(body, header_length)
    document = _load_header(header)
    parameters = _mapping(document.get("parameters", {}), "parameters")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidRequest(f"'inputs' must hold exactly one tensor, named {INPUT_NAME!r}")
    sources = _parse_input(inputs[0], binary, parameters.get(SOURCE_PARAMETER), max_items)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest("'id' must be a string")
    outputs = document.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidRequest("'outputs' must be a list")
    wanted = tuple(_parse_output(item, i) for i, item in enumerate(outputs))
    if len({o.name for o in wanted}) != len(wanted):
        raise InvalidRequest("an output is asked for more than once")
    binary_output = parameters.get("binary_data_output") is True
    return InferRequest(request_id, sources, wanted, binary_output, parse_detection_params(parameters))


def _split(body: ImageBytes, header_length: str | None) -> tuple[ImageBytes, ImageBytes]:
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > len(body):
        raise InvalidRequest("Inference-Header-Content-Length must be a length within the body")
    return body[: int(text)], body[int(text) :]


def _load_header(header: ImageBytes) -> dict[str, Any]:
    document = load_json(header, MAX_HEADER_DEPTH, "the JSON header", "the inference request")
    return _mapping(document, "the inference request")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


def _parse_input(
    tensor: dict[str, Any], binary: ImageBytes, default_source: Any, max_items: int
) -> tuple[ImageSource, ...]:
    if tensor.get("name") != INPUT_NAME or tensor.get("datatype") != "BYTES":
        raise InvalidRequest(f"the input must be named {INPUT_NAME!r} with datatype BYTES")
    parameters = _mapping(tensor.get("parameters", {}), "the input's parameters")
    source = parameters.get(SOURCE_PARAMETER, default_source if default_source is not None else "bytes")
    if source not in SOURCES:
        raise InvalidRequest(f"{SOURCE_PARAMETER} must be one of {', '.join(SOURCES)}")
    elements = _elements(tensor, parameters, binary)
    count = _batch_size(tensor.get("shape"), len(elements))
    if count == 0:
        raise InvalidRequest("no images given: the input is empty")
    if count > max_items:
        raise PayloadTooLarge(f"{count} images given; at most {max_items} per request")
    return tuple(_source(element, source, i) for i, element in enumerate(elements))


def _elements(tensor: dict[str, Any], parameters: dict[str, Any], binary: ImageBytes) -> list[ImageBytes | str]:
    size = parameters.get("binary_data_size")
    if size is None:
        data = tensor.get("data")
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise InvalidRequest("the input's 'data' must be a flat list of strings (or binary_data_size must be set)")
        return list(data)
    if "data" in tensor:
        raise InvalidRequest("the input has both 'data' and binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size != len(binary):
        raise InvalidRequest("binary_data_size must be the length of the binary data after the JSON header")
    return decode_bytes_tensor(binary)


def decode_bytes_tensor(data: ImageBytes) -> list[ImageBytes | str]:
    """A BYTES tensor's elements from its binary form: each is a uint32 length (little-endian), then its bytes."""
    elements: list[ImageBytes | str] = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise InvalidRequest("the binary BYTES tensor ends inside an element's length")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise InvalidRequest("the binary BYTES tensor ends inside an element")
        elements.append(data[offset : offset + length])
        offset += length
    return elements


def encode_bytes_tensor(elements: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def _batch_size(shape: Any, elements: int) -> int:
    dims_ok = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    if not dims_ok or not 1 <= len(shape) <= 2 or (len(shape) == 2 and shape[1] != 1):
        raise InvalidRequest("the input's shape must be [N] or [N, 1]")
    if shape[0] != elements:
        raise InvalidRequest(f"the input's shape says {shape[0]} elements; it holds {elements}")
    return elements


def _source(element: ImageBytes | str, source: str, index: int) -> ImageSource:
    name = f"{INPUT_NAME}[{index}]"
    if source == "bytes":
        return ImageSource(
            name=name, data=element.encode("utf-8", "surrogatepass") if isinstance(element, str) else element
        )
    text = _text(element, index)
    if source == "url":
        return ImageSource(name=text, url=text)
    return decode_b64(text, name)


def _text(element: ImageBytes | str, index: int) -> str:
    if isinstance(element, str):
        return element
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{INPUT_NAME}[{index}] is not UTF-8 text") from exc


def _parse_output(item: Any, index: int) -> RequestedOutput:
    output = _mapping(item, f"outputs[{index}]")
    name = output.get("name")
    if not isinstance(name, str):
        raise InvalidRequest(f"outputs[{index}] has no name")
    parameters = _mapping(output.get("parameters", {}), f"outputs[{index}].parameters")
    value = parameters.get("classification")
    k = json_integer(value)
    if value is not None and (k is None or not 1 <= k <= MAX_TOP_K):
        raise InvalidRequest(f"outputs[{index}]: classification must be an integer from 1 to {MAX_TOP_K}")
    return RequestedOutput(name, parameters.get("binary_data") is True, k)


def failed_items(prediction: Prediction) -> str | None:
    """What went wrong with the failed images of a prediction, naming each; None when all succeeded."""
    failed = [
        f"{INPUT_NAME}[{i}] ({source}): {error.code}: {error.message}" for i, source, error in prediction.failures()
    ]
    return "; ".join(failed) if failed else None


def output_tensor(name: str, answers: Sequence[ItemAnswer], class_count: int | None = None) -> OutputTensor:
    """One output over every image: FP32 [N, ...] rows, or with a class count BYTES [N, k] class strings."""
    rows = [answer.tensor_row(name, class_count) for answer in answers]
    numbers = [row for row in rows if isinstance(row, np.ndarray)]
    if len(numbers) == len(rows):
        values = np.stack(numbers).astype(np.float32)
        return OutputTensor(name, "FP32", values.shape, values)
    texts = [row for row in rows if isinstance(row, list)]
    width = min(len(row) for row in texts)
    return OutputTensor(name, "BYTES", (len(texts), width), [value for row in texts for value in row[:width]])


def infer_response(prediction: Prediction, request: InferRequest, wanted: Sequence[str]) -> tuple[bytes, int | None]:
    """The infer's answer: the ``wanted`` outputs, in binary where asked, and the JSON header's length if so.

    A v2 output has a row per image and no place for a failed one: a failed image fails the infer
    (InvalidRequest, naming each failed image).
    """
    failures = failed_items(prediction)
    if failures is not None:
        raise InvalidRequest(f"the inference failed for {failures}")
    asked = {o.name: o for o in request.outputs}
    answers = prediction.answers()
    tensors = [output_tensor(n, answers, asked[n].classification if n in asked else None) for n in wanted]
    binary = [asked[n].binary if n in asked else request.binary_output for n in wanted]
    document: dict[str, Any] = {"model_name": prediction.model, "model_version": str(prediction.version)}
    if request.id is not None:
        document["id"] = request.id
    return encode_infer_response(document, tensors, binary)


def encode_infer_response(
    document: dict[str, Any], tensors: Sequence[OutputTensor], binary: Sequence[bool]
) -> tuple[bytes, int | None]:
    """The response body and, when a tensor travels in binary, the JSON header's length."""
    outputs: list[dict[str, Any]] = []
    tail: list[bytes] = []
    for tensor, as_binary in zip(tensors, binary, strict=True):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if as_binary:
            raw = _binary(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = tensor.data.reshape(-1).tolist() if isinstance(tensor.data, np.ndarray) else tensor.data
        outputs.append(entry)
    header = json.dumps({**document, "outputs": outputs}, separators=(",", ":"), allow_nan=False).encode()
    return header + b"".join(tail), len(header) if tail else None


def _binary(tensor: OutputTensor) -> bytes:
    if isinstance(tensor.data, np.ndarray):
        return tensor.data.astype("<f4").tobytes()
    return encode_bytes_tensor([value.encode("utf-8") for value in tensor.data])
