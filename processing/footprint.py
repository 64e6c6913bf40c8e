"""What decoding a request's images into one batch will hold in memory, from their headers alone.

The tier reserves this in its memory budget before it decodes (``app/memory.py``): ``decode_batch``
decodes one image at a time into its row of the batch, so its peak is the batch plus the largest image's
decoding. Per decoded pixel, counted where the decoder makes copies (``processing/image.py``):

- a JPEG, at the scale it is decoded at (reduced by 2, 4 or 8 when the model's input allows): 3 bytes of
  RGB, and as many again for a rotated copy (EXIF orientation) or a converted one: 6;
- a PNG without alpha: 8-bit, 3 bytes decoded and 3 converted to RGB: 6; 16-bit, 6 decoded, 6 shifted to
  8 bits, 3 and 3 more: 18;
- an image that may carry alpha (a PNG that has it, and WebP, GIF and BMP, whose headers we do not read that
  far): composited onto white in float32, 44 bytes a pixel at the peak for 8-bit RGBA and 52 for 16-bit
  (numpy's allocations traced with tracemalloc, ``tests/processing/test_footprint.py``): 64.

The batch is counted twice: it is copied once more into the Predict request. An image whose header cannot
be read, or that declares more pixels than allowed, is refused before decoding and counts nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from processing.errors import ImageDecodeFailed
from processing.image import DecodeLimits, PreprocessSpec
from processing.jpeg import SCALE_FACTORS
from processing.sniff import ImageBytes, ImageHeader, read_header

JPEG_BYTES_PER_PIXEL = 6
PNG_BYTES_PER_PIXEL = 6
PNG16_BYTES_PER_PIXEL = 18
ALPHA_BYTES_PER_PIXEL = 64
PNG_ALPHA_TYPES = frozenset({4, 6})  # IHDR colour types: grey + alpha, RGBA
PNG_OPAQUE_TYPES = frozenset({0, 2, 3})  # grey, RGB, palette: opaque unless a tRNS chunk says otherwise
PNG_HEAD_BYTES = 1 << 16  # a tRNS chunk comes before the image data: looked for this far


@dataclass(frozen=True)
class Footprint:
    peak: int  # bytes held while decoding: the batch and the largest image's decoding
    kept: int  # bytes still held once decoding is done: the batch (and its copy in the Predict request)


def decode_footprint(images: Sequence[ImageBytes], spec: PreprocessSpec, limits: DecodeLimits) -> Footprint:
    """What ``decode_batch(images, spec, limits)`` and the Predict it feeds will hold, at most."""
    row = math.prod(spec.shape) * (1 if spec.dtype == "uint8" else 4)
    batch = 2 * len(images) * row
    largest = max((decoding_bytes(data, spec, limits) for data in images), default=0)
    return Footprint(peak=batch + largest, kept=batch)


def bytes_footprint(images: Sequence[ImageBytes]) -> Footprint:
    """What sending ``images`` as they arrived holds: their bytes in the string tensor and in the Predict request."""
    sent = 2 * sum(len(data) for data in images)
    return Footprint(peak=sent, kept=sent)


def decoding_bytes(data: ImageBytes, spec: PreprocessSpec, limits: DecodeLimits) -> int:
    """The bytes decoding one image holds at its peak (0: refused before any pixel is decoded)."""
    try:
        header = read_header(data)
    except ImageDecodeFailed:
        return 0
    w, h = header.width, header.height
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        return 0
    if header.format == "jpeg":
        factor = _jpeg_reduction(header, spec.min_decoded_side())
        return math.ceil(w / factor) * math.ceil(h / factor) * JPEG_BYTES_PER_PIXEL
    return w * h * _bytes_per_pixel(header, data)


def _jpeg_reduction(header: ImageHeader, min_side: int) -> int:
    """The factor the decoder reduces by: the largest of 8, 4, 2 that keeps the shorter side >= ``min_side``."""
    shorter = min(header.width, header.height)
    return next((f for f in SCALE_FACTORS if min_side > 0 and shorter // f >= min_side), 1)


def _bytes_per_pixel(header: ImageHeader, data: ImageBytes) -> int:
    if header.format != "png" or len(data) < 26:
        return ALPHA_BYTES_PER_PIXEL
    depth, colour = data[24], data[25]
    if colour in PNG_ALPHA_TYPES or b"tRNS" in data[:PNG_HEAD_BYTES]:
        return ALPHA_BYTES_PER_PIXEL  # a transparency chunk: decoded with alpha
    if colour in PNG_OPAQUE_TYPES:
        return PNG16_BYTES_PER_PIXEL if depth == 16 else PNG_BYTES_PER_PIXEL
    return ALPHA_BYTES_PER_PIXEL
