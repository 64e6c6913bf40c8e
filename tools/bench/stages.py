"""``python -m tools.bench.stages``: one image's CPU by stage, from bytes to the ``tiny`` model's input.

For one 640x480 and one 12 MP workload JPEG (tools/bench/images.py), each stage of ``image_to_tensor_and_geometry``
is repeated and timed by this process's CPU clock (``time.process_time``), stages interleaved round by round, the
median kept: the header, the EXIF orientation, the decode (DCT-reduced), and the resize to 224x224 stretch as the
tier does it, as it did before issue 29 (INTER_AREA over a 2x shrink) and as the KServe peer does it (bilinear).
OpenCV runs on one thread, as in the tier (app/serving/opencv.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from processing.image import decode_image, image_to_tensor_and_geometry, preprocess
from processing.jpeg import exif_orientation
from processing.sniff import read_header
from tools.bench.decoders import LIMITS, SPECS
from tools.bench.images import make_workload

TINY = SPECS["tiny"]


def stages(data: bytes) -> dict[str, Callable[[], object]]:
    """Each stage of one image as a call to repeat; the resizes start from the decoded pixels."""
    rgb = decode_image(data, LIMITS, TINY.min_decoded_side())
    size = (TINY.width, TINY.height)
    return {
        "header": lambda: read_header(data),
        "exif orientation": lambda: exif_orientation(data),
        "decode": lambda: decode_image(data, LIMITS, TINY.min_decoded_side()),
        "resize now": lambda: preprocess(rgb, TINY),
        "INTER_AREA (before issue 29, over a 2x shrink)": lambda: _resized(rgb, size, cv2.INTER_AREA),
        "bilinear (the KServe peer's)": lambda: _resized(rgb, size, cv2.INTER_LINEAR),
        "whole image (tensor and geometry)": lambda: image_to_tensor_and_geometry(data, TINY, LIMITS),
    }


def _resized(rgb: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    return np.asarray(cv2.resize(rgb, size, interpolation=interpolation))


def measure(calls: dict[str, Callable[[], object]], repeats: int, rounds: int) -> dict[str, float]:
    """Median CPU milliseconds per call of each stage over ``rounds``, stages interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            start = time.process_time()
            for _ in range(repeats):
                call()
            samples[name].append((time.process_time() - start) * 1000 / repeats)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=Path, default=Path("build/bench/images"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    workload = make_workload(args.images)
    for label, name, repeats in (("640x480", workload.small[0], 100), ("12 MP", workload.large[0], 5)):
        print(f"| {label}: {name} | CPU ms per image (median of {args.rounds} rounds) |")
        print("| --- | --- |")
        for stage, ms in measure(stages((workload.directory / name).read_bytes()), repeats, args.rounds).items():
            print(f"| {stage} | {ms:.3f} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
