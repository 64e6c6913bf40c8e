"""Where gRPC statuses become our errors: by status code, never by message text; and where they are counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from app.backend.types import ModelRef
from app.errors import BackendFailed, BackendTimeout, BackendUnavailable, ModelNotFound
from processing.errors import GatewayError, InternalError


@dataclass
class BackendFailures:
    """The backend's failures: answered with ``Retry-After: retry_after_s`` where retrying helps, and counted
    by code for the periodic log summary (an outage would otherwise log a line per request)."""

    retry_after_s: int
    counts: Counter[str] = field(default_factory=Counter)

    def record(self, error: GatewayError) -> GatewayError:
        if error.summarised:
            self.counts[error.code] += 1
        return error

    def take(self) -> dict[str, int]:
        """The counts since the last call."""
        counts, self.counts = dict(self.counts), Counter()
        return counts


async def call_backend(
    method: Callable[..., Awaitable[Any]], request: Any, timeout: float, model: ModelRef, failures: BackendFailures
) -> Any:
    """One gRPC call with its deadline; a gRPC failure is raised as our error for its status, and counted."""
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise failures.record(translate_rpc_error(exc, model, failures.retry_after_s)) from exc


def translate_rpc_error(exc: grpc.RpcError, model: ModelRef, retry_after_s: int) -> GatewayError:
    """Our error for a gRPC failure, chosen by status code."""
    # grpc.aio raises AioRpcError, which is not a grpc.Call but has the same accessors.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = (exc.details() if is_call else None) or ""
    log = f"{code.name} from backend for model {model.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(f"model {model.describe()} is not served: {details}", log_message=log)
    if code == grpc.StatusCode.UNAVAILABLE:
        message = "the model backend is unavailable; try again shortly"
        return BackendUnavailable(message, retry_after_s=retry_after_s, log_message=log)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = "the model backend did not answer in time"
        return BackendTimeout(message, retry_after_s=retry_after_s, log_message=log)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InternalError("the tier built a request the backend refused; this is a bug", log_message=log)
    return BackendFailed(f"the model backend failed ({code.name})", log_message=log)
