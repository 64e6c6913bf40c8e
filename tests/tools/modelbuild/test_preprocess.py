"""torchvision-style resize, crop and normalisation in numpy/OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from tools.modelbuild.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    normalize,
    resize_shorter_side,
    to_uint8_input,
)


@pytest.mark.parametrize(
    ("shape", "resized"),
    [((400, 600), (256, 384)), ((300, 451), (256, 384)), ((512, 512), (256, 256)), ((640, 427), (383, 256))],
)
def test_shorter_side_becomes_256(shape: tuple[int, int], resized: tuple[int, int]) -> None:
    assert resize_shorter_side(np.zeros((*shape, 3), np.uint8)).shape == (*resized, 3)


def test_center_crop_takes_the_middle() -> None:
    image = np.arange(256 * 300).reshape(256, 300)
    crop = center_crop(image)
    assert crop.shape == (224, 224)
    assert crop[0, 0] == image[16, 38]


def test_uint8_input_shape_and_type() -> None:
    crop = to_uint8_input(np.full((400, 600, 3), 7, np.uint8))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8 and crop.flags.c_contiguous


def test_normalize_matches_torchvision_formula() -> None:
    crop = np.array([[[0, 128, 255]]], dtype=np.uint8)
    expected = (np.array([0, 128, 255]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(normalize(crop)[0, 0], expected, rtol=1e-6)
    assert normalize(crop).dtype == np.float32
