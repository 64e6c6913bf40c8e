"""A request's images decoded into one batch by one call: rows in order, failures apart, repeats decoded once."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pytest

import processing.batch
from processing.batch import decode_batch
from processing.errors import ImageDecodeFailed
from processing.geometry import ImageGeometry
from processing.image import image_to_tensor, image_to_tensor_and_geometry
from tests.support.specs import decode_limits, preprocess_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
DIGIT = (FIXTURES / "digit_3.png").read_bytes()
SPEC = preprocess_spec(32, 32, dtype="uint8")


def test_each_image_is_its_row_and_a_failure_is_its_own() -> None:
    decoded = decode_batch([COFFEE, b"not an image", DIGIT], SPEC, decode_limits())
    assert decoded.tensors.shape == (2, *SPEC.shape) and decoded.tensors.dtype == np.uint8
    assert decoded.tensors.flags.c_contiguous
    assert decoded.rows() == [0, 2]
    assert decoded.failures[0] is None and decoded.failures[2] is None
    assert isinstance(decoded.failures[1], ImageDecodeFailed)
    np.testing.assert_array_equal(decoded.tensors[0], image_to_tensor(COFFEE, SPEC, decode_limits()))
    np.testing.assert_array_equal(decoded.tensors[1], image_to_tensor(DIGIT, SPEC, decode_limits()))
    assert [start <= end for start, end in decoded.times] == [True] * 3


def test_the_same_bytes_twice_are_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = image_to_tensor_and_geometry

    def counting(data: bytes, *args: object) -> tuple[np.ndarray, ImageGeometry]:
        calls.append(len(data))
        return real(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(processing.batch, "image_to_tensor_and_geometry", counting)
    decoded = decode_batch([COFFEE, DIGIT, COFFEE], SPEC, decode_limits())
    assert calls == [len(COFFEE), len(DIGIT)]
    np.testing.assert_array_equal(decoded.tensors[2], decoded.tensors[0])
    assert decoded.geometries[2] == decoded.geometries[0] != decoded.geometries[1]


def test_an_unexpected_exception_is_that_inputs_failure() -> None:
    decoded = decode_batch([COFFEE, None, COFFEE[:1]], SPEC, decode_limits())  # type: ignore[list-item]
    assert decoded.rows() == [0]
    assert isinstance(decoded.failures[1], Exception)


@pytest.mark.parametrize(
    "broken",
    [b"\xff\xd8\xff\xe0" + bytes(1000), COFFEE[:5000], b"not an image", DIGIT[:40]],
    ids=["jpeg header only", "truncated jpeg", "not an image", "truncated png"],
)
def test_a_failed_input_leaves_nothing_holding_its_bytes(broken: bytes) -> None:
    """No reference cycle through the failure's traceback keeps the bytes (a 19 MiB body in a burst) alive
    after the batch is dropped: a quiet process never runs the collector that would free them."""
    data = bytes(bytearray(broken))  # an object of this test's own
    before = sys.getrefcount(data)
    gc.collect()
    gc.disable()
    try:
        decoded = decode_batch([data, COFFEE], SPEC, decode_limits())
        assert isinstance(decoded.failures[0], ImageDecodeFailed)
        del decoded
        assert sys.getrefcount(data) == before
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_no_images_is_an_empty_batch() -> None:
    decoded = decode_batch([], SPEC, decode_limits())
    assert decoded.tensors.shape == (0, *SPEC.shape) and decoded.failures == []
