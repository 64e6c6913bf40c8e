"""The base of our handlers: JSON bodies and one error format for every failure."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from types import TracebackType
from typing import Any

from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPServerRequest
from tornado.web import Application, HTTPError, RequestHandler

from handlers.ports import ProcessLifecycle
from processing.context import RequestContext, request_id_from, traceparent_from
from processing.errors import GatewayError

log = logging.getLogger("imagegate.http")
access_log = logging.getLogger("tornado.access")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def close_after_answer(request: HTTPServerRequest) -> None:
    """Have Tornado close the request's connection once its answer is written.

    A ``Connection: close`` header that a handler sets is sent, but Tornado keeps the connection open
    and reads the next request from it; RFC 9112 (9.6) says a server that sends ``close`` MUST close
    the connection after that answer. Tornado does so when the request itself said ``Connection: close``,
    from the connection's ``_disconnect_on_finish``: there is no public call for it, so set that.
    """
    connection = request.connection
    if isinstance(connection, HTTP1Connection):
        connection._disconnect_on_finish = True


class TrackedHandler(RequestHandler):
    """Every route's common ground: the request's context and id, and counting for the drain.

    The context (``processing/context.py``) gets the client's ``X-Request-Id`` (or a new id), which
    every answer echoes. The request is counted from its handler's start to its answer, so the
    process's drain knows when the last one is done; the process state comes in the application's
    settings (``process_state``). While the process drains, answers say ``Connection: close`` and the
    connection is closed once the answer is written, so clients take their next request elsewhere.
    """

    route = "other"  # the route's fixed name in metrics

    def __init__(self, application: Application, request: HTTPServerRequest, **kwargs: Any) -> None:
        self.context = RequestContext(
            request_id_from(request.headers.get("X-Request-Id")),
            traceparent_from(request.headers.get("traceparent")),
            route=self.route,
            headers=request.headers,
        )
        self._process: ProcessLifecycle | None = application.settings.get("process_state")
        self._counted = self._process is not None
        if self._process is not None:
            self._process.request_started()
        super().__init__(application, request, **kwargs)

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.context.request_id)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        if self._process is not None and self._process.draining and not self._headers_written:
            self.set_header("Connection", "close")
            close_after_answer(self.request)
        return super().finish(chunk)

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._uncount()

    def _uncount(self) -> None:
        if self._counted and self._process is not None:
            self._counted = False
            self._process.request_finished()


class BaseHandler(TrackedHandler):
    """Writes ``{"error": {"code", "message"}}`` for every error, ours or Tornado's."""

    shed = False  # answered 503 because the process is at capacity
    summarised = False  # answered with an error that is counted and summarised, not logged a line each
    body_complete = True  # the request body has been read (a streaming handler says so when it has)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_json(self, document: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        # allow_nan=False: a NaN that escaped the item checks is a bug (500), never an invalid JSON answer.
        self.finish(json.dumps(document, separators=(",", ":"), allow_nan=False))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], GatewayError):
            status_code = exc_info[1].status
        super().send_error(status_code, **kwargs)

    def log_exception(
        self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(value, GatewayError) and value.summarised:
            return  # counted where it happened, summarised once a period by the server
        if isinstance(value, GatewayError):
            log.info("%s %s -> %s: %s", self.request.method, self.request.path, value.code, value.log_message)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        if isinstance(exc, GatewayError):
            code, message = exc.code, exc.message
            self.shed, self.summarised = exc.shed, exc.summarised
            for name, value in exc.headers().items():
                self.set_header(name, value)
        elif isinstance(exc, HTTPError) and exc.reason:
            code, message = _code_for_status(status_code), exc.reason
        else:
            code, message = _code_for_status(status_code), _phrase(status_code)
        if not self.body_complete:
            # Tornado closes the connection rather than read the rest of the body; say so, or the
            # client (or a proxy keeping upstream connections) sends its next request into a closed socket.
            self.set_header("Connection", "close")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(self.error_document(code, message)))

    def error_document(self, code: str, message: str) -> dict[str, Any]:
        """An error answer's body; a protocol with its own error format (handlers/oip.py) overrides it."""
        return {"error": {"code": code, "message": message, "request_id": self.context.request_id}}


def _code_for_status(status: int) -> str:
    if status == 500:
        return "internal_error"
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


class NotFoundHandler(BaseHandler):
    """Unknown paths get the same JSON error format."""

    route = "not_found"

    def prepare(self) -> None:
        raise HTTPError(404, reason=f"no such path: {self.request.path}")
