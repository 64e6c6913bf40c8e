"""Which URLs may be fetched at all: http(s), no userinfo, bounded length, an encodable host.

``validate_url`` reads a URL once into a ``Hop``: everything one GET needs (host, port, ``Host``
header, request target), so the per-image path parses nothing twice.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass

from app.fetch.errors import UrlInvalid

MAX_URL_LENGTH = 2048
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")  # \s: what str.isspace() calls a space
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Hop:
    """One URL to GET, read once."""

    url: str
    scheme: str  # "http" or "https"
    host: str  # as the URL names it, lower case (a name, or an IP literal without brackets)
    port: int  # the URL's, or the scheme's default
    host_header: str  # in ASCII: an international name in its IDNA form, the port when the URL has one
    target: str  # path and query in ASCII: other characters percent-encoded as UTF-8, as browsers do


def validate_url(url: str) -> Hop:
    """The hop to ``url`` if it is one we may fetch; raises UrlInvalid."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlInvalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    if _SPACE_OR_CONTROL.search(url):
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
    if parts.scheme not in DEFAULT_PORTS:
        raise UrlInvalid("only http and https URLs can be fetched")
    if "@" in parts.netloc:
        raise UrlInvalid("URLs with a user name or password are not accepted")
    host = parts.hostname
    if not host:
        raise UrlInvalid("URL has no host")
    if port == 0:
        raise UrlInvalid("URL has port 0")
    try:
        ascii_host = _ascii_host(host)
    except UnicodeError as exc:
        raise UrlInvalid("URL's host name is not valid") from exc
    bracketed = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return Hop(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[parts.scheme],
        host_header=f"{bracketed}:{port}" if port is not None else bracketed,
        target=_NOT_PRINTABLE_ASCII.sub(lambda m: urllib.parse.quote(m.group(0), safe=""), target),
    )


@functools.lru_cache(maxsize=1024)
def _ascii_host(host: str) -> str:
    """A host name in ASCII (IDNA), remembered: Python's IDNA codec is a third of a URL's check, and the hosts a
    tier fetches from repeat (a few origins and CDNs). A name that does not encode raises, and is not remembered."""
    return host.encode("idna").decode("ascii")
