"""The workload images: photo-like JPEGs at 640x480 and 12 megapixels, made deterministically.

Each is a fixture photo scaled up (bicubic) with mild seeded noise added, so its JPEG
carries the fine detail of a real camera picture and decoding it costs what decoding a
photo does (a flat upscale would decode unrealistically fast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "images"
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
SMALL = (640, 480)
LARGE = (4000, 3000)
QUALITY = 90
NOISE_SIGMA = 4.0
RECIPE = {"small": SMALL, "large": LARGE, "quality": QUALITY, "noise": NOISE_SIGMA, "photos": PHOTOS, "v": 1}


@dataclass(frozen=True)
class Workload:
    directory: Path
    small: tuple[str, ...]  # file names, relative to directory
    large: tuple[str, ...]

    def sizes(self, names: tuple[str, ...]) -> list[int]:
        return [(self.directory / n).stat().st_size for n in names]


def photo_like(photo: np.ndarray, size: tuple[int, int], seed: int, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """``photo`` scaled to ``size`` (width, height), cropped to its aspect, with seeded noise of ``sigma``."""
    width, height = size
    h, w = photo.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(photo, (round(w * scale) + 1, round(h * scale) + 1), interpolation=cv2.INTER_CUBIC)
    top = (resized.shape[0] - height) // 2
    left = (resized.shape[1] - width) // 2
    crop = resized[top : top + height, left : left + width].astype(np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, crop.shape).astype(np.float32)
    pixels: np.ndarray = np.clip(crop + noise, 0, 255).astype(np.uint8)
    return pixels


def make_workload(directory: Path, small_count: int = 8, large_count: int = 4) -> Workload:
    """Write the images under ``directory`` unless the same recipe already did."""
    directory.mkdir(parents=True, exist_ok=True)
    small = tuple(f"small_{i}.jpg" for i in range(small_count))
    large = tuple(f"large_{i}.jpg" for i in range(large_count))
    stamp = directory / "recipe.json"
    recipe = json.dumps({**RECIPE, "counts": [small_count, large_count]}, sort_keys=True)
    done = stamp.is_file() and stamp.read_text() == recipe
    if not done or not all((directory / n).is_file() for n in small + large):
        photos = [_read(FIXTURES / p) for p in PHOTOS]
        for i, name in enumerate(small):
            _write(directory / name, photo_like(photos[i % len(photos)], SMALL, seed=i))
        for i, name in enumerate(large):
            _write(directory / name, photo_like(photos[i % len(photos)], LARGE, seed=100 + i))
        stamp.write_text(recipe)
    return Workload(directory, small, large)


def _read(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise RuntimeError(f"cannot read {path}")
    return np.asarray(pixels)


def _write(path: Path, pixels: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError(f"cannot encode {path.name}")
    path.write_bytes(encoded.tobytes())
