"""Non-blocking client for TF Serving's gRPC API (grpc.aio).

One channel per backend address for the life of the process, a deadline on every
call, and ``grpc.RpcError`` translated into our own errors by status code here, at
the boundary. It speaks only the public TF Serving API, so it cannot tell the real
``tensorflow_model_server`` from the local stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from app.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from app.tensors import UnsupportedTensor, dtype_name, encode_predict_request, from_tensor_proto
from processing.errors import (
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    InternalError,
    ModelNotFound,
)

MAX_MESSAGE_BYTES = 256 << 20
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"

# Retry only UNAVAILABLE (the call never reached a model), a few times, quickly.
_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [
                {"service": "tensorflow.serving.PredictionService"},
                {"service": "tensorflow.serving.ModelService"},
            ],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


@dataclass(frozen=True)
class ModelRef:
    """Which model, version or label, and signature a call is for."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = "serving_default"

    def to_proto(self) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name, signature_name=self.signature)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        return spec


@dataclass(frozen=True)
class TensorInfo:
    name: str  # the key in the signature's input or output map
    dtype: str  # numpy name, e.g. "float32"
    shape: tuple[int, ...] | None  # -1 for unknown dimensions; None for unknown rank


@dataclass(frozen=True)
class SignatureInfo:
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signatures: Mapping[str, SignatureInfo]
    raw: Mapping[str, Any]  # JSON-ready copy, for the metadata endpoint


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # "AVAILABLE", "LOADING", ...
    error_code: int
    error_message: str


@dataclass(frozen=True)
class PredictResult:
    version: int
    outputs: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class _Backend:
    """One address's channel and the stubs over it, made once."""

    channel: grpc.aio.Channel
    prediction: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub
    predict_encoded: grpc.aio.UnaryUnaryMultiCallable  # Predict taking a request already serialised


class TFServingClient:
    """Predict, GetModelMetadata and GetModelStatus over one shared channel per address."""

    def __init__(self, load_balancing: str = "pick_first") -> None:
        self._backends: dict[str, _Backend] = {}
        self._load_balancing = load_balancing

    def _backend(self, address: str) -> _Backend:
        backend = self._backends.get(address)
        if backend is None:
            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                (
                    "grpc.service_config",
                    json.dumps({**_SERVICE_CONFIG, "loadBalancingPolicy": self._load_balancing}),
                ),
                ("grpc.enable_retries", 1),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ]
            channel = grpc.aio.insecure_channel(address, options=options)
            backend = _Backend(
                channel,
                prediction_service_pb2_grpc.PredictionServiceStub(channel),
                model_service_pb2_grpc.ModelServiceStub(channel),
                channel.unary_unary(PREDICT_METHOD, response_deserializer=predict_pb2.PredictResponse.FromString),
            )
            self._backends[address] = backend
        return backend

    async def predict(
        self,
        address: str,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        timeout: float,
    ) -> PredictResult:
        """One Predict call; ``outputs`` maps output names to arrays."""
        head = predict_pb2.PredictRequest(model_spec=model.to_proto(), output_filter=list(output_filter))
        request = encode_predict_request(head, inputs)
        try:
            response = await _call(self._backend(address).predict_encoded, request, timeout, model)
        except InternalError:
            if model.label is not None:
                await self._check_label(address, model, timeout)
            raise
        try:
            outputs = {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}
        except (UnsupportedTensor, ValueError) as exc:
            raise BackendFailed("the backend answered with a tensor we cannot read", log_message=str(exc)) from exc
        return PredictResult(version=int(response.model_spec.version.value), outputs=outputs)

    async def _check_label(self, address: str, model: ModelRef, timeout: float) -> None:
        """Raise ModelNotFound if ``model.label`` is unknown to the backend.

        TF Serving answers INVALID_ARGUMENT (not NOT_FOUND) for an unrecognised version
        label. Rather than read the message, ask for the label's metadata: if that fails
        too, the label is what is wrong.
        """
        try:
            await self.metadata(address, model, timeout)
        except (InternalError, ModelNotFound) as exc:
            raise ModelNotFound(f"model {_describe(model)} is not served", log_message=exc.log_message) from exc

    async def metadata(self, address: str, model: ModelRef, timeout: float) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model.to_proto(), metadata_field=["signature_def"]
        )
        request.model_spec.ClearField("signature_name")
        response = await _call(self._backend(address).prediction.GetModelMetadata, request, timeout, model)
        return _parse_metadata(response)

    async def status(self, address: str, model: ModelRef, timeout: float) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model.to_proto())
        request.model_spec.ClearField("signature_name")
        response = await _call(self._backend(address).models.GetModelStatus, request, timeout, model)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(int(s.version), state_name(s.state), int(s.status.error_code), s.status.error_message)
            for s in response.model_version_status
        ]

    async def close(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.channel.close()


async def _call(method: Any, request: Any, timeout: float, model: ModelRef) -> Any:
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise translate_rpc_error(exc, model) from exc


def translate_rpc_error(exc: grpc.RpcError, model: ModelRef) -> GatewayError:
    """Our error for a gRPC failure, chosen by status code (never by message text)."""
    # grpc.aio raises AioRpcError, which is not a grpc.Call but has the same accessors.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = (exc.details() if is_call else None) or ""
    log = f"{code.name} from backend for model {model.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(f"model {_describe(model)} is not served: {details}", log_message=log)
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable("the model backend is unavailable; try again shortly", log_message=log)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout("the model backend did not answer in time", log_message=log)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InternalError("the tier built a request the backend refused; this is a bug", log_message=log)
    return BackendFailed(f"the model backend failed ({code.name})", log_message=log)


def _describe(model: ModelRef) -> str:
    if model.version is not None:
        return f"{model.name!r} version {model.version}"
    if model.label is not None:
        return f"{model.name!r} label {model.label!r}"
    return repr(model.name)


def _parse_metadata(response: get_model_metadata_pb2.GetModelMetadataResponse) -> ModelMetadata:
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" in response.metadata:
        response.metadata["signature_def"].Unpack(sig_map)
    signatures = {
        key: SignatureInfo(_tensor_infos(sig.inputs), _tensor_infos(sig.outputs))
        for key, sig in sig_map.signature_def.items()
    }
    raw = {
        key: {
            "method_name": sig.method_name,
            "inputs": {k: _info_json(v) for k, v in sig.inputs.items()},
            "outputs": {k: _info_json(v) for k, v in sig.outputs.items()},
        }
        for key, sig in sig_map.signature_def.items()
    }
    version = int(response.model_spec.version.value)
    return ModelMetadata(response.model_spec.name, version, signatures, {"signature_def": raw})


def _tensor_infos(infos: Mapping[str, Any]) -> dict[str, TensorInfo]:
    result = {}
    for key, info in infos.items():
        shape = None if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
        result[key] = TensorInfo(key, dtype_name(info.dtype), shape)
    return result


def _info_json(info: Any) -> dict[str, Any]:
    shape = None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
    return {"dtype": dtype_name(info.dtype), "shape": shape, "name": info.name}
