"""Save plain Python models (tf.Variables + functions) as SavedModels with named signatures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import tensorflow as tf

ServingFunction = Callable[..., dict[str, tf.Tensor]]
# Each signature's function and its input, or inputs (a tuple of specs, one per argument, named by the specs).
Signatures = Mapping[str, tuple[ServingFunction, tf.TensorSpec | tuple[tf.TensorSpec, ...]]]


def images_spec(shape: tuple[int | None, ...], dtype: tf.DType) -> tf.TensorSpec:
    """The one input every demo signature takes: a batch called ``images``."""
    return tf.TensorSpec(shape, dtype, name="images")


def save(
    path: Path,
    variables: Sequence[tf.Variable],
    signatures: Signatures,
) -> None:
    """Write a SavedModel at ``path`` whose signatures map their inputs (``images``, ...) to the functions' outputs.

    The functions are traced here; a bare ``tf.Module`` root tracks the variables they use.
    """
    root = tf.Module()
    root.model_variables = list(variables)
    traced = {}
    for name, (function, spec) in signatures.items():
        traced[name] = tf.function(function, input_signature=list(spec) if isinstance(spec, tuple) else [spec])
        setattr(root, name, traced[name])
    tf.saved_model.save(root, str(path), signatures=traced)
