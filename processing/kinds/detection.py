"""The detection kind: TF Object Detection API outputs; each image's answer is its boxes in the image's own pixels.

The model answers boxes (ymin, xmin, ymax, xmax) and keypoints (y, x) normalised to its input frame, the one the
tier letterboxed, cropped or stretched the image into. Each image's ``ImageGeometry`` (processing/image.py, made
where the resize is) maps them back to the image as the client displays it (EXIF-upright, full size), clipped to
it. Boxes scoring at or below ``score_threshold`` are dropped; tier-side non-maximum suppression (``nms_iou``,
class-aware, hard or weighted) is optional; the best ``max_detections`` are kept. A request may set its own
``score_threshold`` and ``max_detections`` (over the model's); its ``top_k`` caps the boxes too.

v1 answers ``{"detections": [{"label", "class_id", "score", "box": {x, y, width, height}, "keypoints"}]}``.
v2 answers the model's tensors as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.errors import ItemError, ModelOutputInvalid
from processing.image import ImageGeometry
from processing.kinds.base import ItemAnswer, ModelOutputs, OutputKind, finite, not_finite
from processing.postprocess import NmsMode, PostprocessSpec
from processing.sources import DETECTION_FIELDS, NO_DETECTION_PARAMS, DetectionParams, VectorEncoding


@dataclass(frozen=True)
class Detection:
    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height in the displayed image's pixels
    keypoints: tuple[tuple[float, float], ...]  # (x, y) in the displayed image's pixels


@dataclass(frozen=True, eq=False)
class Detections(ItemAnswer):
    """An image's detections, best first, and its row of each of the model's outputs (for v2)."""

    detections: tuple[Detection, ...]
    outputs: Mapping[str, np.ndarray]

    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        return {"detections": [_json(d) for d in self.detections]}

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        return np.asarray(self.outputs[output], dtype=np.float32)


def _json(d: Detection) -> dict[str, Any]:
    x, y, w, h = d.box
    box = {"x": x, "y": y, "width": w, "height": h}
    points = [[px, py] for px, py in d.keypoints]
    return {"label": d.label, "class_id": d.class_id, "score": d.score, "box": box, "keypoints": points}


def detect_batch(
    outputs: Mapping[str, np.ndarray],
    spec: PostprocessSpec,
    geometries: Sequence[ImageGeometry | None],
    top_k: int | None = None,
    params: DetectionParams = NO_DETECTION_PARAMS,
) -> list[Detections | ItemError]:
    """Each image's detections in its displayed pixels (``geometries[i]`` None: in the input frame's [0, 1]).

    ``params``: the request's settings over ``spec``'s; ``top_k``, the request's, caps the boxes as well.
    """
    names = spec.detection_outputs
    missing = [name for name in names[:3] if name not in outputs]
    if missing:
        error = ModelOutputInvalid(f"the detection model's outputs lack {', '.join(missing)}")
        return [error for _ in geometries]
    boxes, scores, classes = (np.asarray(outputs[name], dtype=np.float64) for name in names[:3])
    counts = outputs.get(names[3]) if len(names) > 3 else None
    keypoints = outputs.get(names[4]) if len(names) > 4 else None
    caps = [cap for cap in (params.max_detections, top_k) if cap is not None]
    cap = min(caps) if caps else spec.max_detections
    threshold = params.score_threshold if params.score_threshold is not None else spec.score_threshold
    answers: list[Detections | ItemError] = []
    for row, geometry in enumerate(geometries):
        rows = {name: value[row] for name, value in outputs.items()}
        if not all(finite(value) for value in rows.values()):
            answers.append(not_finite())
            continue
        count = int(counts[row]) if counts is not None else len(scores[row])
        points = np.asarray(keypoints[row][:count], dtype=np.float64) if keypoints is not None else None
        found = _detections(boxes[row][:count], scores[row][:count], classes[row][:count], points, spec, threshold, cap)
        answers.append(Detections(tuple(_mapped(d, geometry) for d in found), rows))
    return answers


@dataclass(frozen=True)
class _Found:
    box: np.ndarray  # ymin, xmin, ymax, xmax, normalised
    score: float
    class_id: int
    label: str
    keypoints: np.ndarray  # [P, 2] (y, x), normalised


def _detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    keypoints: np.ndarray | None,
    spec: PostprocessSpec,
    threshold: float,
    cap: int | None,
) -> list[_Found]:
    keep = scores > threshold
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep].astype(np.int64)
    points = keypoints[keep] if keypoints is not None else np.zeros((len(boxes), 0, 2))
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes, points = boxes[order], scores[order], classes[order], points[order]
    if spec.nms_iou is not None:
        boxes, scores, classes, points = suppress(boxes, scores, classes, points, spec.nms_iou, spec.nms_mode)
    if cap is not None:
        boxes, scores, classes, points = boxes[:cap], scores[:cap], classes[:cap], points[:cap]
    found = []
    for box, score, class_id, kps in zip(boxes, scores.tolist(), classes.tolist(), points, strict=True):
        index = class_id - spec.label_offset
        label = spec.labels[index] if 0 <= index < len(spec.labels) else str(class_id)
        found.append(_Found(box, score, class_id, label, kps))
    return found


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of ``box`` (ymin, xmin, ymax, xmax) with each of ``others`` [M, 4]."""
    top = np.maximum(box[0], others[:, 0])
    left = np.maximum(box[1], others[:, 1])
    bottom = np.minimum(box[2], others[:, 2])
    right = np.minimum(box[3], others[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    result: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return result


def suppress(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    points: np.ndarray,
    threshold: float,
    mode: NmsMode | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class-aware non-maximum suppression over boxes sorted best first: each kept box drops (hard) or absorbs,
    weighted by score (weighted, BlazeFace's), the boxes of its class overlapping it by more than ``threshold``."""
    alive = np.ones(len(boxes), dtype=bool)
    kept: list[int] = []
    out_boxes, out_points = boxes.copy(), points.copy()
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(i)
        overlapping = alive & (classes == classes[i]) & (iou(boxes[i], boxes) > threshold)
        overlapping[i] = True
        if mode == "weighted":
            weights = scores[overlapping] / scores[overlapping].sum()
            out_boxes[i] = (boxes[overlapping] * weights[:, None]).sum(axis=0)
            out_points[i] = (points[overlapping] * weights[:, None, None]).sum(axis=0)
        alive &= ~overlapping
    index = np.array(kept, dtype=np.int64)
    return out_boxes[index], scores[index], classes[index], out_points[index]


def _mapped(found: _Found, geometry: ImageGeometry | None) -> Detection:
    """``found`` in the displayed image's pixels, clipped to it (in the input frame's [0, 1] without a geometry)."""
    ymin, xmin, ymax, xmax = found.box.tolist()
    corners = np.array([[xmin, ymin], [xmax, ymax]])
    kps = found.keypoints[:, ::-1]  # (y, x) to (x, y)
    if geometry is not None:
        corners, kps = geometry.to_displayed(corners), geometry.to_displayed(kps)
    width, height = (geometry.width, geometry.height) if geometry is not None else (1, 1)
    corners = np.clip(corners, 0, [width, height])
    kps = np.clip(kps, 0, [width, height])
    (x0, y0), (x1, y1) = corners.tolist()
    box = (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))
    points = tuple((float(x), float(y)) for x, y in kps.tolist())
    return Detection(found.class_id, found.label, found.score, box, points)


def postprocess(out: ModelOutputs) -> Sequence[ItemAnswer | ItemError]:
    return detect_batch(out.tensors, out.spec, out.geometries, out.top_k, out.detection)


_NUMBER = {"type": "number"}
_DETECTION = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "class_id": {"type": "integer"},
        "score": _NUMBER,
        "box": {
            "type": "object",
            "description": "in the image's pixels as it is displayed (EXIF orientation applied)",
            "properties": {"x": _NUMBER, "y": _NUMBER, "width": _NUMBER, "height": _NUMBER},
            "required": ["x", "y", "width", "height"],
        },
        "keypoints": {"type": "array", "items": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}},
    },
    "required": ["label", "class_id", "score", "box", "keypoints"],
    "additionalProperties": False,
}
KIND = OutputKind(
    name="detection",
    postprocess=postprocess,
    answer_schema={"properties": {"detections": {"type": "array", "items": _DETECTION}}, "required": ["detections"]},
    every_output=True,
    classifies=False,
    request_params=DETECTION_FIELDS,
)
