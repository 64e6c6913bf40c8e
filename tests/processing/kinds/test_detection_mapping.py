"""Detection boxes map back to the displayed image within 1 px, over every resize mode, both aspect ratios and all
eight EXIF orientations.

A fixed-formula detector (saturated red, green and blue squares; its boxes are the squares' pixel bounds in the
model's input) runs on the tensor the tier really makes of a real JPEG; each square's place in the displayed
image is known exactly, since the test drew it there.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from processing.geometry import ImageGeometry
from processing.image import PreprocessSpec, ResizeMode, image_to_tensor_and_geometry
from processing.jpeg import orient
from processing.kinds.detection import Detections, detect_batch
from tests.support.exif import with_exif_orientation
from tests.support.specs import decode_limits, postprocess_spec, preprocess_spec

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # classes 1, 2, 3
# Squares (x, y, side) in a 400 x 200 displayed image; transposed for the portrait one. Multiples of 4, so that
# every resize below (by 1/4, 1/2, or 1/4 x 1/2) puts their edges on the model frame's pixel edges.
SQUARES = ((8, 16, 64), (200, 100, 48), (320, 40, 72))
INVERSE = {6: 8, 8: 6}  # orient(., 6) and orient(., 8) undo each other; the other orientations undo themselves


def displayed(portrait: bool) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A 400 x 200 (or 200 x 400) grey image with the squares, and the squares as drawn."""
    rgb = np.full((200, 400, 3), 128, dtype=np.uint8)
    squares = [(y, x, s) if portrait else (x, y, s) for x, y, s in SQUARES]
    if portrait:
        rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2))
    for (x, y, side), colour in zip(squares, COLOURS, strict=True):
        rgb[y : y + side, x : x + side] = colour
    return rgb, squares


def stored_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose pixels, turned upright for ``orientation``, are ``rgb``."""
    stored = orient(rgb, INVERSE.get(orientation, orientation))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(stored, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    return with_exif_orientation(data.tobytes(), orientation)


def square_detector(tensor: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed formula: each colour's saturated pixels' bounds, normalised, as the TF Object Detection API
    answers (keypoints: each box's top-left corner and centre, (y, x))."""
    h, w = tensor.shape[:2]
    pixels = tensor.astype(np.int32)
    boxes, keypoints = [], []
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        mask = (pixels[:, :, channel] > 160) & (pixels[:, :, others] < 96).all(axis=2)
        rows, cols = np.nonzero(mask)
        box = [rows.min() / h, cols.min() / w, (rows.max() + 1) / h, (cols.max() + 1) / w] if len(rows) else [0] * 4
        boxes.append(box)
        keypoints.append([[box[0], box[1]], [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])
    return {
        "detection_boxes": np.array([boxes], dtype=np.float32),
        "detection_scores": np.array([[0.9, 0.8, 0.7]], dtype=np.float32),
        "detection_classes": np.array([[1, 2, 3]], dtype=np.float32),
        "num_detections": np.array([3], dtype=np.float32),
        "detection_keypoints": np.array([keypoints], dtype=np.float32),
    }


def detections(data: bytes, resize: ResizeMode) -> tuple[Detections, ImageGeometry]:
    spec = preprocess_spec(100, 100, resize=resize, resize_shorter=100 if resize == "crop" else None, dtype="uint8")
    tensor, geometry = image_to_tensor_and_geometry(data, spec, decode_limits())
    answers = detect_batch(square_detector(tensor), postprocess_spec(kind="detection"), [geometry])
    assert isinstance(answers[0], Detections)
    return answers[0], geometry


def visible(square: tuple[int, int, int], width: int, height: int) -> tuple[float, float, float, float]:
    """The square clipped to the part of the image the crop keeps: its true box, (x, y, width, height)."""
    x, y, side = square
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + side), min(height, y + side)
    return x0, y0, x1 - x0, y1 - y0


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("portrait", [False, True], ids=["landscape", "portrait"])
@pytest.mark.parametrize("resize", ["letterbox", "crop", "stretch"])
def test_every_box_and_keypoint_lands_within_a_pixel_of_the_truth(
    resize: ResizeMode, portrait: bool, orientation: int
) -> None:
    rgb, squares = displayed(portrait)
    answer, geometry = detections(stored_jpeg(rgb, orientation), resize)
    assert (geometry.width, geometry.height) == (rgb.shape[1], rgb.shape[0])
    # What a crop cuts away (a quarter of the long side at each end) the model cannot see: the truth is what it keeps.
    long_side = max(rgb.shape[:2])
    kept = (long_side // 4, 3 * long_side // 4) if resize == "crop" else (0, long_side)
    worst = 0.0
    for detection, square in zip(answer.detections, squares, strict=True):
        x, y, side = square
        along, across = (y, x) if portrait else (x, y)
        if along + side <= kept[0] or along >= kept[1]:
            continue  # wholly cut away: the detector saw nothing
        lo, hi = max(along, kept[0]), min(along + side, kept[1])
        truth = (across, lo, side, hi - lo) if portrait else (lo, across, hi - lo, side)
        worst = max(worst, *np.abs(np.subtract(detection.box, truth)).tolist())
        tx, ty, tw, th = truth
        points = np.array(detection.keypoints)
        worst = max(worst, *np.abs(points - [[tx, ty], [tx + tw / 2, ty + th / 2]]).ravel().tolist())
    assert worst <= 1.0


def test_a_box_beyond_the_letterboxed_image_is_clipped_to_it() -> None:
    rgb, _ = displayed(portrait=False)
    spec = preprocess_spec(100, 100, resize="letterbox", dtype="uint8")
    _, geometry = image_to_tensor_and_geometry(stored_jpeg(rgb, 1), spec, decode_limits())
    outputs = square_detector(np.zeros((100, 100, 3), dtype=np.uint8))
    outputs["detection_boxes"][0, 0] = [0.0, 0.0, 1.0, 1.0]  # the whole frame, padding included
    answer = detect_batch(outputs, postprocess_spec(kind="detection"), [geometry])[0]
    assert isinstance(answer, Detections)
    assert answer.detections[0].box == (0.0, 0.0, 400.0, 200.0)


# A large JPEG whose sides are no multiple of the DCT reduction (4 here: the shorter side 1501 allows 4, not 8, for
# a 256 frame), so libjpeg-turbo rounds the reduced sides up to 512 x 376, whose last pixels stand partly past the
# image. Squares (x, y, side) in the stored pixels on 16-pixel edges (whole chroma blocks: sharp after JPEG and the
# reduction), one at each far edge where a mapping by the nominal 2045/512 would be off by about 3 px.
ODD_SIZE = (2045, 1501)
ODD_SQUARES = ((32, 48, 320), (1920, 640, 112), (960, 1280, 208))
# Frames that take the reduced 512 x 376 image by exactly a half: letterbox 256 x 256, crop to 188 of a 188 shorter
# side, stretch to 256 x 188 (188 x 256 when the orientation turns the image a quarter).
ODD_FRAMES: dict[ResizeMode, tuple[int, int, int | None]] = {
    "letterbox": (256, 256, None),
    "crop": (188, 188, 188),
    "stretch": (256, 188, None),
}


def odd_sized(orientation: int, kept: tuple[int, int] | None = None) -> tuple[bytes, np.ndarray]:
    """The odd-sized JPEG stored with ``orientation``, and the image as displayed with only the stored columns
    ``kept`` (all by default) showing their squares: what the model can see, so the truth."""
    width, height = ODD_SIZE
    stored = np.full((height, width, 3), 128, dtype=np.uint8)
    for (x, y, side), colour in zip(ODD_SQUARES, COLOURS, strict=True):
        stored[y : y + side, x : x + side] = colour
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(stored, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    if kept is not None:
        stored[:, : kept[0]] = stored[:, kept[1] :] = 128
    return with_exif_orientation(data.tobytes(), orientation), orient(stored, orientation)


def drawn_boxes(shown: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    """Each colour's square in the displayed pixels as drawn, (x, y, width, height); None where none shows."""
    boxes: list[tuple[int, int, int, int] | None] = []
    for colour in COLOURS:
        rows, cols = np.nonzero((shown == colour).all(axis=2))
        if not len(rows):
            boxes.append(None)
            continue
        x, y = int(cols.min()), int(rows.min())
        boxes.append((x, y, int(cols.max()) + 1 - x, int(rows.max()) + 1 - y))
    return boxes


def odd_frame(resize: ResizeMode, orientation: int) -> PreprocessSpec:
    width, height, shorter = ODD_FRAMES[resize]
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return preprocess_spec(height, width, resize=resize, resize_shorter=shorter, dtype="uint8")


# What the crop keeps of the stored long side: 512 x 376 reduced, halved to 256 x 188, its middle 188 columns
# (from 34) are the reduced columns 68 to 444, the stored ones 272 to 1776.
CROP_KEPT = (272, 1776)


def worst_error(answer: Detections, truths: Sequence[tuple[int, int, int, int] | None]) -> float:
    """The largest distance, in px, of a box side or keypoint from the truth (squares the model cannot see skipped)."""
    worst = 0.0
    for detection, truth in zip(answer.detections, truths, strict=True):
        if truth is None:
            continue
        x, y, w, h = truth
        worst = max(worst, *np.abs(np.subtract(detection.box, truth)).tolist())
        points = np.array(detection.keypoints)
        worst = max(worst, *np.abs(points - [[x, y], [x + w / 2, y + h / 2]]).ravel().tolist())
    return worst


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("resize", ["letterbox", "crop", "stretch"])
def test_a_jpeg_decoded_reduced_maps_exactly_when_its_sides_are_no_multiple_of_the_reduction(
    resize: ResizeMode, orientation: int
) -> None:
    data, shown = odd_sized(orientation, CROP_KEPT if resize == "crop" else None)
    tensor, geometry = image_to_tensor_and_geometry(data, odd_frame(resize, orientation), decode_limits())
    assert tensor.shape[:2] == (odd_frame(resize, orientation).height, odd_frame(resize, orientation).width)
    assert (geometry.width, geometry.height) == (shown.shape[1], shown.shape[0])
    (answer,) = detect_batch(square_detector(tensor), postprocess_spec(kind="detection"), [geometry])
    assert isinstance(answer, Detections)
    assert worst_error(answer, drawn_boxes(shown)) <= 0.01  # exact but for float32 boxes
