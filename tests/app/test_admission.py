"""Backpressure: beyond ``server.max_in_flight_images`` the tier answers 503 with Retry-After at once."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.admission import Admission
from app.backend.rpc_errors import BackendFailures
from app.serving.lifecycle import report_period
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


class HeldSource:
    """An image URL whose answer waits until the test releases it: a request that holds its slot."""

    def __init__(self, images: ImageServer, path: str) -> None:
        self.arrived, self.release = threading.Event(), threading.Event()
        self.url = images.url(path)
        images.route(path, self._answer)

    def _answer(self, handler: _Handler) -> None:
        self.arrived.set()
        self.release.wait(20)
        handler.send_bytes(200, COFFEE, "image/jpeg")

    async def occupy(self, tier: Tier) -> asyncio.Future[HTTPResponse]:
        """Start a request for this URL and return once the tier is downloading it."""
        request = asyncio.ensure_future(predict(tier, [self.url]))
        assert await asyncio.to_thread(self.arrived.wait, 10), "the request never reached the image server"
        return request


@pytest.mark.gen_test(timeout=30)
async def test_beyond_the_bound_requests_get_503_with_retry_after_and_the_held_one_completes(
    make_tier: TierFactory, images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    held = HeldSource(images, "backpressure/held.jpg")
    tier = await make_tier(["server.max_in_flight_images=1", "server.retry_after_s=2"])
    first = await held.occupy(tier)

    downloads_before = images.hits.count("/coffee.jpg")
    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        refused = await predict(tier, [images.url("coffee.jpg")])
    assert refused.code == 503
    assert refused.headers["Retry-After"] == "2"
    assert json.loads(refused.body)["error"]["code"] == "overloaded"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "a shed request was logged as an error"
    assert tier.services.pipeline.admission.refused == 1
    assert images.hits.count("/coffee.jpg") == downloads_before, "a refused request still downloaded its image"

    held.release.set()
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
        report_period(admission, BackendFailures(retry_after_s=1), 10.0)
        report_period(admission, BackendFailures(retry_after_s=1), 10.0)  # nothing new: no line
    assert [r.getMessage() for r in caplog.records] == ["at capacity: 3 requests answered 503 in the last 10 s"]


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_request_leaves_no_garbage_cycle_behind(make_tier: TierFactory, images: ImageServer) -> None:
    """Refusals come by the thousand in an overload; if each left a reference cycle (a failed task
    holding its traceback, holding the handler, holding the task), the collector's pauses would
    delay the very 503s that are meant to be quick."""
    held = HeldSource(images, "backpressure/held-gc.jpg")
    tier = await make_tier(["server.max_in_flight_images=1"])
    first = await held.occupy(tier)
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
        held.release.set()
    assert (await first).code == 200
    assert garbage < 50, f"{garbage} objects in cycles after 50 refused requests"


@pytest.mark.gen_test(timeout=30)
async def test_other_answers_keep_the_usual_access_log_levels(
    tier: Tier, images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        assert (await predict(tier, [images.url("coffee.jpg")])).code == 200
        response = await AsyncHTTPClient().fetch(tier.url("/v1/models/nope"), raise_error=False)
        assert response.code == 404
    levels = {r.getMessage().split()[0]: r.levelno for r in caplog.records if r.name == "tornado.access"}
    assert levels == {"200": logging.INFO, "404": logging.WARNING}
    assert "POST /v1/models/tiny:predict (127.0.0.1)" in caplog.records[0].getMessage()
