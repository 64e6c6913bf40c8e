"""The embedding kind: one output of vectors (``[batch, dimension]``); each image's answer is its vector.

With ``postprocess.normalize`` each vector is scaled to unit L2 norm, so a dot product is the cosine
similarity. v1 answers ``{"embedding": [...], "dimension": d}``, or with the request's ``"encoding": "base64"``
the vector as base64 of its little-endian float32 bytes (``"encoding": "base64"`` beside it), about a
quarter of the JSON list's size. v2 answers the vectors as FP32 ``[batch, dimension]``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.errors import ItemError
from processing.kinds.base import ItemAnswer, ModelOutputs, OutputKind, not_finite
from processing.sources import VectorEncoding


@dataclass(frozen=True, eq=False)
class Embedding(ItemAnswer):
    """An image's vector, float32."""

    vector: np.ndarray

    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        dimension = len(self.vector)
        if encoding == "base64":
            data = base64.b64encode(self.vector.astype("<f4").tobytes()).decode("ascii")
            return {"embedding": data, "encoding": "base64", "dimension": dimension}
        return {"embedding": self.vector.tolist(), "dimension": dimension}

    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        return self.vector


def embed_batch(output: np.ndarray, normalize: bool) -> list[Embedding | ItemError]:
    """Each row of ``output`` as one vector, scaled to unit length when ``normalize``; a row not all finite fails."""
    rows: np.ndarray = output.reshape(len(output), -1).astype(np.float32)
    finite: list[bool] = np.isfinite(rows).all(axis=1).tolist()
    if normalize:
        norms = np.linalg.norm(np.where(np.array(finite)[:, None], rows, 0), axis=1, keepdims=True)
        rows = (rows / np.where(norms > 0, norms, 1)).astype(np.float32)  # a zero vector stays zero: no direction
    return [Embedding(row) if ok else not_finite() for row, ok in zip(rows, finite, strict=True)]


def postprocess(out: ModelOutputs) -> Sequence[ItemAnswer | ItemError]:
    return embed_batch(out.tensors[out.names[0]], out.spec.normalize)


KIND = OutputKind(
    name="embedding",
    postprocess=postprocess,
    answer_schema={
        "properties": {
            "embedding": {
                "oneOf": [
                    {"type": "array", "items": {"type": "number"}},
                    {"type": "string", "contentEncoding": "base64", "description": "little-endian float32"},
                ]
            },
            "dimension": {"type": "integer", "minimum": 0},
            "encoding": {"const": "base64"},
        },
        "required": ["embedding", "dimension"],
    },
    every_output=False,
    classifies=False,
)
