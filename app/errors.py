"""Errors of the tier's own making beyond one request's input: unknown models, overload, the backend.

Each carries its code, HTTP status and headers as data (see ``processing/errors.py`` for
the base); gRPC statuses become these in ``app/backend/rpc_errors.py``. Overload and backend
failures are ``summarised``: counted, and logged as one WARNING line a period, not one a request.
"""

from __future__ import annotations

from processing.errors import GatewayError


class ModelNotFound(GatewayError, code="model_not_found", status=404):
    """The model, version or label is not served. HTTP 404."""


class RetryLater(GatewayError):
    """A refusal that may succeed later: the answer carries ``Retry-After`` (``server.retry_after_s``)."""

    def __init__(self, message: str, *, retry_after_s: int, log_message: str | None = None) -> None:
        super().__init__(message, log_message=log_message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Overloaded(RetryLater, code="overloaded", status=503, shed=True, summarised=True):
    """The tier is at its in-flight bound; retry later. HTTP 503 with Retry-After."""


class BackendUnavailable(RetryLater, code="backend_unavailable", status=503, summarised=True):
    """TF Serving cannot be reached or is not serving. HTTP 503 with Retry-After."""


class BackendTimeout(RetryLater, code="backend_timeout", status=504, summarised=True):
    """TF Serving did not answer before the deadline. HTTP 504 with Retry-After."""


class BackendFailed(GatewayError, code="backend_error", status=502, summarised=True):
    """TF Serving answered with an unexpected error. HTTP 502."""
