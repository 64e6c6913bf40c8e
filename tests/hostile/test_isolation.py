"""A good request still gets its answer while hostile ones hit the same tier at the same time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import Tier, TierFactory
from tests.hostile.payloads import gzip_bomb, png_declaring, send_until_hung_up
from tests.hostile.rawclient import Answer, chunked, send_until_answered, trickle
from tests.hostile.tierclient import error_code, in_thread, item_codes, port_of, post, post_json, request_head, top1
from tests.support.imageserver import ImageServer

GIB = 1 << 30


async def timed(work: Awaitable[Any]) -> tuple[Any, float]:
    result = await work
    return result, time.monotonic()


@pytest.mark.gen_test(timeout=60)
async def test_a_good_request_is_answered_while_hostile_ones_run(make_tier: TierFactory, images: ImageServer) -> None:
    tier: Tier = await make_tier(
        [
            "fetch.allow_cidrs=[127.0.0.1/32]",
            "fetch.total_timeout_s=2",
            "server.body_timeout_s=1",
            "server.memory_wait_s=0.5",  # shorter than the body's timeout
        ]
    )
    bomb = gzip_bomb()
    bomb_headers = {"Content-Type": "image/jpeg", "Content-Encoding": "gzip", "Content-Length": str(len(bomb))}
    images.route("isolation/bomb.jpg", lambda h: send_until_hung_up(h, 200, bomb_headers, bomb))
    trickled = [b"\xff\xd8\xff" + bytes(61)] + [bytes(64)] * 100
    images.route("isolation/slow.jpg", lambda h: h.send_chunked(trickled, "image/jpeg", delay_s=0.1))
    images.route("isolation/huge.png", lambda h: h.send_bytes(200, png_declaring(60000, 60000), "image/png"))
    images.route("isolation/loop", lambda h: h.redirect("/isolation/loop"))
    port = port_of(tier)

    started = time.monotonic()
    slow = asyncio.ensure_future(timed(post_json(tier, [images.url("isolation/slow.jpg")])))
    hostile: list[Awaitable[Any]] = [
        post_json(tier, [images.url(p) for p in ("isolation/bomb.jpg", "isolation/huge.png", "isolation/loop")]),
        post_json(tier, [f"http://127.0.0.2:{images.port}/x.jpg", "http://2130706434/x.jpg", "gopher://x/"]),
        post(tier, b'{"instances": [', "application/json"),
        post(tier, bytes(range(256)) * 64, "image/jpeg"),
        in_thread(
            send_until_answered,
            port,
            request_head(port, "image/jpeg", "Transfer-Encoding: chunked"),
            chunked(bytes(256 << 10)),
            GIB,
        ),
        in_thread(trickle, port, [request_head(port, "image/jpeg", "Content-Length: 100000")] + [b"x"] * 60, 0.05),
    ]
    good_url = images.url("coffee.jpg")
    (good, good_done), *answers = await asyncio.gather(timed(post_json(tier, [good_url])), *hostile)
    (slow_answer, slow_done) = await slow

    assert good[0] == 200 and top1(good[1]["predictions"][0]) == "espresso", good
    assert good_done < slow_done  # not held up behind the source that trickles until its timeout

    bombs, forbidden, bad_json, garbage, upload, slowloris = answers
    assert bombs[0] == 200 and item_codes(bombs[1]) == ["source_too_large", "image_too_large", "too_many_redirects"]
    assert forbidden[0] == 200
    assert item_codes(forbidden[1]) == ["source_forbidden", "source_forbidden", "url_invalid"]
    assert bad_json[0] == 400 and error_code(bad_json[1]) == "invalid_request"
    assert garbage[0] == 200 and item_codes(garbage[1]) == ["image_decode_failed"]
    assert isinstance(upload, Answer) and upload.status == 413
    assert isinstance(slowloris, Answer) and slowloris.elapsed_s < 1.0 + 2.0
    assert slow_answer[0] == 200 and item_codes(slow_answer[1]) == ["source_timeout"]
    assert slow_done - started < 2.0 + 3.0

    # And the tier is still fine afterwards.
    response = await AsyncHTTPClient().fetch(tier.url("/healthz"), raise_error=False)
    assert response.code == 200, json.loads(response.body)
