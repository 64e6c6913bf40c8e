"""A small TF Serving gRPC client for the tests, built only on ``app.backend.protos`` (no TensorFlow runtime)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from app.backend.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
    types_pb2,
)
from tools.localserving.tensors import fill_tensor_proto

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
TIMEOUT = 30.0

NUMPY_BY_ENUM: dict[int, np.dtype[Any]] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
}
TYPED_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_BOOL: "bool_val",
}

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END

Array = np.ndarray[Any, np.dtype[Any]]


def tensor_proto(array: Array) -> Any:
    """A TensorProto carrying ``array`` as tensor_content."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, np.ascontiguousarray(array))
    return proto


def to_numpy(proto: Any) -> Array:
    """Decode a response TensorProto: tensor_content, or the typed field with every value present."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    dtype = NUMPY_BY_ENUM[proto.dtype]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return np.array(getattr(proto, TYPED_FIELD[proto.dtype]), dtype=dtype).reshape(shape)


def predict_request(
    model: str,
    inputs: Mapping[str, Array | Any],
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    output_filter: Sequence[str] = (),
) -> Any:
    """A PredictRequest; ``inputs`` values are numpy arrays or ready TensorProtos."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_proto(value) if isinstance(value, np.ndarray) else value)
    request.output_filter.extend(output_filter)
    return request


@dataclass
class Client:
    """Stubs on one channel to a backend."""

    channel: grpc.Channel
    prediction: Any
    models: Any

    @classmethod
    def connect(cls, address: str) -> Client:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return cls(
            channel,
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )

    def close(self) -> None:
        self.channel.close()

    def predict(self, request: Any, timeout: float = TIMEOUT) -> Any:
        return self.prediction.Predict(request, timeout=timeout)

    def outputs(self, model: str, inputs: Mapping[str, Array | Any], **spec: Any) -> dict[str, Array]:
        """Predict and decode every output."""
        response = self.predict(predict_request(model, inputs, **spec))
        return {name: to_numpy(proto) for name, proto in response.outputs.items()}

    def metadata(self, model: str, version: int | None = None, fields: Sequence[str] = ("signature_def",)) -> Any:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        return self.prediction.GetModelMetadata(request, timeout=TIMEOUT)

    def status(self, model: str, version: int | None = None) -> dict[int, Any]:
        """GetModelStatus as {version: ModelVersionStatus}."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self.models.GetModelStatus(request, timeout=TIMEOUT)
        return {entry.version: entry for entry in response.model_version_status}

    def states(self, model: str) -> dict[int, int]:
        """{version: state} of every version the server has seen for ``model``."""
        return {version: entry.state for version, entry in self.status(model).items()}


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The RpcError ``call`` raises (fails the test if it succeeds)."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded; an error status was expected")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (a status RPC, a file, a future) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.02)
