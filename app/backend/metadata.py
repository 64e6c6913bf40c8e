"""GetModelMetadata answers as plain values: each signature's input and output names, dtypes and shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.backend.protos import get_model_metadata_pb2
from app.backend.tensors import dtype_name
from app.backend.types import ModelMetadata, SignatureInfo, TensorInfo


def parse_metadata(response: get_model_metadata_pb2.GetModelMetadataResponse) -> ModelMetadata:
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    if "signature_def" in response.metadata:
        response.metadata["signature_def"].Unpack(sig_map)
    signatures = {
        key: SignatureInfo(_tensor_infos(sig.inputs), _tensor_infos(sig.outputs))
        for key, sig in sig_map.signature_def.items()
    }
    raw = {
        key: {
            "method_name": sig.method_name,
            "inputs": {k: _info_json(v) for k, v in sig.inputs.items()},
            "outputs": {k: _info_json(v) for k, v in sig.outputs.items()},
        }
        for key, sig in sig_map.signature_def.items()
    }
    version = int(response.model_spec.version.value)
    return ModelMetadata(response.model_spec.name, version, signatures, {"signature_def": raw})


def _tensor_infos(infos: Mapping[str, Any]) -> dict[str, TensorInfo]:
    result = {}
    for key, info in infos.items():
        shape = None if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
        result[key] = TensorInfo(key, dtype_name(info.dtype), shape)
    return result


def _info_json(info: Any) -> dict[str, Any]:
    shape = None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
    return {"dtype": dtype_name(info.dtype), "shape": shape, "name": info.name}
