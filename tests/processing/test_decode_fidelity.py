"""A JPEG decoder may change only what no model notices: the fixture photos through the real mobilenet_v2.

Whatever processing.image decodes with now against the decode before issue 18 (OpenCV, reduced by 2, 4 or 8):
the top-1 class is unchanged and no score among either's top 5 moves by more than 0.02. A decode at 1/8 of the
size, upscaled, must fail the same check, or it checks nothing. (libjpeg-turbo's fast IDCT and upsampling, and
its 3/8..7/8 scales, fail it too: tools/bench/decoders.py has them.)
TensorFlow runs in a subprocess (tests/support/direct_predict.py): this process never imports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from processing.image import PreprocessSpec, decode_image, decode_with_opencv, preprocess
from processing.sniff import read_header
from tests.support.direct_predict import mobilenet_probabilities
from tests.support.specs import decode_limits, preprocess_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
PHOTOS = sorted(FIXTURES.glob("*.jpg"))
MOBILENET = preprocess_spec(224, 224, resize="crop", resize_shorter=256, dtype="uint8")
MAX_SCORE_SHIFT = 0.02


def decoded_before(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    return preprocess(decode_with_opencv(data, read_header(data), spec.min_decoded_side()), spec)


def decoded_now(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    return preprocess(decode_image(data, decode_limits(), spec.min_decoded_side()), spec)


def coarse_decode(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """A deliberately worse decoder: libjpeg-turbo's smallest scale, 1/8, then upscaled to the model's input."""
    return preprocess(simplejpeg.decode_jpeg(data, min_height=1, min_width=1), spec)


@pytest.fixture(scope="module")
def scores(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Each decoder's mobilenet_v2 probabilities for the fixture photos, shape (photos, 1000)."""
    runners = {"before": decoded_before, "now": decoded_now, "coarse": coarse_decode}
    photos = [p.read_bytes() for p in PHOTOS]
    batch = np.stack([runners[name](data, MOBILENET) for name in runners for data in photos])
    probabilities = mobilenet_probabilities(models_dir, batch, tmp_path_factory.mktemp("fidelity"))
    probabilities = probabilities.reshape(len(runners), len(photos), -1)
    return dict(zip(runners, probabilities, strict=True))


def fidelity_failures(reference: np.ndarray, candidate: np.ndarray, max_shift: float = MAX_SCORE_SHIFT) -> list[str]:
    """Per photo, a changed top-1 class or a top-5 score moved by more than ``max_shift``."""
    failures = []
    for photo, ref, got in zip(PHOTOS, reference, candidate, strict=True):
        if np.argmax(ref) != np.argmax(got):
            failures.append(f"{photo.name}: top-1 class {np.argmax(ref)} became {np.argmax(got)}")
        top5 = set(np.argsort(ref)[-5:]) | set(np.argsort(got)[-5:])
        shift = max(abs(float(ref[c]) - float(got[c])) for c in top5)
        if shift > max_shift:
            failures.append(f"{photo.name}: a top-5 score moved by {shift:.4f}")
    return failures


def test_the_decoder_keeps_top1_and_top5_scores(scores: dict[str, np.ndarray]) -> None:
    assert fidelity_failures(scores["before"], scores["now"]) == []


def test_a_coarse_decoder_fails_the_same_check(scores: dict[str, np.ndarray]) -> None:
    assert fidelity_failures(scores["before"], scores["coarse"]) != []


def test_the_fixture_photos_are_all_there() -> None:
    assert [p.name for p in PHOTOS] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
