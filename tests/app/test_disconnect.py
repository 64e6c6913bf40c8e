"""A client that disconnects cancels its downloads."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

from tests.conftest import Tier
from tests.support.imageserver import ImageServer, _Handler


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_cancels_the_download(tier: Tier, images: ImageServer) -> None:
    started = threading.Event()
    cut_off = threading.Event()

    def trickle(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"\xff\xd8\xff\xe0" + b"\x00" * 60)
        handler.wfile.flush()
        started.set()
        try:
            for _ in range(200):  # up to 10 s of trickling, far beyond the test's patience
                handler.wfile.write(b"\x00" * 10)
                handler.wfile.flush()
                if cut_off.wait(0.05):
                    return
        except (BrokenPipeError, ConnectionResetError):
            cut_off.set()

    images.route("trickle.jpg", trickle)
    body = json.dumps([images.url("trickle.jpg")]).encode()
    host, port = tier.base_url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    request = (
        f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    client.sendall(request + body)
    assert await asyncio.to_thread(started.wait, 5), "the tier never started the download"
    client.close()
    assert await asyncio.to_thread(cut_off.wait, 5), "the download went on after the client left"
