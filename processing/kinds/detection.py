"""The detection kind: TF Object Detection API outputs; each image's answer is its boxes in the image's own pixels.

The model answers boxes (ymin, xmin, ymax, xmax) and keypoints (y, x) normalised to its input frame, the one the
tier letterboxed, cropped or stretched the image into. Each image's ``ImageGeometry`` (processing/image.py, made
where the resize is) maps them back to the image as the client displays it (EXIF-upright, full size), clipped to
it. Boxes scoring at or below ``score_threshold`` are dropped; tier-side non-maximum suppression (``nms_iou``,
class-aware, hard or weighted) is optional; the best ``max_detections`` are kept. A request may set its own
``score_threshold`` and ``max_detections`` (over the model's); its ``top_k`` caps the boxes too.

v1 answers ``{"detections": [{"label", "class_id", "score", "box": {x, y, width, height}, "keypoints"}]}``.
v2 answers the model's tensors as they are and, as the output ``detections`` (BYTES [N, 1]), each image's list of
detections as v1 writes it, in JSON text: the tensors are in the model's frame, the list in the image's pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from processing.errors import ItemError, ModelOutputInvalid
from processing.geometry import ImageGeometry
from processing.kinds.base import ItemAnswer, ModelOutputs, OutputKind, TensorDescription, finite, not_finite
from processing.postprocess import NmsMode, PostprocessSpec
from processing.sources import DETECTION_FIELDS, NO_DETECTION_PARAMS, DetectionParams, VectorEncoding

# v2's output of the mapped detections (a model's own output of the name, should it have one, wins).
DETECTIONS_OUTPUT = "detections"


@dataclass(frozen=True)
class Detection:
    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height in the displayed image's pixels
    keypoints: tuple[tuple[float, float], ...]  # (x, y) in the displayed image's pixels


@dataclass(frozen=True, eq=False)
class Detections(ItemAnswer):
    """An image's detections, best first, as arrays (each renderer reads them its own way), and its row of each of
    the model's outputs (for v2's tensors)."""

    boxes: np.ndarray  # [K, 4] x, y, width, height in the displayed image's pixels
    scores: np.ndarray  # [K]
    classes: np.ndarray  # [K] int64: the model's class ids
    labels: Sequence[str]  # [K]
    keypoints: np.ndarray  # [K, P, 2] (x, y) in the displayed image's pixels
    outputs: Mapping[str, np.ndarray]

    @classmethod
    def of(cls, detections: Sequence[Detection], outputs: Mapping[str, np.ndarray]) -> Detections:
        """Detections given one by one."""
        points = max((len(d.keypoints) for d in detections), default=0)
        return cls(
            np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4),
            np.array([d.score for d in detections], dtype=np.float64),
            np.array([d.class_id for d in detections], dtype=np.int64),
            [d.label for d in detections],
            np.array([d.keypoints for d in detections], dtype=np.float64).reshape(-1, points, 2),
            outputs,
        )

    def _rows(self) -> Iterator[tuple[int, str, float, list[float], list[list[float]]]]:
        lists = (self.classes.tolist(), self.scores.tolist(), self.boxes.tolist(), self.keypoints.tolist())
        yield from zip(lists[0], self.labels, *lists[1:], strict=True)

    @property
    def detections(self) -> tuple[Detection, ...]:
        """Each detection as one value."""
        return tuple(
            Detection(class_id, label, score, (x, y, w, h), tuple((px, py) for px, py in points))
            for class_id, label, score, (x, y, w, h), points in self._rows()
        )

    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        return {
            "detections": [
                {
                    "label": label,
                    "class_id": class_id,
                    "score": score,
                    "box": {"x": x, "y": y, "width": w, "height": h},
                    "keypoints": points,
                }
                for class_id, label, score, (x, y, w, h), points in self._rows()
            ]
        }

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        if output == DETECTIONS_OUTPUT and output not in self.outputs:
            return [json.dumps(self.to_json("list")["detections"], separators=(",", ":"))]
        return np.asarray(self.outputs[output], dtype=np.float32)


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
        answers.append(_mapped(found, spec, geometry, rows))
    return answers


@dataclass(frozen=True)
class _Found:
    """The boxes an image keeps, best first, still normalised to the input frame."""

    boxes: np.ndarray  # [K, 4] ymin, xmin, ymax, xmax
    scores: np.ndarray  # [K]
    classes: np.ndarray  # [K] int64
    keypoints: np.ndarray  # [K, P, 2] (y, x)


def _detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    keypoints: np.ndarray | None,
    spec: PostprocessSpec,
    threshold: float,
    cap: int | None,
) -> _Found:
    kept = np.flatnonzero(scores > threshold)
    order = kept[np.argsort(-scores[kept], kind="stable")]  # best first
    boxes, scores, classes = boxes[order], scores[order], classes[order].astype(np.int64)
    points = keypoints[order] if keypoints is not None else np.zeros((len(order), 0, 2))
    if spec.nms_iou is not None and len(boxes) > 1:
        boxes, scores, classes, points = suppress(boxes, scores, classes, points, spec.nms_iou, spec.nms_mode)
    if cap is not None:
        boxes, scores, classes, points = boxes[:cap], scores[:cap], classes[:cap], points[:cap]
    return _Found(boxes, scores, classes, points)


def iou_matrix(boxes: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Intersection over union of each of ``boxes`` [N, 4] (ymin, xmin, ymax, xmax) with each of ``others``
    [M, 4] (default ``boxes``): [N, M]."""
    others = boxes if others is None else others
    top = np.maximum(boxes[:, None, 0], others[None, :, 0])
    left = np.maximum(boxes[:, None, 1], others[None, :, 1])
    bottom = np.minimum(boxes[:, None, 2], others[None, :, 2])
    right = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = areas[:, None] + other_areas[None, :] - inter
    result: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return result


def _overlapping(boxes: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each of ``boxes`` [K, 4] overlaps each of ``others`` [N, 4] by an IoU above ``threshold``: [K, N].

    ``iou_matrix`` compared, without its division: intersection > threshold x union, in place where it can be.
    """
    top, left, bottom, right = (side[:, None] for side in boxes.T)
    high = np.minimum(bottom, others[:, 2]) - np.maximum(top, others[:, 0])
    wide = np.minimum(right, others[:, 3]) - np.maximum(left, others[:, 1])
    np.maximum(high, 0.0, out=high)
    np.maximum(wide, 0.0, out=wide)
    high *= wide  # the intersection
    union = ((bottom - top) * (right - left)) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union -= high
    union *= threshold
    result: np.ndarray = high > union
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
    weighted by score (weighted, BlazeFace's), the boxes of its class overlapping it by more than ``threshold``.

    Which boxes stay is OpenCV's class-aware greedy pass (``cv2.dnn.NMSBoxesBatched``; the same in both modes),
    given lists: its binding reads a list of rows in a third of the time it takes for an array's. Weighted, each
    other box joins the first kept box of its class that overlaps it, as the greedy pass drops it there.
    """
    rects = boxes[:, [1, 0, 3, 2]]  # x, y, then width and height:
    rects[:, 2:] -= rects[:, :2]
    below = float(scores[-1]) - 1.0  # every box given has passed the score threshold already
    kept = cv2.dnn.NMSBoxesBatched(rects.tolist(), scores.tolist(), classes.tolist(), below, threshold)
    index = np.sort(np.asarray(kept, dtype=np.int64).ravel())  # best first, as given
    if mode != "weighted":
        return boxes[index], scores[index], classes[index], points[index]
    apart = boxes + (classes * (np.ptp(boxes) + 1.0))[:, None]  # boxes of different classes never overlap
    over = _overlapping(apart[index], apart, threshold)
    over[np.arange(len(index)), index] = True
    first = over & (np.cumsum(over, axis=0) == 1)  # [K, N]: the kept box each box joins
    weights = first * scores[None, :]
    weights /= weights.sum(axis=1, keepdims=True)
    merged_points = (weights @ points.reshape(len(points), -1)).reshape(len(index), *points.shape[1:])
    return weights @ boxes, scores[index], classes[index], merged_points


def _mapped(
    found: _Found, spec: PostprocessSpec, geometry: ImageGeometry | None, outputs: Mapping[str, np.ndarray]
) -> Detections:
    """``found`` in the displayed image's pixels, clipped to it (in the input frame's [0, 1] without a geometry)."""
    corners = found.boxes.reshape(-1, 2, 2)  # [K, 2, 2]: (ymin, xmin), (ymax, xmax)
    xy = np.concatenate([corners, found.keypoints], axis=1)[..., ::-1]  # [K, 2 + P, 2], (x, y)
    if geometry is not None:
        xy = geometry.to_displayed(xy)
    width, height = (geometry.width, geometry.height) if geometry is not None else (1, 1)
    xy = np.minimum(np.maximum(xy, 0.0), np.array([width, height], dtype=np.float64))
    boxes = np.concatenate([xy[:, 0], np.maximum(xy[:, 1] - xy[:, 0], 0.0)], axis=1)  # x, y, width, height
    names, offset = spec.labels, spec.label_offset
    labels = [names[c - offset] if 0 <= c - offset < len(names) else str(c) for c in found.classes.tolist()]
    return Detections(boxes, found.scores, found.classes, labels, xy[:, 2:], outputs)


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
    v2_outputs=(TensorDescription(DETECTIONS_OUTPUT, "BYTES", (-1, 1)),),
)
