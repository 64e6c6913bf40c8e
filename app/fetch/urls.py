"""Which URLs may be fetched at all: http(s), no userinfo, bounded length, an encodable host."""

from __future__ import annotations

import urllib.parse

from app.fetch.errors import UrlInvalid

MAX_URL_LENGTH = 2048


def validate_url(url: str) -> urllib.parse.SplitResult:
    """The split URL if it is one we may fetch; raises UrlInvalid."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlInvalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlInvalid("URL contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlInvalid(f"URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlInvalid("only http and https URLs can be fetched")
    if "@" in parts.netloc:
        raise UrlInvalid("URLs with a user name or password are not accepted")
    if not parts.hostname:
        raise UrlInvalid("URL has no host")
    if port == 0:
        raise UrlInvalid("URL has port 0")
    try:
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise UrlInvalid("URL's host name is not valid") from exc
    return parts
