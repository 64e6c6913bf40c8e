"""Which URLs may be fetched at all: http(s), no userinfo, bounded length, an encodable host."""

from __future__ import annotations

import re
import urllib.parse

from app.fetch.errors import UrlInvalid

MAX_URL_LENGTH = 2048
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")


def validate_url(url: str) -> urllib.parse.SplitResult:
    """The split URL if it is one we may fetch; raises UrlInvalid."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlInvalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlInvalid("URL contains whitespace or control characters")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UrlInvalid("URL is not valid text (it holds an unpaired surrogate)") from exc
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


def request_target(parts: urllib.parse.SplitResult) -> str:
    """The path and query to send, in ASCII: other characters percent-encoded as UTF-8, as browsers do."""
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return _NOT_PRINTABLE_ASCII.sub(lambda m: urllib.parse.quote(m.group(0), safe=""), target)


def host_header(parts: urllib.parse.SplitResult) -> str:
    """The Host header for ``parts``, in ASCII (an international name in its IDNA form)."""
    assert parts.hostname is not None
    host = parts.hostname.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host
