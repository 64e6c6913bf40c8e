"""The classification kind: the best classes of each row, each protocol's rendering of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from processing.kinds.classification import Classes, classify_batch, softmax
from processing.postprocess import PostprocessSpec, parse_labels
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
    (answer,) = classify_batch(np.array([row]), postprocess_spec(softmax=False, top_k=k, labels=labels))
    assert isinstance(answer, Classes)
    found: list[dict[str, Any]] = answer.to_json()["classes"]
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
        np.array([[0.0, 0.0], [10.0, 0.0]]), postprocess_spec(softmax=True, top_k=1, labels=("x", "y"))
    )
    assert isinstance(first, Classes) and isinstance(second, Classes)
    assert first.classes[0].score == 0.5
    assert second.classes[0].label == "x"


def test_parse_labels() -> None:
    assert parse_labels("cat\ndog\n") == ("cat", "dog")


def test_a_row_that_is_not_finite_is_that_items_error_alone() -> None:
    output = np.array([[1.0, 2.0], [np.nan, 0.0], [np.inf, 1.0]], dtype=np.float32)
    for spec in (postprocess_spec(softmax=True), postprocess_spec(softmax=False)):
        first, *rest = classify_batch(output, spec)
        assert isinstance(first, Classes) and first.classes[0].class_id == 1
        assert [getattr(r, "code", None) for r in rest] == ["model_output_invalid"] * 2


@pytest.mark.parametrize("classes", [8, 1000])
@pytest.mark.parametrize("use_softmax", [True, False])
def test_a_batch_gives_each_row_what_the_row_alone_gives(classes: int, use_softmax: bool) -> None:
    """classify_batch works on the whole batch at once; each row's answer is still top_classes of that row."""
    rng = np.random.default_rng(classes)
    spec = PostprocessSpec("classification", use_softmax, 5, tuple(f"c{i}" for i in range(classes - 2)))
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
        assert [a.to_json() if isinstance(a, Classes) else a.code for a in answers] == expected
