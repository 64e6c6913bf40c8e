"""Turning model outputs into the JSON-ready answer for each image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def top_classes(scores: np.ndarray, k: int, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The ``k`` best classes of one score vector, best first."""
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = max(1, min(k, flat.size))
    best = np.argpartition(-flat, k - 1)[:k]
    best = best[np.argsort(-flat[best], kind="stable")]
    return [
        {"class_id": int(i), "label": labels[i] if i < len(labels) else str(int(i)), "score": float(flat[i])}
        for i in best
    ]


def classify_batch(
    output: np.ndarray, spec: PostprocessSpec, top_k: int | None = None
) -> list[dict[str, Any] | ItemError]:
    """One ``{"classes": [...]}`` per row of a [batch, classes] output; a row that is not all finite is an error."""
    rows = output.reshape(len(output), -1)
    k = top_k if top_k is not None else spec.top_k
    answers: list[dict[str, Any] | ItemError] = []
    for row in rows:
        if not _finite(row):
            answers.append(_not_finite())
            continue
        scores = softmax(row.astype(np.float64)) if spec.softmax else row
        answers.append({"classes": top_classes(scores, k, spec.labels)})
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
