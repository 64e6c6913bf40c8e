"""Where gRPC statuses become our errors (by status code, never by message text), and where calls are retried.

A call answered UNAVAILABLE (the backend refused it, or its connection dropped, as when a replica
dies with calls in flight) is made again, at most ``RETRY_ATTEMPTS`` times in all and within its
deadline; with round_robin the new attempt goes to another replica. TF Serving's calls change no
state, so a call a dead replica may have run is safe to repeat. The retries are ours rather than
gRPC's retry policy so that they can be counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from app.backend.types import ModelRef
from app.errors import BackendFailed, BackendTimeout, BackendUnavailable, ModelNotFound
from processing.errors import GatewayError, InternalError

RETRY_ATTEMPTS = 3  # on UNAVAILABLE, within the call's deadline
RETRY_BACKOFF_S = 0.05  # before the second attempt; doubled before each next one


@dataclass
class BackendFailures:
    """The backend's failures: answered with ``Retry-After: retry_after_s`` where retrying helps, and counted
    by code for the periodic log summary (an outage would otherwise log a line per request)."""

    retry_after_s: int
    counts: Counter[str] = field(default_factory=Counter)
    on_failure: Callable[[str], None] = lambda code: None  # e.g. the metrics' failure counter
    on_retry: Callable[[], None] = lambda: None

    def record(self, error: GatewayError) -> GatewayError:
        if error.summarised:
            self.counts[error.code] += 1
            self.on_failure(error.code)
        return error

    def take(self) -> dict[str, int]:
        """The counts since the last call."""
        counts, self.counts = dict(self.counts), Counter()
        return counts


async def call_backend(
    method: Callable[..., Awaitable[Any]],
    request: Any,
    timeout: float,
    model: ModelRef,
    failures: BackendFailures,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Any:
    """One gRPC call within ``timeout``, retried on UNAVAILABLE; a failure is raised as our error, and counted."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return await method(request, timeout=max(deadline - time.monotonic(), 0.001), metadata=metadata or None)
        except grpc.RpcError as exc:
            pause = RETRY_BACKOFF_S * 2 ** (attempt - 1)
            retry = _status(exc) == grpc.StatusCode.UNAVAILABLE and attempt < RETRY_ATTEMPTS
            if retry and time.monotonic() + pause < deadline:
                failures.on_retry()
                await asyncio.sleep(pause)
                continue
            raise failures.record(translate_rpc_error(exc, model, failures.retry_after_s)) from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _status(exc: grpc.RpcError) -> grpc.StatusCode:
    # grpc.aio raises AioRpcError, which is not a grpc.Call but has the same accessors.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    return exc.code() if is_call else grpc.StatusCode.UNKNOWN


def translate_rpc_error(exc: grpc.RpcError, model: ModelRef, retry_after_s: int) -> GatewayError:
    """Our error for a gRPC failure, chosen by status code."""
    code = _status(exc)
    details = (exc.details() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None) or ""
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
