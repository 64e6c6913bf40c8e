"""torchvision's MobileNetV2 (ImageNet weights) rebuilt in TensorFlow and saved as a SavedModel.

The network follows ``torchvision.models.mobilenet_v2`` layer for layer: 3x3 convolutions are
padded symmetrically by 1 at every stride (``tf.pad`` + VALID, not TF's asymmetric SAME),
ReLU6, inverted residual blocks, a 1x1 conv to 1280 channels, global average pooling and a
linear classifier (dropout is the identity at inference). Each BatchNorm (eps 1e-5, running
statistics) is folded into the preceding convolution, in float64, before casting to float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tools.modelbuild import savedmodel
from tools.modelbuild.package_data import mobilenet_v2_weights_path
from tools.modelbuild.preprocess import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD
from tools.modelbuild.savedmodel import images_spec
from tools.modelbuild.torch_checkpoint import load_state_dict

BN_EPSILON = 1e-5
NUM_CLASSES = 1000
# torchvision's inverted_residual_setting: expand ratio t, output channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280

State = dict[str, np.ndarray[Any, Any]]
IMAGE_SHAPE = (None, CROP_SIZE, CROP_SIZE, 3)


@dataclass(frozen=True)
class BlockSpec:
    """One inverted residual block: ``features.<index>`` in torchvision's state_dict."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    expand_ratio: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs() -> list[BlockSpec]:
    """The 17 inverted residual blocks, ``features.1`` to ``features.17``."""
    specs: list[BlockSpec] = []
    in_channels = STEM_CHANNELS
    for expand_ratio, out_channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            specs.append(BlockSpec(len(specs) + 1, in_channels, out_channels, stride, expand_ratio))
            in_channels = out_channels
    return specs


def fold_batch_norm(state: State, conv: str, bn: str, depthwise: bool) -> tuple[np.ndarray[Any, Any], ...]:
    """TF filter and bias equal to torch's conv (no bias) followed by eval-mode BatchNorm."""
    weight = state[f"{conv}.weight"].astype(np.float64)
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + BN_EPSILON)
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    if depthwise:  # torch (C, 1, kh, kw) -> tf depthwise (kh, kw, C, 1)
        kernel = weight.transpose(2, 3, 0, 1) * scale[:, None]
    else:  # torch (O, I, kh, kw) -> tf (kh, kw, I, O)
        kernel = weight.transpose(2, 3, 1, 0) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


class ConvBN:
    """Conv2d + folded BatchNorm (+ ReLU6), padded like torch's ``padding=(k - 1) // 2``."""

    def __init__(
        self,
        state: State,
        conv: str,
        bn: str,
        *,
        stride: int = 1,
        depthwise: bool = False,
        relu6: bool = True,
    ) -> None:
        kernel, bias = fold_batch_norm(state, conv, bn, depthwise)
        self.kernel = tf.Variable(kernel, trainable=False, name="kernel")
        self.bias = tf.Variable(bias, trainable=False, name="bias")
        self.stride = stride
        self.depthwise = depthwise
        self.relu6 = relu6
        self.pad = (kernel.shape[0] - 1) // 2

    @property
    def variables(self) -> list[tf.Variable]:
        return [self.kernel, self.bias]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        if self.pad:
            x = tf.pad(x, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]])
        strides = [1, self.stride, self.stride, 1]
        if self.depthwise:
            y = tf.nn.depthwise_conv2d(x, self.kernel, strides, "VALID")
        else:
            y = tf.nn.conv2d(x, self.kernel, strides, "VALID")
        y = tf.nn.bias_add(y, self.bias)
        return tf.nn.relu6(y) if self.relu6 else y


class InvertedResidual:
    """Expand 1x1 (unless t = 1), depthwise 3x3, linear project 1x1, skip when shapes allow."""

    def __init__(self, state: State, spec: BlockSpec) -> None:
        p = f"features.{spec.index}.conv"
        layers: list[ConvBN] = []
        if spec.expand_ratio != 1:
            layers.append(ConvBN(state, f"{p}.0.0", f"{p}.0.1"))
        dw = len(layers)
        layers.append(ConvBN(state, f"{p}.{dw}.0", f"{p}.{dw}.1", stride=spec.stride, depthwise=True))
        layers.append(ConvBN(state, f"{p}.{dw + 1}", f"{p}.{dw + 2}", relu6=False))
        self.layers = layers
        self.residual = spec.residual

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for layer in self.layers for v in layer.variables]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = x
        for layer in self.layers:
            y = layer(y)
        return x + y if self.residual else y


class MobileNetV2:
    """The classifier with its two serving signatures (float normalised and uint8 0..255)."""

    def __init__(self, state: State) -> None:
        self.stem = ConvBN(state, "features.0.0", "features.0.1", stride=2)
        self.blocks = [InvertedResidual(state, spec) for spec in block_specs()]
        self.head = ConvBN(state, "features.18.0", "features.18.1")
        self.classifier_kernel = tf.Variable(state["classifier.1.weight"].T, trainable=False)
        self.classifier_bias = tf.Variable(state["classifier.1.bias"], trainable=False)
        self.mean = tf.constant(IMAGENET_MEAN)
        self.std = tf.constant(IMAGENET_STD)

    @property
    def variables(self) -> list[tf.Variable]:
        layers: list[ConvBN | InvertedResidual] = [self.stem, *self.blocks, self.head]
        convs = [v for layer in layers for v in layer.variables]
        return [*convs, self.classifier_kernel, self.classifier_bias]

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        x = self.stem(images)
        for block in self.blocks:
            x = block(x)
        pooled = tf.reduce_mean(self.head(x), axis=[1, 2])
        return tf.matmul(pooled, self.classifier_kernel) + self.classifier_bias

    def serve_float(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.nn.softmax(self.logits(images))}

    def serve_uint8(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        scaled = tf.cast(images, tf.float32) / 255.0
        return {"probabilities": tf.nn.softmax(self.logits((scaled - self.mean) / self.std))}


def build(target: Path) -> dict[str, object]:
    """Write ``target/1/`` (SavedModel); ``labels.txt`` comes from the recipe."""
    weights = mobilenet_v2_weights_path()
    model = MobileNetV2(load_state_dict(weights))
    signatures = {
        "serving_default": (model.serve_float, images_spec(IMAGE_SHAPE, tf.float32)),
        "serving_uint8": (model.serve_uint8, images_spec(IMAGE_SHAPE, tf.uint8)),
    }
    savedmodel.save(target / "1", model.variables, signatures)
    return {"weights": weights.name, "classes": NUM_CLASSES}
