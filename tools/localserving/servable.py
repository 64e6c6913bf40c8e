"""One loaded SavedModel version: its signatures' concrete functions, warmed up, and its SignatureDefs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tools.localserving.errors import FailedPrecondition, InvalidArgument, error_for_code
from tools.localserving.signature import DEFAULT_SIGNATURE, InputSpec, SignatureSpec
from tools.localserving.tensors import BY_ENUM, STRING, Array
from tools.localserving.warmup import read_records, run_records

log = logging.getLogger("localserving")

SERVE_TAG = "serve"


class Signature:
    """A signature's concrete function, called directly with the request's arrays."""

    def __init__(self, name: str, function: Any) -> None:
        self.spec = _spec_of(name, function)
        self._function = function

    def run(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """All outputs for ``inputs``, which ``spec.check_inputs`` has accepted."""
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        try:
            outputs = self._function(**tensors)
        except tf.errors.OpError as exc:
            raise error_for_code(exc.error_code, exc.message) from exc
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(str(exc)) from exc
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def warm_up(self) -> None:
        """Run once at batch size 1, so the first request does not pay for graph optimisation."""
        self.run({name: _zeros(spec) for name, spec in self.spec.inputs.items()})


@dataclass(frozen=True, eq=False)
class Servable:
    """A model version that can answer requests; requests keep a reference until they are answered."""

    name: str
    version: int
    path: Path
    signatures: Mapping[str, Signature]
    signature_defs: Any  # tensorflow.serving.SignatureDefMap, as GetModelMetadata returns it
    handle: Any  # the loaded SavedModel: the functions' variables live as long as it does

    def signature(self, name: str) -> Signature:
        """The signature ``name`` ("" means serving_default); FailedPrecondition, as TF Serving, if absent."""
        key = name or DEFAULT_SIGNATURE
        found = self.signatures.get(key)
        if found is None:
            raise FailedPrecondition(f'Serving signature key "{key}" not found.')
        return found


def load_servable(name: str, version: int, path: Path, warmup: bool = True) -> Servable:
    """Load the SavedModel in ``path`` with the serve tag and warm it up before it is AVAILABLE.

    With ``warmup`` and a warm-up file, its records (``warmup.py``), whose failure fails the load, as in TF
    Serving; else zeros at batch size 1 on each signature, whose failure is only logged.
    """
    started = time.monotonic()
    loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    signatures = _signatures(loaded.signatures)
    servable = Servable(name, version, path, MappingProxyType(signatures), read_signature_defs(path), loaded)
    records = read_records(path) if warmup else None
    if records is None:
        for signature in signatures.values():
            _warm_up(signature, f"{name} version {version}")
    else:
        run_records(records, servable.signature)
    warmed = "zeros" if records is None else f"{len(records)} warm-up records"
    log.info(
        "loaded %s version %d from %s in %.2f s (warmed with %s)",
        name,
        version,
        path,
        time.monotonic() - started,
        warmed,
    )
    return servable


def read_signature_defs(path: Path) -> Any:
    """The SignatureDefs of the serve MetaGraph, read from saved_model.pb as TF Serving reports them."""
    saved_model = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    if binary.exists():
        saved_model.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), saved_model)
    result = get_model_metadata_pb2.SignatureDefMap()
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            for key, signature_def in meta_graph.signature_def.items():
                result.signature_def[key].CopyFrom(signature_def)
            break
    return result


def _signatures(functions: Mapping[str, Any]) -> dict[str, Signature]:
    signatures = {}
    for key, function in functions.items():
        try:
            signatures[key] = Signature(key, function)
        except ValueError as exc:
            log.warning("signature %s cannot be served and is skipped: %s", key, exc)
    return signatures


def _warm_up(signature: Signature, what: str) -> None:
    try:
        signature.warm_up()
    except Exception as exc:  # a model that rejects zeros still serves real inputs
        log.warning("warm-up of %s signature %s failed: %s", what, signature.spec.name, exc)


def _spec_of(name: str, function: Any) -> SignatureSpec:
    _, keyword_specs = function.structured_input_signature
    inputs = {alias: _input_spec(alias, spec) for alias, spec in keyword_specs.items()}
    return SignatureSpec(name, MappingProxyType(inputs), tuple(sorted(function.structured_outputs)))


def _input_spec(alias: str, tensor_spec: Any) -> InputSpec:
    dtype = BY_ENUM.get(tensor_spec.dtype.as_datatype_enum)
    if dtype is None:
        raise ValueError(f"input {alias!r} has dtype {tensor_spec.dtype.name}, which requests cannot carry")
    shape = tensor_spec.shape
    return InputSpec(dtype, None if shape.rank is None else tuple(shape.as_list()))


def _zeros(spec: InputSpec) -> Array:
    shape = (1,) if spec.shape is None else tuple(1 if size is None else size for size in spec.shape)
    return np.full(shape, b"" if spec.dtype is STRING else 0, dtype=spec.dtype.numpy)
