"""Runs one SavedModel signature in-process on a saved tensor (a subprocess of the tests).

``python -m tests.support.direct_predict MODEL_VERSION_DIR SIGNATURE INPUT_NAME in.npy out.npz``

It imports TensorFlow, which the pytest process itself must never do.
"""

from __future__ import annotations

import sys

import numpy as np


def main(model_dir: str, signature: str, input_name: str, source: str, target: str) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    outputs = loaded.signatures[signature](**{input_name: tf.constant(np.load(source))})
    np.savez(target, **{name: value.numpy() for name, value in outputs.items()})


if __name__ == "__main__":
    main(*sys.argv[1:6])
