"""numpy <-> TensorProto, and the hand-written Predict request encoding against protobuf's own."""

from __future__ import annotations

import numpy as np
import pytest

from app.backend.protos import predict_pb2, types_pb2
from app.backend.tensors import UnsupportedTensor, encode_predict_request, from_tensor_proto, predict_request_parts

# Written out here rather than taken from the module under test, so the reference is independent.
TENSOR_TYPES = {
    "float16": types_pb2.DT_HALF,
    "float32": types_pb2.DT_FLOAT,
    "float64": types_pb2.DT_DOUBLE,
    "int32": types_pb2.DT_INT32,
    "int64": types_pb2.DT_INT64,
    "uint8": types_pb2.DT_UINT8,
    "uint16": types_pb2.DT_UINT16,
    "bool": types_pb2.DT_BOOL,
}


def head() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=["logits", "probabilities"])
    request.model_spec.name = "mobilenet_v2"
    request.model_spec.signature_name = "serving_uint8"
    request.model_spec.version.value = 7
    return request


def through_protobuf(inputs: dict[str, np.ndarray]) -> predict_pb2.PredictRequest:
    request = head()
    for name, array in inputs.items():
        tensor = request.inputs[name]
        tensor.dtype = TENSOR_TYPES[array.dtype.name]
        tensor.tensor_shape.SetInParent()  # present even for a scalar, as TensorFlow writes it
        for size in array.shape:
            tensor.tensor_shape.dim.add().size = size
        tensor.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return request


RNG = np.random.default_rng(7)

CASES = {
    "uint8 batch": {"images": RNG.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)},
    "float32 batch": {"images": RNG.standard_normal((2, 8, 8, 3)).astype(np.float32)},
    "two inputs": {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.array([True, False])},
    "float16": {"x": np.linspace(-1, 1, 10, dtype=np.float16)},
    "scalar": {"x": np.array(3.5, dtype=np.float64)},
    "empty": {"x": np.zeros((0, 3), dtype=np.float32)},
    "non-contiguous": {"x": np.arange(48, dtype=np.int32).reshape(4, 12)[:, ::3]},
    "big-endian": {"x": np.arange(5, dtype=">f4")},
    "unicode name": {"bild_ü": np.ones((1, 2), dtype=np.uint16)},
    "long (multi-byte lengths)": {"x": np.ones((300,), dtype=np.uint8)},
}


@pytest.mark.parametrize("inputs", CASES.values(), ids=CASES.keys())
def test_the_encoded_request_is_the_message_protobuf_would_build(inputs: dict[str, np.ndarray]) -> None:
    encoded = encode_predict_request(head(), inputs)
    parsed = predict_pb2.PredictRequest.FromString(encoded)
    assert parsed == through_protobuf(inputs)
    for name, array in inputs.items():
        decoded = from_tensor_proto(parsed.inputs[name])
        assert decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


def test_a_dtype_without_a_tensor_type_is_refused() -> None:
    with pytest.raises(UnsupportedTensor):
        encode_predict_request(head(), {"x": np.array(["a"], dtype=object)})  # text: a string tensor holds bytes
    with pytest.raises(UnsupportedTensor):
        encode_predict_request(head(), {"x": np.array([1 + 2j], dtype=np.complex64)})


def strings(*values: bytes) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def test_bytes_are_a_string_tensor_as_protobuf_would_build_it() -> None:
    """Encoded images and their orientations: a DT_STRING input (string_val) beside an int32 one."""
    images = strings(b"\xff\xd8\xff" + bytes(range(256)) * 600, b"", b"\x89PNG")  # one longer than 2**14 bytes
    orientation = np.array([6, 1, 1], dtype=np.int32)
    parsed = predict_pb2.PredictRequest.FromString(
        encode_predict_request(head(), {"images": images, "orientation": orientation})
    )
    expected = through_protobuf({"orientation": orientation})
    tensor = expected.inputs["images"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add().size = 3
    tensor.string_val.extend(images.tolist())
    assert parsed == expected


def test_a_contiguous_batch_goes_into_the_request_as_a_view_of_its_own_buffer() -> None:
    batch = np.random.default_rng(3).random((4, 8, 8, 3), dtype=np.float32)
    parts = predict_request_parts(head(), {"images": batch})
    views = [part for part in parts if isinstance(part, memoryview)]
    assert len(views) == 1 and views[0].nbytes == batch.nbytes
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.uint8), batch)
    assert b"".join(parts) == encode_predict_request(head(), {"images": batch})
    parsed = predict_pb2.PredictRequest.FromString(b"".join(parts))
    np.testing.assert_array_equal(from_tensor_proto(parsed.inputs["images"]), batch)
