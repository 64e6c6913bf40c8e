"""What every output kind's postprocess is given from the configuration (the kinds themselves: ``processing/kinds``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Activation = Literal["none", "softmax", "sigmoid"]


@dataclass(frozen=True)
class PostprocessSpec:
    kind: str  # an output kind's name (processing/kinds/registry.py)
    activation: Activation  # applied to a classifier's scores before they are ranked (the model outputs logits)
    top_k: int | None  # classes per image unless the request says; None: no cap (every class above the threshold)
    labels: tuple[str, ...]
    threshold: float | None = None  # classification: every class scoring above it (multi-label)
    normalize: bool = False  # embedding: scale each vector to unit L2 norm


def parse_labels(text: str) -> tuple[str, ...]:
    """A labels file: one class name per line, line i naming class i."""
    return tuple(line.strip() for line in text.splitlines())
