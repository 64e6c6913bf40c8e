"""TensorProto <-> numpy, following ``tensorflow::Tensor::FromProto``, without TensorFlow.

Requests may carry ``tensor_content`` (raw little-endian bytes, read with ``np.frombuffer``) or the typed
``*_val`` fields. For the typed fields TF's rules apply: no values means zeros, fewer values than the shape
needs are padded with the last value (so one value broadcasts like a scalar), extra values are ignored.
Answers always use ``tensor_content`` (``string_val`` for strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from tools.localserving.errors import Internal, InvalidArgument

# A few bytes of proto can ask for any shape; typed values are expanded in memory, so cap them (1 GiB float32).
MAX_EXPANDED_ELEMENTS = 1 << 28

Array = np.ndarray[Any, np.dtype[Any]]


@dataclass(frozen=True)
class DType:
    """A TF DataType: its enum value and name, numpy dtype, and the typed TensorProto field holding it."""

    enum: int
    name: str
    numpy: np.dtype[Any]
    field: str


# The DataTypes this module converts: enum value, name, numpy dtype, the TensorProto field of typed values.
DTYPE_TABLE = """
1   DT_FLOAT       float32     float_val
2   DT_DOUBLE      float64     double_val
3   DT_INT32       int32       int_val
4   DT_UINT8       uint8       int_val
5   DT_INT16       int16       int_val
6   DT_INT8        int8        int_val
7   DT_STRING      object      string_val
8   DT_COMPLEX64   complex64   scomplex_val
9   DT_INT64       int64       int64_val
10  DT_BOOL        bool        bool_val
14  DT_BFLOAT16    bfloat16    half_val
17  DT_UINT16      uint16      int_val
18  DT_COMPLEX128  complex128  dcomplex_val
19  DT_HALF        float16     half_val
22  DT_UINT32      uint32      uint32_val
23  DT_UINT64      uint64      uint64_val
"""


def _numpy_dtype(name: str) -> np.dtype[Any]:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


DTYPES = tuple(
    DType(int(enum), name, _numpy_dtype(numpy), field)
    for enum, name, numpy, field in (line.split() for line in DTYPE_TABLE.strip().splitlines())
)
BY_ENUM = {dtype.enum: dtype for dtype in DTYPES}
BY_NUMPY = {dtype.numpy: dtype for dtype in DTYPES}
STRING = BY_ENUM[7]

# How the typed field stores each dtype when that differs from the dtype itself.
_FIELD_STORAGE: dict[str, np.dtype[Any]] = {
    "half_val": np.dtype(np.int32),  # the 16-bit patterns of half and bfloat16
    "int_val": np.dtype(np.int32),
    "scomplex_val": np.dtype(np.float32),  # (real, imaginary) pairs
    "dcomplex_val": np.dtype(np.float64),
}


def _dtype_label(proto: Any) -> str:
    """The DataType name of a TensorProto's dtype, also for types this module cannot convert."""
    value = proto.DESCRIPTOR.fields_by_name["dtype"].enum_type.values_by_number.get(proto.dtype)
    return value.name if value is not None else f"DataType {proto.dtype}"


def to_array(proto: Any, name: str) -> Array:
    """The value of TensorProto ``proto`` sent as input ``name``; InvalidArgument if it is malformed."""
    dtype = BY_ENUM.get(proto.dtype)
    if dtype is None:
        raise InvalidArgument(f"tensor parsing error: {name}: unsupported dtype {_dtype_label(proto)}")
    shape = _shape(proto.tensor_shape, name)
    content = proto.tensor_content
    if content:
        return _from_content(content, dtype, shape, name)
    return _from_typed_field(proto, dtype, shape, name)


def fill_tensor_proto(proto: Any, array: Array, typed_fields: bool = False) -> None:
    """Write ``array`` into the empty TensorProto ``proto``: as tensor_content (string_val for strings), or,
    with ``typed_fields``, in its typed ``*_val`` field, which is how TF Serving answers by default."""
    dtype = BY_NUMPY.get(array.dtype)
    if dtype is None:
        raise Internal(f"the model returned a tensor of numpy dtype {array.dtype}, which has no TF DataType")
    proto.dtype = dtype.enum
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if dtype is STRING:
        proto.string_val.extend(_as_bytes(value) for value in array.ravel().tolist())
    elif typed_fields:
        getattr(proto, dtype.field).extend(_field_values(array.ravel(), dtype))
    else:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    if shape.unknown_rank:
        raise InvalidArgument(f"tensor parsing error: {name}: the shape has unknown rank")
    sizes = tuple(int(dim.size) for dim in shape.dim)
    if any(size < 0 for size in sizes):
        raise InvalidArgument(f"tensor parsing error: {name}: shape {list(sizes)} has a negative dimension")
    return sizes


def _from_content(content: bytes, dtype: DType, shape: tuple[int, ...], name: str) -> Array:
    if dtype is STRING:
        raise InvalidArgument(f"tensor parsing error: {name}: DT_STRING values must be sent in string_val")
    needed = math.prod(shape) * dtype.numpy.itemsize
    if len(content) != needed:
        raise InvalidArgument(
            f"tensor parsing error: {name}: tensor_content has {len(content)} bytes but {dtype.name} "
            f"shape {list(shape)} needs {needed}"
        )
    return np.frombuffer(content, dtype=dtype.numpy).reshape(shape)


def _from_typed_field(proto: Any, dtype: DType, shape: tuple[int, ...], name: str) -> Array:
    values = _typed_values(getattr(proto, dtype.field), dtype, name)
    count = math.prod(shape)
    if values.size >= count:
        return values[:count].reshape(shape)
    if count > MAX_EXPANDED_ELEMENTS:
        raise InvalidArgument(
            f"tensor parsing error: {name}: {values.size} values cannot fill shape {list(shape)} "
            f"({count} elements; the limit for typed value fields is {MAX_EXPANDED_ELEMENTS})"
        )
    if values.size == 0:
        return np.full(shape, b"" if dtype is STRING else 0, dtype=dtype.numpy)
    padding = np.full(count - values.size, values[-1], dtype=dtype.numpy)
    return np.concatenate((values, padding)).reshape(shape)


def _typed_values(field: Any, dtype: DType, name: str) -> Array:
    if dtype is STRING:
        return np.array(list(field), dtype=object)
    storage = _FIELD_STORAGE.get(dtype.field, dtype.numpy)
    raw = np.array(field, dtype=storage)
    if dtype.field == "half_val":
        return raw.astype(np.uint16).view(dtype.numpy)
    if dtype.field in ("scomplex_val", "dcomplex_val"):
        if raw.size % 2:
            raise InvalidArgument(f"tensor parsing error: {name}: {dtype.field} needs (real, imaginary) pairs")
        return raw.view(dtype.numpy)
    return raw.astype(dtype.numpy, copy=False)


def _field_values(flat: Array, dtype: DType) -> list[Any]:
    """The values to put in ``dtype.field``: bit patterns for half_val, (real, imaginary) pairs for complex."""
    if dtype.field == "half_val":
        return list(flat.view(np.uint16).astype(np.int32).tolist())
    if dtype.field in ("scomplex_val", "dcomplex_val"):
        return list(flat.view(_FIELD_STORAGE[dtype.field]).tolist())
    return list(flat.tolist())


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
