"""numpy arrays to and from TensorProto, through ``tensor_content`` bytes.

No ``tf.make_tensor_proto``/``tf.make_ndarray`` on the request path: they need the
TensorFlow runtime and copy element by element.

``encode_predict_request`` writes a whole PredictRequest as bytes with each input's
pixels copied once, straight from the numpy array (an object array of bytes, such as
encoded images, as a ``DT_STRING`` tensor's ``string_val``): going through the protobuf message
copies them three times (``tobytes``, into the message, out of it when serialised) and
costs about 1.4 ms of event-loop time for a 4 x 224 x 224 x 3 uint8 batch, against
0.05 ms this way (``bench/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from app.backend.protos import predict_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

_DTYPES: dict[int, np.dtype[np.generic]] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
}
_ENUMS = {dtype: enum for enum, dtype in _DTYPES.items()}

# Which repeated field holds the values of each dtype when tensor_content is empty.
_VAL_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}


class UnsupportedTensor(ValueError):
    """A tensor whose dtype or encoding we do not handle."""


def dtype_name(enum: int) -> str:
    """``DT_FLOAT`` -> ``float32``, ``DT_STRING`` -> ``string``; unknown enums by their proto name."""
    if enum == types_pb2.DT_STRING:
        return "string"
    dtype = _DTYPES.get(enum)
    return dtype.name if dtype is not None else types_pb2.DataType.Name(enum)


def _enum_of(dtype: np.dtype[np.generic]) -> int | None:
    """The TensorProto type of ``dtype`` in either byte order (the bytes are written little-endian)."""
    return _ENUMS.get(dtype.newbyteorder("="))


def _describe(proto: tensor_pb2.TensorProto, array: np.ndarray) -> np.ndarray:
    """Set ``proto``'s dtype and shape from ``array``; returns the array as the little-endian values to store."""
    enum = _enum_of(array.dtype)
    if enum is None:
        raise UnsupportedTensor(f"no TensorProto dtype for {array.dtype}")
    proto.dtype = enum
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def encode_predict_request(head: predict_pb2.PredictRequest, inputs: Mapping[str, np.ndarray]) -> bytes:
    """``head`` (model spec, output filter; no inputs) with ``inputs`` added, serialised.

    Parses to the same message as setting ``head.inputs`` through protobuf would give:
    protobuf fields may come in any order, and a map is a repeated (key, value) entry.
    The join is the one copy of the pixels: gRPC takes the request as one ``bytes``.
    """
    return b"".join(predict_request_parts(head, inputs))


def predict_request_parts(
    head: predict_pb2.PredictRequest, inputs: Mapping[str, np.ndarray]
) -> list[bytes | memoryview]:
    """``encode_predict_request``'s pieces, in order: a contiguous array's values are a view of its own buffer."""
    parts: list[bytes | memoryview] = [head.SerializeToString()]
    for name, array in inputs.items():
        value = _strings_value(array) if array.dtype == object else _numbers_value(array)
        value_size = sum(len(part) for part in value)
        key = name.encode()
        entry_head = _tag(1) + _varint(len(key)) + key + _tag(2) + _varint(value_size)
        entry_size = len(entry_head) + value_size
        parts += [_tag(_INPUTS_FIELD) + _varint(entry_size) + entry_head, *value]
    return parts


def _numbers_value(array: np.ndarray) -> list[bytes | memoryview]:
    """A TensorProto of numbers, in pieces: its dtype and shape, then ``tensor_content``, the array's own bytes."""
    meta = tensor_pb2.TensorProto()
    content = np.ascontiguousarray(_describe(meta, array)).reshape(-1).view(np.uint8)
    return [meta.SerializeToString() + _tag(_CONTENT_FIELD) + _varint(content.nbytes), content.data]


def _strings_value(array: np.ndarray) -> list[bytes | memoryview]:
    """A ``DT_STRING`` TensorProto of an object array of bytes, in pieces: each element's ``string_val``."""
    meta = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    meta.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    parts: list[bytes | memoryview] = [meta.SerializeToString()]
    for element in array.reshape(-1).tolist():
        if not isinstance(element, bytes):
            raise UnsupportedTensor(f"a string tensor holds bytes, not {type(element).__name__}")
        parts += [_tag(_STRING_FIELD) + _varint(len(element)), element]
    return parts


_CONTENT_FIELD = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name["tensor_content"].number
_STRING_FIELD = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name["string_val"].number
_INPUTS_FIELD = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number


def _tag(field: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(field << 3 | 2)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The array a TensorProto holds, from ``tensor_content`` or the typed ``*_val`` field."""
    dtype = _DTYPES.get(proto.dtype)
    if dtype is None:
        raise UnsupportedTensor(f"unsupported tensor dtype {dtype_name(proto.dtype)}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype)
    return _from_val_field(proto, dtype, shape)


def _from_val_field(proto: tensor_pb2.TensorProto, dtype: np.dtype[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    values = getattr(proto, _VAL_FIELDS[proto.dtype])
    if proto.dtype == types_pb2.DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1:
        return np.full(shape, flat[0], dtype=dtype)
    raise UnsupportedTensor(f"tensor holds {flat.size} values for shape {list(shape)}")
