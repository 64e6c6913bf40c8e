"""Each model kind through the real tier and the real local backend: multi-label, embeddings, encoded images."""

from __future__ import annotations

import base64
import json
from typing import Any

import cv2
import numpy as np
import pytest

from tests.app.test_tier import get_json, multipart, photo, post
from tests.conftest import Tier, TierFactory
from tests.support.exif import with_exif_orientation
from tests.support.imageserver import FIXTURES

# tiny (docs/models.md): logits[k] = -distance from the image's mean colour to corner k of the RGB cube.
# A solid red image: red 0; yellow, magenta, black 1; green, blue, white sqrt 2; cyan sqrt 3.
MULTI_LABEL_TINY = [
    "models.tiny_tags.served_name=tiny",
    "models.tiny_tags.signature=serving_uint8",
    "models.tiny_tags.postprocess.activation=sigmoid",
    "models.tiny_tags.postprocess.threshold=0.19",  # sigmoid(-1) 0.269, sigmoid(-1.414) 0.196, sigmoid(-1.732) 0.150
]


def solid_png(rgb: tuple[int, int, int]) -> bytes:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:] = rgb[::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


@pytest.mark.gen_test(timeout=30)
async def test_a_multi_label_model_answers_every_label_above_the_threshold(make_tier: TierFactory) -> None:
    tier = await make_tier([*MULTI_LABEL_TINY, "models.tiny_tags.postprocess.labels=../build/models/tiny/labels.txt"])
    path = "/v1/models/tiny_tags:predict"
    response = await post(tier.url(path), solid_png((255, 0, 0)), "image/png")
    assert response.code == 200, response.body
    (item,) = json.loads(response.body)["predictions"]
    labels = [c["label"] for c in item["classes"]]
    # Seven above the threshold: more than the single-label default of 5, which does not apply here.
    assert labels[0] == "red" and len(labels) == 7 and "cyan" not in labels
    assert set(labels[1:4]) == {"yellow", "magenta", "black"}
    assert item["classes"][0]["score"] == pytest.approx(0.5, abs=1e-6)
    capped = await post(tier.url(path + "?top_k=2"), solid_png((255, 0, 0)), "image/png")
    assert [c["label"] for c in json.loads(capped.body)["predictions"][0]["classes"]][:1] == ["red"]
    assert len(json.loads(capped.body)["predictions"][0]["classes"]) == 2
    _, listing = await get_json(tier, "/v1/models")
    described = next(m for m in listing["models"] if m["name"] == "tiny_tags")
    assert (described["threshold"], described["top_k"]) == (0.19, None)  # what the page tells its users


@pytest.mark.gen_test(timeout=30)
async def test_a_configured_top_k_caps_a_multi_label_answer(make_tier: TierFactory) -> None:
    tier = await make_tier([*MULTI_LABEL_TINY, "models.tiny_tags.postprocess.top_k=3"])
    response = await post(tier.url("/v1/models/tiny_tags:predict"), solid_png((255, 0, 0)), "image/png")
    (item,) = json.loads(response.body)["predictions"]
    assert item["classes"][0]["class_id"] == 0 and len(item["classes"]) == 3


def half_size_jpeg(name: str) -> bytes:
    pixels = cv2.imread(str(FIXTURES / name))
    assert pixels is not None
    smaller = cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0] // 2), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", smaller, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return encoded.tobytes()


@pytest.mark.gen_test(timeout=60)
async def test_a_photo_is_closer_to_its_half_size_re_encode_than_to_another_photo(tier: Tier) -> None:
    """mobilenet_v2_embed (make run's embedding model): unit vectors, base64 float32 on request."""
    files = [("image", "coffee.jpg", photo("coffee.jpg")), ("image", "half.jpg", half_size_jpeg("coffee.jpg"))]
    files.append(("image", "chelsea.jpg", photo("chelsea.jpg")))
    body, content_type = multipart(files, {"encoding": "base64"})
    response = await post(tier.url("/v1/models/mobilenet_v2_embed:predict"), body, content_type)
    assert response.code == 200, response.body
    items = json.loads(response.body)["predictions"]
    assert all(item["encoding"] == "base64" and item["dimension"] == 1280 for item in items)
    coffee, half, cat = (np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in items)
    np.testing.assert_allclose([np.linalg.norm(v) for v in (coffee, half, cat)], 1.0, rtol=1e-5)
    assert float(coffee @ half) > float(coffee @ cat) + 0.2, (coffee @ half, coffee @ cat)


@pytest.mark.gen_test(timeout=60)
async def test_an_embedding_as_a_json_list_is_the_base64_one(tier: Tier) -> None:
    path = "/v1/models/mobilenet_v2_embed:predict"
    as_list = json.loads((await post(tier.url(path), photo("rocket.jpg"), "image/jpeg")).body)["predictions"][0]
    packed = json.loads((await post(tier.url(path + "?encoding=base64"), photo("rocket.jpg"), "image/jpeg")).body)
    vector = np.frombuffer(base64.b64decode(packed["predictions"][0]["embedding"]), dtype="<f4")
    assert (
        as_list["dimension"] == 1280 and np.asarray(as_list["embedding"], dtype=np.float32).tolist() == vector.tolist()
    )


def rotated_photo(name: str) -> tuple[bytes, bytes]:
    """The photo stored turned a quarter left, tagged orientation 6 (turn right to view), and without the tag."""
    pixels = cv2.imread(str(FIXTURES / name))
    assert pixels is not None
    ok, stored = cv2.imencode(
        ".jpg", cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    return with_exif_orientation(stored.tobytes(), 6), stored.tobytes()


def scores(item: dict[str, Any]) -> dict[int, float]:
    return {c["class_id"]: c["score"] for c in item["classes"]}


def best(answer: dict[int, float]) -> int:
    return max(answer, key=lambda class_id: answer[class_id])


@pytest.mark.gen_test(timeout=60)
async def test_the_bytes_model_answers_as_the_decoded_one_and_turns_a_rotated_jpeg_upright(tier: Tier) -> None:
    """mobilenet_v2_bytes decodes in the graph; the tier sends each photo's bytes and its EXIF orientation."""
    tagged, untagged = rotated_photo("chelsea.jpg")
    files = [("image", "chelsea.jpg", photo("chelsea.jpg")), ("image", "tagged.jpg", tagged)]
    files.append(("image", "untagged.jpg", untagged))
    body, content_type = multipart(files, {"top_k": "1000"})
    response = await post(tier.url("/v1/models/mobilenet_v2_bytes:predict"), body, content_type)
    assert response.code == 200, response.body
    upright, turned, sideways = (scores(item) for item in json.loads(response.body)["predictions"])
    decoded = await post(tier.url("/v1/models/mobilenet_v2:predict?top_k=1000"), photo("chelsea.jpg"), "image/jpeg")
    by_tier = scores(json.loads(decoded.body)["predictions"][0])
    assert best(upright) == best(by_tier) == 285  # Egyptian Mau
    assert max(abs(upright[k] - by_tier[k]) for k in upright) < 0.05  # the tier's reduced decode and bilinear crop
    assert best(turned) == 285 and max(abs(upright[k] - turned[k]) for k in upright) < 0.05
    assert max(abs(upright[k] - sideways[k]) for k in upright) > 0.1  # without the tag it sees a cat on its side


@pytest.mark.gen_test(timeout=60)
async def test_the_bytes_model_refuses_what_the_decoded_one_refuses_before_sending(make_tier: TierFactory) -> None:
    tier = await make_tier(["decode.max_pixels=100000"])
    files = [("image", "big.jpg", photo("chelsea.jpg")), ("image", "text.jpg", b"not an image")]
    files.append(("image", "small.jpg", half_size_jpeg("coffee.jpg")))
    body, content_type = multipart(files)
    response = await post(tier.url("/v1/models/mobilenet_v2_bytes:predict"), body, content_type)
    big, text, small = json.loads(response.body)["predictions"]
    assert (big["error"]["code"], text["error"]["code"]) == ("image_too_large", "image_decode_failed")
    assert small["classes"][0]["label"] == "espresso"
