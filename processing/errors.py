"""The base of every error the tier answers with, and the errors of reading a request and its images.

Framework-free, at the bottom of the dependency order (``app -> handlers -> processing``),
so all three layers raise and catch the same types. Each class carries what its answer
needs as data: a stable ``code``, the HTTP ``status``, and any response ``headers()``;
the handlers read those from the base class and know no concrete class. ``message`` is
what the client sees; ``log_message`` is for our logs only (it may name internal addresses).

Item errors (``ItemError``) belong to one input of a request: they are reported in that
item's place in a 200 answer and never fail the other items. The other errors fail the
whole request. Errors of fetching live in ``app/fetch/errors.py``; errors of the backend
and of admission in ``app/errors.py``.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of all our errors: HTTP 500, code ``internal_error``.

    A subclass states what differs in its class line: ``class Gone(GatewayError, code="gone", status=410)``.
    """

    code = "internal_error"
    status = 500
    shed = False  # refused unworked because the process is at capacity: access log at DEBUG
    summarised = False  # counted and logged in a periodic summary, not a line per request

    def __init_subclass__(
        cls, *, code: str | None = None, status: int | None = None, shed: bool = False, summarised: bool = False
    ) -> None:
        super().__init_subclass__()
        cls.code = code or cls.code
        cls.status = status or cls.status
        cls.shed = shed or cls.shed
        cls.summarised = summarised or cls.summarised

    def __init__(self, message: str, *, log_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log_message = log_message or message

    def headers(self) -> dict[str, str]:
        """Response headers this error's answer carries (e.g. Retry-After)."""
        return {}


# --- Item errors: reported per input, in a 200 answer -------------------------------


class ItemError(GatewayError, code="item_failed"):
    """One input failed; reported in that item's place, never as the request's status."""


class ImageTooLarge(ItemError, code="image_too_large"):
    """The image header declares more pixels (or a longer side) than allowed."""


class ImageDecodeFailed(ItemError, code="image_decode_failed"):
    """The bytes are not a decodable image (truncated, corrupt, empty)."""


class ModelOutputInvalid(ItemError, code="model_output_invalid"):
    """The model answered this image with values that are not finite numbers (NaN or infinity)."""


class ItemInternalError(ItemError, code="internal_error"):
    """An unexpected failure on one input: a bug in the tier, reported on that item alone."""


# --- Request errors: fail the whole request -------------------------------------------


class InvalidRequest(GatewayError, code="invalid_request", status=400):
    """The request body or parameters are malformed. HTTP 400."""


class PayloadTooLarge(GatewayError, code="payload_too_large", status=413):
    """The body, an upload, or the number of parts/URLs exceeds a limit. HTTP 413."""


class Unauthorized(GatewayError, code="unauthorized", status=401):
    """An admin call without the right bearer token. HTTP 401."""


class NotFound(GatewayError, code="not_found", status=404):
    """No such thing at this path (e.g. a route a model does not have). HTTP 404."""


class UnsupportedMediaType(GatewayError, code="unsupported_media_type", status=415):
    """The request's Content-Type is not one we accept. HTTP 415."""


class InternalError(GatewayError, code="internal_error"):
    """A bug in the tier (e.g. the backend refused a tensor we built). HTTP 500."""
