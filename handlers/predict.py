"""POST /v1/models/{name}[/versions/{n}|/labels/{label}]:predict

Three body forms: JSON (a list of URLs, or ``{"instances": [...], "top_k": k, "encoding": e}``),
multipart/form-data (file fields ``image`` or ``data``; fields ``top_k``, ``encoding``), or an image body (the image
itself). ``top_k`` and ``encoding`` may be query arguments too; so may a detection model's ``score_threshold`` and
``max_detections``, which the JSON object and the form take as fields as well.
The body comes in through the shared intake (``handlers/intake.py``): caps chunk by chunk,
refusals drained or closed, and the work cancelled when the client goes away.
"""

from __future__ import annotations

from typing import Any

from handlers.intake import BodyHandler
from handlers.ports import MemoryGate, PredictPipeline, RequestLimits
from processing.context import server_timing
from processing.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from processing.multipart import MultipartParser, Part, boundary_from_content_type
from processing.prediction import PredictCall
from processing.sources import (
    DETECTION_FIELDS,
    ImageSource,
    PredictRequest,
    parse_detection_params,
    parse_encoding,
    parse_json_request,
    parse_top_k,
)
from processing.v1 import predict_document

FILE_FIELDS = frozenset({"image", "images", "data", "file"})
IMAGE_BODY_TYPES = ("image/", "application/octet-stream")


class PredictHandler(BodyHandler):
    route = "predict"

    def initialize(self, pipeline: PredictPipeline, limits: RequestLimits, memory: MemoryGate) -> None:
        self.pipeline = pipeline
        self.memory = memory
        self.limits = limits
        self._parser: MultipartParser | None = None
        self._form = ""  # the body's form: "json", "multipart" or "image"

    def open_body(self) -> int:
        content_type = self.request.headers.get("Content-Type", "")
        self.upload = False
        self._form, limit = self._body_form(content_type)
        self.upload = self._form != "json"
        self.whole_body = self._form != "multipart"  # the parser keeps a multipart body's parts
        if self._form == "multipart":
            boundary = boundary_from_content_type(content_type)
            self._parser = MultipartParser(boundary, self.limits.max_parts, self.limits.max_upload_bytes)
        return limit

    def _body_form(self, content_type: str) -> tuple[str, int]:
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json":
            return "json", self.limits.max_json_bytes
        if media == "multipart/form-data":
            return "multipart", self.limits.max_body_bytes
        if media.startswith(IMAGE_BODY_TYPES):
            return "image", self.limits.max_upload_bytes
        raise UnsupportedMediaType(
            f"send application/json, multipart/form-data or an image body (image/*), not {media or 'no Content-Type'!r}"
        )

    def take(self, chunk: bytes) -> None:
        if self._parser is not None:
            self._parser.feed(chunk)
        else:
            super().take(chunk)

    def discard(self) -> None:
        super().discard()
        self._parser = None

    async def post(self, name: str, version: str | None = None, label: str | None = None) -> None:
        if not self.body_arrived():
            return
        request = self._parse_body()
        # The query's values are checked even when the body sets them: a wrong value is refused, never ignored.
        query_top_k = parse_top_k(self.get_query_argument("top_k", None))
        query_encoding = parse_encoding(self.get_query_argument("encoding", None))
        query_detection = parse_detection_params({f: self.get_query_argument(f, None) for f in DETECTION_FIELDS})
        top_k = request.top_k if request.top_k is not None else query_top_k
        encoding = request.encoding or query_encoding or "list"
        detection = request.detection.over(query_detection)
        call = PredictCall(name, request.sources, int(version) if version else None, label, top_k, detection)
        prediction = await self.for_client(self.pipeline.run(call, self.context, self.hold))
        if prediction is None:
            return  # the client went away
        self.set_header("Server-Timing", server_timing(self.context))
        self.write_json(predict_document(prediction, self.context, encoding))

    def _parse_body(self) -> PredictRequest:
        if self._form == "json":
            return parse_json_request(self.body(), self.limits.max_images)
        if self._form == "image":
            body = self.body()
            if not body:
                raise InvalidRequest("the request body is empty")
            return PredictRequest((ImageSource(name="body", data=body),))
        assert self._parser is not None
        return _sources_from_parts(self._parser.finish(), self.limits.max_images)


def _sources_from_parts(parts: list[Part], max_images: int) -> PredictRequest:
    files = [p for p in parts if p.name in FILE_FIELDS and not (p.filename == "" and not p.data)]
    if not files:
        raise InvalidRequest("no image given: send files in form fields named 'image' or 'data'")
    if len(files) > max_images:
        raise PayloadTooLarge(f"{len(files)} images given; at most {max_images} per request")
    fields: dict[str, Any] = {p.name: p.data.decode("utf-8", errors="replace") for p in parts if p.filename is None}
    top_k = parse_top_k(fields.get("top_k"))
    sources = tuple(ImageSource(name=p.filename or f"{p.name}[{i}]", data=p.data) for i, p in enumerate(files))
    return PredictRequest(sources, top_k, parse_encoding(fields.get("encoding")), parse_detection_params(fields))
