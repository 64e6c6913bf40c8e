"""Logging: one access-log line per request, in text or JSON, and the process's log format.

``--log-format json`` writes one JSON object per line (time, level, logger, message, and for
access lines the request id, method, path, model, version, status, duration and item error
counts); a traceback goes into the object's ``exception`` field, never onto lines of its own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from tornado.web import RequestHandler

access_log = logging.getLogger("tornado.access")
LogFormat = Literal["text", "json"]
# Fields an access line carries besides its message (LogRecord attributes set through ``extra``).
PROBE_REFUSALS = frozenset({400, 503})  # "not ready" from /v2/health/ready and /readyz
ACCESS_FIELDS = ("request_id", "method", "path", "model", "version", "status", "duration_ms", "item_errors")


def configure_logging(level: str, log_format: LogFormat) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update({key: getattr(record, key) for key in ACCESS_FIELDS if hasattr(record, key)})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def access_level(handler: RequestHandler) -> int:
    """Tornado's levels, except for answers that come by the hundred in an overload or an outage.

    Tornado logs every 5xx at ERROR. Requests shed at capacity are logged at DEBUG, other 5xx the
    tier chose on purpose (backend unavailable, timed out) at WARNING; both are counted, and the
    server logs one summary line a period. A readiness probe's "not ready" (``/readyz`` 503 while
    starting or draining, ``/v2/health/ready`` 400) is a result, at INFO: ERROR is for what an operator
    must act on.
    """
    status = handler.get_status()
    if getattr(handler, "shed", False):
        return logging.DEBUG
    if getattr(handler, "probe", False) and status in PROBE_REFUSALS:
        return logging.INFO
    if getattr(handler, "summarised", False):
        return logging.WARNING
    if status < 400:
        return logging.INFO
    return logging.WARNING if status < 500 else logging.ERROR


def log_access(handler: RequestHandler, level: int) -> None:
    if not access_log.isEnabledFor(level):
        return
    request, status = handler.request, handler.get_status()
    millis = 1000.0 * request.request_time()
    context = getattr(handler, "context", None)
    request_id = context.request_id if context is not None else ""
    extra: dict[str, Any] = {
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(millis, 2),
    }
    if context is not None and context.model is not None:
        errors = {code: n for code, n in context.outcomes.items() if code != "ok"}
        extra.update(model=context.model, version=context.version, item_errors=errors)
    message = "%d %s %s (%s) %.2fms rid=%s"
    access_log.log(
        level, message, status, request.method, request.uri, request.remote_ip, millis, request_id, extra=extra
    )
