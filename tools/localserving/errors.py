"""Request faults, each answered with the gRPC status code TF Serving uses for it."""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """A fault in answering one request; ``message`` becomes the gRPC status details."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init_subclass__(cls, *, code: grpc.StatusCode) -> None:
        super().__init_subclass__()
        cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """Malformed request: missing or extra inputs, wrong dtype or shape, unparsable tensor."""


class NotFound(ServingError, code=grpc.StatusCode.NOT_FOUND):
    """No loaded servable for the requested model and version."""


class FailedPrecondition(ServingError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The servable exists but cannot answer this request, e.g. an unknown signature name."""


class Unavailable(ServingError, code=grpc.StatusCode.UNAVAILABLE):
    """Try again later: the batching queue is full or the server is stopping."""


class Internal(ServingError, code=grpc.StatusCode.INTERNAL):
    """A fault of the model or of this server, not of the request."""


class DeadlineExceeded(ServingError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The client's deadline passed before the answer was ready."""


class Unknown(ServingError, code=grpc.StatusCode.UNKNOWN):
    """TF Serving's code when a model added by a config reload does not become available."""


_CODES_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def error_for_code(number: int, message: str) -> ServingError:
    """A ServingError carrying canonical status code ``number`` (TF's ``OpError.error_code`` uses them too)."""
    error = ServingError(message)
    error.code = _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
    return error
