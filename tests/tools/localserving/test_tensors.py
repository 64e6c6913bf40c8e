"""TensorProto <-> numpy conversion (pure: no server, no TensorFlow runtime)."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest

from app.backend.protos import tensor_pb2, types_pb2
from tools.localserving.errors import InvalidArgument
from tools.localserving.tensors import MAX_EXPANDED_ELEMENTS, fill_tensor_proto, to_array


def proto(dtype: int, shape: list[int], **fields: Any) -> Any:
    tensor = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    return tensor


def roundtrip(array: np.ndarray[Any, Any], typed_fields: bool) -> np.ndarray[Any, Any]:
    tensor = tensor_pb2.TensorProto()
    fill_tensor_proto(tensor, array, typed_fields)
    assert bool(tensor.tensor_content) == (not typed_fields and array.dtype != object and array.size > 0)
    return to_array(tensor, "t")


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(6, dtype=np.uint8).reshape(3, 2),
        np.array([[1, -2]], dtype=np.int64),
        np.array([True, False]),
        np.array([1.5, -2.25], dtype=np.float16),
        np.array([1.5, -2.25], dtype=ml_dtypes.bfloat16),
        np.array([1 + 2j], dtype=np.complex64),
        np.array([b"a", b"", b"\xff"], dtype=object),
        np.zeros((0, 3), dtype=np.float32),
        np.float32(7.0).reshape(()),
    ],
    ids=lambda a: f"{a.dtype}{list(a.shape)}",
)
@pytest.mark.parametrize("typed_fields", [False, True], ids=["tensor_content", "typed-fields"])
def test_answers_round_trip(array: np.ndarray[Any, Any], typed_fields: bool) -> None:
    back = roundtrip(array, typed_fields)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_answers_use_tensor_content_and_strings_use_string_val() -> None:
    numbers, strings = tensor_pb2.TensorProto(), tensor_pb2.TensorProto()
    fill_tensor_proto(numbers, np.ones((2, 2), np.float32))
    fill_tensor_proto(strings, np.array([b"x"], dtype=object))
    assert numbers.dtype == types_pb2.DT_FLOAT and len(numbers.tensor_content) == 16 and not numbers.float_val
    assert strings.dtype == types_pb2.DT_STRING and list(strings.string_val) == [b"x"]


def test_tensor_content_is_read_without_copying_per_element() -> None:
    data = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    tensor = proto(types_pb2.DT_FLOAT, [1, 224, 224, 3], tensor_content=data.tobytes())
    np.testing.assert_array_equal(to_array(tensor, "images"), data)


@pytest.mark.parametrize(
    ("dtype", "field", "values", "shape", "expected"),
    [
        (types_pb2.DT_FLOAT, "float_val", [2.5], [2, 2], [[2.5, 2.5], [2.5, 2.5]]),
        (types_pb2.DT_FLOAT, "float_val", [1, 2, 3], [5], [1, 2, 3, 3, 3]),
        (types_pb2.DT_FLOAT, "float_val", [1, 2, 3, 4], [2], [1, 2]),  # extra values are ignored, as in TF
        (types_pb2.DT_FLOAT, "float_val", [], [2], [0, 0]),
        (types_pb2.DT_DOUBLE, "double_val", [0.1], [1], [0.1]),
        (types_pb2.DT_INT32, "int_val", [7], [3], [7, 7, 7]),
        (types_pb2.DT_UINT8, "int_val", [255, 1], [2], [255, 1]),
        (types_pb2.DT_INT8, "int_val", [-3], [1], [-3]),
        (types_pb2.DT_INT64, "int64_val", [1 << 40], [1], [1 << 40]),
        (types_pb2.DT_BOOL, "bool_val", [True], [2], [True, True]),
        (types_pb2.DT_UINT32, "uint32_val", [4_000_000_000], [1], [4_000_000_000]),
        (types_pb2.DT_UINT64, "uint64_val", [1 << 63], [1], [1 << 63]),
        (types_pb2.DT_STRING, "string_val", [b"a", b"b"], [3], [b"a", b"b", b"b"]),
        (types_pb2.DT_STRING, "string_val", [], [2], [b"", b""]),
    ],
)
def test_typed_fields_follow_tensorflows_fill_rules(
    dtype: int, field: str, values: list[Any], shape: list[int], expected: list[Any]
) -> None:
    array = to_array(proto(dtype, shape, **{field: values}), "t")
    assert list(array.shape) == shape
    np.testing.assert_array_equal(array, np.asarray(expected, dtype=array.dtype).reshape(shape))


def test_half_val_holds_bit_patterns() -> None:
    halves = np.array([1.0, -0.5], dtype=np.float16)
    tensor = proto(types_pb2.DT_HALF, [2], half_val=halves.view(np.uint16).tolist())
    np.testing.assert_array_equal(to_array(tensor, "t"), halves)


def test_complex_values_come_in_pairs() -> None:
    tensor = proto(types_pb2.DT_COMPLEX64, [2], scomplex_val=[1, 2, 3, 4])
    np.testing.assert_array_equal(to_array(tensor, "t"), np.array([1 + 2j, 3 + 4j], np.complex64))
    with pytest.raises(InvalidArgument, match="pairs"):
        to_array(proto(types_pb2.DT_COMPLEX64, [1], scomplex_val=[1]), "t")


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (proto(types_pb2.DT_FLOAT, [2, 3], tensor_content=b"\0" * 20), "needs 24"),
        (proto(types_pb2.DT_FLOAT, [-1, 3], float_val=[1]), "negative"),
        (proto(types_pb2.DT_RESOURCE, [1]), "unsupported dtype DT_RESOURCE"),
        (proto(types_pb2.DT_INVALID, [1], float_val=[1]), "unsupported dtype"),
        (proto(types_pb2.DT_STRING, [1], tensor_content=b"abc"), "string_val"),
        (proto(types_pb2.DT_FLOAT, [MAX_EXPANDED_ELEMENTS + 1], float_val=[1]), "limit"),
        (proto(types_pb2.DT_FLOAT, [1 << 40, 1 << 40], tensor_content=b"\0" * 4), "needs"),
    ],
    ids=["short-content", "negative-dim", "resource", "invalid", "string-content", "huge-fill", "overflow"],
)
def test_malformed_tensors_are_invalid_arguments(tensor: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        to_array(tensor, "images")
    assert "images" in raised.value.message


def test_unknown_rank_is_invalid() -> None:
    tensor = proto(types_pb2.DT_FLOAT, [], float_val=[1])
    tensor.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidArgument, match="unknown rank"):
        to_array(tensor, "x")
