"""The encoded input kind: each image's own bytes, checked as a decoded image is before decoding, never decoded."""

from __future__ import annotations

import cv2
import numpy as np

from processing.errors import ImageDecodeFailed, ImageTooLarge
from processing.kinds.encoded import EncodedSpec, encoded_batch
from tests.support.exif import with_exif_orientation
from tests.support.specs import decode_limits


def jpeg(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 128, dtype=np.uint8))
    assert ok
    return data.tobytes()


def test_the_bytes_go_as_they_came_with_their_orientation() -> None:
    upright, rotated = jpeg(40, 20), with_exif_orientation(jpeg(40, 20), 6)
    batch = encoded_batch([upright, rotated], EncodedSpec(orientation=True), decode_limits())
    assert batch.failures == [None, None]
    assert batch.tensors["image"][0] is upright and batch.tensors["image"][1] is rotated  # not even copied
    assert batch.tensors["orientation"].tolist() == [1, 6]


def test_without_an_orientation_input_the_batch_is_the_bytes_alone() -> None:
    data = with_exif_orientation(jpeg(8, 8), 3)
    batch = encoded_batch([data], EncodedSpec(orientation=False), decode_limits())
    assert batch.tensors.dtype == object and batch.tensors.tolist() == [data]


def test_what_the_decoded_path_refuses_before_decoding_fails_alone() -> None:
    limits = decode_limits(max_pixels=1000)
    images = [b"not an image", jpeg(40, 20), jpeg(100, 100), jpeg(10, 10)[:-40]]
    batch = encoded_batch(images, EncodedSpec(orientation=True), limits)
    assert [type(f) for f in batch.failures] == [ImageDecodeFailed, type(None), ImageTooLarge, type(None)]
    assert batch.rows() == [1, 3]  # a truncated body with a readable header is the model's to refuse
    assert len(batch.tensors) == 2 and len(batch.times) == 4
