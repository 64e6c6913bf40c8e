"""What every output kind's postprocess is given from the configuration (the kinds themselves: ``processing/kinds``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostprocessSpec:
    kind: str  # an output kind's name (processing/kinds/registry.py)
    softmax: bool  # apply softmax (the model outputs logits)
    top_k: int
    labels: tuple[str, ...]


def parse_labels(text: str) -> tuple[str, ...]:
    """A labels file: one class name per line, line i naming class i."""
    return tuple(line.strip() for line in text.splitlines())
