"""The Open Inference Protocol v2 over HTTP (KServe v2, Triton): health, metadata and infer.

Requests and answers are parsed and encoded in ``processing/oip.py``; an infer runs the same
pipeline as ``:predict``. Errors are the protocol's ``{"error": "<message>"}`` with our statuses,
and a failed image fails the whole infer (400, naming the image), as a Triton client expects of a
request whose output has one row per input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tornado.web import HTTPError

from handlers.base import BaseHandler
from handlers.intake import BodyHandler
from handlers.ports import MemoryGate, ModelCatalog, PredictPipeline, ProcessLifecycle, RequestLimits, TensorModel
from processing.context import server_timing
from processing.oip import INPUT_NAME, infer_response, parse_infer_request
from processing.prediction import PredictCall

EXTENSIONS = ("binary_tensor_data", "classification")


class OipHandler(BaseHandler):
    """Errors in the protocol's form: ``{"error": "<message>"}``."""

    def error_document(self, code: str, message: str) -> dict[str, Any]:
        return {"error": message}


class OipNotFoundHandler(OipHandler):
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

    def initialize(self, models: ModelCatalog, process: ProcessLifecycle) -> None:
        self.models = models
        self.process = process

    async def get(self) -> None:
        ready = self.process.ready and (await self.models.readiness())[0]
        self.write_json({"ready": ready}, status=200 if ready else 400)


class ModelHandler(OipHandler):
    def initialize(self, models: ModelCatalog, tensors: Mapping[str, TensorModel]) -> None:
        self.models = models
        self.tensors = tensors

    async def versions(self, name: str, version: str | None) -> dict[int, str]:
        """The model's versions on its backend and their states; raises ModelNotFound."""
        status = await self.models.status(name, int(version) if version else None)
        return {int(s["version"]): s["state"] for s in status["model_version_status"]}


class OipModelMetadataHandler(ModelHandler):
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
                "outputs": [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in model.outputs],
            }
        )


class ModelReadyHandler(ModelHandler):
    """GET /v2/models/{name}[/versions/{v}]/ready: 200 when a version (or the one named) is AVAILABLE, else 400."""

    route = "v2_model_ready"

    async def get(self, name: str, version: str | None = None) -> None:
        ready = "AVAILABLE" in (await self.versions(name, version)).values()
        self.write_json({"name": name, "ready": ready}, status=200 if ready else 400)


class InferHandler(OipHandler, BodyHandler):
    """POST /v2/models/{name}[/versions/{v}]/infer: JSON, or JSON then binary tensors (binary data extension)."""

    route = "v2_infer"

    def initialize(
        self, pipeline: PredictPipeline, limits: RequestLimits, tensors: Mapping[str, TensorModel], memory: MemoryGate
    ) -> None:
        self.pipeline = pipeline
        self.memory = memory
        self.limits = limits
        self.tensors = tensors

    def open_body(self) -> int:
        return self.limits.max_body_bytes

    async def post(self, name: str, version: str | None = None) -> None:
        if not self.body_arrived():
            return
        header_length = self.request.headers.get("Inference-Header-Content-Length")
        request = parse_infer_request(self.body(), header_length, self.limits.max_images)
        model = self.tensors.get(name)  # None: the pipeline answers model_not_found
        wanted = request.wanted(model.output_names, model.kind.classifies) if model is not None else []
        version_number = int(version) if version else None
        call = PredictCall(name, request.sources, version_number, None, request.class_count(), request.detection)
        prediction = await self.for_client(self.pipeline.run(call, self.context, self.hold))
        if prediction is not None:  # else the client went away
            self._write(*infer_response(prediction, request, wanted))

    def _write(self, body: bytes, header_length: int | None) -> None:
        self.set_header("Server-Timing", server_timing(self.context))
        if header_length is None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
        else:
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Inference-Header-Content-Length", str(header_length))
        self.finish(body)
