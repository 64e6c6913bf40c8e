"""What every model kind provides: an output kind's per-image answer and postprocess, an input kind's batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processing.batch import InputBatch
from processing.errors import ItemError, ModelOutputInvalid
from processing.footprint import Footprint
from processing.geometry import ImageGeometry
from processing.image import DecodeLimits, PreprocessSpec
from processing.kinds.encoded import EncodedSpec
from processing.postprocess import PostprocessSpec
from processing.sniff import ImageBytes
from processing.sources import NO_DETECTION_PARAMS, DetectionParams, VectorEncoding


class ItemAnswer(ABC):
    """One image's answer, typed by its model's output kind; each protocol renders it its own way."""

    @abstractmethod
    def to_json(self, encoding: VectorEncoding) -> dict[str, Any]:
        """The fields this image's item has in a v1 predict answer, beside ``source``; vectors as ``encoding`` says."""

    @abstractmethod
    def tensor_row(self, output: str, class_count: int | None) -> np.ndarray | list[str]:
        """This image's row of the v2 output tensor ``output``: numbers (FP32), or text (BYTES) with a class count."""


@dataclass(frozen=True)
class ModelOutputs:
    """What a kind's postprocess is given: one answer or error per row of the batch comes back."""

    tensors: Mapping[str, np.ndarray]  # the model's output tensors (first axis: the batch's rows)
    names: Sequence[str]  # the model's output names
    spec: PostprocessSpec  # its postprocess settings
    top_k: int | None  # the request's
    geometries: Sequence[ImageGeometry | None]  # each row's image geometry (None: an encoded input has none)
    detection: DetectionParams = NO_DETECTION_PARAMS  # the request's detection settings, over the model's


Postprocess = Callable[[ModelOutputs], Sequence[ItemAnswer | ItemError]]


@dataclass(frozen=True)
class TensorDescription:
    """One output tensor as the Open Inference Protocol describes it (v2 model metadata)."""

    name: str
    datatype: str  # the protocol's: FP32, BYTES
    shape: tuple[int, ...]  # -1 for a dimension that varies (the batch's first)


@dataclass(frozen=True)
class OutputKind:
    """What a model's outputs mean: how they become answers, and what an answer looks like in JSON."""

    name: str  # ``postprocess.kind`` in the configuration
    postprocess: Postprocess
    answer_schema: Mapping[str, Any]  # JSON Schema of an item's fields beside ``source``: properties, required
    every_output: bool  # without a configured ``output``, every output of the signature (else its only one)
    classifies: bool  # answers classes: v2's classification extension applies
    request_params: frozenset[str] = frozenset()  # the parameters of its own a request may set (DetectionParams)
    v2_outputs: tuple[TensorDescription, ...] = ()  # v2 outputs it answers beside the model's (its answers, rendered)


# What a model's input kind is told about the model: its preprocessing (decoded), or its inputs (encoded).
InputSpec = PreprocessSpec | EncodedSpec
# Every arrived image's bytes, the model's input spec and the decode limits: the rows of the batch the backend gets.
ToBatch = Callable[[Sequence[ImageBytes], InputSpec, DecodeLimits], InputBatch]
# The same arguments: the bytes ``ToBatch`` and the Predict it feeds will hold, for the memory budget.
Holds = Callable[[Sequence[ImageBytes], InputSpec, DecodeLimits], Footprint]


@dataclass(frozen=True)
class InputKind:
    """What a model's input takes, so how the bytes that arrived become its batch (CPU work, in the thread pool)."""

    name: str
    to_batch: ToBatch
    in_thread_pool: bool  # its work is worth a hand-off to the thread pool (decoding); else it is cheaper than one
    footprint: Holds  # what making the batch and sending it will hold in memory, known before it starts


def not_finite() -> ModelOutputInvalid:
    return ModelOutputInvalid("the model's output for this image holds values that are not finite numbers")


def finite(values: np.ndarray) -> bool:
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())  # kind: cheaper than issubdtype
