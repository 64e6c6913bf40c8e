"""MobileNetV2's signatures beyond classifying decoded pixels: embeddings, and encoded images, from the same weights.

* ``embed`` (float32, normalised as ``serving_default`` takes) and ``embed_uint8`` (uint8 0..255, as
  ``serving_uint8`` takes): ``embedding``, the 1280 pooled features the classifier takes, scaled to unit L2
  norm, and ``features``, the same before the scaling (``W . features + b`` are the classifier's logits).
* ``serving_bytes``: ``images``, string [-1], each an encoded image (JPEG, PNG, GIF, BMP, WebP), and
  ``orientation``, int32 [-1], each image's EXIF orientation (1-8; anything else is 1), which
  ``tf.io.decode_image`` does not apply; ``probabilities``. The graph does what ``preprocess.py`` does for
  ``serving_uint8``: JPEGs decoded with ``INTEGER_ACCURATE`` (libjpeg's accurate integer IDCT, as OpenCV's
  decode; TF's default is the fast one), turned upright, the shorter side to 256 with the longer one truncated
  as torchvision does, area resize, rounded to 0..255, the centre 224 x 224 with torchvision's rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from tools.modelbuild.preprocess import CROP_SIZE, RESIZE_SHORTER_TO
from tools.modelbuild.savedmodel import Signatures, images_spec

if TYPE_CHECKING:
    from tools.modelbuild.mobilenet_v2 import MobileNetV2

CROP_SHAPE = (CROP_SIZE, CROP_SIZE, 3)


def embedding_outputs(features: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"embedding": tf.math.l2_normalize(features, axis=1), "features": features}


def decode(data: tf.Tensor) -> tf.Tensor:
    """RGB uint8 [h, w, 3]; a GIF's first frame; an alpha channel dropped."""
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


def upright(pixels: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """``pixels`` turned as EXIF ``orientation`` says, as OpenCV turns them (``processing/jpeg.py``'s ``orient``)."""

    def transposed() -> tf.Tensor:
        return tf.transpose(pixels, [1, 0, 2])

    branches = [
        lambda: pixels,
        lambda: tf.reverse(pixels, [1]),
        lambda: tf.reverse(pixels, [0, 1]),
        lambda: tf.reverse(pixels, [0]),
        transposed,
        lambda: tf.reverse(transposed(), [1]),
        lambda: tf.reverse(transposed(), [0, 1]),
        lambda: tf.reverse(transposed(), [0]),
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(index, branches)


def crop(pixels: tf.Tensor) -> tf.Tensor:
    """torchvision's Resize(256) (area filter, rounded) and CenterCrop(224): float32 0..255 [224, 224, 3]."""
    shape = tf.shape(pixels)
    height, width = shape[0], shape[1]
    longer = RESIZE_SHORTER_TO * tf.maximum(height, width) // tf.minimum(height, width)  # truncated, as int()
    portrait = width <= height
    new_height = tf.where(portrait, longer, RESIZE_SHORTER_TO)
    new_width = tf.where(portrait, RESIZE_SHORTER_TO, longer)
    resized = tf.round(tf.image.resize(pixels, tf.stack([new_height, new_width]), method="area"))
    top = tf.cast(tf.round((new_height - CROP_SIZE) / 2), tf.int32)  # half to even, as Python's round
    left = tf.cast(tf.round((new_width - CROP_SIZE) / 2), tf.int32)
    return tf.ensure_shape(tf.slice(resized, tf.stack([top, left, 0]), CROP_SHAPE), CROP_SHAPE)


def more_signatures(model: MobileNetV2, image_shape: tuple[int | None, ...]) -> Signatures:
    """The signatures to save beside ``serving_default`` and ``serving_uint8``."""

    def embed(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return embedding_outputs(model.features(images))

    def embed_uint8(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return embedding_outputs(model.features(model.from_uint8(images)))

    def serve_bytes(images: tf.Tensor, orientation: tf.Tensor) -> dict[str, tf.Tensor]:
        crops = tf.map_fn(
            lambda item: crop(upright(decode(item[0]), item[1])),
            (images, orientation),
            fn_output_signature=tf.TensorSpec(CROP_SHAPE, tf.float32),
        )
        return {"probabilities": tf.nn.softmax(model.logits(model.from_uint8(crops)))}

    encoded = (tf.TensorSpec([None], tf.string, name="images"), tf.TensorSpec([None], tf.int32, name="orientation"))
    return {
        "embed": (embed, images_spec(image_shape, tf.float32)),
        "embed_uint8": (embed_uint8, images_spec(image_shape, tf.uint8)),
        "serving_bytes": (serve_bytes, encoded),
    }
