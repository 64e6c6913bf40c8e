"""Detection through the real tier and the real local backend serving ``squares`` (tools/modelbuild/squares.py):
every box and keypoint lands within 1 px of the drawn square in the image as displayed, over letterbox, crop and
stretch, portrait and landscape, all eight EXIF orientations, and a large odd-sized JPEG decoded reduced; and the
request's own ``score_threshold`` and ``max_detections``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest

from processing.image import ResizeMode
from tests.app.test_tier import multipart, post, post_json
from tests.conftest import Tier, TierFactory
from tests.processing.kinds.test_detection_mapping import (
    CROP_KEPT,
    ODD_FRAMES,
    displayed,
    drawn_boxes,
    odd_sized,
    stored_jpeg,
)

RESIZES: tuple[ResizeMode, ...] = ("letterbox", "crop", "stretch")
Box = tuple[float, float, float, float]


def squares_model(name: str, resize: ResizeMode, width: int, height: int, shorter: int | None = None) -> list[str]:
    """Overrides declaring public model ``name`` on the served ``squares`` with this frame."""
    prefix = f"models.{name}"
    overrides = [
        f"{prefix}.served_name=squares",
        f"{prefix}.signature=serving_default",
        f"{prefix}.input.height={height}",
        f"{prefix}.input.width={width}",
        f"{prefix}.input.resize={resize}",
        f"{prefix}.postprocess.kind=detection",
        f"{prefix}.postprocess.score_threshold=0.5",
        f"{prefix}.postprocess.labels=../build/models/squares/labels.txt",
    ]
    return overrides + ([f"{prefix}.input.resize_shorter={shorter}"] if shorter else [])


def small_models() -> list[str]:
    return [override for resize in RESIZES for override in squares_model(f"sq_{resize}", resize, 100, 100, 100)]


def odd_models() -> list[str]:
    """Frames that take the odd-sized JPEG's reduced pixels by exactly a half (test_detection_mapping.py)."""
    overrides = []
    for resize, (width, height, shorter) in ODD_FRAMES.items():
        overrides += squares_model(f"odd_{resize}", resize, width, height, shorter)
        overrides += squares_model(f"odd_{resize}_turned", resize, height, width, shorter)
    return overrides


def small_truth(resize: ResizeMode, portrait: bool) -> list[Box | None]:
    """The squares of the 400 x 200 (200 x 400) image as the model can see them: a crop keeps the long side's
    middle half."""
    rgb, squares = displayed(portrait)
    long_side = max(rgb.shape[:2])
    kept = (long_side // 4, 3 * long_side // 4) if resize == "crop" else (0, long_side)
    truths: list[Box | None] = []
    for x, y, side in squares:
        along, across = (y, x) if portrait else (x, y)
        lo, hi = max(along, kept[0]), min(along + side, kept[1])
        if hi <= lo:
            truths.append(None)
        else:
            truths.append((across, lo, side, hi - lo) if portrait else (lo, across, hi - lo, side))
    return truths


def errors(item: dict[str, Any], truths: Sequence[Box | None]) -> list[float]:
    """Each box side's and keypoint's distance from the truth, in px; the classes found are those visible."""
    found = {d["class_id"]: d for d in item["detections"]}
    assert set(found) == {i + 1 for i, truth in enumerate(truths) if truth is not None}, item
    distances: list[float] = []
    for class_id, detection in found.items():
        truth = truths[class_id - 1]
        assert truth is not None
        x, y, w, h = truth
        box = detection["box"]
        distances += [abs(box["x"] - x), abs(box["y"] - y), abs(box["width"] - w), abs(box["height"] - h)]
        (kx, ky), (cx, cy) = detection["keypoints"]
        distances += [abs(kx - x), abs(ky - y), abs(cx - x - w / 2), abs(cy - y - h / 2)]
    return distances


def instances(images: Sequence[bytes]) -> list[dict[str, str]]:
    return [{"b64": base64.b64encode(data).decode()} for data in images]


@pytest.mark.gen_test(timeout=60)
async def test_every_box_and_keypoint_lands_within_a_pixel_through_the_tier(make_tier: TierFactory) -> None:
    tier = await make_tier(small_models())
    worst = 0.0
    for resize in RESIZES:
        cases = [(portrait, o) for portrait in (False, True) for o in range(1, 9)]
        images = [stored_jpeg(displayed(portrait)[0], o) for portrait, o in cases]
        code, answer = await post_json(tier, f"/v1/models/sq_{resize}:predict", {"instances": instances(images)})
        assert code == 200, answer
        for (portrait, _), item in zip(cases, answer["predictions"], strict=True):
            assert {d["label"] for d in item["detections"]} <= {"red", "green", "blue"}
            worst = max(worst, *errors(item, small_truth(resize, portrait)))
    print(f"worst error through the tier, 400x200 and 200x400, 3 modes x 8 orientations: {worst:.4f} px")
    assert worst <= 1.0


@pytest.mark.gen_test(timeout=90)
async def test_a_large_odd_sized_jpeg_decoded_reduced_maps_within_a_pixel(make_tier: TierFactory) -> None:
    tier = await make_tier(odd_models())
    worst = 0.0
    for resize in RESIZES:
        for turned in (False, True):
            orientations = (5, 6, 7, 8) if turned else (1, 2, 3, 4)
            kept = CROP_KEPT if resize == "crop" else None
            pairs = [odd_sized(o, kept) for o in orientations]
            model = f"odd_{resize}_turned" if turned else f"odd_{resize}"
            body = {"instances": instances([data for data, _ in pairs])}
            code, answer = await post_json(tier, f"/v1/models/{model}:predict", body)
            assert code == 200, answer
            for (_, shown), item in zip(pairs, answer["predictions"], strict=True):
                worst = max(worst, *errors(item, drawn_boxes(shown)))
    print(
        f"worst error through the tier, 2045x1501 JPEG decoded reduced by 4, 3 modes x 8 orientations: {worst:.4f} px"
    )
    assert worst <= 1.0


async def detections(tier: Tier, path: str, body: bytes, content_type: str) -> list[dict[str, Any]]:
    response = await post(tier.url(path), body, content_type)
    assert response.code == 200, response.body
    found: list[dict[str, Any]] = json.loads(response.body)["predictions"][0]["detections"]
    return found


@pytest.mark.gen_test(timeout=30)
async def test_the_request_sets_its_own_score_threshold_and_max_detections(make_tier: TierFactory) -> None:
    tier = await make_tier(squares_model("sq", "letterbox", 100, 100))
    image = stored_jpeg(displayed(False)[0], 1)  # red 0.9, green 0.8, blue 0.7
    path = "/v1/models/sq:predict"
    labels = [d["label"] for d in await detections(tier, path, image, "image/jpeg")]
    assert labels == ["red", "green", "blue"]
    above = await detections(tier, path + "?score_threshold=0.75", image, "image/jpeg")
    assert [d["label"] for d in above] == ["red", "green"]
    capped = await detections(tier, path + "?max_detections=1", image, "image/jpeg")
    assert [d["label"] for d in capped] == ["red"]
    body, content_type = multipart([("image", "a.jpg", image)], {"score_threshold": "0.85"})
    assert [d["label"] for d in await detections(tier, path, body, content_type)] == ["red"]
    document = {"instances": instances([image]), "score_threshold": 0.5, "max_detections": 2}
    code, answer = await post_json(tier, path + "?score_threshold=0.85", document)  # the body's wins
    assert code == 200 and [d["label"] for d in answer["predictions"][0]["detections"]] == ["red", "green"]
    topped = await detections(tier, path + "?top_k=1&max_detections=3", image, "image/jpeg")
    assert [d["label"] for d in topped] == ["red"]  # top_k caps detections as before; both caps apply


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("score_threshold=1.5", "'score_threshold' must be a number from 0 to 1"),
        ("score_threshold=-0.1", "'score_threshold' must be a number from 0 to 1"),
        ("score_threshold=nan", "'score_threshold' must be a number from 0 to 1"),
        ("max_detections=0", "'max_detections' must be an integer from 1 to 1000"),
        ("max_detections=1001", "'max_detections' must be an integer from 1 to 1000"),
        ("max_detections=2.5", "'max_detections' must be an integer from 1 to 1000"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_detection_parameter_out_of_range_is_refused(make_tier: TierFactory, query: str, message: str) -> None:
    tier = await make_tier(squares_model("sq", "letterbox", 100, 100))
    image = stored_jpeg(displayed(False)[0], 1)
    response = await post(tier.url(f"/v1/models/sq:predict?{query}"), image, "image/jpeg")
    assert response.code == 400
    error = json.loads(response.body)["error"]
    assert (error["code"], error["message"]) == ("invalid_request", message)


@pytest.mark.gen_test(timeout=30)
async def test_a_json_threshold_that_is_no_number_is_refused(make_tier: TierFactory) -> None:
    tier = await make_tier(squares_model("sq", "letterbox", 100, 100))
    image = instances([stored_jpeg(displayed(False)[0], 1)])
    for value in (None, True, "half", [0.5], {"value": 0.5}):
        code, answer = await post_json(tier, "/v1/models/sq:predict", {"instances": image, "score_threshold": value})
        assert (code, answer["error"]["code"]) == (400, "invalid_request"), value


@pytest.mark.gen_test(timeout=30)
async def test_a_detection_parameter_for_a_classifier_is_refused(make_tier: TierFactory) -> None:
    tier = await make_tier()
    image = stored_jpeg(displayed(False)[0], 1)
    response = await post(tier.url("/v1/models/tiny:predict?score_threshold=0.5"), image, "image/jpeg")
    assert response.code == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == "invalid_request"
    assert (
        error["message"] == "'score_threshold' applies only to detection models; model 'tiny' is a classification model"
    )
