"""The detection kind: which boxes an image answers, their labels, suppression, and how v1 and v2 render them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from processing.geometry import geometry
from processing.kinds.detection import Detections, detect_batch, iou_matrix, suppress
from processing.oip import output_tensor
from tests.support.specs import postprocess_spec, preprocess_spec

# Four candidates in one image: two overlapping boxes of class 1, one of class 2 on top of them, one far away.
BOXES = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]
SCORES = [0.9, 0.6, 0.8, 0.3]
CLASSES = [1, 1, 2, 1]


def outputs(count: int = 4) -> dict[str, np.ndarray]:
    return {
        "detection_boxes": np.array([BOXES], dtype=np.float32),
        "detection_scores": np.array([SCORES], dtype=np.float32),
        "detection_classes": np.array([CLASSES], dtype=np.float32),
        "num_detections": np.array([count], dtype=np.float32),
        "detection_keypoints": np.array([[[[y0, x0]] for y0, x0, _, _ in BOXES]], dtype=np.float32),
    }


def answer(top_k: int | None = None, values: dict[str, np.ndarray] | None = None, **spec: Any) -> Detections:
    settings = {"kind": "detection", "labels": ("person", "cat"), **spec}
    (found,) = detect_batch(values or outputs(), postprocess_spec(**settings), [None], top_k)
    assert isinstance(found, Detections)
    return found


def test_boxes_come_best_first_with_label_map_ids_named_from_one() -> None:
    found = answer()
    assert [(d.class_id, d.label, round(d.score, 2)) for d in found.detections] == [
        (1, "person", 0.9),
        (2, "cat", 0.8),
        (1, "person", 0.6),
        (1, "person", 0.3),
    ]
    assert answer(label_offset=0).detections[0].label == "cat"  # id 1 is the second line then
    assert answer(labels=()).detections[0].label == "1"  # unnamed: the id


def test_threshold_count_cap_and_the_requests_top_k_choose_the_boxes() -> None:
    assert len(answer(score_threshold=0.5).detections) == 3
    assert len(answer(values=outputs(count=2)).detections) == 2  # num_detections: the rest is padding
    assert len(answer(max_detections=2).detections) == 2
    assert len(answer(top_k=1, max_detections=3).detections) == 1


def test_hard_suppression_is_class_aware() -> None:
    found = answer(nms_iou=0.5, nms_mode="hard")
    assert [(d.class_id, round(d.score, 2)) for d in found.detections] == [(1, 0.9), (2, 0.8), (1, 0.3)]


def test_weighted_suppression_merges_boxes_and_keypoints_by_score() -> None:
    found = answer(nms_iou=0.5, nms_mode="weighted")
    merged_top = (0.1 * 0.9 + 0.12 * 0.6) / 1.5
    assert found.detections[0].box[1] == pytest.approx(merged_top)
    assert found.detections[0].keypoints[0][1] == pytest.approx(merged_top)
    assert found.detections[1].box[1] == pytest.approx(0.1)  # the other class is not merged in


def test_iou_of_a_box_with_itself_and_with_a_disjoint_one() -> None:
    box = [0.0, 0.0, 0.5, 0.5]
    assert iou_matrix(np.array([box, [0.6, 0.6, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]]))[0].tolist() == [1.0, 0.0, 0.5]
    assert iou_matrix(np.array([[0.2, 0.2, 0.2, 0.2]] * 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]  # no area: no union


def reference_suppress(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, points: np.ndarray, threshold: float, weighted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The greedy pass written out box by box, pair by pair: what ``suppress`` must agree with."""
    alive = [True] * len(boxes)
    out_boxes, out_points = [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        group = [j for j in range(len(boxes)) if alive[j] and classes[j] == classes[i]]
        group = [j for j in group if j == i or iou_matrix(boxes[[i, j]])[0, 1] > threshold]
        weights = scores[group] / scores[group].sum() if weighted else np.eye(len(group))[group.index(i)]
        out_boxes.append((boxes[group] * weights[:, None]).sum(axis=0))
        out_points.append((points[group] * weights[:, None, None]).sum(axis=0))
        for j in group:
            alive[j] = False
    return np.array(out_boxes), np.array(out_points)


@pytest.mark.parametrize("mode", ["hard", "weighted"])
def test_suppression_agrees_with_the_greedy_pass_written_out(mode: str) -> None:
    from tools.bench.detection import candidates

    out = candidates(seed=5)
    order = np.argsort(-out["detection_scores"][0], kind="stable")
    boxes, scores = out["detection_boxes"][0][order].astype(np.float64), out["detection_scores"][0][order]
    classes, points = out["detection_classes"][0][order].astype(np.int64), out["detection_keypoints"][0][order]
    kept_boxes, _, _, kept_points = suppress(boxes, scores.astype(np.float64), classes, points, 0.3, mode)  # type: ignore[arg-type]
    expected_boxes, expected_points = reference_suppress(
        boxes, scores.astype(np.float64), classes, points, 0.3, mode == "weighted"
    )
    assert 5 < len(kept_boxes) < 100  # the candidates overlap: some, not all, are suppressed
    np.testing.assert_allclose(kept_boxes, expected_boxes, atol=1e-6)
    np.testing.assert_allclose(kept_points, expected_points, atol=1e-6)


def test_v1_answers_pixels_and_v2_the_models_tensors() -> None:
    spec = preprocess_spec(100, 100, resize="stretch")
    (found,) = detect_batch(outputs(), postprocess_spec(kind="detection"), [geometry(400, 200, spec)])
    assert isinstance(found, Detections)
    first = found.to_json("list")["detections"][0]
    assert first["box"] == pytest.approx({"x": 40.0, "y": 20.0, "width": 160.0, "height": 80.0})
    assert first["keypoints"] == [pytest.approx([40.0, 20.0])]
    tensor = output_tensor("detection_boxes", [found])
    assert tensor.datatype == "FP32"
    np.testing.assert_allclose(np.asarray(tensor.data)[0], BOXES)


def test_a_row_not_all_finite_and_missing_outputs_are_errors() -> None:
    values = outputs()
    values["detection_scores"] = np.array([[np.nan, 0, 0, 0]], dtype=np.float32)
    (bad,) = detect_batch(values, postprocess_spec(kind="detection"), [None])
    assert getattr(bad, "code", None) == "model_output_invalid"
    boxes_only = {"detection_boxes": values["detection_boxes"]}
    (missing,) = detect_batch(boxes_only, postprocess_spec(kind="detection"), [None])
    assert getattr(missing, "code", None) == "model_output_invalid"
