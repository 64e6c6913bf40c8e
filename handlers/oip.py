"""The Open Inference Protocol v2 over HTTP (KServe v2, Triton): health, metadata and infer.

Requests and answers are parsed and encoded in ``processing/oip.py``; an infer runs the same
pipeline as ``:predict``. Errors are the protocol's ``{"error": "<message>"}`` with our statuses,
and a failed image fails the whole infer (400, naming the image), as a Triton client expects of a
request whose output has one row per input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from tornado.web import HTTPError, stream_request_body

from handlers.base import BaseHandler
from handlers.ports import ModelStatus, PredictPipeline, ProcessState, RequestLimits, TensorModel
from processing.context import server_timing
from processing.errors import InvalidRequest, PayloadTooLarge
from processing.oip import (
    INPUT_NAME,
    InferRequest,
    OutputTensor,
    classification_tensor,
    encode_infer_response,
    item_failures,
    parse_infer_request,
    raw_tensor,
    scores_tensor,
)

EXTENSIONS = ("binary_tensor_data", "classification")
ALL_CLASSES = 1 << 30  # a top_k that keeps every class: the plain output is the whole score vector


class OipHandler(BaseHandler):
    """Errors in the protocol's form: ``{"error": "<message>"}``."""

    def error_document(self, code: str, message: str) -> dict[str, Any]:
        return {"error": message}


class NotFoundHandler(OipHandler):
    """Any other path under /v2/: 404 in the protocol's error form, which a v2 client reads."""

    route = "not_found"

    def prepare(self) -> None:
        raise HTTPError(404, reason=f"no such path: {self.request.path}")


class ServerMetadataHandler(OipHandler):
    """GET /v2"""

    route = "v2"

    def initialize(self, name: str, version: str) -> None:
        self.document = {"name": name, "version": version, "extensions": list(EXTENSIONS)}

    def get(self) -> None:
        self.write_json(self.document)


class ServerLiveHandler(OipHandler):
    """GET /v2/health/live"""

    route = "v2_health"

    def get(self) -> None:
        self.write_json({"live": True})


class ServerReadyHandler(OipHandler):
    """GET /v2/health/ready: 200 when serving and every model is AVAILABLE; else 400, as Triton answers."""

    route = "v2_health"
    probe = True

    def initialize(self, models: ModelStatus, process: ProcessState) -> None:
        self.models = models
        self.process = process

    async def get(self) -> None:
        ready = self.process.ready and (await self.models.readiness())[0]
        self.write_json({"ready": ready}, status=200 if ready else 400)


class ModelHandler(OipHandler):
    def initialize(self, models: ModelStatus, tensors: Mapping[str, TensorModel]) -> None:
        self.models = models
        self.tensors = tensors

    async def versions(self, name: str, version: str | None) -> dict[int, str]:
        """The model's versions on its backend and their states; raises ModelNotFound."""
        status = await self.models.status(name, int(version) if version else None)
        return {int(s["version"]): s["state"] for s in status["model_version_status"]}


class ModelMetadataHandler(ModelHandler):
    """GET /v2/models/{name}[/versions/{v}]"""

    route = "v2_model_metadata"

    async def get(self, name: str, version: str | None = None) -> None:
        versions = await self.versions(name, version)
        model = self.tensors[name]
        self.write_json(
            {
                "name": name,
                "versions": [str(v) for v in sorted(versions)],
                "platform": "imagegate",
                "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": o, "datatype": "FP32", "shape": [-1, -1]} for o in model.outputs],
            }
        )


class ModelReadyHandler(ModelHandler):
    """GET /v2/models/{name}[/versions/{v}]/ready: 200 when a version (or the one named) is AVAILABLE, else 400."""

    route = "v2_model_ready"

    async def get(self, name: str, version: str | None = None) -> None:
        ready = "AVAILABLE" in (await self.versions(name, version)).values()
        self.write_json({"name": name, "ready": ready}, status=200 if ready else 400)


@stream_request_body
class InferHandler(OipHandler):
    """POST /v2/models/{name}[/versions/{v}]/infer: JSON, or JSON then binary tensors (binary data extension)."""

    route = "v2_infer"

    def initialize(self, pipeline: PredictPipeline, limits: RequestLimits, tensors: Mapping[str, TensorModel]) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.tensors = tensors
        self._chunks: list[bytes] = []
        self._received = 0
        self._rejected = False
        self.body_complete = False

    def prepare(self) -> None:
        self._body_started = time.perf_counter()
        declared = self.request.headers.get("Content-Length", "0")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {self.limits.max_body_bytes}")

    def data_received(self, chunk: bytes) -> None:
        if self._rejected:
            return
        self._received += len(chunk)
        if self._received > self.limits.max_body_bytes:
            self._rejected = True
            self._chunks.clear()
            exc = PayloadTooLarge(f"the body is larger than {self.limits.max_body_bytes} bytes")
            self.send_error(exc_info=(type(exc), exc, None))
            return
        self._chunks.append(chunk)

    async def post(self, name: str, version: str | None = None) -> None:
        self.body_complete = True
        if self._rejected:
            return
        self.context.record("upload", self._body_started, time.perf_counter())
        body = b"".join(self._chunks)
        self._chunks.clear()
        header_length = self.request.headers.get("Inference-Header-Content-Length")
        request = parse_infer_request(body, header_length, self.limits.max_images)
        model = self.tensors.get(name)
        wanted = self._check_outputs(model, request)
        top_k = max((o.classification or ALL_CLASSES for o in request.outputs), default=ALL_CLASSES)
        work = self.pipeline.run(name, request.sources, self.context, int(version) if version else None, None, top_k)
        answer = await asyncio.ensure_future(work)
        failures = item_failures(answer)
        if failures is not None:
            raise InvalidRequest(f"the inference failed for {failures}")
        assert model is not None  # the pipeline refused an unknown model
        self._write_outputs(model, request, wanted, answer)

    def _check_outputs(self, model: TensorModel | None, request: InferRequest) -> list[str]:
        if model is None:
            return []  # the pipeline answers model_not_found
        unknown = [o.name for o in request.outputs if o.name not in model.outputs]
        if unknown:
            raise InvalidRequest(f"unknown output(s) {', '.join(unknown)}; the model has {', '.join(model.outputs)}")
        if model.kind != "classification" and any(o.classification for o in request.outputs):
            raise InvalidRequest("the classification extension needs a model that classifies")
        return [o.name for o in request.outputs] or list(model.outputs)

    def _write_outputs(
        self, model: TensorModel, request: InferRequest, wanted: list[str], answer: dict[str, Any]
    ) -> None:
        asked = {o.name: o for o in request.outputs}
        tensors = [self._tensor(model, name, answer["predictions"], asked) for name in wanted]
        binary = [asked[n].binary if n in asked else request.binary_output for n in wanted]
        document: dict[str, Any] = {"model_name": model.name, "model_version": str(answer["model"]["version"])}
        if request.id is not None:
            document["id"] = request.id
        body, header_length = encode_infer_response(document, tensors, binary)
        self.set_header("Server-Timing", server_timing(self.context))
        if header_length is None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
        else:
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Inference-Header-Content-Length", str(header_length))
        self.finish(body)

    @staticmethod
    def _tensor(
        model: TensorModel, name: str, predictions: list[dict[str, Any]], asked: Mapping[str, Any]
    ) -> OutputTensor:
        if model.kind != "classification":
            return raw_tensor(name, predictions)
        k = asked[name].classification if name in asked else None
        return classification_tensor(name, predictions, k) if k else scores_tensor(name, predictions)
