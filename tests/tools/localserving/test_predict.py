"""Predict, GetModelMetadata and GetModelStatus over real gRPC against real SavedModels."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
import numpy as np
import pytest

from app.backend.protos import get_model_metadata_pb2, tensor_pb2, types_pb2
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import Served
from tests.tools.localserving.rpc import AVAILABLE, predict_request, rpc_error, to_numpy

X = np.array([[0.5, -1.0, 2.0], [3.0, 4.0, -5.5]], dtype=np.float32)


def typed_tensor(dtype: int, shape: list[int], **values: Any) -> Any:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def test_predict_answers_every_output_with_tensor_content_and_the_version_that_answered(served: Served) -> None:
    response = served.client.predict(predict_request("affine", {"x": X}))

    assert response.model_spec.name == "affine"
    assert response.model_spec.version.value == 3  # latest of the two served (2, 3)
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"y", "total"}
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT and y.tensor_content and not y.float_val
    np.testing.assert_array_equal(to_numpy(y), affine(X, 3))
    np.testing.assert_array_equal(to_numpy(response.outputs["total"]), affine(X, 3).sum(axis=1))


def test_output_filter_answers_only_the_named_outputs(served: Served) -> None:
    response = served.client.predict(predict_request("affine", {"x": X}, output_filter=["total"]))
    assert list(response.outputs) == ["total"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"float_val": [1.5]}, np.full((2, 3), 1.5)),  # one value broadcasts, as TF does
        ({"float_val": [1, 2, 3, 4, 5, 6]}, np.arange(1, 7).reshape(2, 3)),
        ({"float_val": [1, 2]}, [[1, 2, 2], [2, 2, 2]]),  # fewer values: padded with the last
        ({}, np.zeros((2, 3))),  # no values: zeros
    ],
    ids=["scalar-broadcast", "full", "padded", "empty"],
)
def test_typed_float_val_follows_tensorflows_rules(served: Served, values: dict[str, Any], expected: Any) -> None:
    x = typed_tensor(types_pb2.DT_FLOAT, [2, 3], **values)
    y = served.client.outputs("affine", {"x": x}, output_filter=["y"])["y"]
    np.testing.assert_array_equal(y, affine(np.asarray(expected, dtype=np.float32), 3))


def test_int_val_and_string_val_inputs(served: Served) -> None:
    ints = typed_tensor(types_pb2.DT_INT32, [1, 3], int_val=[1, 2, 3])
    y = served.client.outputs("affine", {"x": ints}, signature="serving_int")["y"]
    np.testing.assert_array_equal(y, [[5, 7, 9]])

    strings = typed_tensor(types_pb2.DT_STRING, [3], string_val=[b"", b"abc", "né".encode()])
    length = served.client.outputs("affine", {"s": strings}, signature="lengths")["length"]
    assert length.dtype == np.int32
    np.testing.assert_array_equal(length, [0, 3, 3])


def test_an_empty_batch_gets_empty_outputs(served: Served) -> None:
    y = served.client.outputs("affine", {"x": np.zeros((0, 3), np.float32)})["y"]
    assert y.shape == (0, 3)


@pytest.mark.parametrize(
    ("spec", "version"),
    [({"version": 2}, 2), ({"label": "stable"}, 2), ({"label": "canary"}, 3), ({}, 3)],
    ids=["version", "label-stable", "label-canary", "latest"],
)
def test_model_spec_picks_the_version(served: Served, spec: dict[str, Any], version: int) -> None:
    response = served.client.predict(predict_request("affine", {"x": X}, **spec))
    assert response.model_spec.version.value == version
    np.testing.assert_array_equal(to_numpy(response.outputs["y"]), affine(X, version))


@pytest.mark.parametrize(
    ("model", "versions"),
    [("affine", [3, 2]), ("affine_all", [3, 2, 1]), ("affine_specific", [3, 1])],
    ids=["latest-2", "all", "specific-1-3"],
)
def test_version_policy_decides_what_is_loaded(served: Served, model: str, versions: list[int]) -> None:
    status = served.client.status(model)
    assert list(status) == versions  # newest first, as TF Serving lists them
    for entry in status.values():
        assert entry.state == AVAILABLE
        assert entry.status.error_code == grpc.StatusCode.OK.value[0] and entry.status.error_message == ""
    for version in (1, 2, 3):
        request = predict_request(model, {"x": X}, version=version)
        if version in versions:
            assert served.client.predict(request).model_spec.version.value == version
        else:
            assert rpc_error(partial(served.client.predict, request)).code() == grpc.StatusCode.NOT_FOUND


def test_status_of_one_version_and_of_unknown_ones(served: Served) -> None:
    assert list(served.client.status("affine", version=2)) == [2]
    missing_version = rpc_error(lambda: served.client.status("affine", version=7))
    assert missing_version.code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: served.client.status("nope")).code() == grpc.StatusCode.NOT_FOUND


def test_metadata_carries_the_packed_signature_def_map(served: Served) -> None:
    response = served.client.metadata("affine", version=2)

    assert response.model_spec.name == "affine" and response.model_spec.version.value == 2
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    assert {"serving_default", "serving_int", "pair", "lengths"} <= set(signatures.signature_def)
    default = signatures.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    x = default.inputs["x"]
    assert x.dtype == types_pb2.DT_FLOAT
    assert [dim.size for dim in x.tensor_shape.dim] == [-1, 3]
    assert set(default.outputs) == {"y", "total"}


@pytest.mark.parametrize(
    ("fields", "code"),
    [([], grpc.StatusCode.INVALID_ARGUMENT), (["signature_def", "other"], grpc.StatusCode.INVALID_ARGUMENT)],
    ids=["no-field", "unsupported-field"],
)
def test_metadata_rejects_bad_fields(served: Served, fields: list[str], code: grpc.StatusCode) -> None:
    assert rpc_error(lambda: served.client.metadata("affine", fields=fields)).code() == code


def test_metadata_of_unknown_model_is_not_found(served: Served) -> None:
    assert rpc_error(lambda: served.client.metadata("nope")).code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_requests_each_get_their_own_answer(served: Served) -> None:
    inputs = [np.full((1 + n % 3, 3), n, dtype=np.float32) for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: served.client.outputs("affine", {"x": x})["y"], inputs))
    for x, y in zip(inputs, answers, strict=True):
        np.testing.assert_array_equal(y, affine(x, 3))
