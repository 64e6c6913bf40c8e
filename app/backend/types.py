"""Plain values the TF Serving client takes and returns: no gRPC, no protos but ``ModelRef.to_proto``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.backend.protos import model_pb2


@dataclass(frozen=True)
class ModelRef:
    """Which model, version or label, and signature a call is for ("" leaves the signature to the backend)."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""

    def to_proto(self) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name, signature_name=self.signature)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        return spec

    def describe(self) -> str:
        """The model as a client names it in an error message."""
        if self.version is not None:
            return f"{self.name!r} version {self.version}"
        if self.label is not None:
            return f"{self.name!r} label {self.label!r}"
        return repr(self.name)


@dataclass(frozen=True)
class PredictResult:
    version: int
    outputs: Mapping[str, np.ndarray]
    sent_at: float  # time.perf_counter() when the Predict went out
    answered_at: float  # and when its answer had arrived


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # "AVAILABLE", "LOADING", ...
    error_code: int
    error_message: str


@dataclass(frozen=True)
class TensorInfo:
    name: str  # the key in the signature's input or output map
    dtype: str  # numpy name, e.g. "float32"
    shape: tuple[int, ...] | None  # -1 for unknown dimensions; None for unknown rank


@dataclass(frozen=True)
class SignatureInfo:
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signatures: Mapping[str, SignatureInfo]
    raw: Mapping[str, Any]  # JSON-ready copy, for the metadata endpoint
