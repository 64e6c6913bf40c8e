"""A refusal never breaks the next request on its connection.

A request refused on its headers (415, 413 on a declared length, 400 for a multipart body
without a boundary) either has its small body read and dropped, keeping the connection, or is
answered with ``Connection: close`` before the tier closes it (reading and dropping the rest first:
``test_lingering_close.py``). Checked with a raw keep-alive
client, and behind a real nginx that keeps upstream connections alive (where a silent close
turns the next valid request into a 502).
"""

from __future__ import annotations

import http.client
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.conftest import Tier, TierFactory
from tests.hostile.tierclient import PREDICT, in_thread, port_of
from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES
from tests.support.nginx import nginx_in_front_of
from tests.support.tier import start_tier

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(port: int, content_type: str, body: bytes, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
    return (head + f"Content-Length: {declared}\r\n\r\n").encode() + body


def read_reply(sock: socket.socket) -> Reply | None:
    """One response from ``sock``; None if the server closed the connection instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return Reply(int(lines[0].split()[1]), headers, body[:length])


def exchange(port: int, first: bytes, second: bytes) -> tuple[Reply | None, Reply | None]:
    """Send ``first``, read its answer, then ``second`` on the same connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(first)
        one = read_reply(sock)
        try:
            sock.sendall(second)
            two = read_reply(sock)
        except (BrokenPipeError, ConnectionResetError):
            two = None
        return one, two


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b"hello, not an image", 415),
        ("", b"{}", 415),
        ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\nab\r\n--x--\r\n", 400),
        ("image/jpeg", COFFEE[:2000], 413),  # over a tiny upload cap, refused on its declared length
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_small_refused_body_is_drained_and_the_connection_serves_the_next_request(
    make_tier: TierFactory, content_type: str, body: bytes, status: int
) -> None:
    tier: Tier = await make_tier(["server.max_upload_bytes=1000"])
    port = port_of(tier)
    refused = request(port, content_type, body)
    valid = request(port, "image/png", (FIXTURES / "digit_3.png").read_bytes())
    one, two = await in_thread(exchange, port, refused, valid)
    assert one is not None and one.status == status and "close" not in one.headers.get("connection", "")
    assert two is not None and two.status == 200, two


@pytest.mark.gen_test(timeout=30)
async def test_a_big_refused_body_is_answered_with_connection_close_then_closed(tier: Tier) -> None:
    port = port_of(tier)
    head_only = request(port, "text/plain", b"", length=50 << 20)  # declared, never sent
    one, two = await in_thread(exchange, port, head_only, request(port, "image/jpeg", COFFEE))
    assert one is not None and one.status == 415
    assert one.headers.get("connection") == "close"
    assert two is None  # as announced: the client knew not to reuse it


@pytest.mark.gen_test(timeout=30)
async def test_a_body_over_the_cap_midway_is_answered_with_connection_close(make_tier: TierFactory) -> None:
    tier: Tier = await make_tier(["server.max_upload_bytes=1000"])
    port = port_of(tier)
    chunked = (
        (
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
            "800\r\n"
        ).encode()
        + bytes(0x800)
        + b"\r\n"
    )
    one, _ = await in_thread(exchange, port, chunked, b"")
    assert one is not None and one.status == 413
    assert one.headers.get("connection") == "close"


def keep_alive_client(port: int, offset: int, requests: int) -> list[tuple[int, int]]:
    """One keep-alive connection through nginx, mixing valid uploads with refused requests."""
    kinds = [
        ("image/jpeg", COFFEE, 200),
        ("text/plain", b"x" * 5000, 415),
        ("multipart/form-data", b"--b\r\n\r\n--b--\r\n", 400),
        ("application/json", b'{"instances": []}', 400),
    ]
    seen = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        for i in range(requests):
            content_type, body, expected = kinds[(i + offset) % len(kinds)]
            connection.request("POST", "/v1/models/tiny:predict", body, {"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            seen.append((response.status, expected))
    finally:
        connection.close()
    return seen


def test_behind_nginx_with_upstream_keepalive_refusals_never_cost_a_valid_request(backend: LocalBackend) -> None:
    """16 clients through nginx (upstream keep-alive) to a tier process: every answer is the expected one.

    Before refusals drained their body or said ``Connection: close``, about one request in ten came
    back 502 here: nginx reused a connection the tier was closing.
    """
    tier = start_tier(backend.address)
    try:
        with nginx_in_front_of(int(tier.base_url.rsplit(":", 1)[1])) as (port, error_log):
            with ThreadPoolExecutor(16) as pool:
                batches = pool.map(keep_alive_client, [port] * 16, range(16), [40] * 16)
                results = [pair for batch in batches for pair in batch]
            log = error_log.read_text()
    finally:
        tier.stop()
    assert len(results) == 640
    assert [got for got, expected in results if got != expected] == [], log[-3000:]
    assert "reset by peer" not in log and "prematurely closed" not in log, log[-3000:]
