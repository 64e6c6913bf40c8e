"""The URL fetcher: downloads, redirects, keep-alive reuse and https, against a real image server.

The attacks (forbidden addresses, bombs, slow sources) are in tests/hostile; this is the
behaviour they rely on, against a real image server on loopback.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.ioloop
import trustme
from tornado.netutil import Resolver

from app.fetch.errors import SourceHttpError, SourceUnreachable
from app.fetch.fetcher import UrlFetcher
from app.fetch.policy import AddressPolicy
from processing.errors import ItemError
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.resolvers import TableResolver
from tests.support.specs import url_fetcher

# The image server is on 127.0.0.1; only that address is allowed, loopback stays denied.
IMAGE_SERVER_ONLY = AddressPolicy(allow_cidrs=["127.0.0.1/32"])
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()

FetcherFactory = Callable[..., UrlFetcher]


@pytest.fixture
def fetchers(io_loop: tornado.ioloop.IOLoop) -> Iterator[FetcherFactory]:
    made: list[UrlFetcher] = []

    def make(policy: AddressPolicy = IMAGE_SERVER_ONLY, resolver: Resolver | None = None, **limits: Any) -> UrlFetcher:
        fetcher = url_fetcher(policy, resolver, **{"connect_timeout_s": 1.0, "total_timeout_s": 3.0, **limits})
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        io_loop.run_sync(fetcher.close)


async def code_of(fetcher: UrlFetcher, url: str) -> str:
    with pytest.raises(ItemError) as caught:
        await fetcher.fetch(url)
    return caught.value.code


# --- Downloads ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_fetches_an_image(fetchers: FetcherFactory, images: ImageServer) -> None:
    assert await fetchers().fetch(images.url("coffee.jpg")) == COFFEE


def redirect_to(location: str, status: int, handler: Any) -> None:
    handler.redirect(location, status)


@pytest.mark.gen_test
async def test_follows_each_kind_of_redirect_relative_or_absolute(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    for status in (301, 302, 303, 307, 308):
        images.route(f"fetcher/moved-{status}", functools.partial(redirect_to, "/coffee.jpg", status))
        assert await fetchers().fetch(images.url(f"fetcher/moved-{status}")) == COFFEE
    images.route("fetcher/absolute", lambda h: h.redirect(images.url("fetcher/moved-302")))
    assert await fetchers().fetch(images.url("fetcher/absolute")) == COFFEE  # two hops


@pytest.mark.gen_test
async def test_http_errors_and_redirects_without_location(fetchers: FetcherFactory, images: ImageServer) -> None:
    images.route("fetcher/gone", lambda h: h.send_bytes(410, b"gone", "text/plain"))
    images.route("fetcher/nowhere", lambda h: h.send_bytes(302, b"", "text/plain"))
    fetcher = fetchers()
    with pytest.raises(SourceHttpError, match="404"):
        await fetcher.fetch(images.url("no-such-file.jpg"))
    with pytest.raises(SourceHttpError, match="410"):
        await fetcher.fetch(images.url("fetcher/gone"))
    with pytest.raises(SourceHttpError, match="without a Location"):
        await fetcher.fetch(images.url("fetcher/nowhere"))


def send_error_page(handler: Any, status: int, size: int) -> None:
    """An error answer with a large body, sent until the client hangs up."""
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    try:
        for _ in range(size // 65536):
            handler.wfile.write(b"x" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass


@pytest.mark.gen_test
async def test_a_huge_error_page_is_not_read_and_still_reports_the_status(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    images.route("fetcher/huge-500", lambda h: send_error_page(h, 500, 64 << 20))
    with pytest.raises(SourceHttpError, match="500"):
        await fetchers(max_bytes=1 << 20).fetch(images.url("fetcher/huge-500"))


@pytest.mark.gen_test
async def test_unresolvable_and_refused_sources_are_unreachable(fetchers: FetcherFactory) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    fetcher = fetchers(resolver=TableResolver(table={}))
    assert await code_of(fetcher, "http://no-such-host.test/a.jpg") == "source_unreachable"
    assert await code_of(fetchers(), f"http://127.0.0.1:{port}/a.jpg") == "source_unreachable"


@pytest.mark.gen_test
async def test_a_cancelled_download_gives_its_connection_back(fetchers: FetcherFactory, images: ImageServer) -> None:
    """With one connection allowed, a cancelled slow download must not hold it until its timeout."""
    chunks = [b"\xff\xd8\xff" + b"\0" * 1000] + [b"\0" * 1000] * 200
    streaming = threading.Event()

    def slow_source(handler: Any) -> None:
        streaming.set()
        handler.send_chunked(chunks, "image/jpeg", delay_s=0.02)

    images.route("fetcher/slow-cancelled", slow_source)
    fetcher = fetchers(max_concurrent=1, total_timeout_s=30.0)
    slow = asyncio.ensure_future(fetcher.fetch(images.url("fetcher/slow-cancelled")))
    assert await asyncio.get_running_loop().run_in_executor(None, streaming.wait, 5.0)
    slow.cancel()
    assert await asyncio.wait_for(fetcher.fetch(images.url("coffee.jpg")), timeout=2.0) == COFFEE


# --- keep-alive reuse ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_downloads_from_one_host_reuse_one_connection(fetchers: FetcherFactory, images: ImageServer) -> None:
    fetcher = fetchers()
    before = images.connections
    for _ in range(5):
        assert await fetcher.fetch(images.url("coffee.jpg")) == COFFEE
    assert images.connections - before == 1


@pytest.mark.gen_test
async def test_concurrent_downloads_each_get_a_connection_then_share_them(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    fetcher = fetchers()
    before = images.connections
    assert await asyncio.gather(*[fetcher.fetch(images.url("coffee.jpg")) for _ in range(3)]) == [COFFEE] * 3
    assert await asyncio.gather(*[fetcher.fetch(images.url("coffee.jpg")) for _ in range(3)]) == [COFFEE] * 3
    assert images.connections - before == 3


@pytest.mark.gen_test
async def test_a_refused_download_does_not_leave_its_connection_for_reuse(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    """Refused on its head, a 4 MiB answer is not read: its connection is closed, not kept half-read."""
    images.route("fetcher/text", lambda h: h.send_bytes(200, b"x" * (4 << 20), "text/plain"))
    fetcher = fetchers()
    before = images.connections
    assert await code_of(fetcher, images.url("fetcher/text")) == "content_type_forbidden"
    assert await fetcher.fetch(images.url("coffee.jpg")) == COFFEE
    assert images.connections - before == 2  # the refused answer's connection was closed, not reused
    assert await fetcher.fetch(images.url("coffee.jpg")) == COFFEE
    assert images.connections - before == 2  # the complete answer's connection was kept


def close_after_answer(handler: Any) -> None:
    """Answer as a keep-alive response, then hang up: the client finds out only when it reuses the connection."""
    handler.send_bytes(200, COFFEE, "image/jpeg")
    handler.wfile.flush()
    handler.close_connection = True


@pytest.mark.gen_test
async def test_a_connection_the_source_closed_while_idle_is_replaced(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    images.route("fetcher/then-close", close_after_answer)
    fetcher = fetchers()
    before = images.connections
    assert await fetcher.fetch(images.url("fetcher/then-close")) == COFFEE
    assert await fetcher.fetch(images.url("coffee.jpg")) == COFFEE
    assert images.connections - before == 2


class HangUpOnSecondRequest:
    """A source that answers the first request on each connection as keep-alive, and hangs up on
    the second one without answering: the race where a server closes an idle connection just as
    the client reuses it, which no liveness check can see coming."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer_once, args=(conn,), daemon=True).start()

    def _answer_once(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as requests:
            for request in range(2):
                while requests.readline() not in (b"\r\n", b""):
                    pass
                if request == 1:
                    return  # the second request on this connection: hang up without a byte
                head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(COFFEE)}\r\n\r\n"
                conn.sendall(head.encode() + COFFEE)


@pytest.mark.gen_test
async def test_a_reused_connection_the_source_hangs_up_on_is_retried_on_a_new_one(fetchers: FetcherFactory) -> None:
    source = HangUpOnSecondRequest()
    try:
        fetcher = fetchers()
        url = f"http://127.0.0.1:{source.port}/coffee.jpg"
        assert await fetcher.fetch(url) == COFFEE
        assert await fetcher.fetch(url) == COFFEE  # sent on the kept connection, hung up on, sent again
        assert source.connections == 2
    finally:
        source.listener.close()


@pytest.mark.gen_test
async def test_a_host_that_now_resolves_elsewhere_gets_a_new_connection(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    """Reuse follows the fresh resolution: a kept connection to the old address is not used for the new one."""
    with ImageServer(host="127.0.0.2") as other:
        table = {"images.test": [(socket.AF_INET, ("127.0.0.1", images.port))]}
        policy = AddressPolicy(allow_cidrs=["127.0.0.1/32", "127.0.0.2/32"])
        fetcher = fetchers(policy=policy, resolver=TableResolver(table=table))
        url = f"http://images.test:{images.port}/coffee.jpg"
        assert await fetcher.fetch(url) == COFFEE
        table["images.test"] = [(socket.AF_INET, ("127.0.0.2", other.port))]
        assert await fetcher.fetch(url) == COFFEE
        assert other.hits == ["/coffee.jpg"]


@pytest.mark.gen_test
async def test_reuse_can_be_turned_off(fetchers: FetcherFactory, images: ImageServer) -> None:
    fetcher = fetchers(keepalive_idle_s=0)
    before = images.connections
    for _ in range(3):
        assert await fetcher.fetch(images.url("coffee.jpg")) == COFFEE
    assert images.connections - before == 3


# --- https ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_images(ca: trustme.CA) -> Iterator[ImageServer]:
    """An image server on https://127.0.0.1 with a certificate from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with ImageServer(tls=context) as server:
        yield server


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.gen_test
async def test_https_sources_are_verified_and_their_connections_reused(ca: trustme.CA, tls_images: ImageServer) -> None:
    fetcher = url_fetcher(IMAGE_SERVER_ONLY, tls=trusting(ca))
    try:
        for _ in range(3):
            assert await fetcher.fetch(tls_images.url("coffee.jpg")) == COFFEE
        assert tls_images.connections == 1
    finally:
        await fetcher.close()


@pytest.mark.gen_test
async def test_an_untrusted_certificate_is_refused(fetchers: FetcherFactory, tls_images: ImageServer) -> None:
    with pytest.raises(SourceUnreachable, match="TLS handshake"):
        await fetchers().fetch(tls_images.url("coffee.jpg"))  # the system's trust store knows no test CA


@pytest.mark.gen_test
async def test_a_certificate_for_another_host_is_refused(ca: trustme.CA) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.example").configure_cert(context)
    with ImageServer(tls=context) as impostor:
        fetcher = url_fetcher(IMAGE_SERVER_ONLY, tls=trusting(ca))
        try:
            with pytest.raises(SourceUnreachable, match="TLS handshake"):
                await fetcher.fetch(impostor.url("coffee.jpg"))
        finally:
            await fetcher.close()


@pytest.mark.gen_test
async def test_a_tls_handshake_that_never_comes_times_out_and_hangs_up(ca: trustme.CA) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    hung_up = threading.Event()

    def accept_and_say_nothing() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(4096):  # the ClientHello, then nothing until the client gives up
                pass
        hung_up.set()

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    port = listener.getsockname()[1]
    fetcher = url_fetcher(IMAGE_SERVER_ONLY, tls=trusting(ca), connect_timeout_s=0.5)
    try:
        with pytest.raises(ItemError) as caught:
            await fetcher.fetch(f"https://127.0.0.1:{port}/coffee.jpg")
        assert caught.value.code == "source_timeout"
        assert await asyncio.to_thread(hung_up.wait, 5), "the half-open TLS connection was left open"
    finally:
        await fetcher.close()
        listener.close()


class SilentResolver(Resolver):
    """A name server that never answers."""

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.gen_test(timeout=10)
async def test_a_name_that_never_resolves_is_cut_at_the_connect_timeout(fetchers: FetcherFactory) -> None:
    fetcher = fetchers(resolver=SilentResolver(), connect_timeout_s=0.2, total_timeout_s=60.0)
    with pytest.raises(ItemError) as caught:
        await fetcher.fetch("http://slow-dns.test/a.jpg")
    assert caught.value.code == "source_timeout"
    assert caught.value.log_message == "connect timeout (resolving)"
