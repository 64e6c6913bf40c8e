"""Every bad request gets TF Serving's status code, and the server keeps answering afterwards."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from app.backend.protos import predict_pb2, tensor_pb2, types_pb2
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import Served
from tests.tools.localserving.rpc import predict_request, rpc_error, tensor_proto

X = np.ones((2, 3), dtype=np.float32)
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


def with_shape(shape: list[int], content: bytes = b"", dtype: int = types_pb2.DT_FLOAT, **values: Any) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_content=content, **values)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def unknown_rank() -> Any:
    proto = tensor_proto(X)
    proto.tensor_shape.unknown_rank = True
    return proto


BAD_REQUESTS: dict[str, tuple[Any, grpc.StatusCode]] = {
    "unknown-model": (predict_request("nope", {"x": X}), NOT_FOUND),
    "unknown-version": (predict_request("affine", {"x": X}, version=9), NOT_FOUND),
    "version-not-loaded": (predict_request("affine", {"x": X}, version=1), NOT_FOUND),
    # TF Serving answers INVALID_ARGUMENT for a label it does not know ("Unrecognized servable version label").
    "unknown-label": (predict_request("affine", {"x": X}, label="nope"), INVALID_ARGUMENT),
    "label-of-unloaded-version": (predict_request("affine", {"x": X}, label="retired"), NOT_FOUND),
    "unknown-signature": (predict_request("affine", {"x": X}, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION),
    "no-model-spec": (predict_pb2.PredictRequest(inputs={"x": tensor_proto(X)}), INVALID_ARGUMENT),
    "empty-model-name": (predict_request("", {"x": X}), INVALID_ARGUMENT),
    "wrong-input-name": (predict_request("affine", {"images": X}), INVALID_ARGUMENT),
    "extra-input": (predict_request("affine", {"x": X, "y": X}), INVALID_ARGUMENT),
    "missing-input": (predict_request("affine", {"a": X}, signature="pair"), INVALID_ARGUMENT),
    "no-inputs": (predict_request("affine", {}), INVALID_ARGUMENT),
    "wrong-dtype": (predict_request("affine", {"x": X.astype(np.int32)}), INVALID_ARGUMENT),
    "uint8-for-float": (predict_request("affine", {"x": X.astype(np.uint8)}), INVALID_ARGUMENT),
    "wrong-shape": (predict_request("affine", {"x": np.ones((2, 4), np.float32)}), INVALID_ARGUMENT),
    "wrong-rank": (predict_request("affine", {"x": np.ones((3,), np.float32)}), INVALID_ARGUMENT),
    "short-tensor-content": (predict_request("affine", {"x": with_shape([2, 3], b"\0" * 20)}), INVALID_ARGUMENT),
    "negative-dim": (predict_request("affine", {"x": with_shape([-1, 3], float_val=[1])}), INVALID_ARGUMENT),
    "unknown-rank": (predict_request("affine", {"x": unknown_rank()}), INVALID_ARGUMENT),
    "unsupported-dtype": (predict_request("affine", {"x": with_shape([1, 3], dtype=20)}), INVALID_ARGUMENT),
    "string-for-float": (
        predict_request("affine", {"x": with_shape([1, 3], dtype=types_pb2.DT_STRING, string_val=[b"a"])}),
        INVALID_ARGUMENT,
    ),
    "huge-broadcast": (
        predict_request("affine", {"x": with_shape([1 << 30, 3], float_val=[1])}),
        INVALID_ARGUMENT,
    ),
    "unknown-output-filter": (predict_request("affine", {"x": X}, output_filter=["nope"]), INVALID_ARGUMENT),
    "duplicate-output-filter": (predict_request("affine", {"x": X}, output_filter=["y", "y"]), INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_status_code_and_the_server_keeps_serving(served: Served, case: str) -> None:
    request, code = BAD_REQUESTS[case]

    error = rpc_error(lambda: served.client.predict(request))

    assert error.code() == code, error.details()
    assert error.details()
    y = served.client.outputs("affine", {"x": X})["y"]
    np.testing.assert_array_equal(y, affine(X, 3))


def test_garbage_bytes_instead_of_a_request_do_not_hurt_the_server(served: Served) -> None:
    raw = served.client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError):
        raw(b"\xff\xff\xff not a protobuf", timeout=10)
    np.testing.assert_array_equal(served.client.outputs("affine", {"x": X})["y"], affine(X, 3))
