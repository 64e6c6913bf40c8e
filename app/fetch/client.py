"""Downloading image URLs that strangers send us, safely.

- Only http and https, no userinfo, a bounded URL length, a host name that can be encoded.
- Every address is checked where it is dialled: each hop resolves its host through
  ``GuardedResolver`` (IP literals included), and connects only to the addresses it
  returned, so odd IPv4 spellings, IPv4-mapped IPv6 and DNS rebinding are judged on the
  address actually used, never on the URL text. A kept-alive connection is reused only
  when its address is among those just resolved and checked (``app.fetch.connpool``).
- Redirects are followed here, hop by hop, each hop resolved and checked again.
- Content-Length is checked before the body is read, the byte cap while it streams
  (after content decoding, so a gzip bomb stops at the cap), the Content-Type and the
  first bytes are checked, and connect and total timeouts bound every source.

Each concern has its own module: ``urls`` (which URLs), ``policy`` (which addresses),
``resolver`` (resolving and checking), ``response`` (checks as the answer arrives),
``connpool`` (keep-alive reuse), ``limits``; this module dials, sends, follows redirects
and retries a stale reused connection once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import urllib.parse
from typing import Any

from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httputil import HTTPHeaders, RequestStartLine
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError
from tornado.netutil import DefaultLoopResolver, Resolver

from app.fetch.connpool import ConnectionPool, Origin
from app.fetch.errors import (
    RedirectForbidden,
    SourceForbidden,
    SourceHttpError,
    SourceTimeout,
    SourceUnreachable,
    TooManyRedirects,
    UrlInvalid,
)
from app.fetch.limits import FetchLimits, PoolLimits
from app.fetch.policy import AddressPolicy
from app.fetch.resolver import GuardedResolver
from app.fetch.response import HopResponse
from app.fetch.urls import host_header, request_target, validate_url
from app.settings import FetchSettings

MAX_HEADER_BYTES = 64 << 10
USER_AGENT = "imagegate/0.1"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Tornado's own body cap would fire before ours on gzip bodies and report only a
# malformed message; ours (FetchLimits.max_bytes, after decoding) is the limit.
CLIENT_BODY_BACKSTOP = 1 << 62


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
        pool: PoolLimits,
        resolver: Resolver | None = None,
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

    @classmethod
    def from_settings(
        cls, settings: FetchSettings, resolver: Resolver | None = None, tls: ssl.SSLContext | None = None
    ) -> UrlFetcher:
        """The fetcher the ``fetch.*`` settings describe; ``resolver`` and ``tls`` replace the system's."""
        f = settings
        policy = AddressPolicy(f.allow_cidrs, f.deny_cidrs, f.allow_hosts, f.deny_hosts)
        return cls(policy, FetchLimits.from_settings(f), PoolLimits.from_settings(f), resolver, tls)

    def close(self) -> None:
        self._pool.close()

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

    async def _fetch_hop(self, parts: urllib.parse.SplitResult, deadline: float) -> HopResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(self.limits)
        try:
            async with asyncio.timeout(remaining), self._gate:
                return await self._exchange_with_retry(parts, deadline)
        except TimeoutError as exc:
            raise _timeout(self.limits, "total timeout") from exc

    async def _exchange_with_retry(self, parts: urllib.parse.SplitResult, deadline: float) -> HopResponse:
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
    ) -> HopResponse:
        """One GET on ``stream``; the stream goes back to the pool only after a complete, reusable answer."""
        download = HopResponse(self.limits)
        connection = HTTP1Connection(stream, True, self._params)
        target = request_target(parts)
        headers = HTTPHeaders(
            {"Host": host_header(parts), "Accept": "image/*", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT}
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


def _body_or_error(download: HopResponse) -> bytes:
    if not download.is_success:
        raise SourceHttpError(f"GET returned {download.code}")
    return download.body()


def _redirect_target(current: str, download: HopResponse) -> str:
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
