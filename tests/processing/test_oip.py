"""The Open Inference Protocol's wire format: pure parsing and encoding."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from processing.errors import InvalidRequest, PayloadTooLarge
from processing.kinds.classification import Classes, ScoredClass
from processing.oip import (
    decode_bytes_tensor,
    encode_bytes_tensor,
    encode_infer_response,
    output_tensor,
    parse_infer_request,
)


def request(**fields: Any) -> dict[str, Any]:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}
    return {"inputs": [{**tensor, **fields.pop("tensor", {})}], **fields}


def test_binary_bytes_tensors_round_trip() -> None:
    elements: list[bytes | str] = [b"", b"\x00\xff", b"jpeg" * 100]
    assert decode_bytes_tensor(encode_bytes_tensor([b"", b"\x00\xff", b"jpeg" * 100])) == elements


def test_the_binary_extension_splits_header_and_tensors() -> None:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [2, 1], "parameters": {"binary_data_size": 13}}
    header = json.dumps({"inputs": [tensor]})
    body = header.encode() + encode_bytes_tensor([b"abc", b"\xff\xd8"])
    parsed = parse_infer_request(body, str(len(header)), 8)
    assert [s.data for s in parsed.sources] == [b"abc", b"\xff\xd8"]
    assert [s.name for s in parsed.sources] == ["image[0]", "image[1]"]


@pytest.mark.parametrize(
    ("body", "length"),
    [
        (b"{", None),
        (b"[]", None),
        (json.dumps(request(tensor={"name": "x"})).encode(), None),
        (json.dumps(request(tensor={"shape": [2]})).encode(), None),
        (json.dumps(request(tensor={"shape": [1, 2]})).encode(), None),
        (json.dumps(request(tensor={"parameters": {"image_source": "ftp"}})).encode(), None),
        (json.dumps(request(outputs=[{"name": "a", "parameters": {"classification": 0}}])).encode(), None),
        (json.dumps(request(outputs=[{"name": "a"}, {"name": "a"}])).encode(), None),
        (json.dumps(request()).encode(), "999"),
        (json.dumps(request()).encode() + b"\x05\x00\x00\x00ab", "-1"),
    ],
)
def test_malformed_requests_are_invalid(body: bytes, length: str | None) -> None:
    with pytest.raises(InvalidRequest):
        parse_infer_request(body, length, 8)


def test_a_truncated_binary_element_is_invalid() -> None:
    with pytest.raises(InvalidRequest, match="ends inside"):
        decode_bytes_tensor(b"\x05\x00\x00\x00ab")


def test_too_many_images_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_infer_request(json.dumps(request(tensor={"shape": [3], "data": ["a", "b", "c"]})).encode(), None, 2)


def test_sources_as_urls_and_base64() -> None:
    urls = parse_infer_request(json.dumps(request(parameters={"image_source": "url"})).encode(), None, 8)
    assert urls.sources[0].url == "x"
    b64 = parse_infer_request(
        json.dumps(request(tensor={"data": ["aGk="], "parameters": {"image_source": "b64"}})).encode(), None, 8
    )
    assert b64.sources[0].data == b"hi"


def test_classification_strings_and_scores_as_triton_writes_them() -> None:
    classes = (ScoredClass(2, "c", 0.75), ScoredClass(0, "a", 0.25), ScoredClass(1, "b", 0.0))
    answers = [Classes(classes, np.array([0.25, 0.0, 0.75]))]
    assert output_tensor("out", answers, 1).data == ["0.750000:2:c"]
    scores = output_tensor("out", answers)
    assert scores.shape == (1, 3) and isinstance(scores.data, np.ndarray) and list(scores.data[0]) == [0.25, 0.0, 0.75]


def test_binary_outputs_follow_the_json_header() -> None:
    tensor = output_tensor("out", [Classes((ScoredClass(1, "b", 1.0),), np.array([0.0, 1.0]))], 1)
    body, length = encode_infer_response({"model_name": "m"}, [tensor], [True])
    assert length is not None
    header = json.loads(body[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(body) - length
    assert decode_bytes_tensor(body[length:]) == [b"1.000000:1:b"]
