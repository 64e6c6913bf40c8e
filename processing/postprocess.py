"""Turning model outputs into the JSON-ready answer for each image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from processing.errors import ItemError, ModelOutputInvalid

PostprocessKind = Literal["classification", "raw"]


@dataclass(frozen=True)
class PostprocessSpec:
    kind: PostprocessKind
    softmax: bool  # apply softmax (the model outputs logits)
    top_k: int
    labels: tuple[str, ...]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def classify_batch(
    output: np.ndarray, spec: PostprocessSpec, top_k: int | None = None
) -> list[dict[str, Any] | ItemError]:
    """One ``{"classes": [...]}`` per row of a [batch, classes] output; a row that is not all finite is an error.

    The whole batch at once: softmax, the k best and their order are array operations over the rows (each row's
    answer is what it would get alone; tests/processing/test_postprocess.py compares with a row-by-row reference).
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
    answers: list[dict[str, Any] | ItemError] = []
    for ok, ids, row_scores in zip(finite.tolist(), best.tolist(), values.tolist(), strict=True):
        if not ok:
            answers.append(_not_finite())
            continue
        classes = [
            {"class_id": i, "label": labels[i] if i < named else str(i), "score": score}
            for i, score in zip(ids, row_scores, strict=True)
        ]
        answers.append({"classes": classes})
    return answers


def raw_batch(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any] | ItemError]:
    """One ``{"outputs": {name: nested lists}}`` per row of every output tensor; non-finite rows are errors."""
    batch = len(next(iter(outputs.values())))
    return [
        {"outputs": {name: value[i].tolist() for name, value in outputs.items()}}
        if all(_finite(value[i]) for value in outputs.values())
        else _not_finite()
        for i in range(batch)
    ]


def _finite(values: np.ndarray) -> bool:
    return not np.issubdtype(values.dtype, np.inexact) or bool(np.isfinite(values).all())


def _not_finite() -> ModelOutputInvalid:
    return ModelOutputInvalid("the model's output for this image holds values that are not finite numbers")


def parse_labels(text: str) -> tuple[str, ...]:
    """A labels file: one class name per line, line i naming class i."""
    return tuple(line.strip() for line in text.splitlines())
