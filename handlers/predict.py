"""POST /v1/models/{name}[/versions/{n}|/labels/{label}]:predict

Three body forms: JSON (a list of URLs, or ``{"instances": [...], "top_k": k}``),
multipart/form-data (file fields ``image`` or ``data``), or a raw image body. The body
streams in: its caps are enforced chunk by chunk, and an oversized request is answered
413 as soon as it crosses the cap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado.web import stream_request_body

from handlers.base import BaseHandler
from handlers.ports import PredictPipeline, RequestLimits
from processing.context import server_timing
from processing.errors import GatewayError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from processing.multipart import MultipartParser, Part, boundary_from_content_type
from processing.sources import ImageSource, PredictRequest, parse_json_request, parse_top_k

FILE_FIELDS = frozenset({"image", "images", "data", "file"})
RAW_TYPES = ("image/", "application/octet-stream")
# A request refused on its headers has its body read and dropped up to this size, so its connection
# stays usable for the next request; a bigger body is not read: the answer says Connection: close.
DRAIN_BYTES = 1 << 20


@stream_request_body
class PredictHandler(BaseHandler):
    route = "predict"

    def initialize(self, pipeline: PredictPipeline, limits: RequestLimits) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self._chunks: list[bytes] = []
        self._received = 0
        self._parser: MultipartParser | None = None
        self._kind = ""
        self._limit = 0
        self._rejected = False  # answered already, while the body was arriving
        self._refusal: GatewayError | None = None  # to answer once the body has been read and dropped
        self._client_gone = False
        self.body_complete = False
        self._work: asyncio.Future[dict[str, Any]] | None = None

    def prepare(self) -> None:
        self._body_started = time.perf_counter()
        try:
            self._check_head()
        except GatewayError as exc:
            if self._declared_length() > DRAIN_BYTES:
                raise  # answered now; write_error says Connection: close
            self._refusal = exc  # answered after the body is read and dropped: the connection stays usable

    def _check_head(self) -> None:
        content_type = self.request.headers.get("Content-Type", "")
        self._kind, self._limit = self._body_kind(content_type)
        if self._kind == "multipart":
            boundary = boundary_from_content_type(content_type)
            self._parser = MultipartParser(boundary, self.limits.max_parts, self.limits.max_upload_bytes)
        declared = self._declared_length()
        if declared > self._limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {self._limit}")

    def _declared_length(self) -> int:
        """The Content-Length, 0 without a body; a chunked body counts as big until it proves small."""
        if "chunked" in self.request.headers.get("Transfer-Encoding", "").lower():
            return 0
        declared = self.request.headers.get("Content-Length", "0")
        return int(declared) if declared.isascii() and declared.isdigit() else 0

    def _body_kind(self, content_type: str) -> tuple[str, int]:
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json":
            return "json", self.limits.max_json_bytes
        if media == "multipart/form-data":
            return "multipart", self.limits.max_body_bytes
        if media.startswith(RAW_TYPES):
            return "raw", self.limits.max_upload_bytes
        raise UnsupportedMediaType(
            f"send application/json, multipart/form-data or an image body (image/*), not {media or 'no Content-Type'!r}"
        )

    def data_received(self, chunk: bytes) -> None:
        if self._rejected:
            return
        self._received += len(chunk)
        if self._refusal is not None:
            if self._received > DRAIN_BYTES:  # a chunked body bigger than we drain: answer now and hang up
                self._answer_now(self._refusal)
            return
        try:
            if self._received > self._limit:
                raise PayloadTooLarge(f"the body is larger than {self._limit} bytes")
            if self._parser is not None:
                self._parser.feed(chunk)
            else:
                self._chunks.append(chunk)
        except GatewayError as exc:
            self._answer_now(exc)

    def _answer_now(self, exc: GatewayError) -> None:
        """Answer while the body is still arriving; Tornado then closes the connection instead of reading on."""
        self._chunks.clear()
        self._parser = None
        self._rejected = True
        self.log_exception(type(exc), exc, None)
        self.send_error(exc_info=(type(exc), exc, None))

    async def post(self, name: str, version: str | None = None, label: str | None = None) -> None:
        self.body_complete = True
        if self._kind in ("multipart", "raw"):
            self.context.record("upload", self._body_started, time.perf_counter())
        if self._rejected:
            return
        if self._refusal is not None:
            raise self._refusal
        request = self._parse_body()
        # The query's top_k is checked even when the body sets one: a wrong value is refused, never ignored.
        query_top_k = parse_top_k(self.get_query_argument("top_k", None))
        top_k = request.top_k if request.top_k is not None else query_top_k
        work = self.pipeline.run(name, request.sources, self.context, int(version) if version else None, label, top_k)
        self._work = asyncio.ensure_future(work)
        try:
            answer = await self._work
        except asyncio.CancelledError:
            if self._client_gone:
                return  # nobody to answer; downloads and unsent Predicts were cancelled
            raise
        finally:
            # A failed task holds its exception, whose traceback holds this frame and so this
            # handler: let go of the task, or every refused request is a cycle for the collector.
            self._work = None
        self.set_header("Server-Timing", server_timing(self.context))
        self.write_json(answer)

    def on_connection_close(self) -> None:
        """The client went away: cancel its downloads and any Predict not yet sent."""
        super().on_connection_close()
        self._client_gone = True
        if self._work is not None:
            self._work.cancel()

    def _parse_body(self) -> PredictRequest:
        body = b"".join(self._chunks)
        self._chunks.clear()
        if self._kind == "json":
            return parse_json_request(body, self.limits.max_images)
        if self._kind == "raw":
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
    sources = tuple(ImageSource(name=p.filename or f"{p.name}[{i}]", data=bytes(p.data)) for i, p in enumerate(files))
    return PredictRequest(sources, top_k)
