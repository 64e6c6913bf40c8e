"""A model's input and postprocess settings, part of ``ModelSettings`` (``app/settings.py``), and their checks.

What the input kind takes (decoded pixels or the encoded bytes) and what the output kind makes of the outputs
(``processing/kinds``); the rest of a model's settings (batching, routes) are in ``app/settings.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.typed_yaml import SettingsError
from processing.sources import MAX_TOP_K

# Classes per image of a single-label classifier when neither the request nor the configuration sets top_k.
SINGLE_LABEL_TOP_K = 5


@dataclass(frozen=True)
class InputSettings:
    name: str | None = None  # discovered from metadata when left out
    encoding: Literal["pixels", "bytes"] | None = None  # bytes: sent as they arrived; none: bytes for a string input
    orientation_name: str | None = None  # bytes: the int32 [N] input of EXIF orientations; none: one named orientation
    dtype: Literal["float32", "uint8"] | None = None
    height: int | None = None
    width: int | None = None
    resize: Literal["stretch", "crop", "letterbox"] = "stretch"
    resize_shorter: int | None = None
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Literal["nhwc", "nchw"] = "nhwc"
    pad_value: int = 0


@dataclass(frozen=True)
class PostprocessSettings:
    kind: Literal["classification", "detection", "embedding", "tensors", "raw"] = (
        "classification"  # processing/kinds/registry.py
    )
    activation: Literal["none", "softmax", "sigmoid"] = "none"  # softmax or sigmoid when the model outputs logits
    softmax: bool | None = None  # the former key: true is activation softmax (docs/models.md)
    threshold: float | None = None  # classification: every class scoring above it (multi-label)
    top_k: int | None = None  # classes per image; none: SINGLE_LABEL_TOP_K, or with a threshold no cap
    labels: Path | None = None  # relative paths are relative to the config file
    normalize: bool = False  # embedding: scale each vector to unit L2 norm
    score_threshold: float = 0.0  # detection: boxes scoring at or below it are dropped
    max_detections: int | None = None  # detection: boxes per image, best first (the request's max_detections overrides)
    label_offset: int = 1  # detection: the class id of the labels file's first line (the Object Detection API's: 1)
    nms_iou: float | None = None  # detection: tier-side non-maximum suppression above this IoU; none: the model's
    nms_mode: Literal["hard", "weighted"] = "hard"  # detection: drop overlapping boxes, or merge them by score
    # detection: the outputs holding boxes, scores, classes, the count and (optional) keypoints, in that order
    detection_outputs: tuple[str, ...] = (
        "detection_boxes",
        "detection_scores",
        "detection_classes",
        "num_detections",
        "detection_keypoints",
    )

    def __post_init__(self) -> None:
        if self.kind == "raw":  # the former name of tensors, still accepted (docs/models.md)
            object.__setattr__(self, "kind", "tensors")
        if self.softmax and self.activation == "none":
            object.__setattr__(self, "activation", "softmax")

    def class_cap(self) -> int | None:
        """Classes per image unless the request says: top_k; unset, 5 without a threshold and no cap with one."""
        if self.top_k is not None or self.threshold is not None:
            return self.top_k
        return SINGLE_LABEL_TOP_K


def validate_input(path: str, inp: InputSettings) -> None:
    """Checks across ``models.<name>.input``'s values; raises SettingsError naming the key."""
    for key in ("height", "width", "resize_shorter"):
        value = getattr(inp, key)
        if value is not None and not 0 < value <= 8192:
            raise SettingsError(f"{path}.input.{key}: must be from 1 to 8192")
    channels = 1 if inp.color == "gray" else 3
    for key in ("mean", "std"):
        if len(getattr(inp, key)) not in (1, channels):
            raise SettingsError(f"{path}.input.{key}: needs 1 or {channels} values")
    if any(s == 0 for s in inp.std):
        raise SettingsError(f"{path}.input.std: must not be zero")
    uses_normalisation = inp.scale != 1.0 or any(inp.mean) or any(s != 1.0 for s in inp.std)
    if inp.dtype == "uint8" and uses_normalisation:
        raise SettingsError(f"{path}.input: a uint8 input takes raw pixels; remove scale/mean/std")


def validate_postprocess(path: str, post: PostprocessSettings) -> None:
    """Checks across ``models.<name>.postprocess``'s values; raises SettingsError naming the key."""
    if post.top_k is not None and not 1 <= post.top_k <= MAX_TOP_K:
        raise SettingsError(f"{path}.postprocess.top_k: must be from 1 to {MAX_TOP_K}")
    if post.softmax is not None and post.activation != ("softmax" if post.softmax else "none"):
        raise SettingsError(
            f"{path}.postprocess.softmax: replaced by postprocess.activation (none | softmax | sigmoid), "
            f"which says {post.activation}; give activation alone"
        )
    if post.threshold is not None and post.activation != "none" and not 0 <= post.threshold < 1:
        raise SettingsError(f"{path}.postprocess.threshold: {post.activation} scores are from 0 to 1; choose below 1")
    if post.max_detections is not None and not 1 <= post.max_detections <= MAX_TOP_K:
        raise SettingsError(f"{path}.postprocess.max_detections: must be from 1 to {MAX_TOP_K}")
    if post.nms_iou is not None and not 0 < post.nms_iou < 1:
        raise SettingsError(f"{path}.postprocess.nms_iou: must be between 0 and 1")
    if not 3 <= len(post.detection_outputs) <= 5:
        raise SettingsError(f"{path}.postprocess.detection_outputs: boxes, scores, classes[, count[, keypoints]]")
    if post.labels is not None and not post.labels.is_file():
        raise SettingsError(f"{path}.postprocess.labels: file {post.labels} does not exist")
