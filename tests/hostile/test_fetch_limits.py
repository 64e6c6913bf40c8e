"""Download limits: size (declared, streamed, decompressed), time, and what the bytes are."""

from __future__ import annotations

import time
import tracemalloc
import zlib
from collections.abc import Awaitable
from typing import Any

import pytest

from processing.errors import ItemError
from tests.hostile.conftest import FetcherFactory
from tests.hostile.payloads import gzip_bomb, send_until_hung_up
from tests.support.imageserver import FIXTURES, ImageServer

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
MIB = 1 << 20


async def refusal(fetch: Awaitable[bytes]) -> ItemError:
    with pytest.raises(ItemError) as caught:
        await fetch
    return caught.value


def test_the_gzip_bomb_is_what_it_claims() -> None:
    bomb = gzip_bomb()
    inflated = zlib.decompressobj(31).decompress(bomb[: 20 << 10])  # the first 2% of it
    assert inflated.startswith(b"\xff\xd8\xff") and not any(inflated[3:])
    assert len(inflated) > 16 * MIB
    assert len(bomb) * 1000 < 1 << 30  # 1 GiB from about 1 MiB


@pytest.mark.gen_test
async def test_declared_content_length_over_the_cap_is_refused_before_the_body(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    # Sends the headers and 1 KiB, then waits: reading the body would take until the timeout.
    images.route(
        "limits/declared-huge",
        lambda h: send_until_hung_up(
            h, 200, {"Content-Type": "image/jpeg", "Content-Length": str(50 * MIB)}, b"\xff\xd8\xff" + bytes(1024)
        ),
    )
    started = time.monotonic()
    error = await refusal(fetchers(max_bytes=MIB, total_timeout_s=5.0).fetch(images.url("limits/declared-huge")))
    assert error.code == "source_too_large" and "declares" in error.message
    assert time.monotonic() - started < 2.0


@pytest.mark.gen_test
async def test_a_chunked_stream_is_cut_at_the_cap(fetchers: FetcherFactory, images: ImageServer) -> None:
    chunks = [b"\xff\xd8\xff" + bytes(65533)] + [bytes(65536)] * 99  # 6.25 MiB, no Content-Length
    images.route("limits/chunked-huge", lambda h: h.send_chunked(chunks, "image/jpeg"))
    error = await refusal(fetchers(max_bytes=MIB).fetch(images.url("limits/chunked-huge")))
    assert error.code == "source_too_large" and "sent more than" in error.message


@pytest.mark.gen_test
async def test_a_gzip_bomb_is_cut_at_the_cap_after_decompression(fetchers: FetcherFactory, images: ImageServer) -> None:
    bomb = gzip_bomb()
    headers = {"Content-Type": "image/jpeg", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
    images.route("limits/gzip-bomb", lambda h: send_until_hung_up(h, 200, headers, bomb))
    fetcher = fetchers(max_bytes=2 * MIB)
    tracemalloc.start()
    try:
        error = await refusal(fetcher.fetch(images.url("limits/gzip-bomb")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "source_too_large"
    assert peak < 16 * MIB  # the cap and some buffers, not the gibibyte


@pytest.mark.gen_test
async def test_a_small_gzip_image_is_fine(fetchers: FetcherFactory, images: ImageServer) -> None:
    images.route("limits/gzip-coffee", lambda h: h.send_gzip(COFFEE, "image/jpeg"))
    assert await fetchers().fetch(images.url("limits/gzip-coffee")) == COFFEE


@pytest.mark.gen_test
async def test_a_trickling_source_is_cut_at_the_total_timeout(fetchers: FetcherFactory, images: ImageServer) -> None:
    chunks = [b"\xff\xd8\xff" + bytes(61)] + [bytes(64)] * 50
    images.route("limits/trickle", lambda h: h.send_chunked(chunks, "image/jpeg", delay_s=0.1))  # 5 s in all
    started = time.monotonic()
    error = await refusal(fetchers(total_timeout_s=0.6).fetch(images.url("limits/trickle")))
    assert error.code == "source_timeout"
    assert time.monotonic() - started < 2.0


def trickle_headers(handler: Any) -> None:
    lines = [b"HTTP/1.1 200 OK\r\n", b"Content-Type: image/jpeg\r\n"] + [b"X-Slow: 1\r\n"] * 50
    try:
        for line in lines:
            handler.wfile.write(line)
            handler.wfile.flush()
            time.sleep(0.1)  # a deliberately slow source, not test synchronisation
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True


@pytest.mark.gen_test
async def test_trickled_headers_are_cut_at_the_total_timeout_too(fetchers: FetcherFactory, images: ImageServer) -> None:
    images.route("limits/trickle-headers", trickle_headers)
    error = await refusal(fetchers(total_timeout_s=0.6).fetch(images.url("limits/trickle-headers")))
    assert error.code == "source_timeout"


@pytest.mark.gen_test
async def test_the_total_timeout_spans_redirect_hops(fetchers: FetcherFactory, images: ImageServer) -> None:
    chunks = [b"\xff\xd8\xff" + bytes(61)] + [bytes(64)] * 50
    images.route("limits/slow-target", lambda h: h.send_chunked(chunks, "image/jpeg", delay_s=0.1))
    images.route("limits/to-slow-target", lambda h: h.redirect("/limits/slow-target"))
    started = time.monotonic()
    error = await refusal(fetchers(total_timeout_s=0.6).fetch(images.url("limits/to-slow-target")))
    assert error.code == "source_timeout" and time.monotonic() - started < 2.0


@pytest.mark.gen_test
async def test_a_header_flood_is_refused(fetchers: FetcherFactory, images: ImageServer) -> None:
    flood = {f"X-Flood-{i}": "y" * 100 for i in range(1000)}  # 100 KiB of headers
    images.route("limits/header-flood", lambda h: h.send_bytes(200, COFFEE, "image/jpeg", flood))
    error = await refusal(fetchers().fetch(images.url("limits/header-flood")))
    assert error.code == "source_unreachable"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "content_type", ["text/html", "image/svg+xml", "application/json", "text/plain; charset=utf-8"]
)
async def test_a_content_type_that_is_not_an_image_is_refused(
    content_type: str, fetchers: FetcherFactory, images: ImageServer
) -> None:
    path = f"limits/typed-{zlib.crc32(content_type.encode())}"
    images.route(path, lambda h: h.send_bytes(200, COFFEE, content_type))
    assert (await refusal(fetchers().fetch(images.url(path)))).code == "content_type_forbidden"


@pytest.mark.gen_test
@pytest.mark.parametrize("content_type", ["image/jpeg", "IMAGE/JPEG; charset=binary", None])
async def test_image_types_and_a_missing_type_are_accepted(
    content_type: str | None, fetchers: FetcherFactory, images: ImageServer
) -> None:
    def serve(handler: Any) -> None:
        headers = {"Content-Length": str(len(COFFEE))} | ({"Content-Type": content_type} if content_type else {})
        send_until_hung_up(handler, 200, headers, COFFEE)

    path = f"limits/accepted-{zlib.crc32(str(content_type).encode())}"
    images.route(path, serve)
    assert await fetchers().fetch(images.url(path)) == COFFEE


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("html", b"<!doctype html><html><body>not a photo</body></html>", "content_type_forbidden"),
        ("script", b"<script>alert(1)</script>" * 10, "content_type_forbidden"),
        ("random", bytes(range(256)) * 8, "content_type_forbidden"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "content_type_forbidden"),
        ("empty", b"", "image_decode_failed"),
        ("tiny-garbage", b"hi", "content_type_forbidden"),
    ],
)
async def test_bytes_that_are_not_an_image_are_refused_whatever_the_header_says(
    name: str, body: bytes, code: str, fetchers: FetcherFactory, images: ImageServer
) -> None:
    images.route(f"limits/sniff-{name}", lambda h: h.send_bytes(200, body, "image/jpeg"))
    assert (await refusal(fetchers().fetch(images.url(f"limits/sniff-{name}")))).code == code


@pytest.mark.gen_test
async def test_a_png_served_as_jpeg_and_a_truncated_jpeg_pass_the_fetcher(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    """The fetcher checks what the bytes are; whether they decode is the decoder's job."""
    png = (FIXTURES / "digit_3.png").read_bytes()
    images.route("limits/png-as-jpeg", lambda h: h.send_bytes(200, png, "image/jpeg"))
    images.route("limits/truncated", lambda h: h.send_bytes(200, COFFEE[:300], "image/jpeg"))
    fetcher = fetchers()
    assert await fetcher.fetch(images.url("limits/png-as-jpeg")) == png
    assert await fetcher.fetch(images.url("limits/truncated")) == COFFEE[:300]
