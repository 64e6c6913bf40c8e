"""Processing specs, limits and fetchers for tests, with the settings' defaults for whatever a test leaves out.

The product writes each default once, in ``app/settings.py``; processing's specs have none
of their own. Tests that build a spec by hand take the rest from the same place.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from tornado.netutil import Resolver

from app.fetch.fetcher import UrlFetcher
from app.fetch.limits import FetchLimits, PoolLimits
from app.fetch.policy import AddressPolicy
from app.settings import DecodeSettings, FetchSettings, InputSettings, PostprocessSettings
from processing.image import DecodeLimits, PreprocessSpec
from processing.postprocess import PostprocessSpec


def preprocess_spec(height: int, width: int, **changes: Any) -> PreprocessSpec:
    """A spec for ``height`` x ``width``; float32 unless ``dtype`` says otherwise."""
    d = InputSettings()
    values: dict[str, Any] = {
        "resize": d.resize,
        "resize_shorter": d.resize_shorter,
        "color": d.color,
        "dtype": d.dtype or "float32",
        "scale": d.scale,
        "mean": d.mean,
        "std": d.std,
        "layout": d.layout,
        "pad_value": d.pad_value,
    }
    return PreprocessSpec(height=height, width=width, **{**values, **changes})


def postprocess_spec(**changes: Any) -> PostprocessSpec:
    d = PostprocessSettings()
    values: dict[str, Any] = {
        "kind": d.kind,
        "activation": d.activation,
        "top_k": d.class_cap(),
        "labels": (),
        "threshold": d.threshold,
        "normalize": d.normalize,
        "score_threshold": d.score_threshold,
        "max_detections": d.max_detections,
        "label_offset": d.label_offset,
        "nms_iou": d.nms_iou,
        "nms_mode": d.nms_mode,
        "detection_outputs": d.detection_outputs,
    }
    return PostprocessSpec(**{**values, **changes})


def decode_limits(**changes: int) -> DecodeLimits:
    d = DecodeSettings()
    return DecodeLimits(**{"max_pixels": d.max_pixels, "max_side": d.max_side, **changes})


def fetch_limits(**changes: Any) -> FetchLimits:
    return FetchLimits.from_settings(dataclasses.replace(FetchSettings(), **changes))


def pool_limits(**changes: Any) -> PoolLimits:
    return PoolLimits.from_settings(dataclasses.replace(FetchSettings(), **changes))


def url_fetcher(
    policy: AddressPolicy, resolver: Resolver | None = None, tls: ssl.SSLContext | None = None, **changes: Any
) -> UrlFetcher:
    """A fetcher with ``policy`` and the ``fetch.*`` settings' defaults but for ``changes``."""
    settings = dataclasses.replace(FetchSettings(), **changes)
    return UrlFetcher(policy, FetchLimits.from_settings(settings), PoolLimits.from_settings(settings), resolver, tls)
