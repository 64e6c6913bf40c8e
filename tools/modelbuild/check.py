"""Run the built models on known inputs and print what they say, as JSON.

``python -m tools.modelbuild.check --models build/models --images tests/fixtures/images``

* ``mobilenet_v2``: per photo, the top-5 of both signatures (torchvision-equivalent
  preprocessing from tools.modelbuild.preprocess) and the largest probability difference between them;
* ``tiny``: the predicted colour of synthetic solid-colour images next to the expected one;
* ``digits``: each version's held-out accuracy and its predictions for the ``digit_<n>.png`` images;
* ``configs``: the model names parsed back from each TF Serving config given with ``--config``.

``--save-probabilities out.npz`` also keeps MobileNetV2's full outputs (for verify_with_torch).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tools.modelbuild import serving_config
from tools.modelbuild.digits_data import load_split
from tools.modelbuild.preprocess import normalize, read_rgb, to_uint8_input
from tools.modelbuild.tiny_classes import COLOUR_PROTOTYPES

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
TOP_K = 5
# Solid colours near, not on, a prototype: (expected label, RGB in [0, 1]).
TINY_CASES = (
    *((name, tuple(0.1 + 0.8 * c for c in rgb)) for name, rgb in COLOUR_PROTOTYPES),
    ("red", (0.6, 0.1, 0.15)),
    ("blue", (0.2, 0.25, 0.7)),
    ("black", (0.2, 0.2, 0.2)),
    ("white", (0.8, 0.85, 0.8)),
)

Array = np.ndarray[Any, Any]


def run_signature(model: Any, signature: str, images: Array) -> Array:
    """Call one signature of a loaded SavedModel on a batch; return its only output."""
    import tensorflow as tf

    outputs = model.signatures[signature](images=tf.constant(images))
    (output,) = outputs.values()
    return np.asarray(output.numpy())


def load_model(path: Path) -> Any:
    import tensorflow as tf

    return tf.saved_model.load(str(path))


def read_labels(model_dir: Path) -> list[str]:
    return model_dir.joinpath("labels.txt").read_text(encoding="utf-8").splitlines()


def top_k(probabilities: Array, labels: list[str], k: int = TOP_K) -> list[dict[str, Any]]:
    """The ``k`` best classes of one row, best first."""
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class_id": int(i), "label": labels[i], "score": float(probabilities[i])} for i in best]


def photo_paths(images: Path) -> list[Path]:
    photos = (p for p in images.iterdir() if p.suffix in PHOTO_SUFFIXES)
    return sorted(p for p in photos if not p.stem.startswith("digit_"))


def mobilenet_probabilities(model_dir: Path, paths: list[Path]) -> tuple[Array, Array]:
    """Both signatures' probabilities for the photos, (N, 1000) each: float input, uint8 input."""
    model = load_model(model_dir / "1")
    crops = np.stack([to_uint8_input(read_rgb(p)) for p in paths])
    as_float = run_signature(model, "serving_default", normalize(crops))
    return as_float, run_signature(model, "serving_uint8", crops)


def check_mobilenet(model_dir: Path, images: Path, save_to: Path | None = None) -> dict[str, Any]:
    """Top-5 per photo for both signatures and their largest probability difference."""
    labels, paths = read_labels(model_dir), photo_paths(images)
    as_float, as_uint8 = mobilenet_probabilities(model_dir, paths)
    if save_to is not None:
        np.savez(save_to, names=np.array([p.name for p in paths]), float=as_float, uint8=as_uint8)
    return {
        p.name: {
            "float": top_k(f, labels),
            "uint8": top_k(u, labels),
            "max_abs_diff": float(np.max(np.abs(f - u))),
        }
        for p, f, u in zip(paths, as_float, as_uint8, strict=True)
    }


def check_tiny(model_dir: Path) -> list[dict[str, Any]]:
    """Expected versus predicted colour of solid 224x224 images, through both signatures."""
    model, labels = load_model(model_dir / "1"), read_labels(model_dir)
    colours = np.array([rgb for _, rgb in TINY_CASES], dtype=np.float32)
    solid = np.broadcast_to(colours[:, None, None, :], (len(colours), 224, 224, 3))
    as_float = run_signature(model, "serving_default", np.ascontiguousarray(solid))
    as_uint8 = run_signature(model, "serving_uint8", np.round(solid * 255).astype(np.uint8))
    cases = zip(TINY_CASES, np.argmax(as_float, axis=1), np.argmax(as_uint8, axis=1), strict=True)
    return [
        {"rgb": list(rgb), "expected": name, "float": labels[int(f)], "uint8": labels[int(u)]}
        for (name, rgb), f, u in cases
    ]


def read_digit_png(path: Path) -> Array:
    """A ``digit_<n>.png`` (white ink on black) as the digits model's (8, 8, 1) input."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f"cannot decode {path}")
    small = np.asarray(cv2.resize(gray, (8, 8), interpolation=cv2.INTER_AREA), dtype=np.float32)
    return (small / 255.0).reshape(8, 8, 1)


def check_digits(model_dir: Path, images: Path) -> dict[str, Any]:
    """Held-out accuracy of every version, and its predictions for the digit PNGs."""
    split, pngs = load_split(), sorted(images.glob("digit_*.png"))
    result: dict[str, Any] = {"held_out_accuracy": {}, "fixtures": {p.name: {} for p in pngs}}
    fixtures = np.stack([read_digit_png(p) for p in pngs]) if pngs else None
    for version_dir in sorted(d for d in model_dir.iterdir() if d.name.isdigit()):
        model = load_model(version_dir)
        predicted = np.argmax(run_signature(model, "serving_default", split.test_images), axis=1)
        result["held_out_accuracy"][version_dir.name] = float(np.mean(predicted == split.test_labels))
        if fixtures is not None:
            for p, probs in zip(pngs, run_signature(model, "serving_default", fixtures), strict=True):
                result["fixtures"][p.name][version_dir.name] = int(np.argmax(probs))
    return result


def check_configs(paths: list[Path]) -> dict[str, list[str]]:
    """Model names of each config, parsed with TF Serving's protos (raises if one is invalid)."""
    return {str(p): serving_config.parse_model_names(p.read_text(encoding="utf-8")) for p in paths}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.modelbuild.check", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("build/models"), help="models directory")
    parser.add_argument("--images", type=Path, default=Path("tests/fixtures/images"), help="fixture images")
    parser.add_argument("--config", type=Path, action="append", default=[], help="config file to parse")
    parser.add_argument("--save-probabilities", type=Path, help="also write MobileNetV2's outputs (.npz)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = {
        "mobilenet_v2": check_mobilenet(args.models / "mobilenet_v2", args.images, args.save_probabilities),
        "tiny": check_tiny(args.models / "tiny"),
        "digits": check_digits(args.models / "digits", args.images),
        "configs": check_configs(args.config or [args.models / "models.config"]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
