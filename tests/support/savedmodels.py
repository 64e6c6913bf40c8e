"""Tiny SavedModels for tests, written by a subprocess so the pytest process never imports TensorFlow.

``python -m tests.support.savedmodels OUT_DIR VERSION [VERSION ...]`` writes the "affine" test model into
``OUT_DIR/<version>/`` for each version, through a temporary directory and a rename, so a polling server
never sees half a model. ``--warmup=good`` first also gives each version two TF Serving warm-up records (one
on ``serving_default``, one on the DT_STRING ``lengths``); ``--warmup=bad`` one whose ``x`` has 4 columns.

Version ``v`` adds ``v``, so every answer tells which version produced it:

- ``serving_default``: ``x`` float32 [-1, 3] -> ``y`` = 2x + v float32 [-1, 3], ``total`` = row sums of y [-1]
- ``serving_int``: ``x`` int32 [-1, 3] -> ``y`` = 2x + v float32 [-1, 3]
- ``pair``: ``a`` float32 [-1, 3], ``b`` float32 [-1, 1] -> ``product`` = a * b float32 [-1, 3]
- ``lengths``: ``s`` string [-1] -> ``length`` int32 [-1], the byte length of each string
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_affine_versions(
    out_dir: Path, versions: Sequence[int], timeout: float = 180.0, warmup: str | None = None
) -> None:
    """Write affine model ``versions`` under ``out_dir`` by running this module in a subprocess."""
    flags = [f"--warmup={warmup}"] if warmup else []
    command = [sys.executable, "-m", "tests.support.savedmodels", *flags, str(out_dir), *map(str, versions)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}")


def affine(x: Any, version: int) -> Any:
    """What serving_default's ``y`` is for input ``x`` (a numpy array) at ``version``."""
    return 2 * x + version


def _affine_module(version: int) -> Any:
    import tensorflow as tf

    class Affine(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bias = tf.Variable(float(version))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])  # type: ignore[untyped-decorator]
        def serve(self, x: Any) -> dict[str, Any]:
            y = 2.0 * x + self.bias
            return {"y": y, "total": tf.reduce_sum(y, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32)])  # type: ignore[untyped-decorator]
        def serve_int(self, x: Any) -> dict[str, Any]:
            return {"y": 2.0 * tf.cast(x, tf.float32) + self.bias}

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 1], tf.float32)]
        )
        def pair(self, a: Any, b: Any) -> dict[str, Any]:
            return {"product": a * b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])  # type: ignore[untyped-decorator]
        def lengths(self, s: Any) -> dict[str, Any]:
            return {"length": tf.strings.length(s)}

    return Affine()


WARMUP_REQUESTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "good": [
        ("serving_default", {"x": np.array([[1, 2, 3]], np.float32)}),
        ("lengths", {"s": np.array([b"an encoded image, say"])}),
    ],
    "bad": [("serving_default", {"x": np.array([[1, 2, 3, 4]], np.float32)})],
}


def _save(out_dir: Path, version: int, warmup: str | None) -> None:
    import tensorflow as tf

    from tools.modelbuild.warmup import write_warmup_requests

    module = _affine_module(version)
    signatures = {
        "serving_default": module.serve,
        "serving_int": module.serve_int,
        "pair": module.pair,
        "lengths": module.lengths,
    }
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=out_dir))
    tf.saved_model.save(module, str(staging / "model"), signatures=signatures)
    if warmup is not None:
        write_warmup_requests(staging / "model", "affine", WARMUP_REQUESTS[warmup])
    os.rename(staging / "model", out_dir / str(version))
    staging.rmdir()


def main(argv: Sequence[str]) -> int:
    warmup = argv[0].removeprefix("--warmup=") if argv and argv[0].startswith("--warmup=") else None
    argv = argv[1:] if warmup is not None else argv
    if len(argv) < 2 or warmup not in (None, *WARMUP_REQUESTS):
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    for version in argv[1:]:
        _save(out_dir, int(version), warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
