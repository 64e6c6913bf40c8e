"""Framework-free error types, each with a stable ``code``.

The HTTP status each one maps to is documented on the class and applied by the one
table in ``handlers/errors.py``. ``message`` is what the client sees; ``log_message``
is for our logs only (it may name internal addresses).

Item errors (``ItemError``) belong to one input of a request: they are reported in
that item's place in the response and never fail the other items. Request errors
fail the whole request.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of all our errors. HTTP 500, code ``internal_error``."""

    code = "internal_error"

    def __init__(self, message: str, *, log_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log_message = log_message or message


# --- Item errors: reported per input -------------------------------------------------


class ItemError(GatewayError):
    """One input failed. Reported in the item; HTTP 422 if a request has only this item's error."""

    code = "item_failed"


class UrlInvalid(ItemError):
    """The URL is malformed, not http(s), or carries userinfo."""

    code = "url_invalid"


class SourceForbidden(ItemError):
    """The URL's host resolves to an address the policy forbids (loopback, private, metadata...)."""

    code = "source_forbidden"


class RedirectForbidden(SourceForbidden):
    """A redirect points at a forbidden scheme or address."""

    code = "redirect_forbidden"


class TooManyRedirects(ItemError):
    """More redirects than allowed (or a loop)."""

    code = "too_many_redirects"


class SourceUnreachable(ItemError):
    """DNS failure, connection refused or reset."""

    code = "source_unreachable"


class SourceHttpError(ItemError):
    """The source answered with a non-2xx status."""

    code = "source_http_error"


class SourceTimeout(ItemError):
    """Connecting or downloading took longer than allowed."""

    code = "source_timeout"


class SourceTooLarge(ItemError):
    """The body is larger than the per-source byte cap (declared or streamed)."""

    code = "source_too_large"


class ContentTypeForbidden(ItemError):
    """The Content-Type or the first bytes are not an accepted image format."""

    code = "content_type_forbidden"


class ImageTooLarge(ItemError):
    """The image header declares more pixels (or a longer side) than allowed."""

    code = "image_too_large"


class ImageDecodeFailed(ItemError):
    """The bytes are not a decodable image (truncated, corrupt, empty)."""

    code = "image_decode_failed"


# --- Request errors: fail the whole request -------------------------------------------


class InvalidRequest(GatewayError):
    """The request body or parameters are malformed. HTTP 400."""

    code = "invalid_request"


class PayloadTooLarge(GatewayError):
    """The body, an upload, or the number of parts/URLs exceeds a limit. HTTP 413."""

    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    """The request's Content-Type is not one we accept. HTTP 415."""

    code = "unsupported_media_type"


class ModelNotFound(GatewayError):
    """The model, version or label is not served. HTTP 404."""

    code = "model_not_found"


class Overloaded(GatewayError):
    """The tier is at its in-flight bound; retry later. HTTP 503 with Retry-After."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1, log_message: str | None = None) -> None:
        super().__init__(message, log_message=log_message)
        self.retry_after_s = retry_after_s


class BackendUnavailable(GatewayError):
    """TF Serving cannot be reached or is not serving. HTTP 503."""

    code = "backend_unavailable"


class BackendTimeout(GatewayError):
    """TF Serving did not answer before the deadline. HTTP 504."""

    code = "backend_timeout"


class BackendFailed(GatewayError):
    """TF Serving answered with an unexpected error. HTTP 502."""

    code = "backend_error"


class InternalError(GatewayError):
    """A bug in the tier (e.g. the backend refused a tensor we built). HTTP 500."""

    code = "internal_error"
