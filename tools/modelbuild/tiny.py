"""A tiny fixed classifier for throughput work: the image's mean colour against 8 prototypes.

``logits[k] = -||mean_rgb(image) - prototype[k]||`` (Euclidean, RGB in [0, 1]), so a solid
colour image is classified as the nearest prototype. No training, fully deterministic, and
cheap enough that the serving cost is the transport, not the model.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tools.modelbuild import savedmodel
from tools.modelbuild.preprocess import CROP_SIZE
from tools.modelbuild.savedmodel import images_spec
from tools.modelbuild.tiny_classes import COLOUR_PROTOTYPES

IMAGE_SHAPE = (None, CROP_SIZE, CROP_SIZE, 3)


class MeanColourClassifier:
    """Negative distance of the mean RGB colour to each prototype colour."""

    def __init__(self) -> None:
        self.prototypes = tf.constant([rgb for _, rgb in COLOUR_PROTOTYPES], dtype=tf.float32)

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        mean_rgb = tf.reduce_mean(images, axis=[1, 2])
        diff = mean_rgb[:, None, :] - self.prototypes[None, :, :]
        return -tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1))

    def serve_float(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.logits(images)}

    def serve_uint8(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.logits(tf.cast(images, tf.float32) / 255.0)}


def build(target: Path) -> dict[str, object]:
    """Write ``target/1/`` (SavedModel); ``labels.txt`` comes from the recipe."""
    model = MeanColourClassifier()
    signatures = {
        "serving_default": (model.serve_float, images_spec(IMAGE_SHAPE, tf.float32)),
        "serving_uint8": (model.serve_uint8, images_spec(IMAGE_SHAPE, tf.uint8)),
    }
    savedmodel.save(target / "1", [], signatures)
    return {"classes": len(COLOUR_PROTOTYPES)}
