"""The one-pass normalisation (issue 29): each float32 row is the plain formula, written into its batch row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import processing.batch
from processing.batch import decode_batch
from processing.geometry import ImageGeometry
from processing.image import PreprocessSpec, image_to_tensor, image_to_tensor_and_geometry, preprocess
from processing.sniff import ImageBytes
from tests.support.specs import decode_limits, preprocess_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
SPECS: dict[str, dict[str, Any]] = {
    "scale only": {"scale": 1 / 255},
    "no normalisation": {},
    "mean and std": IMAGENET,
    "mean and std, bgr": {**IMAGENET, "color": "bgr"},
    "one mean and std for three channels": {"mean": (127.5,), "std": (127.5,)},
    "gray, scale and mean": {"color": "gray", "scale": 1 / 255, "mean": (0.5,), "std": (0.25,)},
    "nchw, mean and std": {**IMAGENET, "layout": "nchw"},
    "nchw, scale only, bgr": {"scale": 1 / 255, "color": "bgr", "layout": "nchw"},
    "nchw, gray": {"color": "gray", "scale": 2.0, "mean": (-1.0,), "layout": "nchw"},
}


def straightforward(rgb: np.ndarray, spec: PreprocessSpec, dtype: type[np.floating[Any]]) -> np.ndarray:
    """The formula as written: colour order, then ``(x * scale - mean) / std`` in ``dtype``, then the layout."""
    if spec.color == "bgr":
        pixels = rgb[:, :, ::-1]
    elif spec.color == "gray":  # what OpenCV's RGB2GRAY gives, computed independently by cv2 in the product
        import cv2

        pixels = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        pixels = rgb
    values = (pixels.astype(dtype) * dtype(spec.scale) - np.asarray(spec.mean, dtype)) / np.asarray(spec.std, dtype)
    return np.transpose(values, (2, 0, 1)) if spec.layout == "nchw" else values


def noise(height: int, width: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("changes", SPECS.values(), ids=SPECS.keys())
def test_each_value_is_the_formula_within_float32_rounding(changes: dict[str, Any]) -> None:
    spec = preprocess_spec(24, 32, **changes)
    rgb = noise(24, 32)  # the frame's size: no resize, every one of the 256 values in every channel
    out = preprocess(rgb, spec)
    assert out.dtype == np.float32 and out.shape == spec.shape
    # float32 rounds mean and std, then each of the three steps: a few units in the last place of values near 2
    np.testing.assert_allclose(out, straightforward(rgb, spec, np.float64), rtol=1e-6, atol=4e-6)
    np.testing.assert_array_equal(out, straightforward(rgb, spec, np.float32))  # what the former path gave


@pytest.mark.parametrize("changes", SPECS.values(), ids=SPECS.keys())
def test_the_tensor_is_written_into_the_row_it_is_given(changes: dict[str, Any]) -> None:
    spec = preprocess_spec(24, 32, **changes)
    rgb = noise(24, 32)
    batch = np.full((3, *spec.shape), np.nan, dtype=np.float32)
    written = preprocess(rgb, spec, batch[1])
    assert np.shares_memory(written, batch[1])
    np.testing.assert_array_equal(batch[1], preprocess(rgb, spec))
    assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all()


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("color", ["rgb", "bgr", "gray"])
def test_uint8_rows_are_the_pixels_unchanged(layout: str, color: str) -> None:
    spec = preprocess_spec(24, 32, dtype="uint8", color=color, layout=layout)
    rgb = noise(24, 32)
    row = np.zeros(spec.shape, dtype=np.uint8)
    preprocess(rgb, spec, row)
    np.testing.assert_array_equal(row, straightforward(rgb, spec, np.float64).astype(np.uint8))


def test_a_cropped_view_is_normalised_as_a_copy_of_it_would_be() -> None:
    spec = preprocess_spec(24, 24, resize="crop", resize_shorter=24, **IMAGENET)
    rgb = noise(24, 40)  # the centre crop is a view with the rows' stride of the wider image
    out = preprocess(rgb, spec)
    np.testing.assert_array_equal(out, straightforward(np.ascontiguousarray(rgb[:, 8:32]), spec, np.float32))


def test_a_batch_is_its_images_decoded_each_straight_into_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = preprocess_spec(64, 64, **IMAGENET)
    images = [(FIXTURES / name).read_bytes() for name in ("coffee.jpg", "chelsea.jpg")]
    given: list[np.ndarray] = []
    real = image_to_tensor_and_geometry

    def recording(
        data: ImageBytes, spec: PreprocessSpec, limits: Any, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, ImageGeometry]:
        assert out is not None
        given.append(out)
        return real(data, spec, limits, out)

    monkeypatch.setattr(processing.batch, "image_to_tensor_and_geometry", recording)
    decoded = decode_batch(images, spec, decode_limits())
    assert decoded.tensors.flags.c_contiguous and decoded.tensors.dtype == np.float32
    for row, (out, data) in enumerate(zip(given, images, strict=True)):
        assert np.shares_memory(out, decoded.tensors[row])
        np.testing.assert_array_equal(decoded.tensors[row], image_to_tensor(data, spec, decode_limits()))


def test_a_strided_row_is_written_too() -> None:
    spec = preprocess_spec(24, 32, **IMAGENET)
    rgb = noise(24, 32)
    wide = np.zeros((24, 64, 3), dtype=np.float32)
    preprocess(rgb, spec, wide[:, ::2])
    np.testing.assert_array_equal(wide[:, ::2], preprocess(rgb, spec))
