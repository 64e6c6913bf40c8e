"""Each model kind through the real tier and the real local backend: multi-label, embeddings, encoded images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.app.test_tier import get_json, post
from tests.conftest import TierFactory

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
