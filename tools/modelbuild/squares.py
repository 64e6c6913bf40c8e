"""A fixed-formula detector, so every true box is known exactly: saturated red, green and blue squares.

For each colour, the box is the bounds of the pixels whose channel is above 160 while both others are below 96,
normalised to the input (ymin, xmin, ymax, xmax), as the TF Object Detection API answers; its keypoints are the
box's top-left corner and centre (y, x). Classes 1, 2, 3 (red, green, blue); a colour with no such pixel scores 0.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tools.modelbuild import savedmodel
from tools.modelbuild.savedmodel import images_spec
from tools.modelbuild.squares_classes import LABELS
from tools.modelbuild.warmup import photo_requests, write_warmup_requests

IMAGE_SHAPE = (None, None, None, 3)


def _bounds(present: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """First and one-past-last index of True along the last axis of ``present`` [N, L] (0, 0 when none)."""
    length = tf.shape(present)[-1]
    index = tf.range(length)[None, :]
    first = tf.reduce_min(tf.where(present, index, length), axis=-1)
    last = tf.reduce_max(tf.where(present, index + 1, 0), axis=-1)
    return tf.minimum(first, last), last


def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
    pixels = tf.cast(images, tf.int32)
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    boxes, found = [], []
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        mask = (pixels[..., channel] > 160) & tf.reduce_all(tf.gather(pixels, others, axis=-1) < 96, axis=-1)
        top, bottom = _bounds(tf.reduce_any(mask, axis=2))
        left, right = _bounds(tf.reduce_any(mask, axis=1))
        box = tf.stack([tf.cast(v, tf.float32) for v in (top, left, bottom, right)], axis=-1)
        boxes.append(box / tf.stack([height, width, height, width]))
        found.append(tf.reduce_any(mask, axis=[1, 2]))
    detection_boxes = tf.stack(boxes, axis=1)  # [N, 3, 4]
    scores = tf.cast(tf.stack(found, axis=1), tf.float32) * tf.constant([0.9, 0.8, 0.7])
    centre = (detection_boxes[..., :2] + detection_boxes[..., 2:]) / 2
    batch = tf.shape(images)[0]
    return {
        "detection_boxes": detection_boxes,
        "detection_scores": scores,
        "detection_classes": tf.tile(tf.constant([[1.0, 2.0, 3.0]]), [batch, 1]),
        "num_detections": tf.fill([batch], 3.0),
        "detection_keypoints": tf.stack([detection_boxes[..., :2], centre], axis=2),  # [N, 3, 2, 2]
    }


def build(target: Path) -> dict[str, object]:
    """Write ``target/1/``: the detector over uint8 images of any size, with a warm-up record."""
    savedmodel.save(target / "1", [], {"serving_default": (detect, images_spec(IMAGE_SHAPE, tf.uint8))})
    uint8_photo = [(name, inputs) for name, inputs in photo_requests(lambda crop: crop) if name == "serving_uint8"]
    write_warmup_requests(target / "1", "squares", [("serving_default", inputs) for _, inputs in uint8_photo])
    return {"classes": len(LABELS)}
