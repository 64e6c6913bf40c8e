"""One frozen settings object, built from a YAML file, an environment mapping and CLI overrides.

Precedence: defaults < file < environment (``IMAGEGATE_SECTION__KEY=value``) < CLI
(``--set section.key=value``). Values from the environment and the CLI are parsed as
YAML scalars (``8080``, ``true``, ``[a, b]``). Any unknown key, wrong type or bad value
raises ``SettingsError`` naming the key. Nothing outside ``app/`` reads the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from app.model_settings import InputSettings as InputSettings  # re-exported: part of ModelSettings
from app.model_settings import PostprocessSettings as PostprocessSettings
from app.settings_checks import validate
from app.typed_yaml import SettingsError as SettingsError  # re-exported: the error of loading settings
from app.typed_yaml import build, read_file, set_path

ENV_PREFIX = "IMAGEGATE_"
MIB = 1 << 20


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
    # A connection answered before its request's body arrived reads and drops the rest before it is closed (nginx's
    # lingering close; app/serving/lingering.py): for at most this long, this long without a byte, and this many bytes.
    lingering_time_s: float = 30.0
    lingering_timeout_s: float = 5.0
    lingering_max_bytes: int = 128 * MIB
    lingering_max_connections: int = 256  # lingering at once; more are closed at once (0: none lingers)
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
    # glibc (app/serving/allocator.py): buffers below this reuse heap memory; 0: glibc's default
    malloc_mmap_threshold: int = 4 * MIB
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
class CacheSettings:
    # Answers to repeated images (app/cache.py), held in the memory budget; 0: off. A hit's speed tells a client
    # that someone sent the same image before: docs/operations.md#answer-cache says when to turn it on.
    max_bytes: int = 0


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
    """When a canary is rolled back: the rule and its measured error rates are in docs/rollouts.md."""

    window: int = 200  # the canary's last requests judged, against the others' requests over the same time span
    min_samples: int = 50  # a canary with fewer requests in its window is not judged
    max_error_rate_increase: float = 0.05  # failure rates closer than this are never a rollback
    max_latency_ratio: float = 1.25  # latencies divided by this before the rank test: slower by less is no rollback
    confidence: float = 0.999  # of each test of a check (one-sided): 1 - its false-positive rate
    consecutive: int = 2  # checks in a row that must find the canary worse before it is rolled back
    check_every: int = 25  # canary requests between checks
    warmup_requests: int = 10  # each route's first requests after a (re)start are not judged for latency

    REPLACED_KEYS: ClassVar[dict[str, str]] = {
        "max_p99_ratio": "max_latency_ratio, a margin on a rank test of latencies (docs/rollouts.md)"
    }


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
    poll_s: float = 1.0  # each worker asks TF Serving this often whether the targets are AVAILABLE; 0: at start only
    # A canary's Predict gets this share of backend.timeout_s; when the canary fails it (a backend error, its share
    # of the time spent, a model failure such as NaN outputs), a route that is no canary answers within the rest.
    canary_timeout_share: float = 0.5


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
    cache: CacheSettings = field(default_factory=CacheSettings)
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
