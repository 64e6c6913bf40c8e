"""The gRPC API: PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus and
HandleReloadConfigRequest.

Faults become the status codes TF Serving answers with (see ``localserving.errors``); anything unexpected
is logged and answered INTERNAL, so no request can take the server down.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NoReturn, Protocol

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_management_pb2, predict_pb2

from tools.localserving.batching import BatchScheduler
from tools.localserving.errors import DeadlineExceeded, Internal, InvalidArgument, NotFound, ServingError
from tools.localserving.models import ModelSet
from tools.localserving.reload import ConfigReloader
from tools.localserving.servable import Servable, Signature
from tools.localserving.tensors import Array, fill_tensor_proto, to_array

log = logging.getLogger("localserving")

SIGNATURE_DEF = "signature_def"
# Trailing metadata on each Predict answer: seconds spent running the signature (and, with batching, waiting
# for the batch). Not part of TF Serving's API; clients ignore it. The latency benchmark subtracts it from the
# client's time to get the gRPC overhead per request.
RUN_SECONDS_KEY = "localserving-run-seconds"


class Runner(Protocol):
    """Runs a signature on a request's checked inputs: directly, or through the batch scheduler."""

    def __call__(
        self, servable: Servable, signature: Signature, inputs: Mapping[str, Array], timeout: float | None
    ) -> Mapping[str, Array]: ...


def run_directly(
    servable: Servable, signature: Signature, inputs: Mapping[str, Array], timeout: float | None
) -> Mapping[str, Array]:
    return signature.run(inputs)


class BatchingRunner:
    """Sends each request through ``scheduler``, batched with others for the same servable and signature."""

    def __init__(self, scheduler: BatchScheduler) -> None:
        self._scheduler = scheduler

    def __call__(
        self, servable: Servable, signature: Signature, inputs: Mapping[str, Array], timeout: float | None
    ) -> Mapping[str, Array]:
        future = self._scheduler.submit(_batch_key(servable, signature, inputs), signature.run, inputs)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise DeadlineExceeded("the deadline passed while the request waited for its batch") from None


def add_services(
    server: Any, models: ModelSet, reloader: ConfigReloader, run: Runner, typed_fields: bool = False
) -> None:
    """Register the PredictionService and ModelService methods on grpc ``server``."""
    prediction = PredictionService(models, run, typed_fields)
    status = ModelService(models, reloader)
    services = {
        "tensorflow.serving.PredictionService": {
            "Predict": _unary(prediction.predict, predict_pb2.PredictRequest),
            "GetModelMetadata": _unary(prediction.get_model_metadata, get_model_metadata_pb2.GetModelMetadataRequest),
        },
        "tensorflow.serving.ModelService": {
            "GetModelStatus": _unary(status.get_model_status, get_model_status_pb2.GetModelStatusRequest),
            "HandleReloadConfigRequest": _unary(
                status.handle_reload_config_request, model_management_pb2.ReloadConfigRequest
            ),
        },
    }
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, methods) for name, methods in services.items())
    )


class PredictionService:
    """Predict and GetModelMetadata, as TF Serving answers them."""

    def __init__(self, models: ModelSet, run: Runner, typed_fields: bool = False) -> None:
        self._models = models
        self._run = run
        self._typed_fields = typed_fields

    def predict(self, request: Any, context: Any) -> Any:
        return _answer(context, "Predict", lambda: self._predict(request, context))

    def get_model_metadata(self, request: Any, context: Any) -> Any:
        return _answer(context, "GetModelMetadata", lambda: self._get_model_metadata(request))

    def _predict(self, request: Any, context: Any) -> Any:
        servable = self._models.resolve(_model_spec(request))
        signature = servable.signature(request.model_spec.signature_name)
        inputs = {name: to_array(proto, name) for name, proto in request.inputs.items()}
        signature.spec.check_inputs(inputs)
        aliases = signature.spec.select_outputs(request.output_filter)
        started = time.perf_counter()
        outputs = self._run(servable, signature, inputs, context.time_remaining())
        context.set_trailing_metadata(((RUN_SECONDS_KEY, f"{time.perf_counter() - started:.6f}"),))
        response = predict_pb2.PredictResponse()
        _describe(response.model_spec, servable, signature.spec.name)
        for alias in aliases:
            fill_tensor_proto(response.outputs[alias], outputs[alias], self._typed_fields)
        return response

    def _get_model_metadata(self, request: Any) -> Any:
        spec = _model_spec(request)
        if not request.metadata_field:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for name in request.metadata_field:
            if name != SIGNATURE_DEF:
                raise InvalidArgument(f"Metadata field {name} is not supported")
        servable = self._models.resolve(spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _describe(response.model_spec, servable, signature_name=None)
        response.metadata[SIGNATURE_DEF].Pack(servable.signature_defs)
        return response


class ModelService:
    """GetModelStatus (every version seen, newest first, as TF Serving lists them) and HandleReloadConfigRequest."""

    def __init__(self, models: ModelSet, reloader: ConfigReloader) -> None:
        self._models = models
        self._reloader = reloader

    def get_model_status(self, request: Any, context: Any) -> Any:
        return _answer(context, "GetModelStatus", lambda: self._get_model_status(request))

    def handle_reload_config_request(self, request: Any, context: Any) -> Any:
        return _answer(context, "HandleReloadConfigRequest", lambda: self._reload_config(request))

    def _reload_config(self, request: Any) -> Any:
        """As ModelServiceImpl::HandleReloadConfigRequest: a model_config_list only; answers once it is applied."""
        if request.config.WhichOneof("config") != "model_config_list":
            raise InvalidArgument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        self._reloader.reload(request.config, source="HandleReloadConfigRequest")
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = grpc.StatusCode.OK.value[0]
        # TF Serving reports how much each named TF monitoring metric grew; localserving keeps none of them.
        for name in dict.fromkeys(request.metric_names):
            response.metric.add(name=name, int64_value_increase=0)
        return response

    def _get_model_status(self, request: Any) -> Any:
        spec = _model_spec(request)
        statuses = self._models.statuses(spec.name)
        if spec.HasField("version"):
            version = spec.version.value
            if version not in statuses:
                raise NotFound(f"Could not find version {version} of model {spec.name}")
            statuses = {version: statuses[version]}
        elif not statuses:
            raise NotFound(f"Could not find any versions of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in sorted(statuses.items(), reverse=True):
            entry = response.model_version_status.add(version=version, state=int(status.state))
            entry.status.error_code = status.error_code.value[0]
            entry.status.error_message = status.error_message
        return response


def _model_spec(request: Any) -> Any:
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec")
    return request.model_spec


def _describe(model_spec: Any, servable: Servable, signature_name: str | None) -> None:
    model_spec.name = servable.name
    model_spec.version.value = servable.version
    if signature_name is not None:
        model_spec.signature_name = signature_name


def _batch_key(servable: Servable, signature: Signature, inputs: Mapping[str, Array]) -> Hashable:
    # Requests can share a batch only if their inputs concatenate: same dtypes and per-row shapes.
    layout = tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items()))
    return (servable, signature.spec.name, layout)


def _answer(context: Any, method: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ServingError as exc:
        error = exc
    except Exception:  # a bug or a model fault must not take the server down
        log.exception("%s failed", method)
        error = Internal(f"{method} failed inside localserving; its log has the traceback")
    log.info("%s answered %s: %s", method, error.code.name, error.message)
    _abort(context, error)


def _abort(context: Any, error: ServingError) -> NoReturn:
    context.abort(error.code, error.message)
    raise AssertionError("grpc's context.abort() returns only by raising")


def _unary(handler: Callable[[Any, Any], Any], request_type: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request_type.FromString,
        response_serializer=lambda response: response.SerializeToString(),
    )
