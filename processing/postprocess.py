"""What every output kind's postprocess is given from the configuration (the kinds themselves: ``processing/kinds``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Activation = Literal["none", "softmax", "sigmoid"]
NmsMode = Literal["hard", "weighted"]


@dataclass(frozen=True)
class PostprocessSpec:
    kind: str  # an output kind's name (processing/kinds/registry.py)
    activation: Activation  # applied to a classifier's scores before they are ranked (the model outputs logits)
    top_k: int | None  # classes per image unless the request says; None: no cap (every class above the threshold)
    labels: tuple[str, ...]
    threshold: float | None = None  # classification: every class scoring above it (multi-label)
    normalize: bool = False  # embedding: scale each vector to unit L2 norm
    score_threshold: float = 0.0  # detection: boxes scoring at or below it are dropped
    max_detections: int | None = None  # detection: boxes per image, best first, unless the request says
    label_offset: int = 1  # detection: the label-map id of ``labels[0]`` (the TF Object Detection API's is 1)
    nms_iou: float | None = None  # detection: tier-side non-maximum suppression above this IoU (None: the model's)
    nms_mode: NmsMode | None = None  # detection, with nms_iou: "hard" drops overlapping boxes, "weighted" merges them
    detection_outputs: tuple[str, ...] = ()  # detection: boxes, scores, classes[, count[, keypoints]] (app's default)


def parse_labels(text: str) -> tuple[str, ...]:
    """A labels file: one class name per line, line i naming class i."""
    return tuple(line.strip() for line in text.splitlines())
