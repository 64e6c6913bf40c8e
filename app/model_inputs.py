"""Which input kind a configured model has, and its inputs, from its signature: decoded pixels or encoded bytes.

A model whose image input is a string (``DT_STRING``: it decodes in its graph) takes the images as they arrived
(``input.encoding: bytes``, discovered when left out), and their EXIF orientations in a second input when it has
one (``input.orientation_name``, else an input called ``orientation``); without one the tier logs a warning at start,
since ``tf.io.decode_image`` ignores the orientation (docs/models.md). Any other model takes decoded pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.backend.types import SignatureInfo, TensorInfo
from app.model_settings import InputSettings
from app.typed_yaml import SettingsError
from processing.kinds.encoded import EncodedSpec

log = logging.getLogger("imagegate")

STRING = "string"  # a string input's dtype, as app/backend/metadata.py names it
ORIENTATION = "orientation"  # the orientation input's name when the configuration names none
ENCODED_KEYS = frozenset({"name", "encoding", "orientation_name"})  # the input settings an encoded model reads


@dataclass(frozen=True)
class EncodedInputs:
    image: TensorInfo
    orientation: str | None  # the orientation input's name, if the model has one

    @property
    def spec(self) -> EncodedSpec:
        return EncodedSpec(orientation=self.orientation is not None)


def takes_bytes(cfg: InputSettings, signature: SignatureInfo) -> bool:
    """Whether the model gets the images as they arrived: configured so, or discovered (its image input is a string)."""
    if cfg.encoding is not None:
        return cfg.encoding == "bytes"
    if cfg.name is not None:
        info = signature.inputs.get(cfg.name)
        return info is not None and info.dtype == STRING
    return any(info.dtype == STRING for info in signature.inputs.values())


def encoded_inputs(cfg: InputSettings, signature: SignatureInfo, path: str) -> EncodedInputs:
    """The image input and the orientation input of a model that takes bytes; SettingsError naming the key."""
    _refuse_pixel_settings(cfg, path)
    strings = {name: info for name, info in signature.inputs.items() if info.dtype == STRING}
    name = cfg.name if cfg.name is not None else _only(strings, f"{path}.input.name")
    image = signature.inputs.get(name)
    if image is None or image.dtype != STRING:
        raise SettingsError(f"{path}.input.name: {name!r} is not a string input (the signature's: {_names(strings)})")
    if image.shape is not None and len(image.shape) != 1:
        raise SettingsError(
            f"{path}.input: {name!r} has shape {list(image.shape)}; the tier sends one image a row, [-1]"
        )
    orientation = _orientation(cfg, signature.inputs, path)
    extra = set(signature.inputs) - {name, orientation}
    if extra:
        raise SettingsError(f"{path}.input: the signature also takes {_names(extra)}, which the tier cannot fill")
    if orientation is None:
        log.warning(
            "%s: the model takes encoded images but has no %r input; tf.io.decode_image ignores EXIF orientation, so "
            "photos taken on their side reach it on their side (docs/models.md)",
            path,
            ORIENTATION,
        )
    return EncodedInputs(image, orientation)


def refuse_bytes_as_pixels(cfg: InputSettings, image: TensorInfo, path: str) -> None:
    """A model that decodes its images cannot be sent pixels, nor have an orientation input when it takes pixels."""
    if image.dtype == STRING:
        raise SettingsError(f"{path}.input.encoding: pixels, but {image.name!r} takes encoded images; set bytes")
    if cfg.orientation_name is not None:
        raise SettingsError(f"{path}.input.orientation_name: only a model that takes bytes has an orientation input")


def _orientation(cfg: InputSettings, inputs: Mapping[str, TensorInfo], path: str) -> str | None:
    name = cfg.orientation_name if cfg.orientation_name is not None else ORIENTATION
    info = inputs.get(name)
    if info is None:
        if cfg.orientation_name is not None:
            raise SettingsError(f"{path}.input.orientation_name: {name!r} is not in the signature")
        return None
    if info.dtype != "int32" or (info.shape is not None and len(info.shape) != 1):
        raise SettingsError(f"{path}.input.orientation_name: {name!r} must be int32 [-1], not {info.dtype}")
    return name


def _refuse_pixel_settings(cfg: InputSettings, path: str) -> None:
    defaults = InputSettings()
    for field in dataclasses.fields(InputSettings):
        if field.name not in ENCODED_KEYS and getattr(cfg, field.name) != getattr(defaults, field.name):
            raise SettingsError(f"{path}.input.{field.name}: the model decodes the images itself (bytes); remove it")


def _only(infos: Mapping[str, TensorInfo], key: str) -> str:
    if len(infos) != 1:
        raise SettingsError(f"{key}: the signature has {len(infos)} string inputs ({_names(infos)}); name one")
    return next(iter(infos))


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"
