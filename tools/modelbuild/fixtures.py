"""One-off: write the test images (``python -m tools.modelbuild.fixtures``); the outputs are committed.

* ``coffee.jpg``, ``chelsea.jpg``, ``astronaut.jpg``, ``rocket.jpg``: scikit-image's bundled
  photos at their original size, JPEG quality 90;
* ``digit_<n>.png``: the first example of digit n in scikit-learn's load_digits, scaled to
  64x64 (nearest), white ink on black, 8-bit grayscale.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage.data
from sklearn.datasets import load_digits

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
DIGITS = (0, 3, 7, 9)
JPEG_QUALITY = 90
DIGIT_SIZE = 64
DEFAULT_DIR = Path("tests/fixtures/images")


def _write(path: Path, image: np.ndarray[Any, Any], params: list[int]) -> None:
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"cannot write {path}")
    print(f"{path} ({path.stat().st_size} bytes)")


def write_photos(directory: Path) -> None:
    """The scikit-image photos as JPEG (OpenCV wants BGR)."""
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        _write(directory / f"{name}.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def digit_image(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """An 8x8 load_digits image (0..16, 16 = ink) as a 64x64 uint8 picture, ink 255."""
    gray = np.round(np.asarray(pixels, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return np.asarray(cv2.resize(gray, (DIGIT_SIZE, DIGIT_SIZE), interpolation=cv2.INTER_NEAREST))


def write_digits(directory: Path) -> None:
    """One PNG per digit in DIGITS, the first example of each in load_digits."""
    digits = load_digits()
    for n in DIGITS:
        first = int(np.flatnonzero(digits.target == n)[0])
        png = [cv2.IMWRITE_PNG_COMPRESSION, 9]
        _write(directory / f"digit_{n}.png", digit_image(digits.images[first]), png)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.modelbuild.fixtures", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="fixtures directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_photos(args.out)
    write_digits(args.out)


if __name__ == "__main__":
    main()
