"""Composition root: builds the services from settings, wires them into the routes, and listens."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.web
from tornado.http1connection import HTTP1ConnectionParameters
from tornado.netutil import Resolver, bind_sockets

from app.admission import Admission
from app.backend.tfserving import TFServingClient
from app.batcher import MicroBatcher
from app.cache import AnswerCache
from app.fetch.fetcher import UrlFetcher
from app.memory import MemoryBudget
from app.models import ModelRegistry, load_registry
from app.observability.metrics import Metrics
from app.observability.requests import RequestObserver
from app.pipeline import Pipeline
from app.routing.poller import TargetPoller
from app.routing.routed import RoutedPredict
from app.routing.router import ModelRouter, ServedVersions
from app.routing.shadow import Shadow
from app.serving.cpus import CGROUP_ROOT, cpu_budget
from app.serving.interfaces import interface_routes
from app.serving.lingering import Lingering, LingeringHTTPServer, LingerLimits
from app.serving.memory_limit import memory_budget
from app.serving.state import ProcessState
from app.settings import Settings, SettingsError
from app.status import ModelStatus
from handlers.admin import RouteAdminHandler
from handlers.base import NotFoundHandler
from handlers.health import LivenessHandler, ReadinessHandler
from handlers.metrics import MetricsHandler
from handlers.models import ModelListHandler, ModelMetadataHandler, ModelStatusHandler
from handlers.page import PageFileHandler
from handlers.ports import RequestLimits
from handlers.predict import PredictHandler
from processing.image import DecodeLimits

if TYPE_CHECKING:  # OpenTelemetry is imported only when tracing is configured (build_services)
    from app.observability.tracing import RequestTracer

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MODEL = r"/v1/models/([^/:]+)"
VERSION = r"(?:/versions/([0-9]{1,18}))?"


@dataclass
class Services:
    """Everything the routes depend on; closed together on shutdown."""

    settings: Settings
    client: TFServingClient
    fetcher: UrlFetcher
    executor: ThreadPoolExecutor
    pipeline: Pipeline
    status: ModelStatus
    state: ProcessState
    metrics: Metrics | None  # None with server.metrics: false
    tracer: RequestTracer | None = None  # None without tracing.otlp_endpoint
    poller: TargetPoller | None = None  # which route targets TF Serving has AVAILABLE (app/routing/poller.py)

    async def render_metrics(self) -> tuple[bytes, str]:
        """The scrape: model states asked of the backend now, the in-flight gauge, then every metric."""
        assert self.metrics is not None
        self.metrics.set_model_states(await self.status.version_states())
        self.metrics.in_flight.set(self.pipeline.admission.in_flight)
        return self.metrics.render()

    async def close(self) -> None:
        if self.poller is not None:
            await self.poller.stop()
        await self.fetcher.close()
        await self.client.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.tracer is not None:  # flushes queued spans over HTTP: off the event loop
            await asyncio.to_thread(self.tracer.shutdown)


async def build_services(
    settings: Settings, resolver: Resolver | None = None, cgroup_root: Path = CGROUP_ROOT, keep: Services | None = None
) -> Services:
    """Connect to the backend, complete the models from their metadata, and build the pipeline.

    The decode pool has ``server.decode_threads`` threads, or as many as the CPU quota of the process's
    cgroup under ``cgroup_root`` allows (rounded up), or one per core when there is no quota.
    """
    metrics = _metrics(settings, keep.metrics if keep is not None else None)
    tracer = _tracer(settings)  # each generation its own: closing the old one flushes its spans
    client = TFServingClient(settings.backend.load_balancing, settings.server.retry_after_s)
    if metrics is not None:
        client.failures.on_failure = metrics.count_backend_failure
        client.failures.on_retry = metrics.backend_retries.inc
    try:
        models = await load_registry(settings, client)
    except BaseException:
        await client.close()
        raise
    threads = settings.server.decode_threads or cpu_budget(cgroup_root)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
    fetcher = UrlFetcher.from_settings(settings.fetch, resolver)
    memory = _memory(settings, cgroup_root, metrics, keep.pipeline.memory if keep is not None else None)
    predictor = RoutedPredict(
        client=client,
        batcher=MicroBatcher(client, metrics.observe_batch) if metrics is not None else MicroBatcher(client),
        routers=make_routers(settings, metrics),
        shadow=Shadow(client, metrics.observe_shadow) if metrics is not None else Shadow(client),
        timeout_s=settings.backend.timeout_s,
    )
    if metrics is not None:
        predictor.on_fallback = metrics.count_canary_fallback
    if settings.cache.max_bytes:  # a cached answer to "the latest version" must not outlive it
        predictor.versions = ServedVersions({name: model.routes.poll_s for name, model in settings.models.items()})
    pipeline = Pipeline(
        models=models,
        fetcher=fetcher,
        predictor=predictor,
        executor=executor,
        decode_limits=DecodeLimits(settings.decode.max_pixels, settings.decode.max_side),
        fetch_concurrency_per_request=settings.fetch.max_concurrent_per_request,
        admission=Admission(settings.server.max_in_flight_images, settings.server.retry_after_s),
        memory=memory,
        cache=_cache(settings, models, memory, metrics, keep.pipeline.cache if keep is not None else None),
    )
    status = ModelStatus(models, client, predictor.routers)
    state = keep.state if keep is not None else ProcessState()  # a reload keeps the process's state
    poller = TargetPoller(models, predictor.routers, client, predictor.versions)
    await poller.poll()  # before the routes serve: a target that is not AVAILABLE gets nothing from the start
    poller.start()
    return Services(settings, client, fetcher, executor, pipeline, status, state, metrics, tracer, poller)


def _metrics(settings: Settings, kept: Metrics | None) -> Metrics | None:
    """The metrics, carried over a reload (counts go on) when they stay on."""
    if not settings.server.metrics:
        return None
    if kept is None:
        return Metrics(settings.server.max_in_flight_images)
    kept.in_flight_limit.set(settings.server.max_in_flight_images)
    return kept


def _memory(settings: Settings, cgroup_root: Path, metrics: Metrics | None, kept: MemoryBudget | None) -> MemoryBudget:
    """The memory budget, one for the process's life: a reload keeps what requests hold and changes the settings.

    A derived budget is derived once, at start: after a burst the resident memory is no idle footprint.
    """
    s = settings.server
    derived_once = kept is not None and not s.memory_budget_bytes
    capacity = kept.capacity if kept is not None and derived_once else memory_budget(settings, 1, cgroup_root)
    budget = kept if kept is not None else MemoryBudget(capacity, s.memory_wait_s, s.retry_after_s)
    on_change = metrics.watch_memory_held(lambda: budget.held) if metrics is not None else None
    if metrics is not None:
        metrics.memory_budget.set(capacity)
    budget.configure(capacity, s.memory_wait_s, s.retry_after_s, on_change)
    return budget


def _cache(
    settings: Settings, models: ModelRegistry, memory: MemoryBudget, metrics: Metrics | None, kept: AnswerCache | None
) -> AnswerCache:
    """The answer cache, one for the process's life (its bytes are in the memory budget); a reload empties it."""
    cache = kept
    if cache is None and metrics is not None:
        cache = AnswerCache(memory, metrics.count_cache_lookups, metrics.count_cache_evictions, metrics.cache_bytes.set)
    cache = cache if cache is not None else AnswerCache(memory)
    cache.configure(settings.cache.max_bytes, models)
    return cache


def make_routers(settings: Settings, metrics: Metrics | None) -> dict[str, ModelRouter]:
    """A router for every model whose settings give it routes."""
    on_rollback = metrics.count_rollback if metrics is not None else (lambda model, target: None)
    return {
        name: ModelRouter(name, model.routes, on_rollback)
        for name, model in settings.models.items()
        if model.routes.targets
    }


def _tracer(settings: Settings) -> RequestTracer | None:
    """Spans over OTLP when an endpoint is configured; else None, and OpenTelemetry is never imported."""
    if not settings.tracing.otlp_endpoint:
        return None
    try:
        from app.observability.tracing import RequestTracer
    except ImportError as exc:
        missing = f"tracing.otlp_endpoint: set, but {exc.name} is missing: install imagegate[tracing]"
        raise SettingsError(missing) from exc
    return RequestTracer(settings.tracing)


def make_app(services: Services) -> tornado.web.Application:
    s = services.settings.server
    limits = RequestLimits(
        s.max_json_bytes, s.max_upload_bytes, s.max_body_bytes, s.max_parts, s.max_images_per_request
    )
    predict = {"pipeline": services.pipeline, "limits": limits, "memory": services.pipeline.memory}
    models = {"models": services.status}
    routes: list[Any] = [
        (rf"{MODEL}(?:/versions/([0-9]{{1,18}})|/labels/([^/:]+))?:predict", PredictHandler, predict),
        (r"/v1/models/?", ModelListHandler, {**models, "limits": limits}),
        (rf"{MODEL}{VERSION}/metadata", ModelMetadataHandler, models),
        (rf"{MODEL}{VERSION}/?", ModelStatusHandler, models),
        (r"/healthz", LivenessHandler),
        (r"/readyz", ReadinessHandler, {"process": services.state}),
        *([(r"/metrics", MetricsHandler, {"render": services.render_metrics})] if services.metrics else []),
        *admin_routes(services),
    ]
    # --- the ecosystem's interfaces: /openapi.json and the Open Inference Protocol v2 (app/serving/interfaces.py)
    routes += interface_routes(
        services.settings,
        services.pipeline.models,
        services.pipeline,
        services.status,
        services.state,
        limits,
        services.pipeline.memory,
    )
    # --- end of the ecosystem's interfaces
    if s.page:
        routes += [
            (
                r"/()",
                PageFileHandler,
                {"path": str(STATIC_DIR), "default_filename": "index.html"},
            ),
            (r"/static/(.*)", PageFileHandler, {"path": str(STATIC_DIR)}),
        ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        xsrf_cookies=False,
        log_function=RequestObserver(
            services.metrics, services.pipeline.admission, services.pipeline.models, services.tracer
        ),
        process_state=services.state,  # counted requests, Connection: close while draining (handlers/base.py)
    )


def listen(
    app: tornado.web.Application, settings: Settings, sockets: list[socket.socket] | None = None
) -> tuple[LingeringHTTPServer, int]:
    """Serve on ``sockets`` (pre-forked workers share them) or the configured address; returns the real port."""
    s = settings.server
    server = LingeringHTTPServer(app, xheaders=False)
    server.lingering = Lingering(LingerLimits.of(s))
    server.conn_params = connection_params(settings)
    sockets = sockets or bind_sockets(s.port, s.host)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])


def connection_params(settings: Settings) -> HTTP1ConnectionParameters:
    """How the HTTP server reads each new connection (set again on a reload).

    ``max_body_size`` bounds what Tornado reads into memory for a route that takes no body; over it, Tornado
    answers a bare 400 and the connection lingers (``app/serving/lingering.py``). The routes that take a body lift
    it for their request and refuse with their own 413 (``handlers/intake.py``).
    """
    s = settings.server
    return HTTP1ConnectionParameters(
        decompress=False,
        chunk_size=65536,
        max_header_size=64 * 1024,
        header_timeout=s.idle_connection_timeout_s,
        max_body_size=s.max_body_bytes + (1 << 20),
        body_timeout=s.body_timeout_s,
    )


def configure_server(server: LingeringHTTPServer, services: Services) -> None:
    """Point the server's connection handling at ``services``' settings and metrics (at start and on a reload)."""
    server.conn_params = connection_params(services.settings)
    server.lingering.limits = LingerLimits.of(services.settings.server)
    server.lingering.observer = services.metrics


def start_http(services: Services, sockets: list[socket.socket] | None = None) -> tuple[LingeringHTTPServer, int]:
    """The routes served on ``sockets`` or the configured address; the process is ready from here."""
    server, port = listen(make_app(services), services.settings, sockets)
    configure_server(server, services)
    services.state.serving()
    return server, port


def admin_routes(services: Services) -> list[Any]:
    """``/admin/`` operations, only when ``server.admin_token`` is set."""
    token = services.settings.server.admin_token
    if not token:
        return []
    admin = {"routers": services.pipeline.predictor.routers, "token": token}
    return [(rf"{MODEL}/routes(?:/([^/:]+))?:(promote|reset)".replace("/v1/", "/admin/", 1), RouteAdminHandler, admin)]
