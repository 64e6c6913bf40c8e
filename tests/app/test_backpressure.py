"""Backpressure: beyond ``server.max_in_flight_images`` the tier answers 503 with Retry-After at once."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.cli import report_shed
from app.pipeline import Admission
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES, ImageServer, _Handler

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()


async def predict(tier: Tier, urls: list[str]) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(
        tier.url("/v1/models/tiny:predict"),
        method="POST",
        body=json.dumps(urls),
        headers={"Content-Type": "application/json"},
        raise_error=False,
        request_timeout=20,
    )


@pytest.mark.gen_test(timeout=30)
async def test_beyond_the_bound_requests_get_503_with_retry_after_and_the_held_one_completes(
    make_tier: TierFactory, images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def held(handler: _Handler) -> None:
        arrived.set()
        release.wait(20)
        handler.send_bytes(200, COFFEE, "image/jpeg")

    images.route("backpressure/held.jpg", held)
    tier = await make_tier(["server.max_in_flight_images=1", "server.retry_after_s=2"])
    first = asyncio.ensure_future(predict(tier, [images.url("backpressure/held.jpg")]))
    assert await asyncio.to_thread(arrived.wait, 10), "the first request never reached the image server"

    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        refused = await predict(tier, [images.url("coffee.jpg")])
    assert refused.code == 503
    assert refused.headers["Retry-After"] == "2"
    assert json.loads(refused.body)["error"]["code"] == "overloaded"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "a shed request was logged as an error"
    assert tier.services.pipeline.admission.refused == 1
    assert images.hits.count("/coffee.jpg") == 0, "a refused request still downloaded its image"

    release.set()
    answered = await first
    assert answered.code == 200
    assert json.loads(answered.body)["predictions"][0]["classes"]
    assert (await predict(tier, [images.url("coffee.jpg")])).code == 200  # the slot was given back


def test_refusals_are_summarised_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    admission = Admission(limit=1, retry_after_s=1)
    admission.acquire(1)
    for _ in range(3):
        with pytest.raises(Exception, match="capacity"):
            admission.acquire(1)
    with caplog.at_level(logging.INFO, logger="imagegate"):
        report_shed(admission, 10.0)
        report_shed(admission, 10.0)  # nothing new: no line
    assert [r.getMessage() for r in caplog.records] == ["at capacity: 3 requests answered 503 in the last 10 s"]


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_request_leaves_no_garbage_cycle_behind(make_tier: TierFactory, images: ImageServer) -> None:
    """Refusals come by the thousand in an overload; if each left a reference cycle (a failed task
    holding its traceback, holding the handler, holding the task), the collector's pauses would
    delay the very 503s that are meant to be quick."""
    arrived, release = threading.Event(), threading.Event()

    def held(handler: _Handler) -> None:
        arrived.set()
        release.wait(20)
        handler.send_bytes(200, COFFEE, "image/jpeg")

    images.route("backpressure/held-gc.jpg", held)
    tier = await make_tier(["server.max_in_flight_images=1"])
    first = asyncio.ensure_future(predict(tier, [images.url("backpressure/held-gc.jpg")]))
    assert await asyncio.to_thread(arrived.wait, 10)
    body = json.dumps([images.url("coffee.jpg")]).encode()
    host, port = tier.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        garbage = gc.collect()
    finally:
        gc.enable()
        writer.close()
        release.set()
    assert (await first).code == 200
    assert garbage < 50, f"{garbage} objects in cycles after 50 refused requests"
