"""The classification kind: one output of class scores; each image's answer is its best classes.

Single-label (the default): the ``top_k`` best classes. Multi-label (``postprocess.threshold`` set, usually with
``activation: sigmoid``): every class scoring above the threshold, best first, capped by ``top_k`` only when the
request or the configuration sets one. Both are this module's one decision, ``classify_batch``.

v1 answers ``{"classes": [{"class_id", "label", "score"}, ...]}``, best first. v2 answers every class's
score (FP32), or with the classification extension the best ``k`` as ``"<score>:<index>:<label>"`` strings
(BYTES), as Triton writes them (a tensor has as many per image: the best ``k``, above the threshold or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.errors import ItemError
from processing.kinds.base import ItemAnswer, ModelOutputs, OutputKind, not_finite
from processing.postprocess import Activation, PostprocessSpec
from processing.sources import VectorEncoding


@dataclass(frozen=True)
class ScoredClass:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True, eq=False)
class Classes(ItemAnswer):
    """An image's classes, best first, and every class's score (its row of the output, after the activation)."""

    classes: tuple[ScoredClass, ...]
    scores: np.ndarray
    labels: tuple[str, ...] = ()

    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        return {"classes": [{"class_id": c.class_id, "label": c.label, "score": c.score} for c in self.classes]}

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        if class_count:
            best = self.classes[:class_count]
            if len(best) < min(class_count, len(self.scores)):  # a multi-label answer: fewer above the threshold
                ids, values = ranked(self.scores[None, :], class_count)
                best = _scored(ids[0].tolist(), values[0].tolist(), self.labels)
            return [f"{c.score:f}:{c.class_id}:{c.label}" for c in best]
        return self.scores.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow at either end: each class's own probability (multi-label)."""
    result: np.ndarray = np.exp(-np.logaddexp(0.0, -logits))
    return result


def activate(scores: np.ndarray, activation: Activation) -> np.ndarray:
    """What a classifier's output means as scores: as it is, softmax over the classes, or sigmoid of each."""
    if activation == "softmax":
        return softmax(scores)
    if activation == "sigmoid":
        return sigmoid(scores)
    return scores


def ranked(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best class ids of each row and their scores, best first (ties in class order)."""
    k = max(1, min(k, scores.shape[1]))
    rows = np.arange(len(scores))[:, None]  # indexing by (rows, columns): take_along_axis's work, in C alone
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    best = best[rows, np.argsort(-scores[rows, best], axis=1, kind="stable")]
    return best, scores[rows, best]


def classify_batch(output: np.ndarray, spec: PostprocessSpec, top_k: int | None = None) -> list[Classes | ItemError]:
    """The classes of each row of a [batch, classes] output; a row that is not all finite is an error.

    The whole batch at once: the activation, the k best and their order are array operations over the rows (each
    row's answer is what it would get alone; tests/processing/kinds/test_classification.py compares with a
    row-by-row reference). ``top_k``, the request's, overrides the configured cap.
    """
    rows = output.reshape(len(output), -1)
    if len(rows) == 0:
        return []
    inexact = np.issubdtype(rows.dtype, np.inexact)
    finite = np.isfinite(rows).all(axis=1) if inexact else np.ones(len(rows), dtype=bool)
    scores = activate(np.where(finite[:, None], rows, 0).astype(np.float64), spec.activation)  # bad rows: errors
    cap = top_k if top_k is not None else spec.top_k
    counts = _counts(scores, finite, spec.threshold, cap)
    ids, values = ranked(scores, int(counts.max()))
    answers: list[Classes | ItemError] = []
    for row, (ok, count) in enumerate(zip(finite.tolist(), counts.tolist(), strict=True)):
        if not ok:
            answers.append(not_finite())
            continue
        best = _scored(ids[row, :count].tolist(), values[row, :count].tolist(), spec.labels)
        answers.append(Classes(best, scores[row], spec.labels))
    return answers


def _counts(scores: np.ndarray, finite: np.ndarray, threshold: float | None, cap: int | None) -> np.ndarray:
    """How many classes each row answers: the cap (every class without one), or those above the threshold."""
    classes = scores.shape[1]
    if threshold is None:
        return np.full(len(scores), min(cap or classes, classes))
    above: np.ndarray = ((scores > threshold) & finite[:, None]).sum(axis=1)
    return np.minimum(above, cap) if cap is not None else above


def _scored(ids: list[int], scores: list[float], labels: tuple[str, ...]) -> tuple[ScoredClass, ...]:
    named = len(labels)
    return tuple(ScoredClass(i, labels[i] if i < named else str(i), s) for i, s in zip(ids, scores, strict=True))


def postprocess(out: ModelOutputs) -> Sequence[ItemAnswer | ItemError]:
    return classify_batch(out.tensors[out.names[0]], out.spec, out.top_k)


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
