from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.errors import GatewayError, ImageDecodeFailed, InvalidRequest, PayloadTooLarge
from processing.sources import (
    MAX_JSON_DEPTH,
    DetectionParams,
    ImageSource,
    json_depth,
    parse_detection_params,
    parse_json_request,
    parse_top_k,
)


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_bare_list_of_urls_keeps_order() -> None:
    request = parse_json_request(body(["http://a/1.jpg", "http://a/2.jpg"]), max_items=8)
    assert [s.url for s in request.sources] == ["http://a/1.jpg", "http://a/2.jpg"]
    assert request.top_k is None


def test_object_form_with_url_b64_and_top_k() -> None:
    payload = base64.b64encode(b"\xff\xd8\xffabc").decode()
    request = parse_json_request(body({"instances": [{"url": "http://a/x"}, {"b64": payload}], "top_k": 3}), 8)
    assert request.sources[0] == ImageSource(name="http://a/x", url="http://a/x")
    assert request.sources[1].data == b"\xff\xd8\xffabc"
    assert request.sources[1].name == "instances[1]"
    assert request.top_k == 3


def test_bad_base64_is_an_item_error_not_a_request_error() -> None:
    request = parse_json_request(body({"instances": [{"b64": "!!!"}, "http://a/x"]}), 8)
    assert isinstance(request.sources[0].error, ImageDecodeFailed)
    assert request.sources[1].url == "http://a/x"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        body(42),
        body([]),
        body({"instances": "x"}),
        body({"instances": [1]}),
        body({"instances": [{"url": 1}]}),
        body({"instances": [{"url": "a", "b64": "b"}]}),
        body({"instances": ["a"], "extra": 1}),
        body({"instances": ["a"], "top_k": 0}),
        body({"instances": ["a"], "top_k": True}),
        body({"instances": ["a"], "top_k": 1001}),
        body({"instances": ["a"], "top_k": 2.5}),
        body({"instances": ["a"], "top_k": 1001.0}),
        b'{"instances": ["a"], "top_k": NaN}',
    ],
)
def test_malformed_bodies_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_json_request(raw, 8)


def test_too_many_images_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="at most 2"):
        parse_json_request(body(["a", "b", "c"]), max_items=2)


def test_an_integral_top_k_written_as_a_float_is_an_integer() -> None:
    """JSON Schema's ``integer`` (the OpenAPI document's type for top_k) includes 3.0; found by schemathesis."""
    request = parse_json_request(b'{"instances": ["a"], "top_k": 766.0}', 8)
    assert request.top_k == 766 and type(request.top_k) is int


def test_a_null_top_k_is_refused() -> None:
    """docs/errors.md: a top_k that is not an integer from 1 to 1000 is invalid; null is none. Found by schemathesis."""
    with pytest.raises(InvalidRequest, match="top_k"):
        parse_json_request(b'{"instances": ["a"], "top_k": null}', 8)


def test_a_null_encoding_is_refused() -> None:
    """An ``encoding`` is list or base64; null is neither (found by schemathesis' coverage phase)."""
    with pytest.raises(InvalidRequest, match="encoding"):
        parse_json_request(b'{"instances": ["a"], "encoding": null}', 8)


def test_top_k_from_a_query_string() -> None:
    assert parse_top_k("7") == 7
    assert parse_top_k(None) is None
    with pytest.raises(InvalidRequest):
        parse_top_k("seven")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_any_json_document_parses_or_fails_with_our_error(document: object) -> None:
    with contextlib.suppress(GatewayError):
        parse_json_request(json.dumps(document).encode(), 8)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_our_error(raw: bytes) -> None:
    with contextlib.suppress(GatewayError):
        parse_json_request(raw, 8)


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'[[1, "[[[{{"], {"a": [2]}]') == 3
    assert json_depth(b'"just a string"') == 0
    assert json_depth(b'["a \\" [ quoted bracket", []]') == 2


def test_json_deeper_than_the_bound_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidRequest, match="nested more than"):
        parse_json_request(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), 4)


@pytest.mark.parametrize("text", ["\u00b9", "\u2460", "\u0663", "\uff13", "1e2", "0x10", "+3", "10000", ""])
def test_top_k_text_must_be_ascii_digits_in_range(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_top_k(text)


def test_top_k_accepts_ascii_digits_and_integers() -> None:
    assert [parse_top_k(" 7 "), parse_top_k(1000), parse_top_k(None)] == [7, 1000, None]


def test_the_answers_vector_encoding_is_read_from_the_object_form() -> None:
    body = b'{"instances": ["http://example.com/a.jpg"], "encoding": "base64"}'
    assert parse_json_request(body, 8).encoding == "base64"
    assert parse_json_request(b'["http://example.com/a.jpg"]', 8).encoding is None
    with pytest.raises(InvalidRequest, match="'encoding' must be one of list, base64"):
        parse_json_request(b'{"instances": ["http://example.com/a.jpg"], "encoding": "hex"}', 8)


def test_a_detection_models_parameters_come_from_the_json_body() -> None:
    body = b'{"instances": ["http://a/b.jpg"], "score_threshold": 0.6, "max_detections": 3}'
    request = parse_json_request(body, 8)
    assert request.detection == DetectionParams(0.6, 3)
    assert request.detection.given() == {"score_threshold", "max_detections"}
    assert parse_json_request(b'{"instances": ["http://a/b.jpg"]}', 8).detection.given() == frozenset()


@pytest.mark.parametrize("text", ["0", "1", "0.5", "5e-1", " 0.25 ", "1.0"])
def test_a_score_threshold_in_text_is_a_json_number_from_0_to_1(text: str) -> None:
    assert parse_detection_params({"score_threshold": text}).score_threshold == float(text)


@pytest.mark.parametrize(
    "value", ["1.5", "-0.1", "nan", "inf", "1_0", "0x1", ".5", "", "\u0660.5", True, None, [0.5], 2]
)
def test_a_score_threshold_out_of_range_or_not_a_number_is_refused(value: object) -> None:
    document = {"instances": ["http://a/b.jpg"], "score_threshold": value}
    with pytest.raises(InvalidRequest, match="'score_threshold' must be a number from 0 to 1"):
        parse_json_request(json.dumps(document).encode(), 8)


@pytest.mark.parametrize("value", ["0", "1001", "2.5", 2.5, "x", True, None])
def test_max_detections_must_be_an_integer_from_1_to_1000(value: object) -> None:
    document = {"instances": ["http://a/b.jpg"], "max_detections": value}
    with pytest.raises(InvalidRequest, match="'max_detections' must be an integer from 1 to 1000"):
        parse_json_request(json.dumps(document).encode(), 8)


def test_the_bodys_detection_parameters_win_over_the_querys() -> None:
    body, query = DetectionParams(0.5, None), DetectionParams(0.9, 4)
    assert body.over(query) == DetectionParams(0.5, 4)
