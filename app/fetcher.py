"""Downloading image URLs that strangers send us, safely.

- Only http and https, no userinfo, a bounded URL length.
- Every address is checked where it is dialled: ``GuardedResolver`` wraps the resolver
  the HTTP client connects through, so odd IPv4 spellings, IPv4-mapped IPv6 and DNS
  rebinding are judged on the address actually used, never on the URL text.
- Redirects are followed here, hop by hop, each hop checked again.
- Content-Length is checked before the body is read, the byte cap while it streams
  (after content decoding, so a gzip bomb stops at the cap), the Content-Type and the
  first bytes are checked, and connect and total timeouts bound every source.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, parse_response_start_line
from tornado.iostream import StreamClosedError
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError, SimpleAsyncHTTPClient

from processing.errors import (
    ContentTypeForbidden,
    GatewayError,
    ImageDecodeFailed,
    RedirectForbidden,
    SourceForbidden,
    SourceHttpError,
    SourceTimeout,
    SourceTooLarge,
    SourceUnreachable,
    TooManyRedirects,
    UrlInvalid,
)
from processing.sniff import sniff_format

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
SNIFF_BYTES = 16

# Ranges Python's ipaddress does not already treat as non-global but which reach
# IPv4 space through a translator (NAT64, 6to4), so could reach internal hosts.
EXTRA_DENIED = ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16")


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 10.0
    max_bytes: int = 20 << 20
    max_redirects: int = 3
    max_concurrent: int = 64
    content_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")


class AddressPolicy:
    """Which hosts and addresses the tier may connect to.

    Denied by default: everything that is not a global unicast address (loopback,
    unspecified, link-local with the metadata service, private, shared, multicast,
    reserved, documentation) plus the translator ranges in EXTRA_DENIED.
    ``allow_cidrs`` carves exceptions (tests and development allow loopback);
    ``deny_cidrs`` adds ranges; ``allow_hosts``, when set, is the only hosts allowed.
    """

    def __init__(
        self,
        allow_cidrs: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        deny_hosts: Iterable[str] = (),
    ) -> None:
        self._allow = [ipaddress.ip_network(c, strict=False) for c in allow_cidrs]
        self._deny = [ipaddress.ip_network(c, strict=False) for c in (*deny_cidrs, *EXTRA_DENIED)]
        self._allow_hosts = frozenset(h.lower().rstrip(".") for h in allow_hosts)
        self._deny_hosts = frozenset(h.lower().rstrip(".") for h in deny_hosts)

    def check_host(self, host: str) -> None:
        name = host.lower().rstrip(".")
        if name in self._deny_hosts or (self._allow_hosts and name not in self._allow_hosts):
            raise SourceForbidden(f"host {host} is not allowed")

    def check_address(self, address: IPAddress) -> None:
        ip = _unmap(address)
        if any(ip in net for net in self._allow if net.version == ip.version):
            return
        if _is_special(ip) or any(ip in net for net in self._deny if net.version == ip.version):
            raise SourceForbidden(
                "the URL's host resolves to an address that is not allowed",
                log_message=f"refused to connect to {ip}",
            )


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(address.compressed.split("%")[0])
    return address


def _is_special(ip: IPAddress) -> bool:
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
    )


class GuardedResolver(Resolver):
    """Resolves through ``inner`` and refuses the host unless every address is allowed."""

    def initialize(self, inner: Resolver, policy: AddressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        self._policy.check_host(host)
        try:
            addresses = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise SourceUnreachable(f"cannot resolve host {host}", log_message=str(exc)) from exc
        if not addresses:
            raise SourceUnreachable(f"host {host} has no addresses")
        for _family, sockaddr in addresses:
            self._policy.check_address(ipaddress.ip_address(sockaddr[0]))
        return list(addresses)


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
    return parts


class _Download:
    """Per-hop checks run by the HTTP client's header and body callbacks."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.lines: list[str] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.checked_head = False
        self.cancelled = False
        self.code = 0

    def on_header(self, line: str) -> None:
        if line.strip():
            self.lines.append(line)
            return
        self.code = parse_response_start_line(self.lines[0].strip()).code
        if not self.is_success:
            return
        headers = HTTPHeaders.parse("".join(self.lines[1:]))
        self._check_length(headers.get("Content-Length"))
        self._check_type(headers.get("Content-Type"))

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    def _check_length(self, value: str | None) -> None:
        if value is not None and value.strip().isdigit() and int(value) > self.limits.max_bytes:
            raise SourceTooLarge(f"the source declares {int(value)} bytes; the limit is {self.limits.max_bytes}")

    def _check_type(self, value: str | None) -> None:
        if value is None:
            return
        media = value.split(";")[0].strip().lower()
        if media not in self.limits.content_types:
            raise ContentTypeForbidden(f"the source's Content-Type {media!r} is not an accepted image type")

    def on_chunk(self, chunk: bytes) -> None:
        if self.cancelled:
            raise asyncio.CancelledError()
        self.size += len(chunk)
        if self.size > self.limits.max_bytes:
            raise SourceTooLarge(f"the source sent more than {self.limits.max_bytes} bytes")
        if not self.is_success:
            return
        self.chunks.append(chunk)
        if not self.checked_head and self.size >= SNIFF_BYTES:
            self.check_magic()

    def check_magic(self) -> None:
        self.checked_head = True
        head = b"".join(self.chunks)[:SNIFF_BYTES]
        if not head:
            raise ImageDecodeFailed("the source returned an empty body")
        if sniff_format(head) is None:
            raise ContentTypeForbidden("the source's bytes are not a JPEG, PNG, WebP, GIF or BMP image")

    def body(self) -> bytes:
        if not self.checked_head:
            self.check_magic()
        return b"".join(self.chunks)


class UrlFetcher:
    """Fetches image URLs through a guarded resolver with per-source limits."""

    def __init__(self, policy: AddressPolicy, limits: FetchLimits, resolver: Resolver | None = None) -> None:
        self.limits = limits
        guarded = GuardedResolver(inner=resolver or DefaultLoopResolver(), policy=policy)
        self._client = SimpleAsyncHTTPClient(
            force_instance=True,
            resolver=guarded,
            max_clients=limits.max_concurrent,
            max_body_size=limits.max_bytes,
        )

    def close(self) -> None:
        self._client.close()

    async def fetch(self, url: str) -> bytes:
        """The body of ``url`` after following allowed redirects; raises an ItemError."""
        deadline = time.monotonic() + self.limits.total_timeout_s
        current = url
        validate_url(current)
        for hop in range(self.limits.max_redirects + 1):
            download = _Download(self.limits)
            try:
                response = await self._fetch_hop(current, download, deadline)
            except SourceForbidden as exc:
                if hop == 0:
                    raise
                raise RedirectForbidden("a redirect points at an address that is not allowed") from exc
            except asyncio.CancelledError:
                download.cancelled = True
                raise
            if response.code not in REDIRECT_CODES:
                return _body_or_error(response, download)
            current = _redirect_target(current, response)
        raise TooManyRedirects(f"more than {self.limits.max_redirects} redirects")

    async def _fetch_hop(self, url: str, download: _Download, deadline: float) -> HTTPResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceTimeout(f"the source did not answer within {self.limits.total_timeout_s:g} s")
        request = HTTPRequest(
            url,
            connect_timeout=min(self.limits.connect_timeout_s, remaining),
            request_timeout=remaining,
            follow_redirects=False,
            decompress_response=True,
            header_callback=download.on_header,
            streaming_callback=download.on_chunk,
            headers={"Accept": "image/*"},
            user_agent="imagegate/0.1",
        )
        try:
            return await self._client.fetch(request, raise_error=False)
        except GatewayError:
            raise
        except Exception as exc:
            raise _translate(exc, self.limits) from exc


def _body_or_error(response: HTTPResponse, download: _Download) -> bytes:
    if response.error is not None and not isinstance(response.error, HTTPClientError):
        if isinstance(response.error, GatewayError):
            raise response.error
        raise _translate(response.error, download.limits)
    if not 200 <= response.code < 300:
        raise SourceHttpError(f"GET returned {response.code}")
    return download.body()


def _redirect_target(current: str, response: HTTPResponse) -> str:
    location = response.headers.get("Location")
    if not location:
        raise SourceHttpError(f"GET returned {response.code} without a Location")
    target = urllib.parse.urljoin(current, location)
    try:
        validate_url(target)
    except UrlInvalid as exc:
        raise RedirectForbidden(f"a redirect points at a URL that is not allowed: {exc.message}") from exc
    return target


def _translate(exc: BaseException, limits: FetchLimits) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, HTTPTimeoutError | TimeoutError):
        return SourceTimeout(f"the source did not answer within {limits.total_timeout_s:g} s", log_message=str(exc))
    if isinstance(exc, ssl.SSLError):
        return SourceUnreachable("TLS handshake with the source failed", log_message=str(exc))
    if isinstance(exc, HTTPStreamClosedError | StreamClosedError | OSError):
        return SourceUnreachable("cannot connect to the source", log_message=repr(exc))
    return SourceUnreachable("the download failed", log_message=repr(exc))
