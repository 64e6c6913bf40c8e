"""Where gRPC statuses become our errors: by status code, never by message text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from app.backend.types import ModelRef
from app.errors import BackendFailed, BackendTimeout, BackendUnavailable, ModelNotFound
from processing.errors import GatewayError, InternalError


async def call_backend(method: Callable[..., Awaitable[Any]], request: Any, timeout: float, model: ModelRef) -> Any:
    """One gRPC call with its deadline; a gRPC failure is raised as our error for its status."""
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise translate_rpc_error(exc, model) from exc


def translate_rpc_error(exc: grpc.RpcError, model: ModelRef) -> GatewayError:
    """Our error for a gRPC failure, chosen by status code."""
    # grpc.aio raises AioRpcError, which is not a grpc.Call but has the same accessors.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = (exc.details() if is_call else None) or ""
    log = f"{code.name} from backend for model {model.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(f"model {model.describe()} is not served: {details}", log_message=log)
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable("the model backend is unavailable; try again shortly", log_message=log)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout("the model backend did not answer in time", log_message=log)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InternalError("the tier built a request the backend refused; this is a bug", log_message=log)
    return BackendFailed(f"the model backend failed ({code.name})", log_message=log)
