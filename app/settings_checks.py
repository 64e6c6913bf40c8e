"""The settings' checks that span several values (``app/settings.py`` holds the keys and their defaults).

Each raises ``SettingsError`` naming the key.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from app.model_settings import validate_input, validate_postprocess
from app.typed_yaml import SettingsError

if TYPE_CHECKING:
    from app.settings import (
        BatchingSettings,
        ModelSettings,
        RollbackSettings,
        RoutesSettings,
        Settings,
        TracingSettings,
    )

# OpenCV's own decode limits, a backstop behind decode.* set where the process starts (app/serving/opencv.py).
OPENCV_MAX_PIXELS = 1 << 26  # 67 megapixels: above any sane configured cap
OPENCV_MAX_SIDE = 1 << 15


def validate(settings: Settings) -> None:
    """Checks that span several values; raises SettingsError naming the key."""
    _positive(settings.server, "server", ("max_json_bytes", "max_upload_bytes", "max_body_bytes", "max_parts"))
    _positive(settings.server, "server", ("max_images_per_request", "max_in_flight_images"))
    _positive(settings.fetch, "fetch", ("connect_timeout_s", "total_timeout_s", "max_bytes", "max_concurrent"))
    _positive(settings.fetch, "fetch", ("max_concurrent_per_request",))
    for key in ("keepalive_idle_s", "keepalive_per_host", "keepalive_total"):
        if getattr(settings.fetch, key) < 0:
            raise SettingsError(f"fetch.{key}: must not be negative")
    _positive(settings.decode, "decode", ("max_pixels", "max_side"))
    if settings.decode.max_pixels > OPENCV_MAX_PIXELS or settings.decode.max_side > OPENCV_MAX_SIDE:
        raise SettingsError(
            f"decode: max_pixels must be at most {OPENCV_MAX_PIXELS} and max_side at most {OPENCV_MAX_SIDE} "
            "(OpenCV's own backstop limits)"
        )
    _validate_memory(settings)
    _positive(settings.backend, "backend", ("timeout_s",))
    _positive(settings.server, "server", ("shutdown_timeout_s", "lingering_time_s", "lingering_timeout_s"))
    _positive(settings.server, "server", ("lingering_max_bytes",))
    for key in ("drain_delay_s", "config_poll_s", "lingering_max_connections", "malloc_hand_back_s"):
        if getattr(settings.server, key) < 0:
            raise SettingsError(f"server.{key}: must not be negative")
    if not 0 < settings.server.port < 65536 and settings.server.port != 0:
        raise SettingsError("server.port: must be from 0 to 65535")
    for key in ("allow_cidrs", "deny_cidrs"):
        for i, cidr in enumerate(getattr(settings.fetch, key)):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise SettingsError(f"fetch.{key}[{i}]: {cidr!r} is not an IP network") from exc
    _validate_tracing(settings.tracing)
    _validate_cache(settings)
    for name, model in settings.models.items():
        _validate_model(name, model)


def largest_reservation(settings: Settings) -> int:
    """The most one body or one download may add to the memory budget at once: a budget must hold it."""
    s = settings.server
    return max(s.max_json_bytes, s.max_upload_bytes, s.max_body_bytes, settings.fetch.max_bytes)


def _validate_cache(settings: Settings) -> None:
    """The cache's bytes come out of the memory budget: a set budget must leave room for the requests."""
    max_bytes, budget = settings.cache.max_bytes, settings.server.memory_budget_bytes
    if max_bytes < 0:
        raise SettingsError("cache.max_bytes: must not be negative (0: no answer cache)")
    if budget and max_bytes >= budget // 2:
        raise SettingsError(
            f"cache.max_bytes: must be less than half of server.memory_budget_bytes ({budget}): "
            "the cache's bytes are held in the requests' budget"
        )


def _validate_memory(settings: Settings) -> None:
    s = settings.server
    if s.memory_budget_bytes < 0:
        raise SettingsError("server.memory_budget_bytes: must not be negative (0: from the container's limit)")
    if 0 < s.memory_budget_bytes < largest_reservation(settings):
        raise SettingsError(
            f"server.memory_budget_bytes: must be at least {largest_reservation(settings)}, the largest body or "
            "download one request may hold (server.max_body_bytes, server.max_upload_bytes, fetch.max_bytes)"
        )
    if not 0 <= s.memory_wait_s < s.body_timeout_s:
        raise SettingsError("server.memory_wait_s: must be from 0 to less than server.body_timeout_s")


def _validate_tracing(tracing: TracingSettings) -> None:
    if tracing.otlp_endpoint:
        url = urllib.parse.urlsplit(tracing.otlp_endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SettingsError("tracing.otlp_endpoint: must be an http:// or https:// URL, or empty for no tracing")
    if not tracing.service_name:
        raise SettingsError("tracing.service_name: must not be empty")
    if not 0.0 <= tracing.sample_ratio <= 1.0:
        raise SettingsError("tracing.sample_ratio: must be from 0 to 1")


def _positive(section: Any, prefix: str, keys: Iterable[str]) -> None:
    for key in keys:
        if getattr(section, key) <= 0:
            raise SettingsError(f"{prefix}.{key}: must be positive")


def _validate_model(name: str, model: ModelSettings) -> None:
    path = f"models.{name}"
    validate_input(path, model.input)
    validate_postprocess(path, model.postprocess)
    _validate_batching(path, model.batching)
    _validate_routes(path, model.routes)


def _validate_batching(path: str, batching: BatchingSettings) -> None:
    for key in ("max_batch_size", "max_wait_ms"):
        if getattr(batching, key) < 0:
            raise SettingsError(f"{path}.batching.{key}: must not be negative")
    if batching.max_in_flight < 1:
        raise SettingsError(f"{path}.batching.max_in_flight: must be at least 1")


def _validate_routes(path: str, routes: RoutesSettings) -> None:
    names = [t.name for t in routes.targets]
    if len(set(names)) != len(names):
        raise SettingsError(f"{path}.routes.targets: names must differ")
    for i, target in enumerate(routes.targets):
        if (target.version is None) == (target.label is None):
            raise SettingsError(f"{path}.routes.targets[{i}]: give exactly one of version and label")
        if target.weight < 0:
            raise SettingsError(f"{path}.routes.targets[{i}].weight: must not be negative")
    if routes.targets and not sum(t.weight for t in routes.targets):
        raise SettingsError(f"{path}.routes.targets: the weights must not all be zero")
    shadow = routes.shadow
    if not 0 <= shadow.fraction <= 1:
        raise SettingsError(f"{path}.routes.shadow.fraction: must be from 0 to 1")
    if shadow.fraction and (shadow.version is None) == (shadow.label is None):
        raise SettingsError(f"{path}.routes.shadow: give exactly one of version and label")
    if routes.poll_s < 0:
        raise SettingsError(f"{path}.routes.poll_s: must not be negative")
    if not 0 < routes.canary_timeout_share < 1:
        raise SettingsError(f"{path}.routes.canary_timeout_share: must be between 0 and 1, such as 0.5")
    _validate_rollback(f"{path}.routes.rollback", routes.rollback)


def _validate_rollback(path: str, rollback: RollbackSettings) -> None:
    if rollback.window < 1 or not 1 <= rollback.min_samples <= rollback.window:
        raise SettingsError(f"{path}: need 1 <= min_samples <= window")
    if not 0 < rollback.confidence < 1:
        raise SettingsError(f"{path}.confidence: must be between 0 and 1, such as 0.999")
    if rollback.max_latency_ratio < 1:
        raise SettingsError(f"{path}.max_latency_ratio: must be at least 1")
    if not 0 <= rollback.max_error_rate_increase < 1:
        raise SettingsError(f"{path}.max_error_rate_increase: must be from 0 to 1")
    if rollback.consecutive < 1 or rollback.check_every < 1 or rollback.warmup_requests < 0:
        raise SettingsError(f"{path}: consecutive and check_every must be positive, warmup_requests not negative")
