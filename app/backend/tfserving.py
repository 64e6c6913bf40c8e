"""Non-blocking client for TF Serving's gRPC API (grpc.aio).

One channel per backend address for the life of the process, a deadline on every
call, and ``grpc.RpcError`` translated into our own errors by status code at the
boundary (``app/backend/rpc_errors.py``). It speaks only the public TF Serving API, so it cannot tell the real
``tensorflow_model_server`` from the local stand-in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from app.backend.metadata import parse_metadata
from app.backend.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from app.backend.rpc_errors import BackendFailures, call_backend
from app.backend.tensors import UnsupportedTensor, encode_predict_request, from_tensor_proto
from app.backend.types import ModelMetadata, ModelRef, PredictResult, VersionStatus
from app.errors import BackendFailed, ModelNotFound
from processing.context import RequestContext
from processing.errors import InternalError

MAX_MESSAGE_BYTES = 256 << 20
MAX_REQUEST_IDS = 16  # request ids sent with one micro-batched Predict
Metadata = tuple[tuple[str, str], ...]
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
DNS_MIN_SECONDS_BETWEEN_LOOKUPS = 1


@dataclass(frozen=True)
class _Backend:
    """One address's channel and the stubs over it, made once."""

    channel: grpc.aio.Channel
    prediction: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub
    predict_encoded: grpc.aio.UnaryUnaryMultiCallable  # Predict taking a request already serialised


class TFServingClient:
    """Predict, GetModelMetadata and GetModelStatus over one shared channel per address."""

    def __init__(self, load_balancing: str, retry_after_s: int) -> None:
        self._backends: dict[str, _Backend] = {}
        self._load_balancing = load_balancing
        self.failures = BackendFailures(retry_after_s)

    def _backend(self, address: str) -> _Backend:
        backend = self._backends.get(address)
        if backend is None:
            options = [
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                (
                    "grpc.service_config",
                    json.dumps({"loadBalancingPolicy": self._load_balancing}),
                ),
                # Transparent retries only (a call that never left this process); retries after an
                # UNAVAILABLE answer are ours, in app/backend/rpc_errors.py, so they can be counted.
                ("grpc.enable_retries", 1),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                # A dns:/// name is looked up again when a connection drops (a replica's maximum connection
                # age, a dead replica), but by default at most every 30 s; new replicas then wait that long.
                ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_SECONDS_BETWEEN_LOOKUPS * 1000),
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
        metadata: Metadata = (),
    ) -> PredictResult:
        """One Predict call; ``outputs`` maps output names to arrays; ``metadata`` goes along as gRPC metadata."""
        head = predict_pb2.PredictRequest(model_spec=model.to_proto(), output_filter=list(output_filter))
        request = encode_predict_request(head, inputs)
        sent_at = time.perf_counter()
        try:
            response = await call_backend(
                self._backend(address).predict_encoded, request, timeout, model, self.failures, metadata
            )
        except InternalError:
            if model.label is not None:
                await self._check_label(address, model, timeout)
            raise
        try:
            outputs = {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}
        except (UnsupportedTensor, ValueError) as exc:
            raise BackendFailed("the backend answered with a tensor we cannot read", log_message=str(exc)) from exc
        return PredictResult(int(response.model_spec.version.value), outputs, sent_at, time.perf_counter())

    async def _check_label(self, address: str, model: ModelRef, timeout: float) -> None:
        """Raise ModelNotFound if ``model.label`` is unknown to the backend.

        TF Serving answers INVALID_ARGUMENT (not NOT_FOUND) for an unrecognised version
        label. Rather than read the message, ask for the label's metadata: if that fails
        too, the label is what is wrong.
        """
        try:
            await self.metadata(address, model, timeout)
        except (InternalError, ModelNotFound) as exc:
            raise ModelNotFound(f"model {model.describe()} is not served", log_message=exc.log_message) from exc

    async def metadata(self, address: str, model: ModelRef, timeout: float) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model.to_proto(), metadata_field=["signature_def"]
        )
        request.model_spec.ClearField("signature_name")
        response = await call_backend(
            self._backend(address).prediction.GetModelMetadata, request, timeout, model, self.failures
        )
        return parse_metadata(response)

    async def status(self, address: str, model: ModelRef, timeout: float) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model.to_proto())
        request.model_spec.ClearField("signature_name")
        response = await call_backend(
            self._backend(address).models.GetModelStatus, request, timeout, model, self.failures
        )
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(int(s.version), state_name(s.state), int(s.status.error_code), s.status.error_message)
            for s in response.model_version_status
        ]

    async def close(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.channel.close()


def backend_metadata(contexts: Sequence[RequestContext]) -> Metadata:
    """gRPC metadata for a Predict made for ``contexts``: their request ids and the first one's traceparent.

    A micro-batched Predict carries the ids of all its requests, comma-separated, the first
    ``MAX_REQUEST_IDS`` of them and then ``+N``, so the backend's logs can be matched to ours.
    """
    ids = [c.request_id for c in contexts[:MAX_REQUEST_IDS]]
    if len(contexts) > MAX_REQUEST_IDS:
        ids.append(f"+{len(contexts) - MAX_REQUEST_IDS}")
    metadata = [("x-request-id", ",".join(ids))]
    traceparent = next((c.traceparent for c in contexts if c.traceparent), None)
    if traceparent is not None:
        metadata.append(("traceparent", traceparent))
    return tuple(metadata)
