"""What decoding will hold, from headers alone, never falls short of what ``decode_batch`` really allocates.

The real figure is numpy's allocations (OpenCV's and simplejpeg's outputs are numpy arrays) traced by
tracemalloc: the peak above what was traced before the call.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from processing.batch import decode_batch
from processing.footprint import JPEG_BYTES_PER_PIXEL, decode_footprint
from processing.image import DecodeLimits, PreprocessSpec
from tests.support.imageserver import FIXTURES
from tests.support.specs import preprocess_spec

LIMITS = DecodeLimits(max_pixels=16_777_216, max_side=16_384)
RNG = np.random.default_rng(24)
PIXELS = RNG.integers(0, 256, (600, 800, 4), dtype=np.uint8)


def encoded(ext: str, pixels: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, pixels, list(params))
    assert ok
    return bytes(data.tobytes())


IMAGES = {
    "jpeg": (FIXTURES / "coffee.jpg").read_bytes(),
    "jpeg 12 MP": encoded(".jpg", cv2.resize(PIXELS[:, :, :3], (4000, 3000)), cv2.IMWRITE_JPEG_QUALITY, 70),
    "png grey": encoded(".png", PIXELS[:, :, 0].copy()),
    "png rgb": encoded(".png", PIXELS[:, :, :3].copy()),
    "png rgb 16-bit": encoded(".png", PIXELS[:, :, :3].astype(np.uint16) * 257),
    "png rgba": encoded(".png", PIXELS),
    "png rgba 16-bit": encoded(".png", PIXELS.astype(np.uint16) * 257),
    "webp rgba": encoded(".webp", PIXELS, cv2.IMWRITE_WEBP_QUALITY, 101),
    "bmp rgba": encoded(".bmp", PIXELS),
}
SPECS = {
    "uint8 224": preprocess_spec(224, 224, dtype="uint8"),
    "float32 crop nchw": preprocess_spec(224, 224, resize="crop", resize_shorter=256, layout="nchw"),
    "float32 letterbox 512": preprocess_spec(512, 512, resize="letterbox"),
}


def traced_peak(images: list[bytes], spec: PreprocessSpec) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoded = decode_batch(images, spec, LIMITS)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert decoded.failures == [None] * len(images)
    return peak


@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("image_name", IMAGES)
def test_the_footprint_covers_the_real_peak(image_name: str, spec_name: str) -> None:
    images, spec = [IMAGES[image_name], IMAGES["jpeg"]], SPECS[spec_name]
    footprint = decode_footprint(images, spec, LIMITS)
    peak = traced_peak(images, spec)
    assert peak <= footprint.peak
    assert footprint.peak < 3 * peak + 2 * footprint.kept, "so far above the real peak that it wastes the budget"


def test_a_jpeg_counts_at_the_scale_it_is_decoded_at_and_the_batch_twice() -> None:
    spec = SPECS["uint8 224"]
    footprint = decode_footprint([IMAGES["jpeg 12 MP"]] * 3, spec, LIMITS)
    row = 224 * 224 * 3
    assert footprint.kept == 2 * 3 * row  # the batch, and its copy in the Predict request
    assert footprint.peak == footprint.kept + 500 * 375 * JPEG_BYTES_PER_PIXEL  # 4000x3000 reduced by 8


def test_what_is_refused_before_decoding_counts_nothing() -> None:
    spec = SPECS["uint8 224"]
    small = DecodeLimits(max_pixels=1000, max_side=100)
    assert decode_footprint([b"not an image"], spec, LIMITS).peak == 2 * 224 * 224 * 3
    assert decode_footprint([IMAGES["png rgba"]], spec, small).peak == 2 * 224 * 224 * 3
    assert decode_footprint([], spec, LIMITS).peak == 0
