"""Why one URL could not be fetched: item errors, reported in that item's place in the answer."""

from __future__ import annotations

from processing.errors import ItemError


class UrlInvalid(ItemError, code="url_invalid"):
    """The URL is malformed, not http(s), or carries userinfo."""


class SourceForbidden(ItemError, code="source_forbidden"):
    """The URL's host resolves to an address the policy forbids (loopback, private, metadata...)."""


class RedirectForbidden(SourceForbidden, code="redirect_forbidden"):
    """A redirect points at a forbidden scheme or address."""


class TooManyRedirects(ItemError, code="too_many_redirects"):
    """More redirects than allowed (or a loop)."""


class SourceUnreachable(ItemError, code="source_unreachable"):
    """DNS failure, connection refused or reset."""


class SourceHttpError(ItemError, code="source_http_error"):
    """The source answered with a non-2xx status."""


class SourceTimeout(ItemError, code="source_timeout"):
    """Connecting or downloading took longer than allowed."""


class SourceTooLarge(ItemError, code="source_too_large"):
    """The body is larger than the per-source byte cap (declared or streamed)."""


class ContentTypeForbidden(ItemError, code="content_type_forbidden"):
    """The Content-Type or the first bytes are not an accepted image format."""
