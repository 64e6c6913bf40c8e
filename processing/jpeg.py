"""JPEG decoding through libjpeg-turbo's TurboJPEG API (simplejpeg): scaled in the DCT domain, EXIF-rotated.

For the same libjpeg-turbo work (reduced by 2, 4 or 8 in the DCT domain, as OpenCV's ``IMREAD_REDUCED_*``),
this costs less CPU than OpenCV's imdecode for the same pixels, bit for bit: it writes RGB directly, so no
colour conversion follows (tools/bench/decoders.py measures it). libjpeg-turbo's fast IDCT and fast chroma
upsampling would save a little more but move mobilenet_v2's scores on the fixture photos by up to 0.08
(tests/processing/test_decode_fidelity.py). OpenCV applies the EXIF orientation itself; here ``orient`` does.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import simplejpeg

from processing.sniff import ImageBytes, jpeg_segments

# Only the reductions libjpeg-turbo has SIMD inverse DCTs for: its other M/8 scales (5/8 for a 640x480 photo
# and a 256 shorter side) decode fewer pixels but cost more CPU than a full decode (tools/bench/decoders.py).
SCALE_FACTORS = (8, 4, 2)
_EXIF_ORIENTATION_TAG = 0x0112
_APP1 = 0xE1


def jpeg_size(data: ImageBytes) -> tuple[int, int]:
    """(width, height) as libjpeg-turbo reads them; raises ValueError when it cannot."""
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    return int(width), int(height)


def decode_jpeg(data: ImageBytes, size: tuple[int, int], min_side: int, orientation: int) -> np.ndarray:
    """RGB uint8 pixels (H, W, 3), reduced by 2, 4 or 8 while the shorter side stays >= ``min_side``, then turned
    upright for the EXIF ``orientation`` (``exif_orientation(data)``, read once by the caller).

    The orientation is applied to the reduced pixels, never the full-size ones. ``size`` is ``jpeg_size(data)``.
    Raises ValueError when libjpeg-turbo refuses the data, including
    recoverable damage such as truncation (``strict``), which OpenCV refuses too.
    """
    width, height = size
    shorter = min(width, height)
    factor = next((f for f in SCALE_FACTORS if min_side > 0 and shorter // f >= min_side), 1)
    min_scaled = -(-shorter // factor)  # libjpeg-turbo rounds scaled sides up
    rgb: np.ndarray = simplejpeg.decode_jpeg(
        data,
        colorspace="RGB",
        fastdct=False,
        fastupsample=False,
        min_height=min_scaled if height <= width else 0,
        min_width=min_scaled if width < height else 0,
        strict=True,
    )
    return orient(rgb, orientation)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` turned upright for EXIF ``orientation`` (1-8), as OpenCV's imdecode turns them."""
    if orientation == 2:
        return np.asarray(cv2.flip(pixels, 1))
    if orientation == 3:
        return np.asarray(cv2.flip(pixels, -1))
    if orientation == 4:
        return np.asarray(cv2.flip(pixels, 0))
    if orientation in (5, 6, 7, 8):
        flip = {5: None, 6: 1, 7: -1, 8: 0}[orientation]
        transposed = np.asarray(cv2.transpose(pixels))
        return transposed if flip is None else np.asarray(cv2.flip(transposed, flip))
    return pixels


def exif_orientation(data: ImageBytes) -> int:
    """The EXIF orientation (1-8) of a JPEG; 1 when it has none or its EXIF cannot be read.

    The segments are walked, which stops at the scan data: 2.4 µs for a 640x480 photo's eight segments, where a
    search of the whole 80 KB file for the EXIF header in C took 44 µs (CPython 3.11's bytes search, this machine).
    """
    try:
        tiff = _exif_payload(data)
        return _tiff_orientation(tiff) if tiff else 1
    except (struct.error, IndexError, ValueError):
        return 1


def _exif_payload(data: ImageBytes) -> ImageBytes | None:
    """The TIFF block of the first APP1 ``Exif`` segment before the scan data."""
    for marker, pos, length in jpeg_segments(data):
        if length < 2:
            return None
        if marker == _APP1 and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            return data[pos + 8 : pos + length]
    return None


def _tiff_orientation(tiff: ImageBytes) -> int:
    order = {b"II": "<", b"MM": ">"}[bytes(tiff[:2])]
    (first_ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[first_ifd : first_ifd + 2])
    for i in range(count):
        entry = first_ifd + 2 + 12 * i
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == _EXIF_ORIENTATION_TAG and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return int(value) if 1 <= value <= 8 else 1
    return 1
