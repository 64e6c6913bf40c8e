"""The classification kind: the best classes of each row, each protocol's rendering of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from processing.kinds.classification import Classes, classify_batch, sigmoid, softmax
from processing.postprocess import Activation, PostprocessSpec, parse_labels
from tests.support.specs import postprocess_spec


def top_classes(scores: np.ndarray, k: int, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The reference, one row at a time: the ``k`` best classes of one score vector, best first (how the
    tier answered before it postprocessed whole batches)."""
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = max(1, min(k, flat.size))
    best = np.argpartition(-flat, k - 1)[:k]
    best = best[np.argsort(-flat[best], kind="stable")]
    return [
        {"class_id": int(i), "label": labels[i] if i < len(labels) else str(int(i)), "score": float(flat[i])}
        for i in best
    ]


def test_softmax_is_stable_and_normalised() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]], atol=1e-12)


def classes(row: list[float], k: int, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The classes ``classify_batch`` answers for one row, without softmax."""
    (answer,) = classify_batch(np.array([row]), postprocess_spec(activation="none", top_k=k, labels=labels))
    assert isinstance(answer, Classes)
    found: list[dict[str, Any]] = answer.to_json("list")["classes"]
    return found


def test_top_classes_best_first_with_labels() -> None:
    result = classes([0.1, 0.7, 0.2], 2, ("a", "b", "c"))
    assert [c["label"] for c in result] == ["b", "c"]
    assert result[0] == {"class_id": 1, "label": "b", "score": 0.7}


def test_top_k_larger_than_classes_and_missing_labels() -> None:
    result = classes([0.3, 0.7], 10, ())
    assert [c["label"] for c in result] == ["1", "0"]


def test_classify_batch_applies_softmax_when_asked() -> None:
    first, second = classify_batch(
        np.array([[0.0, 0.0], [10.0, 0.0]]), postprocess_spec(activation="softmax", top_k=1, labels=("x", "y"))
    )
    assert isinstance(first, Classes) and isinstance(second, Classes)
    assert first.classes[0].score == 0.5
    assert second.classes[0].label == "x"


def test_parse_labels() -> None:
    assert parse_labels("cat\ndog\n") == ("cat", "dog")


def test_a_row_that_is_not_finite_is_that_items_error_alone() -> None:
    output = np.array([[1.0, 2.0], [np.nan, 0.0], [np.inf, 1.0]], dtype=np.float32)
    for spec in (postprocess_spec(activation="softmax"), postprocess_spec(activation="none")):
        first, *rest = classify_batch(output, spec)
        assert isinstance(first, Classes) and first.classes[0].class_id == 1
        assert [getattr(r, "code", None) for r in rest] == ["model_output_invalid"] * 2


@pytest.mark.parametrize("classes", [8, 1000])
@pytest.mark.parametrize("use_softmax", [True, False])
def test_a_batch_gives_each_row_what_the_row_alone_gives(classes: int, use_softmax: bool) -> None:
    """classify_batch works on the whole batch at once; each row's answer is still top_classes of that row."""
    rng = np.random.default_rng(classes)
    activation: Activation = "softmax" if use_softmax else "none"
    spec = PostprocessSpec("classification", activation, 5, tuple(f"c{i}" for i in range(classes - 2)))
    for trial in range(60):
        output = rng.normal(size=(int(rng.integers(1, 9)), classes)).astype(np.float32)
        if trial % 3 == 0:
            output = np.round(output)  # ties, whose order must not change
        if trial % 4 == 0:
            output[-1, 3] = np.nan if trial % 8 else np.inf
        expected = [
            {"classes": top_classes(softmax(row.astype(np.float64)) if use_softmax else row, 5, spec.labels)}
            if np.isfinite(row).all()
            else "model_output_invalid"
            for row in output
        ]
        answers = classify_batch(output, spec)
        assert [a.to_json("list") if isinstance(a, Classes) else a.code for a in answers] == expected


def test_sigmoid_is_the_logistic_function_without_overflow() -> None:
    logits = np.array([[-1000.0, -2.0, 0.0, 2.0, 1000.0]])
    np.testing.assert_allclose(sigmoid(logits), 1 / (1 + np.exp(-np.clip(logits, -700, 700))), rtol=1e-12, atol=1e-300)
    assert sigmoid(logits)[0, 0] == 0.0 and sigmoid(logits)[0, -1] == 1.0


def labels_above(row: list[float], threshold: float, top_k: int | None, request_top_k: int | None = None) -> list[str]:
    spec = postprocess_spec(activation="sigmoid", threshold=threshold, top_k=top_k, labels=("a", "b", "c", "d"))
    (answer,) = classify_batch(np.array([row]), spec, request_top_k)
    assert isinstance(answer, Classes)
    return [c.label for c in answer.classes]


def test_with_a_threshold_every_class_above_it_is_answered_best_first() -> None:
    logits = [0.5, -3.0, 4.0, 1.0]  # sigmoid: 0.62, 0.05, 0.98, 0.73
    assert labels_above(logits, 0.6, None) == ["c", "d", "a"]
    assert labels_above(logits, 0.99, None) == []
    assert labels_above(logits, 0.0, None) == ["c", "d", "a", "b"]


def test_with_a_threshold_top_k_caps_only_when_set() -> None:
    logits = [0.5, -3.0, 4.0, 1.0]
    assert labels_above(logits, 0.6, top_k=2) == ["c", "d"]  # the configuration's cap
    assert labels_above(logits, 0.6, top_k=None, request_top_k=1) == ["c"]  # the request's
    assert labels_above(logits, 0.6, top_k=2, request_top_k=3) == ["c", "d", "a"]  # the request's wins


def test_each_row_of_a_batch_gets_its_own_classes_above_the_threshold() -> None:
    rng = np.random.default_rng(7)
    output = rng.normal(scale=3.0, size=(40, 30))
    output[5, 2] = np.nan
    spec = postprocess_spec(activation="sigmoid", threshold=0.8, top_k=None, labels=())
    answers = classify_batch(output, spec)
    for row, answer in zip(output, answers, strict=True):
        if not np.isfinite(row).all():
            assert getattr(answer, "code", None) == "model_output_invalid"
            continue
        scores = 1 / (1 + np.exp(-row))
        expected = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0.8]
        assert isinstance(answer, Classes)
        assert [c.class_id for c in answer.classes] == expected


def test_the_classification_extension_answers_the_best_k_above_the_threshold_or_not() -> None:
    spec = postprocess_spec(activation="sigmoid", threshold=0.9, top_k=None, labels=("a", "b", "c"))
    (answer,) = classify_batch(np.array([[0.0, 3.0, -1.0]]), spec, 2)
    assert isinstance(answer, Classes) and [c.label for c in answer.classes] == ["b"]
    row = answer.tensor_row("probabilities", 2)
    assert isinstance(row, list) and [text.split(":")[2] for text in row] == ["b", "a"]
