"""A client that disconnects cancels its downloads, on v1 predict and on v2 infer (both take their body through
handlers/intake.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable

import pytest

from tests.conftest import Tier
from tests.support.imageserver import ImageServer, _Handler


def v1_predict(url: str) -> tuple[str, bytes]:
    return "/v1/models/tiny:predict", json.dumps([url]).encode()


def v2_infer(url: str) -> tuple[str, bytes]:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [url]}
    return "/v2/models/tiny/infer", json.dumps({"inputs": [tensor], "parameters": {"image_source": "url"}}).encode()


REQUESTS: dict[str, Callable[[str], tuple[str, bytes]]] = {"v1": v1_predict, "v2": v2_infer}


@pytest.mark.parametrize("protocol", REQUESTS)
@pytest.mark.gen_test(timeout=30)
async def test_disconnect_cancels_the_download(tier: Tier, images: ImageServer, protocol: str) -> None:
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

    name = f"trickle-{protocol}.jpg"
    images.route(name, trickle)
    path, body = REQUESTS[protocol](images.url(name))
    host, port = tier.base_url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    client.sendall(request + body)
    assert await asyncio.to_thread(started.wait, 5), "the tier never started the download"
    client.close()
    assert await asyncio.to_thread(cut_off.wait, 5), "the download went on after the client left"
