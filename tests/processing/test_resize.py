"""The resize of a shrink over 2x (bilinear to a power-of-two multiple, then 2:1 box steps), and what decode returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

import processing.image
from processing.image import decode, image_to_tensor_and_geometry, preprocess, shrink_steps
from tests.support.exif import with_exif_orientation
from tests.support.specs import decode_limits, preprocess_spec

STRETCH = preprocess_spec(224, 224, resize="stretch", dtype="uint8")


@pytest.mark.parametrize(
    ("size", "steps"),
    [
        ((320, 240), [(224, 224)]),  # under 2x: bilinear alone
        ((448, 224), [(448, 224), (224, 224)]),  # exactly 2x on one side, the other unchanged
        ((500, 375), [(448, 448), (224, 224)]),  # a 12 MP photo decoded at 1/8: both sides shrink
        ((4000, 3000), [(2000, 1500), (1000, 750), (500, 750), (448, 448), (224, 224)]),  # halved while >= 4x
        ((1000, 100), [(500, 100), (448, 224), (224, 224)]),  # the other side is enlarged
    ],
)
def test_a_shrink_of_2x_or_more_halves_while_4x_then_goes_to_twice_the_target_then_halves(
    size: tuple[int, int], steps: list[tuple[int, int]]
) -> None:
    assert shrink_steps(*size, 224, 224) == steps


def test_a_halving_averages_each_pair_of_pixels_as_an_area_resize_does() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    halved = cv2.resize(rgb, (250, 375), interpolation=cv2.INTER_LINEAR).astype(int)
    area = cv2.resize(rgb, (250, 375), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(halved - area).max() <= 1  # rounding only


def test_a_strong_shrink_of_fine_stripes_is_near_their_average_as_an_area_resize_makes_it() -> None:
    """One-pixel stripes shrunk 4.46x: anti-aliased, every output is near mid-grey; bilinear alone beats on them."""
    stripes = np.zeros((224, 1000, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    out = np.abs(preprocess(stripes, STRETCH).astype(int) - 127)
    area = np.abs(cv2.resize(stripes, (224, 224), interpolation=cv2.INTER_AREA).astype(int) - 127)
    bilinear = np.abs(cv2.resize(stripes, (224, 224), interpolation=cv2.INTER_LINEAR).astype(int) - 127)
    assert bilinear.max() > 60  # what the area step is there to prevent
    assert out.max() <= area.max() + 3  # INTER_AREA's own ripple: its box is a fractional 4.46 pixels wide


def test_a_shrink_over_2x_stays_close_to_an_area_resize() -> None:
    smooth = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8), (0, 0), 3)
    out = preprocess(smooth, STRETCH).astype(int)
    area = cv2.resize(smooth, (224, 224), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(out - area).mean() < 1.0
    assert np.abs(out - area).max() <= 8


@pytest.mark.parametrize(("orientation", "shown"), [(1, (80, 40)), (3, (80, 40)), (6, (40, 80)), (8, (40, 80))])
def test_decode_returns_the_header_and_orientation_it_read(orientation: int, shown: tuple[int, int]) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((40, 80, 3), dtype=np.uint8))
    assert ok
    decoded = decode(with_exif_orientation(jpeg.tobytes(), orientation), decode_limits())
    assert (decoded.header.width, decoded.header.height, decoded.orientation) == (80, 40, orientation)
    assert decoded.shown == shown
    assert decoded.pixels.shape[1::-1] == shown


def counted(name: str, real: Callable[[bytes], Any], calls: list[str]) -> Callable[[bytes], Any]:
    def counting(data: bytes) -> Any:
        calls.append(name)
        return real(data)

    return counting


def test_a_tensor_and_its_geometry_read_the_header_and_exif_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((300, 400, 3), dtype=np.uint8))
    assert ok
    calls: list[str] = []
    for name in ("read_header", "exif_orientation"):
        monkeypatch.setattr(processing.image, name, counted(name, getattr(processing.image, name), calls))
    _, geometry = image_to_tensor_and_geometry(with_exif_orientation(jpeg.tobytes(), 6), STRETCH, decode_limits())
    assert sorted(calls) == ["exif_orientation", "read_header"]
    assert (geometry.width, geometry.height) == (300, 400)
