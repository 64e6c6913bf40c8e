"""Turning model outputs into the JSON-ready answer for each image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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


def classify_batch(output: np.ndarray, spec: PostprocessSpec, top_k: int | None = None) -> list[dict[str, Any]]:
    """One ``{"classes": [...]}`` per row of a [batch, classes] output."""
    scores = softmax(output.astype(np.float64)) if spec.softmax else output
    k = top_k if top_k is not None else spec.top_k
    return [{"classes": top_classes(row, k, spec.labels)} for row in scores.reshape(len(output), -1)]


def raw_batch(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One ``{"outputs": {name: nested lists}}`` per row of every output tensor."""
    batch = len(next(iter(outputs.values())))
    return [{"outputs": {name: value[i].tolist() for name, value in outputs.items()}} for i in range(batch)]


def parse_labels(text: str) -> tuple[str, ...]:
    """A labels file: one class name per line, line i naming class i."""
    return tuple(line.strip() for line in text.splitlines())
