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

from app.routing.config import RoutesSettings
from app.typed_yaml import SettingsError as SettingsError  # re-exported: the error of loading settings
from app.typed_yaml import build, read_file, set_path
from processing.sources import MAX_TOP_K

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
    # Bytes that requests may hold at once in this process (bodies, downloads, decoded images, tensors);
    # 0: derived from the container's memory limit (app/serving/memory_limit.py). Beyond it, a request waits
    # up to memory_wait_s for room, then is answered 503 overloaded (app/memory.py).
    memory_budget_bytes: int = 0
    memory_wait_s: float = 1.0
    retry_after_s: int = 1
    metrics: bool = True  # serve /metrics (Prometheus) and record them
    config_poll_s: float = 0.0  # > 0: reload when the config file changes, checked this often (docs/rollouts.md)
    admin_token: str = ""  # a bearer token for /admin/ (route promote and reset); empty: no admin endpoints
    drain_delay_s: float = 5.0  # after SIGTERM: /readyz says 503 but requests are still served, while endpoints update
    shutdown_timeout_s: float = 20.0  # then: no new connections; in-flight requests get this long to finish
    decode_threads: int = 0  # 0: the CPU quota rounded up, else one per core (app/serving/cpus.py)
    malloc_mmap_threshold: int = 4 * MIB  # glibc: buffers below this reuse heap memory (app/allocator.py); 0: default
    malloc_trim_threshold: int = 64 * MIB  # glibc: free heap kept per arena before returning it; 0: default
    malloc_hand_back_s: float = 5.0  # after a burst, free heap handed back when quiet, checked this often; 0: never


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
class InputSettings:
    name: str | None = None  # discovered from metadata when left out
    dtype: Literal["float32", "uint8"] | None = None
    height: int | None = None
    width: int | None = None
    resize: Literal["stretch", "crop", "letterbox"] = "stretch"
    resize_shorter: int | None = None
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Literal["nhwc", "nchw"] = "nhwc"
    pad_value: int = 0


@dataclass(frozen=True)
class PostprocessSettings:
    kind: Literal["classification", "raw"] = "classification"
    softmax: bool = False
    top_k: int = 5
    labels: Path | None = None  # relative paths are relative to the config file


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 0  # 0 or 1: no micro-batching across requests
    max_wait_ms: float = 2.0
    max_in_flight: int = 2  # Predicts under way per model; meanwhile rows fill the next batch


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
    _validate_memory(settings)
    _positive(settings.backend, "backend", ("timeout_s",))
    _positive(settings.server, "server", ("shutdown_timeout_s",))
    for key in ("drain_delay_s", "config_poll_s", "malloc_hand_back_s"):
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


def largest_reservation(settings: Settings) -> int:
    """The most one body or one download may add to the memory budget at once: a budget must hold it."""
    s = settings.server
    return max(s.max_json_bytes, s.max_upload_bytes, s.max_body_bytes, settings.fetch.max_bytes)


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
    inp = model.input
    for key in ("height", "width", "resize_shorter"):
        value = getattr(inp, key)
        if value is not None and not 0 < value <= 8192:
            raise SettingsError(f"{path}.input.{key}: must be from 1 to 8192")
    channels = 1 if inp.color == "gray" else 3
    for key in ("mean", "std"):
        if len(getattr(inp, key)) not in (1, channels):
            raise SettingsError(f"{path}.input.{key}: needs 1 or {channels} values")
    if any(s == 0 for s in inp.std):
        raise SettingsError(f"{path}.input.std: must not be zero")
    uses_normalisation = inp.scale != 1.0 or any(inp.mean) or any(s != 1.0 for s in inp.std)
    if inp.dtype == "uint8" and uses_normalisation:
        raise SettingsError(f"{path}.input: a uint8 input takes raw pixels; remove scale/mean/std")
    if not 1 <= model.postprocess.top_k <= MAX_TOP_K:
        raise SettingsError(f"{path}.postprocess.top_k: must be from 1 to {MAX_TOP_K}")
    if model.batching.max_batch_size < 0 or model.batching.max_wait_ms < 0 or model.batching.max_in_flight < 1:
        raise SettingsError(f"{path}.batching: values must not be negative")
    _validate_routes(path, model.routes)
    labels = model.postprocess.labels
    if labels is not None and not labels.is_file():
        raise SettingsError(f"{path}.postprocess.labels: file {labels} does not exist")


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
