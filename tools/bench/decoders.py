"""``python -m tools.bench.decoders``: CPU milliseconds per JPEG from bytes to model input, per decoder.

Every contender turns the workload's JPEGs (tools/bench/images.py: 640x480 and 12 MP) into the ``tiny`` model's
input (224x224 stretch) and mobilenet_v2's (shorter side 256, centre crop 224), uint8 as both are served. The
contenders run interleaved, in an order rotated each round, and are timed by this process's CPU clock
(``time.process_time``), so another process on the machine slows none of them more than the others. OpenCV runs
on one thread, as in the tier (app/serving/opencv.py).

A second table measures the batch buffer: each image's tensor written into a row of a preallocated batch,
against today's separate tensors joined by ``np.stack`` (app/pipeline.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from app.settings import DecodeSettings
from processing.image import (
    DecodeLimits,
    PreprocessSpec,
    check_dimensions,
    decode_image,
    decode_with_opencv,
    preprocess,
)
from processing.jpeg import exif_orientation, orient
from processing.sniff import read_header
from tools.bench.images import make_workload

Contender = Callable[[bytes, PreprocessSpec], np.ndarray]

LIMITS = DecodeLimits(DecodeSettings().max_pixels, DecodeSettings().max_side)  # the tier's defaults
SPECS = {
    "tiny": PreprocessSpec(224, 224, "stretch", None, "rgb", "uint8", 1.0, (0.0,), (1.0,), "nhwc", 0),
    "mobilenet_v2": PreprocessSpec(224, 224, "crop", 256, "rgb", "uint8", 1.0, (0.0,), (1.0,), "nhwc", 0),
}


def opencv_today(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """The decode before issue 18: OpenCV, reduced by 2, 4 or 8, then BGR to RGB."""
    header = read_header(data)
    check_dimensions(header, LIMITS)
    return preprocess(decode_with_opencv(data, header, spec.min_decoded_side()), spec)


def product(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """Whatever processing.image does now (for the report: it should equal one of the others)."""
    return preprocess(decode_image(data, LIMITS, spec.min_decoded_side()), spec)


def simplejpeg_contender(fastdct: bool, fastupsample: bool, opencv_scales: bool = False) -> Contender:
    """simplejpeg at the smallest M/8 scale (or, with ``opencv_scales``, only OpenCV's 1/2, 1/4, 1/8)."""

    def run(data: bytes, spec: PreprocessSpec) -> np.ndarray:
        header = read_header(data)
        check_dimensions(header, LIMITS)
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        min_side = spec.min_decoded_side()
        if opencv_scales:
            min_side = _opencv_scaled_side(min(width, height), min_side)
        min_height, min_width = (min_side, 0) if height <= width else (0, min_side)
        rgb = simplejpeg.decode_jpeg(
            data,
            fastdct=fastdct,
            fastupsample=fastupsample,
            min_height=min_height,
            min_width=min_width,
            strict=True,
        )
        return preprocess(orient(rgb, exif_orientation(data)), spec)

    return run


def _opencv_scaled_side(shorter: int, min_side: int) -> int:
    for factor in (8, 4, 2):
        if min_side > 0 and shorter // factor >= min_side:
            return shorter // factor
    return shorter


def turbojpeg_contender() -> Contender | None:
    """PyTurboJPEG (ctypes over the system's libturbojpeg) at the smallest M/8 scale; None when unavailable."""
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        codec = TurboJPEG()
    except (ImportError, OSError, RuntimeError):
        return None
    factors = sorted((n / d, (n, d)) for n, d in codec.scaling_factors if n <= d)

    def run(data: bytes, spec: PreprocessSpec) -> np.ndarray:
        header = read_header(data)
        check_dimensions(header, LIMITS)
        width, height, _, _ = codec.decode_header(data)
        shorter, min_side = min(width, height), spec.min_decoded_side()
        factor = next(f for ratio, f in factors if -(-shorter * f[0] // f[1]) >= min(min_side, shorter))
        rgb = codec.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor)
        return preprocess(orient(rgb, exif_orientation(data)), spec)

    return run


def contenders() -> dict[str, Contender]:
    found: dict[str, Contender] = {
        "opencv (before)": opencv_today,
        "simplejpeg, OpenCV's scales": simplejpeg_contender(False, False, opencv_scales=True),
        "simplejpeg": simplejpeg_contender(False, False),
        "simplejpeg fastdct": simplejpeg_contender(True, False),
        "simplejpeg fastupsample": simplejpeg_contender(False, True),
        "simplejpeg fastdct+fastupsample": simplejpeg_contender(True, True),
        "simplejpeg fast*, OpenCV's scales": simplejpeg_contender(True, True, opencv_scales=True),
    }
    turbo = turbojpeg_contender()
    if turbo is not None:
        found["PyTurboJPEG"] = turbo
    found["processing.image now"] = product
    return found


def cpu_ms_per_image(
    runners: dict[str, Contender], images: Sequence[bytes], spec: PreprocessSpec, rounds: int
) -> dict[str, list[float]]:
    """Per round, each runner's CPU ms per image over all ``images``; the order rotates every round."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.process_time()
            for data in images:
                runners[name](data, spec)
            samples[name].append((time.process_time() - started) * 1000 / len(images))
    return samples


def stacked(rgbs: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Today: each image preprocessed into its own tensor, the batch joined by ``np.stack`` (app/pipeline.py)."""
    return np.stack([preprocess(rgb, spec) for rgb in rgbs])


def into_rows(rgbs: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """The batch allocated first, each image preprocessed straight into its row (``decode_batch``'s way since
    issue 29)."""
    out = np.empty((len(rgbs), *spec.shape), dtype=np.dtype(spec.dtype))
    for row, rgb in zip(out, rgbs, strict=True):
        preprocess(rgb, spec, row)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=Path, default=Path("build/bench/images"))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    workload = make_workload(args.images)
    sizes = {
        "640x480": [(workload.directory / n).read_bytes() for n in workload.small],
        "12 MP": [(workload.directory / n).read_bytes() for n in workload.large],
    }
    runners = contenders()
    print(f"CPU ms per image (median of {args.rounds} interleaved rounds; lower is better)")
    header = f"{'decoder':34}" + "".join(f"{size + ' ' + model:>22}" for size in sizes for model in SPECS)
    print(header)
    table: dict[str, list[float]] = {name: [] for name in runners}
    for images in sizes.values():
        for spec in SPECS.values():
            for name, values in cpu_ms_per_image(runners, images, spec, args.rounds).items():
                table[name].append(statistics.median(values))
    for name, medians in table.items():
        print(f"{name:34}" + "".join(f"{m:22.3f}" for m in medians))
    _batch_table(sizes["640x480"], args.rounds)
    return 0


def _batch_table(images: Sequence[bytes], rounds: int) -> None:
    """Only what differs between the two: preprocessing and batch assembly, from decoded pixels."""
    print("\nBatch assembly from decoded 640x480 pixels, CPU us per image (preprocess + join into the batch)")
    runners = {"np.stack": stacked, "preallocated rows": into_rows}
    for spec_name, base in SPECS.items():
        for dtype in ("uint8", "float32"):
            spec = dataclasses.replace(base, dtype=dtype)
            rgbs = [decode_image(data, LIMITS, spec.min_decoded_side()) for data in images]
            for batch in (1, len(rgbs)):
                samples: dict[str, list[float]] = {name: [] for name in runners}
                for r in range(rounds * 20):
                    for name in list(runners)[r % 2 :] + list(runners)[: r % 2]:
                        started = time.process_time()
                        runners[name](rgbs[:batch], spec)
                        samples[name].append((time.process_time() - started) * 1e6 / batch)
                cells = "".join(f"{name} {statistics.median(v):7.1f}   " for name, v in samples.items())
                print(f"  {spec_name:14}{dtype:9}batch {batch}:  {cells}")


if __name__ == "__main__":
    raise SystemExit(main())
