"""The encoded input kind: a model that decodes images itself (a ``DT_STRING`` input, ``tf.io.decode_image`` in its
graph) gets each image's bytes as they arrived, never decoded by the tier.

Each image is still sniffed and bounded before it is sent, as a decoded one is before it is decoded: a format we
accept, dimensions its header declares (ours and, for a JPEG, libjpeg-turbo's reading) within ``decode.max_pixels``
and ``decode.max_side``. ``tf.io.decode_image`` ignores EXIF orientation, so the tier reads it from the header and,
for a model with an input for it, sends it beside the bytes: the batch is then a structured array whose fields
``image`` and ``orientation`` are the two inputs (``ServedModel.predict_inputs`` names them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from processing.batch import InputBatch
from processing.image import DecodeLimits, check_dimensions
from processing.jpeg import exif_orientation, jpeg_size
from processing.sniff import ImageBytes, ImageHeader, read_header

IMAGE_FIELD = "image"
ORIENTATION_FIELD = "orientation"
WITH_ORIENTATION = np.dtype([(IMAGE_FIELD, object), (ORIENTATION_FIELD, np.int32)])


@dataclass(frozen=True)
class EncodedSpec:
    """What an encoded-image model takes: the bytes, and each image's EXIF orientation when it has an input for it."""

    orientation: bool


def check_encoded(data: ImageBytes, limits: DecodeLimits) -> int:
    """Refuse what the decoded path would refuse before decoding; the image's EXIF orientation (1-8) otherwise."""
    header = read_header(data)
    check_dimensions(header, limits)
    if header.format != "jpeg":
        return 1
    try:
        size = jpeg_size(data)
    except ValueError:
        return exif_orientation(data)  # libjpeg-turbo cannot read the header; the model's decoder has its turn
    check_dimensions(ImageHeader("jpeg", *size), limits)
    return exif_orientation(data)


def encoded_batch(images: Sequence[ImageBytes], spec: EncodedSpec, limits: DecodeLimits) -> InputBatch:
    """Each of ``images`` checked into its row: the bytes, with their orientation when ``spec`` says so."""
    rows = np.empty(len(images), dtype=WITH_ORIENTATION if spec.orientation else np.dtype(object))
    failures: list[Exception | None] = []
    times: list[tuple[float, float]] = []
    count = 0
    for data in images:
        start = time.perf_counter()
        try:
            orientation = check_encoded(data, limits)
        except Exception as exc:  # one input's failure, whatever it is, is reported as that input's
            failures.append(exc)
        else:
            sent = data if isinstance(data, bytes) else bytes(data)  # the string tensor takes bytes
            rows[count] = (sent, orientation) if spec.orientation else sent
            failures.append(None)
            count += 1
        times.append((start, time.perf_counter()))
    return InputBatch(rows[:count], failures, times)
