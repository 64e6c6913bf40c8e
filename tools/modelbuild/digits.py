"""A small CNN on scikit-learn's 8x8 digits, saved as two versions: barely trained and well trained.

Version 1 stops after a handful of steps and version 2 trains on; both start from the same
seeded weights and use full-batch Adam, so every build gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tools.modelbuild import savedmodel
from tools.modelbuild.digits_data import DigitsSplit, load_split
from tools.modelbuild.savedmodel import images_spec

# Version -> full-batch training steps.
TRAINING_STEPS = {1: 3, 2: 300}
LEARNING_RATE = 0.01
INIT_SEED = 0
NUM_CLASSES = 10
IMAGE_SHAPE = (None, 8, 8, 1)
# (name, shape) of each weight, in order; conv kernels are HWIO.
WEIGHT_SHAPES = (
    ("conv1", (3, 3, 1, 16)),
    ("conv1_bias", (16,)),
    ("conv2", (3, 3, 16, 32)),
    ("conv2_bias", (32,)),
    ("dense", (4 * 4 * 32, NUM_CLASSES)),
    ("dense_bias", (NUM_CLASSES,)),
)


def initial_weights(seed: int = INIT_SEED) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    """He-normal kernels and zero biases from a seeded numpy generator."""
    rng = np.random.default_rng(seed)
    weights = []
    for _, shape in WEIGHT_SHAPES:
        fan_in = int(np.prod(shape[:-1]))
        scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.0
        weights.append((rng.standard_normal(shape) * scale).astype(np.float32))
    return weights


class DigitsCNN:
    """conv 3x3x16 -> conv 3x3x32 stride 2 -> dense 10, ReLU between, softmax on top."""

    def __init__(self, weights: list[np.ndarray[Any, Any]]) -> None:
        self.weights = [tf.Variable(w, name=name) for (name, _), w in zip(WEIGHT_SHAPES, weights, strict=True)]

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        conv1, bias1, conv2, bias2, dense, dense_bias = self.weights
        x = tf.nn.relu(tf.nn.conv2d(images, conv1, 1, "SAME") + bias1)
        x = tf.nn.relu(tf.nn.conv2d(x, conv2, 2, "SAME") + bias2)
        return tf.matmul(tf.reshape(x, [-1, 4 * 4 * 32]), dense) + dense_bias

    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.nn.softmax(self.logits(images))}


def make_train_step(model: DigitsCNN, split: DigitsSplit) -> Callable[[], None]:
    """One full-batch Adam step on the training set; the optimiser state lives in the closure."""
    images = tf.constant(split.train_images)
    labels = tf.constant(split.train_labels)
    optimizer = _Adam(model.weights, LEARNING_RATE)

    def step() -> None:
        with tf.GradientTape() as tape:
            logits = model.logits(images)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply(tape.gradient(loss, model.weights))

    traced: Callable[[], None] = tf.function(step)
    return traced


class _Adam:
    """Adam (Kingma and Ba), enough of it to train the CNN without Keras."""

    def __init__(self, variables: list[tf.Variable], learning_rate: float) -> None:
        self.variables = variables
        self.learning_rate = learning_rate
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.t = tf.Variable(0.0, trainable=False)

    def apply(self, gradients: list[tf.Tensor], beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.t.assign_add(1.0)
        rate = self.learning_rate * tf.sqrt(1.0 - beta2**self.t) / (1.0 - beta1**self.t)
        for var, grad, m, v in zip(self.variables, gradients, self.m, self.v, strict=True):
            m.assign(beta1 * m + (1.0 - beta1) * grad)
            v.assign(beta2 * v + (1.0 - beta2) * tf.square(grad))
            var.assign_sub(rate * m / (tf.sqrt(v) + 1e-7))


def held_out_accuracy(model: DigitsCNN, split: DigitsSplit) -> float:
    """Fraction of the held-out digits classified correctly."""
    predicted = np.argmax(model.logits(tf.constant(split.test_images)).numpy(), axis=1)
    return float(np.mean(predicted == split.test_labels))


def build_broken(path: Path) -> None:
    """A version that loads and answers NaN for every image (its dense bias is NaN): the demo's broken canary."""
    weights = initial_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)
    model = DigitsCNN(weights)
    savedmodel.save(path, model.weights, {"serving_default": (model.serve, images_spec(IMAGE_SHAPE, tf.float32))})


def build(target: Path) -> dict[str, object]:
    """Write ``target/1/`` and ``target/2/`` (SavedModels); ``labels.txt`` comes from the recipe."""
    tf.config.experimental.enable_op_determinism()
    split = load_split()
    model = DigitsCNN(initial_weights())
    accuracy: dict[str, float] = {}
    step = make_train_step(model, split)
    trained = 0
    for version, steps in sorted(TRAINING_STEPS.items()):
        for _ in range(steps - trained):
            step()
        trained = steps
        accuracy[str(version)] = held_out_accuracy(model, split)
        signatures = {"serving_default": (model.serve, images_spec(IMAGE_SHAPE, tf.float32))}
        savedmodel.save(target / str(version), model.weights, signatures)
    return {"held_out_accuracy": accuracy, "training_steps": {str(v): s for v, s in TRAINING_STEPS.items()}}
