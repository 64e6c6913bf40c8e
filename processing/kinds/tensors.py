"""The tensors kind: a model's outputs as they are; each image's answer is its row of every output.

v1 answers ``{"outputs": {name: nested lists}}``; v2 answers each output as FP32. Configured as
``postprocess.kind: tensors`` (``raw``, its former name, is accepted too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.errors import ItemError
from processing.kinds.base import ItemAnswer, ModelOutputs, OutputKind, finite, not_finite
from processing.sources import VectorEncoding


@dataclass(frozen=True, eq=False)
class Tensors(ItemAnswer):
    """An image's row of each of the model's outputs."""

    outputs: Mapping[str, np.ndarray]

    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        return {"outputs": {name: value.tolist() for name, value in self.outputs.items()}}

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        return np.asarray(self.outputs[output], dtype=np.float32)


def tensors_batch(outputs: Mapping[str, np.ndarray]) -> list[Tensors | ItemError]:
    """Each row of every output tensor; a row with a value that is not finite is that image's error."""
    batch = len(next(iter(outputs.values())))
    rows = [{name: value[i] for name, value in outputs.items()} for i in range(batch)]
    return [Tensors(row) if all(finite(value) for value in row.values()) else not_finite() for row in rows]


def postprocess(out: ModelOutputs) -> Sequence[ItemAnswer | ItemError]:
    return tensors_batch(out.tensors)


KIND = OutputKind(
    name="tensors",
    postprocess=postprocess,
    answer_schema={"properties": {"outputs": {"type": "object"}}, "required": ["outputs"]},
    every_output=True,
    classifies=False,
)
