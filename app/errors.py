"""Errors of the tier's own making beyond one request's input: unknown models, overload, the backend.

Each carries its code, HTTP status and headers as data (see ``processing/errors.py`` for
the base); gRPC statuses become these in ``app/backend/rpc_errors.py``.
"""

from __future__ import annotations

from processing.errors import GatewayError


class ModelNotFound(GatewayError, code="model_not_found", status=404):
    """The model, version or label is not served. HTTP 404."""


class Overloaded(GatewayError, code="overloaded", status=503, shed=True):
    """The tier is at its in-flight bound; retry later. HTTP 503 with Retry-After."""

    def __init__(self, message: str, *, retry_after_s: int, log_message: str | None = None) -> None:
        super().__init__(message, log_message=log_message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class BackendUnavailable(GatewayError, code="backend_unavailable", status=503):
    """TF Serving cannot be reached or is not serving. HTTP 503."""


class BackendTimeout(GatewayError, code="backend_timeout", status=504):
    """TF Serving did not answer before the deadline. HTTP 504."""


class BackendFailed(GatewayError, code="backend_error", status=502):
    """TF Serving answered with an unexpected error. HTTP 502."""
