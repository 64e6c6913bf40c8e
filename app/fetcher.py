"""Downloading image URLs that strangers send us, safely.

- Only http and https, no userinfo, a bounded URL length, a host name that can be encoded.
- Every address is checked where it is dialled: each hop resolves its host through
  ``GuardedResolver`` (IP literals included), and connects only to the addresses it
  returned, so odd IPv4 spellings, IPv4-mapped IPv6 and DNS rebinding are judged on the
  address actually used, never on the URL text. A kept-alive connection is reused only
  when its address is among those just resolved and checked (``app.connpool``).
- Redirects are followed here, hop by hop, each hop resolved and checked again.
- Content-Length is checked before the body is read, the byte cap while it streams
  (after content decoding, so a gzip bomb stops at the cap), the Content-Type and the
  first bytes are checked, and connect and total timeouts bound every source.

A refusal found while the response arrives is recorded on the hop's ``_Download`` (the
response delegate of Tornado's ``HTTP1Connection``), which raises ``_StopReading``:
Tornado then closes the connection, and the recorded refusal is what the caller gets.
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

from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httputil import (
    HTTPHeaders,
    HTTPInputError,
    HTTPMessageDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError
from tornado.netutil import DefaultLoopResolver, Resolver

from app.connpool import ConnectionPool, Origin, PoolLimits
from processing.errors import (
    ContentTypeForbidden,
    ImageDecodeFailed,
    ItemError,
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
MAX_HEADER_BYTES = 64 << 10
USER_AGENT = "imagegate/0.1"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
SNIFF_BYTES = 16
# The body of a redirect or an error answer is read and dropped up to this size, then
# the connection is closed: we never need it.
DISCARDED_BODY_BYTES = 64 << 10
# Tornado's own body cap would fire before ours on gzip bodies and report only a
# malformed message; ours (FetchLimits.max_bytes, after decoding) is the limit.
CLIENT_BODY_BACKSTOP = 1 << 62

# Ranges that are not global unicast but which some Python versions' ipaddress treats as
# global: the IETF protocol block, translators into IPv4 space (NAT64, 6to4), the
# deprecated site-local scope, and the newer IPv6 documentation prefix.
EXTRA_DENIED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(c)
    for c in ("192.0.0.0/24", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "fec0::/10", "3fff::/20")
)


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
    reserved, documentation) plus the ranges in EXTRA_DENIED. ``allow_cidrs`` and
    ``deny_cidrs`` override that; when both match an address the longer prefix wins,
    and deny wins a tie. ``allow_hosts``, when set, are the only host names allowed;
    ``deny_hosts`` are refused. A host pattern ``*.example.com`` matches subdomains.
    """

    def __init__(
        self,
        allow_cidrs: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        deny_hosts: Iterable[str] = (),
    ) -> None:
        rules = [(ipaddress.ip_network(c, strict=False), True) for c in allow_cidrs]
        rules += [(ipaddress.ip_network(c, strict=False), False) for c in deny_cidrs]
        # Longest prefix first; on a tie the deny rule (False) sorts first.
        self._rules = sorted(rules, key=lambda rule: (-rule[0].prefixlen, rule[1]))
        self._allow_hosts = _HostPatterns(allow_hosts)
        self._deny_hosts = _HostPatterns(deny_hosts)

    def check_host(self, host: str) -> None:
        if self._deny_hosts.matches(host) or (self._allow_hosts and not self._allow_hosts.matches(host)):
            raise SourceForbidden(f"host {host} is not allowed")

    def check_address(self, address: IPAddress) -> None:
        ip = _unmap(address)
        if not self.allows(ip):
            raise SourceForbidden(
                "the URL's host resolves to an address that is not allowed",
                log_message=f"refused to connect to {ip}",
            )

    def allows(self, ip: IPAddress) -> bool:
        for network, allowed in self._rules:
            if network.version == ip.version and ip in network:
                return allowed
        return not _is_special(ip)


class _HostPatterns:
    def __init__(self, patterns: Iterable[str]) -> None:
        names = [_normal_host(p) for p in patterns]
        self._exact = frozenset(n for n in names if not n.startswith("*."))
        self._suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def __bool__(self) -> bool:
        return bool(self._exact or self._suffixes)

    def matches(self, host: str) -> bool:
        name = _normal_host(host)
        return name in self._exact or name.endswith(self._suffixes)


def _normal_host(host: str) -> str:
    name = host.lower().rstrip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


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
        or any(ip in network for network in EXTRA_DENIED if network.version == ip.version)
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
        literal = _canonical_literal(host)
        if literal is not None:  # no lookup (and no thread hop) for a plain IP; still checked below
            self._policy.check_address(literal)
            sockaddr = (str(literal), port) if literal.version == 4 else (str(literal), port, 0, 0)
            return [(socket.AF_INET if literal.version == 4 else socket.AF_INET6, sockaddr)]
        try:
            addresses = await self._inner.resolve(host, port, family)
        except (OSError, UnicodeError) as exc:
            raise SourceUnreachable(f"cannot resolve host {host}", log_message=repr(exc)) from exc
        if not addresses:
            raise SourceUnreachable(f"host {host} has no addresses")
        for _family, sockaddr in addresses:
            self._policy.check_address(_address_of(sockaddr))
        return list(addresses)


def _canonical_literal(host: str) -> IPAddress | None:
    """The address a host names if it is written as a canonical IP literal; odd spellings go to the resolver."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address_of(sockaddr: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(sockaddr[0])
    except (ValueError, TypeError, IndexError) as exc:
        raise SourceForbidden(
            "the URL's host resolves to something that is not an IP address",
            log_message=f"resolver answered {sockaddr!r}",
        ) from exc


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


class _StopReading(HTTPInputError):
    """Raised from the response delegate to make Tornado close the connection.

    An ``HTTPInputError`` so Tornado logs one INFO line instead of an ERROR traceback.
    """


class _Download(HTTPMessageDelegate):
    """One hop's response: the checks run as its head and body arrive, and what they found."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.chunks: list[bytes] = []
        self.size = 0
        self.checked_head = False
        self.code = 0
        self.keep_alive = False
        self.location: str | None = None
        self.refusal: ItemError | None = None
        self.stopped = False
        self.started = False  # a status line arrived
        self.finished = False  # the body was read to its end

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    def stop(self, refusal: ItemError | None = None) -> _StopReading:
        """Record why this hop ends early; the caller raises the returned exception."""
        self.refusal = self.refusal or refusal
        self.stopped = True
        return _StopReading(refusal.log_message if refusal else "imagegate stopped reading")

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders) -> None:
        if self.stopped:
            raise self.stop()
        assert isinstance(start_line, ResponseStartLine)
        self.started = True
        self.code = start_line.code
        self.keep_alive = _keeps_alive(start_line, headers)
        self.location = headers.get("Location")
        if self.is_success:
            try:
                self._check_length(headers.get("Content-Length"))
                self._check_type(headers.get("Content-Type"))
            except ItemError as exc:
                raise self.stop(exc) from None

    def _check_length(self, value: str | None) -> None:
        if value is not None and value.strip().isdigit() and int(value) > self.limits.max_bytes:
            raise SourceTooLarge(f"the source declares {int(value)} bytes; the limit is {self.limits.max_bytes}")

    def _check_type(self, value: str | None) -> None:
        if value is None:
            return
        media = value.split(";")[0].strip().lower()
        if media not in self.limits.content_types:
            raise ContentTypeForbidden(f"the source's Content-Type {media!r} is not an accepted image type")

    def data_received(self, chunk: bytes) -> None:
        if self.stopped:
            raise self.stop()
        self.size += len(chunk)
        if not self.is_success:
            if self.size > DISCARDED_BODY_BYTES:
                raise self.stop()
            return
        if self.size > self.limits.max_bytes:
            raise self.stop(SourceTooLarge(f"the source sent more than {self.limits.max_bytes} bytes"))
        self.chunks.append(chunk)
        if not self.checked_head and self.size >= SNIFF_BYTES:
            try:
                self.check_magic()
            except ItemError as exc:
                raise self.stop(exc) from None

    def finish(self) -> None:
        self.finished = True

    def on_connection_close(self) -> None:
        self.keep_alive = False

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


def _keeps_alive(start_line: ResponseStartLine, headers: HTTPHeaders) -> bool:
    """Whether the server lets us send another request on this connection after this response."""
    connection = (headers.get("Connection") or "").lower()
    framed = "Content-Length" in headers or "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    if start_line.version == "HTTP/1.1":
        return framed and connection != "close"
    return framed and connection == "keep-alive"


class _StaleConnection(Exception):
    """A reused connection was closed by the server before it answered; a new one may be tried."""


class UrlFetcher:
    """Fetches image URLs through a guarded resolver, with per-source limits and keep-alive reuse.

    Every hop resolves its host through ``GuardedResolver`` (no lookup for IP literals), so
    the policy judges the addresses on every fetch; an idle connection is reused only if
    it leads to one of them (``ConnectionPool.take``).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        limits: FetchLimits,
        resolver: Resolver | None = None,
        pool: PoolLimits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self._resolver = GuardedResolver(inner=resolver or DefaultLoopResolver(), policy=policy)
        self._pool = ConnectionPool(pool)
        self._gate = asyncio.Semaphore(limits.max_concurrent)
        self._params = HTTP1ConnectionParameters(
            decompress=True, chunk_size=64 << 10, max_header_size=MAX_HEADER_BYTES, max_body_size=CLIENT_BODY_BACKSTOP
        )
        self._tls = tls  # None: the system's trust store, certificate and host name verified

    def close(self) -> None:
        self._pool.close()

    @property
    def idle_connections(self) -> int:
        return len(self._pool)

    async def fetch(self, url: str) -> bytes:
        """The body of ``url`` after following allowed redirects; raises an ItemError."""
        deadline = time.monotonic() + self.limits.total_timeout_s
        current = url
        parts = validate_url(current)
        for hop in range(self.limits.max_redirects + 1):
            try:
                download = await self._fetch_hop(parts, deadline)
            except SourceForbidden as exc:
                if hop == 0 or isinstance(exc, RedirectForbidden):
                    raise
                raise RedirectForbidden(
                    "a redirect points at an address that is not allowed", log_message=exc.log_message
                ) from exc
            if download.code not in REDIRECT_CODES:
                return _body_or_error(download)
            current = _redirect_target(current, download)
            parts = validate_url(current)
        raise TooManyRedirects(f"more than {self.limits.max_redirects} redirects")

    async def _fetch_hop(self, parts: urllib.parse.SplitResult, deadline: float) -> _Download:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(self.limits)
        try:
            async with asyncio.timeout(remaining), self._gate:
                return await self._exchange_with_retry(parts, deadline)
        except TimeoutError as exc:
            raise _timeout(self.limits, "total timeout") from exc

    async def _exchange_with_retry(self, parts: urllib.parse.SplitResult, deadline: float) -> _Download:
        assert parts.hostname is not None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin: Origin = (parts.scheme, parts.hostname, port)
        connect_by = self._connect_deadline(deadline)  # resolving and dialling share one connect budget
        try:
            async with asyncio.timeout(connect_by - time.monotonic()):
                addresses = await self._resolver.resolve(parts.hostname, port)
        except TimeoutError as exc:
            raise _timeout(self.limits, "connect timeout (resolving)") from exc
        reusable = self._pool.take(origin, {str(sockaddr[0]) for _family, sockaddr in addresses})
        if reusable is not None:
            try:
                return await self._exchange(parts, origin, *reusable)
            except _StaleConnection:
                connect_by = self._connect_deadline(deadline)  # the server closed it while idle: dial afresh
        stream, address = await self._connect(parts, addresses, connect_by)
        try:
            return await self._exchange(parts, origin, stream, address)
        except _StaleConnection as exc:
            raise SourceUnreachable("the source closed the connection without a valid HTTP answer") from exc

    def _connect_deadline(self, deadline: float) -> float:
        return min(time.monotonic() + self.limits.connect_timeout_s, deadline)

    async def _connect(
        self, parts: urllib.parse.SplitResult, addresses: list[tuple[int, Any]], connect_by: float
    ) -> tuple[IOStream, str]:
        """A new connection to the first of ``addresses`` that answers (all already checked by the policy)."""
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(connect_by - time.monotonic()):
                for family, sockaddr in addresses:
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    # One stream object from the first byte to the handshake's end, so that a failure or
                    # a timeout anywhere closes the socket (start_tls would hand it to a stream we never see).
                    stream = (
                        SSLIOStream(sock, ssl_options=self._tls_context())
                        if parts.scheme == "https"
                        else IOStream(sock)
                    )
                    try:
                        await stream.connect(sockaddr, server_hostname=parts.hostname)
                        return stream, str(sockaddr[0])
                    except (OSError, StreamClosedError) as exc:
                        stream.close()
                        failure = getattr(exc, "real_error", None) or exc
                    except BaseException:
                        stream.close()
                        raise
        except TimeoutError as exc:
            raise _timeout(self.limits, "connect timeout") from exc
        if isinstance(failure, ssl.SSLError):
            raise SourceUnreachable("TLS handshake with the source failed", log_message=str(failure))
        raise SourceUnreachable("the connection to the source failed", log_message=repr(failure))

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def _exchange(
        self, parts: urllib.parse.SplitResult, origin: Origin, stream: IOStream, address: str
    ) -> _Download:
        """One GET on ``stream``; the stream goes back to the pool only after a complete, reusable answer."""
        download = _Download(self.limits)
        connection = HTTP1Connection(stream, True, self._params)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = HTTPHeaders(
            {"Host": parts.netloc, "Accept": "image/*", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT}
        )
        pooled = False
        try:
            connection.write_headers(RequestStartLine("GET", target, "HTTP/1.1"), headers)
            connection.finish()
            await connection.read_response(download)
            if download.finished and download.keep_alive and not stream.closed():
                self._pool.put(origin, stream, address)
                pooled = True
        except StreamClosedError as exc:
            if not download.started:
                raise _StaleConnection() from exc
            raise SourceUnreachable("the connection to the source failed", log_message=repr(exc)) from exc
        except OSError as exc:
            raise SourceUnreachable("the connection to the source failed", log_message=repr(exc)) from exc
        finally:
            if not pooled:
                stream.close()
        if download.refusal is not None:
            raise download.refusal
        if download.stopped:
            return download  # a redirect or error answer whose body we stopped reading
        if not download.finished:
            if not download.started:
                raise _StaleConnection()
            raise SourceUnreachable("the source closed the connection before the image was complete")
        return download


def _body_or_error(download: _Download) -> bytes:
    if not download.is_success:
        raise SourceHttpError(f"GET returned {download.code}")
    return download.body()


def _redirect_target(current: str, download: _Download) -> str:
    if not download.location:
        raise SourceHttpError(f"GET returned {download.code} without a Location")
    target = urllib.parse.urljoin(current, download.location)
    try:
        validate_url(target)
    except UrlInvalid as exc:
        raise RedirectForbidden(f"a redirect points at a URL that is not allowed: {exc.message}") from exc
    return target


def _timeout(limits: FetchLimits, detail: str = "") -> SourceTimeout:
    return SourceTimeout(
        f"the source did not deliver the image within {limits.total_timeout_s:g} s "
        f"(connecting may take at most {limits.connect_timeout_s:g} s)",
        log_message=detail or None,
    )
