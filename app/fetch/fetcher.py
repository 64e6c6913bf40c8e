"""Downloading image URLs that strangers send us, safely.

- Only http and https, no userinfo, a bounded URL length, a host name that can be encoded.
- Every address is checked where it is dialled: each hop resolves its host through
  ``GuardedResolver`` (IP literals included), and connects only to the addresses it
  returned, so odd IPv4 spellings, IPv4-mapped IPv6 and DNS rebinding are judged on the
  address actually used, never on the URL text. The request is sent to the address by
  number (the name goes in ``Host`` and to TLS), so a kept-alive connection is reused only
  when its address is among those just resolved and checked, and every socket is checked
  again where it is created (``app.fetch.connpool``).
- Redirects are followed here, hop by hop, each hop resolved and checked again.
- Content-Length is checked before the body is read, the byte cap while it streams
  (after content decoding, so a gzip bomb stops at the cap), the Content-Type and the
  first bytes are checked, and connect and total timeouts bound every source.

HTTP is aiohttp's client (its C parser costs a quarter of the CPU per download that a
parser in Python did; aiohttp retries a stale reused connection once). Each concern has its
own module: ``urls`` (which URLs), ``policy`` (which addresses), ``resolver`` (resolving and
checking), ``response`` (checks as the answer arrives), ``connpool`` (aiohttp's connector,
guarded and bounded), ``limits``; this module resolves, sends and follows redirects.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp
from tornado.netutil import DefaultLoopResolver, Resolver
from yarl import URL

from app.fetch.connpool import AddressRefused, BoundedConnector
from app.fetch.errors import (
    RedirectForbidden,
    SourceForbidden,
    SourceHttpError,
    SourceTimeout,
    SourceUnreachable,
    TooManyRedirects,
    UrlInvalid,
)
from app.fetch.limits import DownloadHold, FetchLimits, PoolLimits
from app.fetch.policy import AddressPolicy
from app.fetch.resolver import GuardedResolver
from app.fetch.response import check_head, read_body
from app.fetch.urls import Hop, validate_url
from app.settings import FetchSettings
from processing.errors import ItemError

MAX_HEADER_BYTES = 64 << 10
USER_AGENT = "imagegate/0.1"
REQUEST_HEADERS = {"Accept": "image/*", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
READ_BUFSIZE = 1 << 16  # aiohttp's read buffer: it stops reading the socket at twice this, unread
# A download's share of the memory budget from its dial to its end: aiohttp's buffer before it pauses the socket
# (twice READ_BUFSIZE), the event loop's last read into it (up to 256 KiB) and the parser's pieces of both.
READ_AHEAD_BYTES = 512 << 10


@dataclass(frozen=True)
class _Redirect:
    code: int
    location: str | None


class UrlFetcher:
    """Fetches image URLs through a guarded resolver, with per-source limits and keep-alive reuse.

    Every hop resolves its host through ``GuardedResolver`` (no lookup for IP literals), so
    the policy judges the addresses on every fetch, and dials one of those addresses by
    number; aiohttp reuses an idle connection only if it leads to that address
    (``app.fetch.connpool``).
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
        self._policy = policy
        self._resolver = GuardedResolver(inner=resolver or DefaultLoopResolver(), policy=policy)
        self._pool = pool
        self._gate = asyncio.Semaphore(limits.max_concurrent)
        self._tls = tls  # None: the system's trust store, certificate and host name verified
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls, settings: FetchSettings, resolver: Resolver | None = None, tls: ssl.SSLContext | None = None
    ) -> UrlFetcher:
        """The fetcher the ``fetch.*`` settings describe; ``resolver`` and ``tls`` replace the system's."""
        f = settings
        policy = AddressPolicy(f.allow_cidrs, f.deny_cidrs, f.allow_hosts, f.deny_hosts)
        return cls(policy, FetchLimits.from_settings(f), PoolLimits.from_settings(f), resolver, tls)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp binds it to the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=BoundedConnector(self._pool, self._policy, max_busy=self.limits.max_concurrent),
                cookie_jar=aiohttp.DummyCookieJar(),  # one source's cookies never reach another
                trust_env=False,  # no proxy from the environment: the policy judges what we dial
                auto_decompress=True,
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
                read_bufsize=READ_BUFSIZE,
                timeout=aiohttp.ClientTimeout(total=None),  # the fetcher's own deadlines bound every hop
            )
        return self._session

    async def fetch(self, url: str, hold: DownloadHold | None = None) -> bytes:
        """The body of ``url`` after following allowed redirects; raises an ItemError.

        With ``hold``, the body's bytes are added to it before they are read (``app.fetch.response``), and stay
        added for the caller to give back once it lets go of them; a failed download gives its own back.
        """
        deadline = time.monotonic() + self.limits.total_timeout_s
        hop = validate_url(url)
        for redirects in range(self.limits.max_redirects + 1):
            try:
                answer = await self._fetch_hop(hop, deadline, hold)
            except SourceForbidden as exc:
                if redirects == 0 or isinstance(exc, RedirectForbidden):
                    raise
                raise RedirectForbidden(
                    "a redirect points at an address that is not allowed", log_message=exc.log_message
                ) from exc
            if isinstance(answer, bytes):
                return answer
            hop = _redirect_target(hop, answer)
        raise TooManyRedirects(f"more than {self.limits.max_redirects} redirects")

    async def _fetch_hop(self, hop: Hop, deadline: float, hold: DownloadHold | None) -> bytes | _Redirect:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(self.limits)
        try:
            async with asyncio.timeout(remaining), self._gate:
                if hold is None:
                    return await self._get(hop, deadline, hold)
                await hold.grow(READ_AHEAD_BYTES)  # what the connection takes in before its body is reserved
                try:
                    return await self._get(hop, deadline, hold)
                finally:
                    hold.shrink(READ_AHEAD_BYTES)
        except TimeoutError as exc:
            raise _timeout(self.limits, "total timeout") from exc

    async def _get(self, hop: Hop, deadline: float, hold: DownloadHold | None) -> bytes | _Redirect:
        """One GET, to the first of the host's checked addresses that answers."""
        connect_by = min(time.monotonic() + self.limits.connect_timeout_s, deadline)  # resolving and dialling
        addresses = self._resolver.literal(hop.host, hop.port)  # an IP literal: checked, no lookup to time
        if addresses is None:
            try:
                async with asyncio.timeout(connect_by - time.monotonic()):
                    addresses = await self._resolver.lookup(hop.host, hop.port)
            except TimeoutError as exc:
                raise _timeout(self.limits, "connect timeout (resolving)") from exc
        failure: BaseException | None = None
        for _family, sockaddr in addresses:
            try:
                connect_s = connect_by - time.monotonic()
                return await self._exchange(hop, str(sockaddr[0]), int(sockaddr[1]), connect_s, hold)
            except aiohttp.ClientConnectorError as exc:  # this address did not answer: try the next one
                failure = exc
        if isinstance(failure, aiohttp.ClientConnectorError) and isinstance(failure.os_error, AddressRefused):
            raise SourceForbidden(
                "the URL's host resolves to an address that is not allowed", log_message=str(failure.os_error)
            )
        if isinstance(failure, aiohttp.ClientSSLError):
            raise SourceUnreachable("TLS handshake with the source failed", log_message=str(failure))
        raise SourceUnreachable("the connection to the source failed", log_message=repr(failure))

    async def _exchange(
        self, hop: Hop, address: str, port: int, connect_s: float, hold: DownloadHold | None
    ) -> bytes | _Redirect:
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        target = URL(f"{hop.scheme}://{netloc}{hop.target}", encoded=True)
        headers = {"Host": hop.host_header, **REQUEST_HEADERS}
        https = hop.scheme == "https"
        options: dict[str, Any] = {"ssl": self._tls_context(), "server_hostname": hop.host} if https else {}
        try:
            async with self._client().get(
                target,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=max(connect_s, 0.001)),
                **options,
            ) as response:
                if response.status in REDIRECT_CODES:
                    return _Redirect(response.status, response.headers.get("Location"))
                try:
                    if not 200 <= response.status < 300:
                        raise SourceHttpError(f"GET returned {response.status}")
                    check_head(response.headers, self.limits)
                    return await read_body(response, self.limits, hold)
                except ItemError:
                    response.close()  # a refused answer's connection is not kept, whatever is left unread
                    raise
        except aiohttp.ClientConnectorError:
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            raise _timeout(self.limits, "connect timeout") from exc
        except aiohttp.ClientPayloadError as exc:
            raise SourceUnreachable(
                "the source closed the connection before the image was complete", log_message=repr(exc)
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise SourceUnreachable("the connection to the source failed", log_message=repr(exc)) from exc

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _redirect_target(current: Hop, redirect: _Redirect) -> Hop:
    if not redirect.location:
        raise SourceHttpError(f"GET returned {redirect.code} without a Location")
    try:
        return validate_url(urllib.parse.urljoin(current.url, redirect.location))
    except UrlInvalid as exc:
        raise RedirectForbidden(f"a redirect points at a URL that is not allowed: {exc.message}") from exc


def _timeout(limits: FetchLimits, detail: str = "") -> SourceTimeout:
    return SourceTimeout(
        f"the source did not deliver the image within {limits.total_timeout_s:g} s "
        f"(connecting may take at most {limits.connect_timeout_s:g} s)",
        log_message=detail or None,
    )
