"""Honest statuses on a real tier: a client that leaves before its answer is 499 in the metrics and the access log,
and a readiness probe's "not ready" is logged at INFO, not as an error."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import Tier
from tests.support.imageserver import FIXTURES, ImageServer, _Handler
from tests.support.waiting import wait_for

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()


class AccessLines(logging.Handler):
    """The tier's access-log records, and a way to wait for one with a given status."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    async def line_with(self, status: int, path: str) -> logging.LogRecord:
        async with asyncio.timeout(10):
            while True:
                found = [
                    r for r in self.records if (getattr(r, "status", None), getattr(r, "path", None)) == (status, path)
                ]
                if found:
                    return found[0]
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def access() -> Iterator[AccessLines]:
    logger = logging.getLogger("tornado.access")
    lines, level = AccessLines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(lines)
    logger.setLevel(level)


async def requests_total(tier: Tier, route: str, model: str, status: int) -> float:
    body = (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()
    wanted = {"route": route, "model": model, "status": str(status)}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "imagegate_requests_total" and sample.labels == wanted:
                return float(sample.value)
    return 0.0


def connect(tier: Tier) -> socket.socket:
    host, port = tier.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def predict_head(content_type: str, length: int) -> bytes:
    head = f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
    return f"{head}Content-Length: {length}\r\n\r\n".encode()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_leaves_while_its_image_downloads_is_499(
    tier: Tier, images: ImageServer, access: AccessLines
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def held(handler: _Handler) -> None:
        arrived.set()
        release.wait(20)
        handler.send_bytes(200, COFFEE, "image/jpeg")

    images.route("statuses/held.jpg", held)
    body = json.dumps([images.url("statuses/held.jpg")]).encode()
    client = connect(tier)
    client.sendall(predict_head("application/json", len(body)) + body)
    try:
        assert await asyncio.to_thread(arrived.wait, 10), "the tier never started the download"
        client.close()
        line = await access.line_with(499, "/v1/models/tiny:predict")
    finally:
        release.set()
    assert line.levelno == logging.WARNING and line.getMessage().startswith("499 POST /v1/models/tiny:predict")
    assert await requests_total(tier, "predict", "tiny", 499) == 1
    assert await requests_total(tier, "predict", "tiny", 200) == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_leaves_during_its_upload_is_499(tier: Tier, access: AccessLines) -> None:
    """Tornado neither calls the method nor finishes a request whose streamed body never came: still counted."""
    client = connect(tier)
    head = (
        "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 500000\r\n\r\n"
    )
    client.sendall(head.encode() + COFFEE[:1000])
    state = tier.services.state
    await asyncio.to_thread(wait_for, lambda: state.in_flight == 1, "the tier to start the request")
    client.close()
    line = await access.line_with(499, "/v1/models/tiny:predict")
    assert line.levelno == logging.WARNING
    assert await requests_total(tier, "predict", "tiny", 499) == 1
    assert state.in_flight == 0


@pytest.mark.gen_test(timeout=30)
async def test_an_answered_request_keeps_its_status(tier: Tier, access: AccessLines) -> None:
    """The control: a client that reads its answer is counted with the status it read."""
    client = AsyncHTTPClient()
    response = await client.fetch(
        tier.url("/v1/models/tiny:predict"), method="POST", body=COFFEE, headers={"Content-Type": "image/jpeg"}
    )
    assert response.code == 200
    assert (await access.line_with(200, "/v1/models/tiny:predict")).levelno == logging.INFO
    assert await requests_total(tier, "predict", "tiny", 200) == 1
    assert await requests_total(tier, "predict", "tiny", 499) == 0


@pytest.mark.gen_test(timeout=30)
async def test_readiness_refusals_are_logged_at_info(tier: Tier, access: AccessLines) -> None:
    """A probe's "not ready" is its result; an outage or a drain must not write an ERROR line each probe."""
    tier.services.state.drain()
    client = AsyncHTTPClient()
    assert (await client.fetch(tier.url("/readyz"), raise_error=False)).code == 503
    assert (await client.fetch(tier.url("/v2/health/ready"), raise_error=False)).code == 400
    assert (await client.fetch(tier.url("/v2/models/nope/ready"), raise_error=False)).code == 404
    assert (await access.line_with(503, "/readyz")).levelno == logging.INFO
    assert (await access.line_with(400, "/v2/health/ready")).levelno == logging.INFO
    assert (await access.line_with(404, "/v2/models/nope/ready")).levelno == logging.WARNING  # a client's mistake
