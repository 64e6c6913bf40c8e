"""One frozen settings object, built from a YAML file, an environment mapping and CLI overrides.

Precedence: defaults < file < environment (``IMAGEGATE_SECTION__KEY=value``) < CLI
(``--set section.key=value``). Values from the environment and the CLI are parsed as
YAML scalars (``8080``, ``true``, ``[a, b]``). Any unknown key, wrong type or bad value
raises ``SettingsError`` naming the key. Nothing outside ``app/`` reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.model_settings import InputSettings as InputSettings  # re-exported: part of ModelSettings
from app.model_settings import PostprocessSettings as PostprocessSettings
from app.model_settings import validate_input, validate_postprocess
from app.typed_yaml import SettingsError as SettingsError  # re-exported: the error of loading settings
from app.typed_yaml import build, read_file, set_path

ENV_PREFIX = "IMAGEGATE_"
MIB = 1 << 20
# OpenCV's own decode limits, a backstop behind decode.* set where the process starts (app/serving/opencv.py).
OPENCV_MAX_PIXELS = 1 << 26  # 67 megapixels: above any sane configured cap
OPENCV_MAX_SIDE = 1 << 15


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    page: bool = True  # serve the browser page at /
    max_json_bytes: int = 1 * MIB
    max_upload_bytes: int = 20 * MIB  # per uploaded file
    max_body_bytes: int = 64 * MIB  # whole request body
    max_parts: int = 32  # multipart parts
    max_images_per_request: int = 32
    idle_connection_timeout_s: float = 60.0
    body_timeout_s: float = 30.0
    max_in_flight_images: int = 512  # backpressure bound across all requests
    retry_after_s: int = 1
    metrics: bool = True  # serve /metrics (Prometheus) and record them
    config_poll_s: float = 0.0  # > 0: reload when the config file changes, checked this often (docs/rollouts.md)
    admin_token: str = ""  # a bearer token for /admin/ (route promote and reset); empty: no admin endpoints
    drain_delay_s: float = 5.0  # after SIGTERM: /readyz says 503 but requests are still served, while endpoints update
    shutdown_timeout_s: float = 20.0  # then: no new connections; in-flight requests get this long to finish
    decode_threads: int = 0  # 0: the CPU quota rounded up, else one per core (app/serving/cpus.py)
    # glibc (app/serving/allocator.py): buffers below this reuse heap memory; 0: glibc's default
    malloc_mmap_threshold: int = 32 * MIB
    malloc_trim_threshold: int = 64 * MIB  # glibc: free heap kept per arena before returning it; 0: default


@dataclass(frozen=True)
class FetchSettings:
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 10.0
    max_bytes: int = 20 * MIB
    max_redirects: int = 3
    max_concurrent: int = 64  # downloads in flight per process
    max_concurrent_per_request: int = 8
    keepalive_idle_s: float = 4.0  # an idle connection to a source is kept this long for reuse; 0 = no reuse
    keepalive_per_host: int = 16  # idle connections kept per source address (and port and TLS name)
    keepalive_total: int = 256  # idle connections kept across all source hosts
    allow_cidrs: tuple[str, ...] = ()  # allowed even if in a denied range (e.g. 127.0.0.0/8 for dev)
    deny_cidrs: tuple[str, ...] = ()  # denied on top of the built-in forbidden ranges
    allow_hosts: tuple[str, ...] = ()  # if set, only these host names may be fetched
    deny_hosts: tuple[str, ...] = ()
    content_types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "application/octet-stream",
    )


@dataclass(frozen=True)
class DecodeSettings:
    max_pixels: int = 16_777_216
    max_side: int = 16_384


@dataclass(frozen=True)
class BackendSettings:
    address: str = "127.0.0.1:8500"
    timeout_s: float = 10.0  # deadline of every Predict call
    startup_timeout_s: float = 30.0  # how long to wait for model metadata at start
    load_balancing: Literal["pick_first", "round_robin"] = "pick_first"


@dataclass(frozen=True)
class TracingSettings:
    otlp_endpoint: str = ""  # OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); empty: no tracing
    service_name: str = "imagegate"  # the spans' service.name
    sample_ratio: float = 1.0  # of traces that start here; an incoming traceparent's sampled flag decides its own


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 0  # 0 or 1: no micro-batching across requests
    max_wait_ms: float = 2.0
    max_in_flight: int = 2  # Predicts under way per model; meanwhile rows fill the next batch


# The routes of a model (app/routing/, docs/rollouts.md).


@dataclass(frozen=True)
class RouteTarget:
    """One side of a split: a TF Serving version or label, its weight, and whether it is a canary."""

    name: str
    version: int | None = None
    label: str | None = None  # exactly one of version and label
    weight: int = 0  # shares are weight / sum of weights
    canary: bool = False  # watched against the others, and rolled back when worse


@dataclass(frozen=True)
class RollbackSettings:
    window: int = 200  # the last requests of each side compared
    min_samples: int = 50  # a canary with fewer requests in its window is not judged
    max_error_rate_increase: float = 0.05  # canary item error rate minus stable's, as a fraction
    max_p99_ratio: float = 3.0  # canary p99 latency over stable's


@dataclass(frozen=True)
class ShadowSettings:
    """A share of the routed requests also sent to another version or label; its answers are only measured."""

    version: int | None = None
    label: str | None = None
    fraction: float = 0.0  # 0: no shadow traffic


@dataclass(frozen=True)
class RoutesSettings:
    key_header: str = "X-User-Id"  # sticky key; without it, the request id
    targets: tuple[RouteTarget, ...] = ()  # none: the model's default version, as without routes
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)


@dataclass(frozen=True)
class ModelSettings:
    backend: str | None = None  # address; default: backend.address
    served_name: str | None = None  # name on the backend; default: the key
    signature: str = "serving_default"
    output: str | None = None  # discovered when the signature has one output
    input: InputSettings = field(default_factory=InputSettings)
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    routes: RoutesSettings = field(default_factory=RoutesSettings)  # canaries: docs/rollouts.md


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    models: Mapping[str, ModelSettings] = field(default_factory=dict)

    def backend_address(self, model: str) -> str:
        return self.models[model].backend or self.backend.address


def load_settings(path: Path | None, environ: Mapping[str, str], overrides: Iterable[str] = ()) -> Settings:
    """Build and validate the settings; raises SettingsError naming the offending key."""
    raw: dict[str, Any] = read_file(path) if path else {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
            set_path(raw, dotted, value, f"environment variable {key}")
    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"override {item!r} must look like section.key=value")
        set_path(raw, dotted.strip(), value, f"override {dotted.strip()}")
    settings: Settings = build(Settings, raw, "")
    base = path.parent if path else Path.cwd()
    settings = dataclasses.replace(settings, models=_resolve_label_paths(settings.models, base))
    validate(settings)
    return settings


def _resolve_label_paths(models: Mapping[str, ModelSettings], base: Path) -> dict[str, ModelSettings]:
    resolved = {}
    for name, model in models.items():
        labels = model.postprocess.labels
        if labels is not None and not labels.is_absolute():
            post = dataclasses.replace(model.postprocess, labels=(base / labels).resolve())
            model = dataclasses.replace(model, postprocess=post)
        resolved[name] = model
    return resolved


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
    _positive(settings.backend, "backend", ("timeout_s",))
    _positive(settings.server, "server", ("shutdown_timeout_s",))
    for key in ("drain_delay_s", "config_poll_s"):
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
    for name, model in settings.models.items():
        _validate_model(name, model)


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
    rollback = routes.rollback
    if rollback.window < 1 or not 1 <= rollback.min_samples <= rollback.window:
        raise SettingsError(f"{path}.routes.rollback: need 1 <= min_samples <= window")
