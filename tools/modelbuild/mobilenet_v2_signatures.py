"""MobileNetV2's signatures beyond classifying decoded pixels: embeddings, from the same weights.

* ``embed`` (float32, normalised as ``serving_default`` takes) and ``embed_uint8`` (uint8 0..255, as
  ``serving_uint8`` takes): ``embedding``, the 1280 pooled features the classifier takes, scaled to unit L2
  norm, and ``features``, the same before the scaling (``W . features + b`` are the classifier's logits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from tools.modelbuild.savedmodel import Signatures, images_spec

if TYPE_CHECKING:
    from tools.modelbuild.mobilenet_v2 import MobileNetV2


def embedding_outputs(features: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"embedding": tf.math.l2_normalize(features, axis=1), "features": features}


def more_signatures(model: MobileNetV2, image_shape: tuple[int | None, ...]) -> Signatures:
    """The signatures to save beside ``serving_default`` and ``serving_uint8``."""

    def embed(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return embedding_outputs(model.features(images))

    def embed_uint8(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return embedding_outputs(model.features(model.from_uint8(images)))

    return {
        "embed": (embed, images_spec(image_shape, tf.float32)),
        "embed_uint8": (embed_uint8, images_spec(image_shape, tf.uint8)),
    }
