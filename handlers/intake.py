"""The body intake every route that takes a body goes through (v1 predict, v2 infer).

The body streams in: its cap is enforced chunk by chunk, and a body over it is answered 413 as soon
as it crosses the cap. A request refused on its headers alone has a body of at most ``DRAIN_BYTES``
read and dropped before it is answered, so its connection stays usable for the next request; a bigger
one is answered at once, with ``Connection: close``. Chunked bodies count as big until they prove
small. An answer given while the body still arrives ends the connection: Tornado closes it instead of
reading on, and the server's lingering close (``app/serving/lingering.py``) reads and drops the rest
first, so that the client reads the answer instead of a reset. When the client goes away before its
answer, the route's work (downloads, any Predict not yet sent) is cancelled.

Memory: a body is reserved in the process's memory budget before it is read, by its Content-Length in
``prepare()`` (which Tornado awaits before it reads the body); a chunked body chunk by chunk, each chunk's
room awaited before it is kept (Tornado awaits ``data_received``). No room within ``server.memory_wait_s``:
503 ``overloaded`` with Retry-After. The hold goes to the pipeline, which grows it for downloads and decoding,
and is released when the request ends. A body with a Content-Length goes into one buffer of that size.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPServerRequest
from tornado.web import Application, stream_request_body

from handlers.base import BaseHandler
from handlers.ports import HeldMemory, MemoryGate
from processing.errors import GatewayError, PayloadTooLarge

T = TypeVar("T")
# A request refused on its headers has its body read and dropped up to this size, so its connection
# stays usable for the next request; a bigger body is answered at once, with Connection: close.
DRAIN_BYTES = 1 << 20


@stream_request_body
class BodyHandler(BaseHandler):
    """A route that takes a body: ``open_body`` checks the headers and gives the cap, ``take`` keeps each chunk."""

    body_complete = False
    upload = True  # reading the body is the "upload" stage (a JSON list of URLs is not)
    _received = 0
    _limit = 0
    _rejected = False  # answered already, while the body was arriving
    _refusal: GatewayError | None = None  # to answer once the body has been read and dropped
    _client_gone = False
    _work: asyncio.Future[Any] | None = None
    memory: MemoryGate  # set by the route's initialize()
    hold: HeldMemory | None = None  # the body's bytes in the memory budget, then the pipeline's
    _buffer: bytearray | None = None  # a body with a Content-Length: one buffer of that size
    _chunks: list[bytes]  # a chunked body's chunks
    whole_body = True  # the intake keeps the body (``body()``); False: the route's ``take`` keeps what it needs

    def __init__(self, application: Application, request: HTTPServerRequest, **kwargs: Any) -> None:
        super().__init__(application, request, **kwargs)
        # The caps are the intake's, checked as the body streams in. Tornado's own limit is for the routes that
        # take no body (app/serving/server.py); over it, it would answer a bare 400 whatever this route's cap.
        if isinstance(request.connection, HTTP1Connection):
            request.connection.set_max_body_size(sys.maxsize)

    def open_body(self) -> int:
        """Check the request's headers and get ready for its body; the body's cap in bytes. Raises GatewayError."""
        raise NotImplementedError

    def take(self, chunk: bytes) -> None:
        """Keep one chunk of the body (``body()`` has it); may raise GatewayError to refuse the request."""
        if self._buffer is not None and self._received <= len(self._buffer):
            self._buffer[self._received - len(chunk) : self._received] = chunk
        else:
            self._chunks.append(chunk)

    def discard(self) -> None:
        """Let go of what was kept of a body (safe before ``prepare()`` ran: a request that failed first)."""
        self._chunks = []
        self._buffer = None

    def body(self) -> bytes | bytearray:
        """The whole body, once, without a copy when it came with its length; the intake lets go of it."""
        body: bytes | bytearray = self._buffer if self._buffer is not None else b"".join(self._chunks)
        self._buffer = None
        self._chunks.clear()
        return body

    async def prepare(self) -> None:
        self._body_started = time.perf_counter()
        self._chunks = []
        try:
            self._limit = self.open_body()
            declared = self._declared_length()
            if declared > self._limit:
                raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {self._limit}")
            # Reserved before a byte of the body is read: Tornado reads it once prepare() is done.
            self.hold = await self.memory.reserve(declared) if declared else self.memory.open()
            if declared and self.whole_body:
                self._buffer = bytearray(declared)
        except GatewayError as exc:
            if self._declared_length() > DRAIN_BYTES:
                raise  # answered now; write_error says Connection: close
            self._refusal = exc  # answered after the body is read and dropped: the connection stays usable

    def _declared_length(self) -> int:
        """The Content-Length, 0 without a body; a chunked body counts as big until it proves small."""
        if "chunked" in self.request.headers.get("Transfer-Encoding", "").lower():
            return 0
        declared = self.request.headers.get("Content-Length", "0")
        return int(declared) if declared.isascii() and declared.isdigit() else 0

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._rejected:
            return None
        self._received += len(chunk)
        if self._refusal is not None:
            if self._received > DRAIN_BYTES:  # a chunked body bigger than we drain: answer now and hang up
                self._answer_now(self._refusal)
            return None
        try:
            if self._received > self._limit:
                raise PayloadTooLarge(f"the body is larger than {self._limit} bytes")
            if self.hold is not None and self._received > self.hold.nbytes:  # chunked: room first (flow control)
                return self._take_in_budget(chunk, self.hold)
            self.take(chunk)
        except GatewayError as exc:
            self._answer_now(exc)
        return None

    async def _take_in_budget(self, chunk: bytes, hold: HeldMemory) -> None:
        """Keep ``chunk`` once the budget has room for it; Tornado reads no more of the body meanwhile."""
        try:
            await hold.grow(self._received - hold.nbytes)
            self.take(chunk)
        except GatewayError as exc:
            self._answer_now(exc)

    def _answer_now(self, exc: GatewayError) -> None:
        """Answer while the body is still arriving; the connection then lingers and closes."""
        self.discard()
        self._rejected = True
        self.log_exception(type(exc), exc, None)
        self.send_error(exc_info=(type(exc), exc, None))

    def body_arrived(self) -> bool:
        """Whether to go on with the body: False when it was refused while it arrived (answered already).

        A refusal of the headers, held while the body was read and dropped, is raised now.
        """
        self.body_complete = True
        if self.upload:
            self.context.record("upload", self._body_started, time.perf_counter())
        if self._rejected:
            return False
        if self._refusal is not None:
            raise self._refusal
        return True

    async def for_client(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None when the client went away first: then ``work`` is cancelled."""
        self._work = task = asyncio.ensure_future(work)
        try:
            return await task
        except asyncio.CancelledError:
            if self._client_gone:
                return None  # nobody to answer; downloads and unsent Predicts were cancelled
            raise
        finally:
            # A failed task holds its exception, whose traceback holds this frame and so this
            # handler: let go of the task, or every refused request is a cycle for the collector.
            self._work = None
            del task

    def on_connection_close(self) -> None:
        """The client went away: cancel its downloads and any Predict not yet sent."""
        super().on_connection_close()
        self._client_gone = True
        if self._work is not None:
            self._work.cancel()
        else:
            self._let_go()

    def on_finish(self) -> None:
        super().on_finish()
        self._let_go()

    def _let_go(self) -> None:
        """The request's memory handed back to the budget: it ended, or its client went away."""
        self.discard()
        if self.hold is not None:
            self.hold.release()
