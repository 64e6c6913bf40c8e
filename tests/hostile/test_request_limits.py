"""Hostile requests to the real tier: bad bodies, oversized bodies refused while they stream, slow clients.

Every refusal must be our JSON error (a stable code and a message) with the documented
status, and oversized bodies must be refused long before they are fully sent.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from tests.conftest import Tier, TierFactory
from tests.hostile.payloads import multipart, png_declaring
from tests.hostile.rawclient import Answer, chunked, send_until_answered, trickle
from tests.hostile.tierclient import (
    PREDICT,
    error_code,
    in_thread,
    item_codes,
    port_of,
    post,
    post_json,
    request_head,
)
from tests.support.imageserver import FIXTURES, ImageServer

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
MIB = 1 << 20
GIB = 1 << 30
IMAGE_SERVER_ONLY = "fetch.allow_cidrs=[127.0.0.1/32]"


# --- Content types and malformed bodies ---------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "text/html"]
)
async def test_unsupported_content_types_are_415(content_type: str | None, tier: Tier) -> None:
    code, answer = await post(tier, b'["http://example.com/a.jpg"]', content_type)
    assert (code, error_code(answer)) == (415, "unsupported_media_type")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[",
        b"null",
        b"42",
        b'"http://example.com/a.jpg"',
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"instances": []}',
        b'{"instances": 5}',
        b'{"instances": [5]}',
        b'{"instances": [null]}',
        b'{"instances": [["http://example.com/a.jpg"]]}',
        b'{"instances": [{"url": 5}]}',
        b'{"instances": [{"url": "http://a/x.jpg", "b64": "AAAA"}]}',
        b'{"instances": [{"path": "/etc/passwd"}]}',
        b'{"instances": ["http://a/x.jpg"], "top_k": "three"}',
        b'{"instances": ["http://a/x.jpg"], "top_k": 0}',
        b'{"instances": ["http://a/x.jpg"], "top_k": 1e9}',
        b'{"instances": ["http://a/x.jpg"], "top_k": true}',
        b'{"instances": ["http://a/x.jpg"], "model": "other"}',
        b'{"instances": ["http://a/x.jpg"]',
    ],
)
async def test_malformed_json_bodies_are_400(body: bytes, tier: Tier) -> None:
    code, answer = await post(tier, body, "application/json")
    assert (code, error_code(answer)) == (400, "invalid_request")


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_top_k_in_the_query_is_400(tier: Tier, images: ImageServer) -> None:
    code, answer = await post(
        tier,
        json.dumps([images.url("coffee.jpg")]).encode(),
        "application/json",
        PREDICT + "?top_k=x",
    )
    assert (code, error_code(answer)) == (400, "invalid_request")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--b\r\nContent-Disposition: form-data; name=image\r\n\r\nx\r\n--b--\r\n", "multipart/form-data"),
        (b"--b\r\n", "multipart/form-data; boundary=" + "b" * 71),
        (b"no boundary anywhere in here", "multipart/form-data; boundary=b"),
        (
            b"--b\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n\r\nxx",
            "multipart/form-data; boundary=b",
        ),
        (b"--b\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (
            b"--b\r\nContent-Disposition: attachment; name=image\r\n\r\nxx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        (b"--b\r\nContent-Disposition: form-data\r\n\r\nxx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (b"--b\r\nno colon here\r\n\r\nxx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (b"--bXX\r\n", "multipart/form-data; boundary=b"),
        (
            b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\n3\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="top_k"\r\n\r\nlots\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
    ],
)
async def test_malformed_multipart_bodies_are_400(body: bytes, content_type: str, tier: Tier) -> None:
    code, answer = await post(tier, body, content_type)
    assert (code, error_code(answer)) == (400, "invalid_request")


@pytest.mark.gen_test(timeout=30)
async def test_an_empty_raw_body_is_400(tier: Tier) -> None:
    code, answer = await post(tier, b"", "image/jpeg")
    assert (code, error_code(answer)) == (400, "invalid_request")


@pytest.mark.gen_test(timeout=30)
async def test_garbage_images_in_every_form_fail_on_the_item(tier: Tier) -> None:
    garbage = bytes(range(256)) * 4
    truncated = COFFEE[:300]
    for data, expected in ((garbage, "image_decode_failed"), (truncated, "image_decode_failed")):
        code, answer = await post(tier, data, "image/jpeg")
        assert code == 200 and item_codes(answer) == [expected], answer
        code, answer = await post(tier, *multipart([("image", "x.jpg", data)]))
        assert code == 200 and item_codes(answer) == [expected], answer
    code, answer = await post_json(tier, {"instances": [{"b64": "%%% not base64 %%%"}, {"b64": ""}]})
    assert code == 200 and item_codes(answer) == ["image_decode_failed", "image_decode_failed"], answer


@pytest.mark.gen_test(timeout=30)
async def test_bad_urls_fail_on_their_item_next_to_a_good_one(make_tier: TierFactory, images: ImageServer) -> None:
    tier = await make_tier([IMAGE_SERVER_ONLY])
    images.route("requests/truncated.jpg", lambda h: h.send_bytes(200, COFFEE[:300], "image/jpeg"))
    images.route("requests/page.jpg", lambda h: h.send_bytes(200, b"<html>" * 10, "image/jpeg"))
    urls = [
        images.url("coffee.jpg"),
        "ftp://example.com/a.jpg",
        "http://127.0.0.2:9/x.jpg",
        images.url("requests/truncated.jpg"),
        images.url("requests/page.jpg"),
        images.url("no-such.jpg"),
    ]
    code, answer = await post_json(tier, urls)
    assert code == 200, answer
    assert item_codes(answer) == [
        None,
        "url_invalid",
        "source_forbidden",
        "image_decode_failed",
        "content_type_forbidden",
        "source_http_error",
    ]
    assert answer["predictions"][0]["classes"][0]["label"] == "espresso"
    assert all(item["error"]["message"] for item in answer["predictions"][1:])


# --- Counts: URLs, parts, repeats -------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_more_urls_than_allowed_is_413_and_the_limit_itself_is_fine(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.max_images_per_request=8", "fetch.allow_cidrs=[]"])
    urls = [f"http://127.0.0.1:9/{i}.jpg" for i in range(9)]
    code, answer = await post_json(tier, urls)
    assert (code, error_code(answer)) == (413, "payload_too_large")
    code, answer = await post_json(tier, urls[:8])  # eight forbidden URLs: eight item errors
    assert code == 200 and item_codes(answer) == ["source_forbidden"] * 8


@pytest.mark.gen_test(timeout=30)
async def test_a_url_repeated_in_one_request_is_fetched_once(tier: Tier, images: ImageServer) -> None:
    images.route("requests/once.jpg", lambda h: h.send_bytes(200, COFFEE, "image/jpeg"))
    url = images.url("requests/once.jpg")
    code, answer = await post_json(tier, {"instances": [url, {"url": url}, url, url]})
    assert code == 200
    assert [item["classes"][0]["label"] for item in answer["predictions"]] == ["espresso"] * 4
    assert images.hits.count("/requests/once.jpg") == 1


@pytest.mark.gen_test(timeout=30)
async def test_too_many_multipart_parts_is_413(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.max_parts=4"])
    code, answer = await post(tier, *multipart([("note", None, b"x")] * 5))
    assert (code, error_code(answer)) == (413, "payload_too_large")
    code, answer = await post(tier, *multipart([("image", f"{i}.jpg", COFFEE) for i in range(5)]))
    assert (code, error_code(answer)) == (413, "payload_too_large")


@pytest.mark.gen_test(timeout=30)
async def test_more_files_than_images_allowed_is_413(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.max_images_per_request=2"])
    code, answer = await post(tier, *multipart([("image", f"{i}.jpg", b"\xff\xd8\xff") for i in range(3)]))
    assert (code, error_code(answer)) == (413, "payload_too_large")


# --- Sizes: refused while streaming --------------------------------------------------------


def assert_refused_early(answer: Answer, limit: int) -> None:
    assert answer.status == 413, answer.raw[:300]
    assert error_code(json.loads(answer.body)) == "payload_too_large"
    # Loopback socket buffers can hold a few MiB more than the server has read.
    assert answer.sent < limit + 32 * MIB


@pytest.mark.gen_test(timeout=30)
async def test_a_huge_raw_upload_is_refused_while_it_streams(tier: Tier) -> None:
    head = request_head(port_of(tier), "image/jpeg", "Transfer-Encoding: chunked")
    answer = await in_thread(send_until_answered, port_of(tier), head, chunked(bytes(256 << 10)), GIB)
    assert_refused_early(answer, tier.services.settings.server.max_upload_bytes)


@pytest.mark.gen_test(timeout=30)
async def test_a_huge_json_body_is_refused_while_it_streams(tier: Tier) -> None:
    head = request_head(port_of(tier), "application/json", "Transfer-Encoding: chunked")
    first = chunked(b'["http://example.com/' + b"a" * 65536)
    answer = await in_thread(send_until_answered, port_of(tier), head + first, chunked(b"a" * 65536), GIB)
    assert_refused_early(answer, tier.services.settings.server.max_json_bytes)


@pytest.mark.gen_test(timeout=30)
async def test_a_huge_multipart_file_is_refused_while_it_streams(tier: Tier) -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n\xff\xd8\xff'
    head = request_head(port_of(tier), "multipart/form-data; boundary=b", "Transfer-Encoding: chunked")
    answer = await in_thread(send_until_answered, port_of(tier), head + chunked(part), chunked(bytes(256 << 10)), GIB)
    assert_refused_early(answer, tier.services.settings.server.max_upload_bytes)


@pytest.mark.gen_test(timeout=30)
async def test_many_files_each_under_the_cap_are_refused_at_the_total_cap(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.max_upload_bytes=1048576", "server.max_body_bytes=2097152"])
    file = b"\xff\xd8\xff" + bytes(900_000)
    code, answer = await post(tier, *multipart([("image", f"{i}.jpg", file) for i in range(3)]))
    assert (code, error_code(answer)) == (413, "payload_too_large")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    ("content_type", "declared"),
    [
        ("application/json", 2 * MIB),
        ("image/jpeg", 21 * MIB),
        ("multipart/form-data; boundary=b", 65 * MIB),
        ("multipart/form-data; boundary=b", 8 * GIB),
    ],
)
async def test_a_declared_length_over_the_cap_is_refused_before_any_body_is_sent(
    content_type: str, declared: int, tier: Tier
) -> None:
    head = request_head(port_of(tier), content_type, f"Content-Length: {declared}")
    answer = await in_thread(send_until_answered, port_of(tier), head, b"", 0)
    assert answer.sent == 0
    assert answer.status == 413, answer.raw[:300]
    assert error_code(json.loads(answer.body)) == "payload_too_large"


# --- Decode limits through the tier ----------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_decompression_bomb_header_is_refused_without_a_large_allocation(
    make_tier: TierFactory, images: ImageServer
) -> None:
    tier = await make_tier([IMAGE_SERVER_ONLY])
    bomb = png_declaring(60000, 60000)
    images.route("requests/bomb.png", lambda h: h.send_bytes(200, bomb, "image/png"))
    tracemalloc.start()
    try:
        by_upload = await post(tier, bomb, "image/png")
        by_url = await post_json(tier, [images.url("requests/bomb.png")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for code, answer in (by_upload, by_url):
        assert code == 200 and item_codes(answer) == ["image_too_large"], answer
        assert "60000x60000" in answer["predictions"][0]["error"]["message"]
    assert peak < 64 * MIB  # 60000 * 60000 * 3 would be 10.8 GB


# --- Slow clients ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_slowloris_client_sending_headers_is_disconnected(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.idle_connection_timeout_s=0.5"])
    port = port_of(tier)
    pieces = [f"POST {PREDICT} HTTP/1.1\r\n".encode()] + [f"X-Slow-{i}: a\r\n".encode() for i in range(100)]
    answer = await in_thread(trickle, port, pieces, 0.05)  # would take 5 s
    assert answer.raw == b""  # hung up on, no answer
    assert answer.elapsed_s < 2.0


@pytest.mark.gen_test(timeout=30)
async def test_a_slowloris_client_sending_a_body_is_disconnected(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.body_timeout_s=0.5", "server.memory_wait_s=0.2"])  # the wait must be shorter
    port = port_of(tier)
    head = request_head(port, "image/jpeg", "Content-Length: 100000")
    answer = await in_thread(trickle, port, [head] + [bytes(100)] * 100, 0.05)  # would take 5 s
    assert answer.elapsed_s < 2.0
    assert answer.sent < 100_000


@pytest.mark.gen_test(timeout=30)
async def test_an_idle_connection_is_closed(make_tier: TierFactory) -> None:
    tier = await make_tier(["server.idle_connection_timeout_s=0.5"])
    answer = await in_thread(trickle, port_of(tier), [b""] * 100, 0.05)  # connect, say nothing
    assert answer.raw == b"" and answer.elapsed_s < 2.0
