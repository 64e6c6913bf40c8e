"""The classification kind: one output of class scores; each image's answer is its best classes.

v1 answers ``{"classes": [{"class_id", "label", "score"}, ...]}``, best first. v2 answers every class's
score (FP32), or with the classification extension the best ``k`` as ``"<score>:<index>:<label>"`` strings
(BYTES), as Triton writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.errors import ItemError
from processing.kinds.base import ItemAnswer, OutputKind, not_finite
from processing.postprocess import PostprocessSpec


@dataclass(frozen=True)
class ScoredClass:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True, eq=False)
class Classes(ItemAnswer):
    """An image's best classes, best first, and every class's score (its row of the output, after any softmax)."""

    classes: tuple[ScoredClass, ...]
    scores: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"classes": [{"class_id": c.class_id, "label": c.label, "score": c.score} for c in self.classes]}

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        if class_count:
            return [f"{c.score:f}:{c.class_id}:{c.label}" for c in self.classes[:class_count]]
        return self.scores.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def classify_batch(output: np.ndarray, spec: PostprocessSpec, top_k: int | None = None) -> list[Classes | ItemError]:
    """The best classes of each row of a [batch, classes] output; a row that is not all finite is an error.

    The whole batch at once: softmax, the k best and their order are array operations over the rows (each row's
    answer is what it would get alone; tests/processing/kinds/test_classification.py compares with a row-by-row
    reference).
    """
    rows = output.reshape(len(output), -1)
    if len(rows) == 0:
        return []
    inexact = np.issubdtype(rows.dtype, np.inexact)
    finite = np.isfinite(rows).all(axis=1) if inexact else np.ones(len(rows), dtype=bool)
    scores = np.where(finite[:, None], rows, 0).astype(np.float64)  # a non-finite row is answered as an error
    if spec.softmax:
        scores = softmax(scores)
    k = max(1, min(top_k if top_k is not None else spec.top_k, scores.shape[1]))
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    best = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable"), 1)
    values = np.take_along_axis(scores, best, axis=1)
    labels, named = spec.labels, len(spec.labels)
    answers: list[Classes | ItemError] = []
    for row, (ok, ids, row_scores) in enumerate(zip(finite.tolist(), best.tolist(), values.tolist(), strict=True)):
        if not ok:
            answers.append(not_finite())
            continue
        classes = tuple(
            ScoredClass(i, labels[i] if i < named else str(i), score) for i, score in zip(ids, row_scores, strict=True)
        )
        answers.append(Classes(classes, scores[row]))
    return answers


def postprocess(
    outputs: Mapping[str, np.ndarray], names: Sequence[str], spec: PostprocessSpec, top_k: int | None
) -> Sequence[ItemAnswer | ItemError]:
    return classify_batch(outputs[names[0]], spec, top_k)


_SCORE = {
    "type": "object",
    "properties": {"class_id": {"type": "integer"}, "label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["class_id", "label", "score"],
    "additionalProperties": False,
}
KIND = OutputKind(
    name="classification",
    postprocess=postprocess,
    answer_schema={"properties": {"classes": {"type": "array", "items": _SCORE}}, "required": ["classes"]},
    every_output=False,
    classifies=True,
)
