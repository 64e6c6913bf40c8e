"""Runs one SavedModel signature in-process on a saved tensor (a subprocess of the tests).

``python -m tests.support.direct_predict MODEL_VERSION_DIR SIGNATURE INPUT_NAME in.npy out.npz``

It imports TensorFlow, which the pytest process itself must never do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def main(model_dir: str, signature: str, input_name: str, source: str, target: str) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    outputs = loaded.signatures[signature](**{input_name: tf.constant(np.load(source))})
    np.savez(target, **{name: value.numpy() for name, value in outputs.items()})


def mobilenet_probabilities(models_dir: Path, batch: np.ndarray, work: Path) -> np.ndarray:
    """mobilenet_v2's ``serving_uint8`` probabilities for ``batch`` (N, 224, 224, 3 uint8), run by this module in a
    child process (the caller never imports TensorFlow); ``work`` holds the tensors on the way."""
    from tests.support.tier import ROOT  # not at the top: the child process needs none of it

    np.save(work / "in.npy", batch)
    command = [sys.executable, "-m", "tests.support.direct_predict", str(models_dir / "mobilenet_v2" / "1")]
    command += ["serving_uint8", "images", str(work / "in.npy"), str(work / "out.npz")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    probabilities: np.ndarray = np.load(work / "out.npz")["probabilities"]
    return probabilities


if __name__ == "__main__":
    main(*sys.argv[1:6])
