"""The error boundary is total: inputs that once ended as a 500 get a documented answer, and a failure
inside one item never costs the others."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import cv2
import numpy as np
import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.netutil import Resolver

from app.settings import load_settings
from tests.conftest import Tier, TierFactory
from tests.hostile.payloads import multipart
from tests.hostile.tierclient import error_code, item_codes, post, post_json
from tests.support.imageserver import FIXTURES, ImageServer
from tools.fakeserving import FakeBackend

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
# Characters str.isdigit() accepts; int() takes some (Arabic-Indic three) and refuses others (superscript, circled).
NON_ASCII_DIGITS = ["\u00b9", "\u2460", "\u0663", "\uff13", "1\u00b2"]


def strict_json(body: bytes) -> Any:
    """Parse as a strict JSON parser would: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


@pytest.mark.gen_test
async def test_json_nested_a_thousand_levels_is_a_400_not_a_500(tier: Tier, caplog: pytest.LogCaptureFixture) -> None:
    for body in (b"[" * 1000 + b"]" * 1000, b'{"instances": ' + b"[" * 100_000):
        status, answer = await post(tier, body, "application/json")
        assert (status, error_code(answer)) == (400, "invalid_request")
        assert "nested more than 32 levels" in answer["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.gen_test
async def test_nesting_up_to_the_bound_is_still_parsed(tier: Tier) -> None:
    status, answer = await post(tier, b"[" * 32 + b"]" * 32, "application/json")
    assert status == 400 and "must be a URL string" in answer["error"]["message"]  # parsed, then refused as data


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.gen_test
async def test_top_k_in_non_ascii_digits_is_a_400_in_body_query_and_form(tier: Tier, digit: str) -> None:
    status, answer = await post_json(tier, {"instances": [{"b64": ""}], "top_k": digit})
    assert (status, error_code(answer)) == (400, "invalid_request")
    response = await AsyncHTTPClient().fetch(
        tier.url("/v1/models/mobilenet_v2:predict?top_k=") + digit.encode().decode("latin1"),
        method="POST",
        body=COFFEE,
        headers={"Content-Type": "image/jpeg"},
        raise_error=False,
    )
    assert response.code == 400, response.body
    body, content_type = multipart([("image", "coffee.jpg", COFFEE), ("top_k", None, digit.encode())])
    status, answer = await post(tier, body, content_type)
    assert (status, error_code(answer)) == (400, "invalid_request")


@pytest.mark.gen_test
async def test_ascii_top_k_with_spaces_still_works(tier: Tier) -> None:
    status, answer = await post_json(tier, {"instances": [{"b64": ""}], "top_k": " 3 "})
    assert status == 200 and item_codes(answer) == ["image_decode_failed"]


@pytest.mark.gen_test
async def test_a_url_with_a_lone_surrogate_fails_alone(tier: Tier, images: ImageServer) -> None:
    body = ('["' + images.url("coffee.jpg") + '", "http://127.0.0.1/\\udc80.jpg"]').encode()
    status, answer = await post(tier, body, "application/json")
    assert status == 200, answer
    assert item_codes(answer) == [None, "url_invalid"]
    assert answer["predictions"][0]["classes"][0]["label"] == "espresso"


@pytest.mark.gen_test
async def test_non_ascii_in_a_url_path_is_sent_percent_encoded(tier: Tier, images: ImageServer) -> None:
    images.route("caf%C3%A9.jpg", lambda h: h.send_bytes(200, COFFEE, "image/jpeg"))
    status, answer = await post_json(tier, [images.url("café.jpg")])
    assert status == 200 and item_codes(answer) == [None], answer
    assert "/caf%C3%A9.jpg" in images.hits


class BrokenResolver(Resolver):
    """A name resolver that fails in a way nobody planned for, for one name."""

    def initialize(self) -> None:
        self.inner = Resolver()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        if host == "broken.test":
            raise RuntimeError("resolver bug")
        answer: list[tuple[int, Any]] = await self.inner.resolve(host, port, family)
        return answer


@pytest.mark.gen_test
async def test_an_unexpected_failure_in_one_item_is_that_items_internal_error(
    make_tier: TierFactory, images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    tier = await make_tier(resolver=BrokenResolver())
    with caplog.at_level(logging.ERROR):
        status, answer = await post_json(tier, [images.url("coffee.jpg"), "http://broken.test/a.jpg"])
    assert status == 200, answer
    assert item_codes(answer) == [None, "internal_error"]
    assert "bug" in answer["predictions"][1]["error"]["message"]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "RuntimeError" in caplog.text


def solid_png(value: int) -> bytes:
    ok, data = cv2.imencode(".png", np.full((8, 8, 3), value, dtype=np.uint8))
    assert ok
    return data.tobytes()


@pytest.mark.gen_test
async def test_a_non_finite_model_output_is_that_items_error_and_the_answer_is_valid_json(
    make_tier: TierFactory, fake: FakeBackend
) -> None:
    settings = load_settings(
        None, {}, [f"backend.address={fake.address}", "server.port=0", "models.tiny.signature=serving_uint8"]
    )
    tier = await make_tier(settings=settings)
    fake.log.nan_for = 7
    body, content_type = multipart([("image", "seven.png", solid_png(7)), ("image", "nine.png", solid_png(9))])
    response = await AsyncHTTPClient().fetch(
        tier.url("/v1/models/tiny:predict"),
        method="POST",
        body=body,
        headers={"Content-Type": content_type},
        raise_error=False,
    )
    answer = strict_json(response.body)
    assert response.code == 200
    assert item_codes(answer) == ["model_output_invalid", None]
    assert answer["predictions"][1]["classes"]


@pytest.mark.gen_test
async def test_percent_escapes_that_are_not_utf8_are_a_documented_400(tier: Tier) -> None:
    status, answer = await post(tier, COFFEE, "image/jpeg", path="/v1/models/%ff:predict")
    assert (status, error_code(answer)) == (400, "bad_request")


@pytest.mark.gen_test
async def test_a_path_that_does_not_decode_on_a_model_route_is_a_documented_error_for_every_method(
    tier: Tier,
) -> None:
    """400 for the route's own method; a method the route lacks is 405 first, before the path is decoded."""
    for method, path, expected in (
        ("GET", "/v1/models/%ff", (400, "bad_request")),
        ("GET", "/v1/models/%ff/metadata", (400, "bad_request")),
        ("PUT", "/v1/models/%ff:predict", (405, "method_not_allowed")),
    ):
        response = await AsyncHTTPClient().fetch(
            tier.url(path), method=method, body=b"" if method == "PUT" else None, raise_error=False
        )
        assert (response.code, json.loads(response.body)["error"]["code"]) == expected
