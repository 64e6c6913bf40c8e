"""The model registry: each configured model, completed from the backend's metadata at start.

What the configuration leaves out (input name, dtype, size, output name) is taken from
the signature; what it states must agree with the signature, or the tier refuses to
start with a message naming the key. ``ServedModel.batched`` is the one place that
decides whether a model's Predicts go through the micro-batcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelMetadata, ModelRef, SignatureInfo, TensorInfo
from app.errors import ModelNotFound
from app.model_inputs import encoded_inputs, refuse_bytes_as_pixels, takes_bytes
from app.settings import ModelSettings, Settings, SettingsError
from processing.errors import GatewayError
from processing.image import PreprocessSpec
from processing.kinds.base import InputKind, InputSpec, OutputKind
from processing.kinds.encoded import IMAGE_FIELD, ORIENTATION_FIELD, EncodedSpec
from processing.kinds.registry import DECODED, ENCODED, OUTPUT_KINDS
from processing.postprocess import PostprocessSpec, parse_labels

METADATA_RETRY_S = 0.2


@dataclass(frozen=True)
class ServedModel:
    """A configured model, completed from the backend's metadata at start."""

    name: str  # public name, in our URLs
    served_name: str  # name on the backend
    address: str
    signature: str
    input_name: str
    output_names: tuple[str, ...]
    preprocess: InputSpec  # what the input kind is told: the preprocessing (decoded), or the inputs (encoded)
    postprocess: PostprocessSpec
    max_batch_size: int
    max_wait_ms: float
    max_in_flight: int  # batched Predicts under way at once
    input_kind: InputKind = DECODED  # how the images that arrived become the batch (processing/kinds)
    orientation_input: str | None = None  # encoded: the input of each image's EXIF orientation, if the model has one
    output_shapes: Mapping[str, tuple[int, ...] | None] = field(
        default_factory=dict
    )  # the signature's (None: rank unknown)

    @property
    def output_kind(self) -> OutputKind:
        """What the outputs mean: how they become answers (processing/kinds)."""
        return OUTPUT_KINDS[self.postprocess.kind]

    @property
    def batched(self) -> bool:
        """Whether rows of concurrent requests share Predicts (``batching.max_batch_size`` above 1)."""
        return self.max_batch_size > 1

    def ref(self, version: int | None = None, label: str | None = None) -> ModelRef:
        return ModelRef(self.served_name, version, label, self.signature)

    def predict_inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """A batch's rows as the Predict's inputs: the one array, or an encoded batch's fields (processing/kinds)."""
        if rows.dtype.names is None:
            return {self.input_name: rows}
        inputs = {self.input_name: rows[IMAGE_FIELD]}
        if self.orientation_input is not None:
            inputs[self.orientation_input] = rows[ORIENTATION_FIELD]
        return inputs

    def describe(self) -> dict[str, Any]:
        spec = self.preprocess
        described: dict[str, Any]
        if isinstance(spec, EncodedSpec):
            described = {"name": self.input_name, "dtype": "string", "shape": [-1], "encoding": "bytes"}
            described["orientation"] = self.orientation_input
        else:
            described = {"name": self.input_name, "dtype": spec.dtype, "shape": [-1, *spec.shape]}
        return {
            "name": self.name,
            "signature": self.signature,
            "input": described,
            "output": {"kind": self.postprocess.kind, "names": list(self.output_names)},
            "top_k": self.postprocess.top_k,
            "threshold": self.postprocess.threshold,
        }


class ModelRegistry(Mapping[str, ServedModel]):
    """The served models by public name; ``get_model`` refuses a name that is not configured."""

    def __init__(self, models: Mapping[str, ServedModel]) -> None:
        self._models = dict(models)

    def __getitem__(self, name: str) -> ServedModel:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def get_model(self, name: str) -> ServedModel:
        """The configured model called ``name``; raises ModelNotFound."""
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not configured")
        return model


async def load_registry(settings: Settings, client: TFServingClient) -> ModelRegistry:
    """Every configured model, completed from its metadata; raises SettingsError on a mismatch."""
    names = list(settings.models)
    metadata = await asyncio.gather(*(_wait_for_metadata(settings, client, name) for name in names))
    return ModelRegistry(
        {name: build_served_model(name, settings, meta) for name, meta in zip(names, metadata, strict=True)}
    )


async def _wait_for_metadata(settings: Settings, client: TFServingClient, name: str) -> ModelMetadata:
    model = settings.models[name]
    address = settings.backend_address(name)
    ref = ModelRef(model.served_name or name)
    deadline = time.monotonic() + settings.backend.startup_timeout_s
    while True:
        try:
            return await client.metadata(address, ref, timeout=min(5.0, settings.backend.timeout_s))
        except GatewayError as exc:  # NOT_FOUND too: the backend may still be loading it
            if time.monotonic() >= deadline:
                raise SettingsError(
                    f"models.{name}: no metadata from the backend at {address} within "
                    f"{settings.backend.startup_timeout_s:g} s: {exc.log_message}"
                ) from exc
        await asyncio.sleep(METADATA_RETRY_S)


def build_served_model(name: str, settings: Settings, meta: ModelMetadata) -> ServedModel:
    model = settings.models[name]
    path = f"models.{name}"
    signature = meta.signatures.get(model.signature)
    if signature is None:
        known = ", ".join(sorted(meta.signatures)) or "none"
        raise SettingsError(f"{path}.signature: {model.signature!r} is not in the model (it has: {known})")
    input_name, spec, input_kind, orientation = _inputs(model, signature, path)
    return ServedModel(
        name=name,
        served_name=model.served_name or name,
        address=settings.backend_address(name),
        signature=model.signature,
        input_name=input_name,
        output_names=(names := _output_names(model, signature, path)),
        output_shapes={name: signature.outputs[name].shape for name in names},
        preprocess=spec,
        postprocess=_postprocess_spec(model),
        max_batch_size=model.batching.max_batch_size,
        max_wait_ms=model.batching.max_wait_ms,
        max_in_flight=model.batching.max_in_flight,
        input_kind=input_kind,
        orientation_input=orientation,
    )


def _inputs(model: ModelSettings, signature: SignatureInfo, path: str) -> tuple[str, InputSpec, InputKind, str | None]:
    """The image input's name, the input kind and what it is told, and the orientation input's name if any."""
    if takes_bytes(model.input, signature):
        encoded = encoded_inputs(model.input, signature, path)
        return encoded.image.name, encoded.spec, ENCODED, encoded.orientation
    info = _pick(signature.inputs, model.input.name, f"{path}.input.name")
    refuse_bytes_as_pixels(model.input, info, path)
    return info.name, _preprocess_spec(model, info, path), DECODED, None


def _pick(infos: Mapping[str, TensorInfo], wanted: str | None, key: str) -> TensorInfo:
    if wanted is not None:
        if wanted not in infos:
            raise SettingsError(f"{key}: {wanted!r} is not in the signature (it has: {', '.join(sorted(infos))})")
        return infos[wanted]
    if len(infos) != 1:
        raise SettingsError(f"{key}: the signature has {len(infos)} tensors ({', '.join(sorted(infos))}); name one")
    return next(iter(infos.values()))


def _output_names(model: ModelSettings, signature: SignatureInfo, path: str) -> tuple[str, ...]:
    if OUTPUT_KINDS[model.postprocess.kind].every_output and model.output is None:
        return tuple(sorted(signature.outputs))
    return (_pick(signature.outputs, model.output, f"{path}.output").name,)


def _preprocess_spec(model: ModelSettings, info: TensorInfo, path: str) -> PreprocessSpec:
    cfg = model.input
    dtype = cfg.dtype or info.dtype
    if dtype != info.dtype:
        raise SettingsError(f"{path}.input.dtype: configured {cfg.dtype} but the model takes {info.dtype}")
    if dtype not in ("float32", "uint8"):
        raise SettingsError(f"{path}.input.dtype: the model takes {dtype}; only float32 and uint8 are supported")
    height, width, channels = _image_dims(info, cfg.layout, path)
    height = _agree(cfg.height, height, f"{path}.input.height")
    width = _agree(cfg.width, width, f"{path}.input.width")
    expected_channels = 1 if cfg.color == "gray" else 3
    if channels not in (-1, expected_channels):
        raise SettingsError(
            f"{path}.input.color: {cfg.color} gives {expected_channels} channels; the model takes {channels}"
        )
    return PreprocessSpec(
        height=height,
        width=width,
        resize=cfg.resize,
        resize_shorter=cfg.resize_shorter,
        color=cfg.color,
        dtype=dtype,  # type: ignore[arg-type]
        scale=cfg.scale,
        mean=cfg.mean,
        std=cfg.std,
        layout=cfg.layout,
        pad_value=cfg.pad_value,
    )


def _image_dims(info: TensorInfo, layout: str, path: str) -> tuple[int, int, int]:
    if info.shape is None:
        return -1, -1, -1
    if len(info.shape) != 4:
        raise SettingsError(f"{path}.input: the model's input has shape {list(info.shape)}, not a 4-D image batch")
    if layout == "nchw":
        _, c, h, w = info.shape
    else:
        _, h, w, c = info.shape
    return h, w, c


def _agree(configured: int | None, discovered: int, key: str) -> int:
    if configured is not None and discovered > 0 and configured != discovered:
        raise SettingsError(f"{key}: configured {configured} but the model takes {discovered}")
    value = configured if configured is not None else discovered
    if value <= 0:
        raise SettingsError(f"{key}: the model does not fix it; set it in the configuration")
    return value


def _postprocess_spec(model: ModelSettings) -> PostprocessSpec:
    post = model.postprocess
    labels: tuple[str, ...] = ()
    if post.labels is not None:
        labels = parse_labels(post.labels.read_text(encoding="utf-8"))
    return PostprocessSpec(
        kind=post.kind,
        activation=post.activation,
        top_k=post.class_cap(),
        labels=labels,
        threshold=post.threshold,
        normalize=post.normalize,
        score_threshold=post.score_threshold,
        max_detections=post.max_detections,
        label_offset=post.label_offset,
        nms_iou=post.nms_iou,
        nms_mode=post.nms_mode,
        detection_outputs=post.detection_outputs,
    )
