"""The one table from our error types to HTTP statuses, looked up along the class hierarchy."""

from __future__ import annotations

from processing import errors

STATUS_BY_ERROR: dict[type[errors.GatewayError], int] = {
    errors.ItemError: 422,
    errors.InvalidRequest: 400,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.ModelNotFound: 404,
    errors.Overloaded: 503,
    errors.BackendUnavailable: 503,
    errors.BackendTimeout: 504,
    errors.BackendFailed: 502,
    errors.InternalError: 500,
    errors.GatewayError: 500,
}


def status_for(exc: errors.GatewayError) -> int:
    """The HTTP status of ``exc``: the entry of its nearest class in STATUS_BY_ERROR."""
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500
