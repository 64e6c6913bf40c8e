"""The squares detector as a SavedModel: through it, the tier's tensors give boxes within 1 px of the truth.

TensorFlow runs in a child Python (this process never imports it; see test_models.py): it builds the SavedModel,
loads it and answers the tier's input tensors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processing.geometry import ImageGeometry
from processing.image import image_to_tensor_and_geometry
from processing.kinds.detection import Detections, detect_batch
from tests.processing.kinds.test_detection_mapping import displayed, stored_jpeg
from tests.support.specs import decode_limits, postprocess_spec, preprocess_spec

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import sys
from pathlib import Path
import numpy as np
import tensorflow as tf
from tools.modelbuild import squares
target = Path(sys.argv[1])
squares.build(target / "squares")
serve = tf.saved_model.load(str(target / "squares" / "1")).signatures["serving_default"]
inputs = np.load(target / "inputs.npz")
answers = {}
for key in inputs.files:
    for name, value in serve(images=tf.constant(inputs[key][None])).items():
        answers[f"{key}/{name}"] = value.numpy()
np.savez(target / "outputs.npz", **answers)
"""
CASES = [(resize, portrait, o) for resize in ("letterbox", "crop", "stretch") for portrait in (0, 1) for o in (1, 6, 3)]

pytestmark = pytest.mark.slow


def test_the_saved_detectors_boxes_map_onto_the_drawn_squares(tmp_path: Path) -> None:
    geometries: dict[str, ImageGeometry] = {}
    tensors: dict[str, np.ndarray] = {}
    for resize, portrait, orientation in CASES:
        rgb, _ = displayed(bool(portrait))
        spec = preprocess_spec(100, 100, resize=resize, resize_shorter=100, dtype="uint8")
        key = f"{resize}-{portrait}-{orientation}"
        tensors[key], geometries[key] = image_to_tensor_and_geometry(
            stored_jpeg(rgb, orientation), spec, decode_limits()
        )
    np.savez(tmp_path / "inputs.npz", **tensors)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    outputs = np.load(tmp_path / "outputs.npz")
    worst = 0.0
    for key, geometry in geometries.items():
        served = {name.split("/", 1)[1]: outputs[name] for name in outputs.files if name.startswith(f"{key}/")}
        (answer,) = detect_batch(served, postprocess_spec(kind="detection"), [geometry])
        assert isinstance(answer, Detections)
        mode, turned, _ = key.split("-")
        _, truth = displayed(turned == "1")
        if mode == "crop":  # the crop keeps the middle half of the long side: only the middle square, whole
            truth = truth[1:2]
        for detection, (x, y, side) in zip(answer.detections, truth, strict=True):
            worst = max(worst, *np.abs(np.subtract(detection.box, (x, y, side, side))).tolist())
            centre = np.subtract(detection.keypoints[1], (x + side / 2, y + side / 2))
            worst = max(worst, *np.abs(centre).tolist())
    assert worst <= 1.0
