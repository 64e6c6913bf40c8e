"""A fake TF Serving (gRPC, no model) so that the tier is what a benchmark measures, and tests can inject faults.

It answers Predict at once with logits of the right shape, and GetModelMetadata and
GetModelStatus well enough for the tier to start. Row ``i`` of the answer carries the
first input value of row ``i`` in column 0, so tests can check that every caller got
its own rows back. No TensorFlow: the protos come from ``app.backend.protos``.

It is gRPC's synchronous server on a thread pool: for a 4-image request it costs a
third of the CPU of a grpc.aio server (0.6 ms against 1.8 ms a call), which would
otherwise be counted against whichever contender it serves.

``python -m tools.fakeserving --port 0 --model tiny:8`` prints
``fakeserving: ready on 127.0.0.1:<port>`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from app.backend.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from app.backend.tensors import dtype_name, from_tensor_proto
from tools.localserving.tensors import fill_tensor_proto
from tools.process import Child, start_child

INPUT_NAME = "images"
IMAGE_SHAPE = (224, 224, 3)
SIGNATURES = {"serving_default": types_pb2.DT_FLOAT, "serving_uint8": types_pb2.DT_UINT8}
VERSION = 1


@dataclass(frozen=True)
class FakeModel:
    """A model the fake serves: its output name and number of classes."""

    name: str
    classes: int
    output: str = "logits"


@dataclass
class PredictLog:
    """What the fake was asked, for tests: the batch size of every Predict, in order."""

    batch_sizes: list[int] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)  # each Predict's gRPC metadata
    arrived: threading.Event = field(default_factory=threading.Event)  # set at the first Predict
    delay_s: float = 0.0  # set by tests to make Predict slow
    fail_with: grpc.StatusCode | None = None  # set by tests to make Predict fail
    nan_for: int | None = None  # set by tests: rows whose first input value is this answer NaN logits
    nan_version: int | None = None  # set by tests: this version answers NaN logits (a broken model)


class FakePrediction:
    """Predict works on the raw request bytes: parsing is cheap, gRPC's servicer plumbing is not."""

    def __init__(self, models: Mapping[str, FakeModel], log: PredictLog) -> None:
        self.models = models
        self.log = log

    def Predict(self, raw: bytes, context: Any) -> bytes:
        request = predict_pb2.PredictRequest.FromString(raw)
        model = _model_or_abort(self.models, request, context)
        tensor = request.inputs[INPUT_NAME]
        rows = tensor.tensor_shape.dim[0].size
        self.log.batch_sizes.append(rows)
        self.log.metadata.append({key: str(value) for key, value in context.invocation_metadata()})
        self.log.arrived.set()
        if self.log.delay_s:
            time.sleep(self.log.delay_s)
        if self.log.fail_with is not None:
            context.abort(self.log.fail_with, "failure injected by the test")
        logits = np.zeros((rows, model.classes), dtype=np.float32)
        logits[:, 1 % model.classes] = 1.0
        logits[:, 0] = _first_values(tensor, rows)
        if self.log.nan_version is not None and request.model_spec.version.value == self.log.nan_version:
            logits[:] = np.nan
        if self.log.nan_for is not None:
            logits[logits[:, 0] == self.log.nan_for] = np.nan
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = request.model_spec.version.value or VERSION
        response.model_spec.signature_name = request.model_spec.signature_name
        fill_tensor_proto(response.outputs[model.output], logits)
        return bytes(response.SerializeToString())

    def GetModelMetadata(self, request: Any, context: Any) -> Any:
        model = _model_or_abort(self.models, request, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = VERSION
        response.metadata["signature_def"].Pack(_signature_map(model))
        return response

    def handler(self) -> grpc.GenericRpcHandler:
        metadata = get_model_metadata_pb2
        return grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {
                "Predict": grpc.unary_unary_rpc_method_handler(self.Predict),
                "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
                    self.GetModelMetadata,
                    request_deserializer=metadata.GetModelMetadataRequest.FromString,
                    response_serializer=metadata.GetModelMetadataResponse.SerializeToString,
                ),
            },
        )


def _first_values(tensor: Any, rows: int) -> np.ndarray:
    """The first value of every row, read in place from ``tensor_content``."""
    if not tensor.tensor_content:
        return from_tensor_proto(tensor).reshape(rows, -1)[:, 0]
    dtype = np.dtype(dtype_name(tensor.dtype))
    return np.frombuffer(tensor.tensor_content, dtype=dtype.newbyteorder("<")).reshape(rows, -1)[:, 0]


class FakeModelStatus(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, models: Mapping[str, FakeModel]) -> None:
        self.models = models

    def GetModelStatus(self, request: Any, context: Any) -> Any:
        _model_or_abort(self.models, request, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        asked = request.model_spec.version.value if request.model_spec.HasField("version") else 0
        status.version = asked or VERSION  # it answers Predict for any version, so any version asked is AVAILABLE
        status.state = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
        return response


def _model_or_abort(models: Mapping[str, FakeModel], request: Any, context: Any) -> FakeModel:
    model = models.get(request.model_spec.name)
    if model is None:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_spec.name}")
        raise AssertionError("abort raises")
    return model


def _signature_map(model: FakeModel) -> Any:
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, dtype in SIGNATURES.items():
        sig = sig_map.signature_def[key]
        sig.method_name = "tensorflow/serving/predict"
        _tensor_info(sig.inputs[INPUT_NAME], f"{key}_{INPUT_NAME}:0", dtype, (-1, *IMAGE_SHAPE))
        _tensor_info(sig.outputs[model.output], "PartitionedCall:0", types_pb2.DT_FLOAT, (-1, model.classes))
    return sig_map


def _tensor_info(info: meta_graph_pb2.TensorInfo, name: str, dtype: int, shape: Sequence[int]) -> None:
    info.name = name
    info.dtype = dtype
    info.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])
    )


@dataclass
class FakeBackend:
    server: grpc.Server
    port: int
    log: PredictLog

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


def start_fake_backend(models: Sequence[FakeModel], port: int = 0, threads: int = 16) -> FakeBackend:
    """Serve ``models`` on loopback from gRPC's own threads; returns once it listens."""
    by_name = {m.name: m for m in models}
    log = PredictLog()
    server = grpc.server(
        ThreadPoolExecutor(threads, thread_name_prefix="fakeserving"),
        options=[("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)],
    )
    server.add_generic_rpc_handlers((FakePrediction(by_name, log).handler(),))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(FakeModelStatus(by_name), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return FakeBackend(server, bound, log)


def parse_model(text: str) -> FakeModel:
    """``tiny:8`` or ``mobilenet_v2:1000:probabilities``."""
    name, classes, *output = text.split(":")
    return FakeModel(name, int(classes), *output)


READY_PREFIX = "fakeserving: ready on "


def start_fakeserving(models: Sequence[str] = ("tiny:8",)) -> Child:
    """``python -m tools.fakeserving`` on a free port, serving ``models`` (``NAME:CLASSES[:OUTPUT]``), once ready;
    ``child.match.group(1)`` is its address."""
    command = [sys.executable, "-m", "tools.fakeserving", "--port", "0"]
    for model in models:
        command += ["--model", model]
    return start_child("fakeserving", command, re.compile(rf"{re.escape(READY_PREFIX)}(\S+)"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakeserving", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", type=parse_model, default=[], help="NAME:CLASSES[:OUTPUT]")
    args = parser.parse_args(argv)
    models = args.model or [FakeModel("tiny", 8), FakeModel("mobilenet_v2", 1000, "probabilities")]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    backend = start_fake_backend(models, args.port)
    print(f"{READY_PREFIX}{backend.address} models={','.join(m.name for m in models)}", flush=True)
    stop.wait()
    backend.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
