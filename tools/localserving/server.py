"""Load the models, start the gRPC server, print the readiness line, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tools.localserving.batching import BatchScheduler
from tools.localserving.config import ModelConfig, ServerOptions
from tools.localserving.models import ModelSet, ServedModel, VersionPoller, nothing_to_serve
from tools.localserving.reload import ConfigFilePoller, ConfigReloader
from tools.localserving.servable import load_servable
from tools.localserving.service import BatchingRunner, Runner, add_services, run_directly
from tools.localserving.signals import StopSignal
from tools.localserving.transport import HOST, READY_PREFIX, server_options

log = logging.getLogger("localserving")

STOP_GRACE_SECONDS = 5.0
# What --enable_grpc_healthcheck_service reports: "" is the server as a whole (what a Kubernetes gRPC probe
# asks for); TF Serving also marks its two services, by these unqualified names.
HEALTH_SERVICES = ("", "ModelService", "PredictionService")


class StartupError(Exception):
    """The server cannot start: a model failed to load, has no versions, or the port is taken."""


def serve(options: ServerOptions, stop: StopSignal) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code."""
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the readiness line only
        models = load_models(options.models, stop, options.model_warmup)
    if stop.is_set():
        return 0
    scheduler = BatchScheduler(options.batching) if options.batching else None
    if scheduler:
        scheduler.start()
    checks = health.HealthServicer() if options.health_check else None
    runner = BatchingRunner(scheduler) if scheduler else run_directly
    reloader = ConfigReloader(models, options.allow_unavailable_labels)
    server, port = _start_server(options, models, reloader, runner, checks)
    _report_health(checks, health_pb2.HealthCheckResponse.SERVING)  # the models are loaded: serving
    poller = VersionPoller(models, options.poll_wait_seconds)
    if options.poll_wait_seconds > 0:
        poller.start()
    config_poller = _config_poller(options, reloader)
    print(f"{READY_PREFIX}{HOST}:{port} models={models.describe()}", flush=True)
    log.info("stopping on %s", signal.Signals(stop.wait()).name)
    _shut_down([p for p in (config_poller, poller) if p], scheduler, server, checks)
    return 0


def _config_poller(options: ServerOptions, reloader: ConfigReloader) -> ConfigFilePoller | None:
    """--model_config_file_poll_wait_seconds: the file re-read and reloaded every N seconds (0: never)."""
    if options.model_config_file is None or options.config_poll_wait_seconds <= 0:
        return None
    poller = ConfigFilePoller(reloader, options.model_config_file, options.config_poll_wait_seconds)
    poller.start()
    return poller


def _report_health(checks: health.HealthServicer | None, status: int) -> None:
    if checks is None:
        return
    for service in HEALTH_SERVICES:
        checks.set(service, status)


def _shut_down(
    pollers: Sequence[ConfigFilePoller | VersionPoller],
    scheduler: BatchScheduler | None,
    server: Any,
    checks: health.HealthServicer | None,
) -> None:
    """Report NOT_SERVING, stop polling, run what is queued for batching, let calls in flight finish."""
    if checks:
        checks.enter_graceful_shutdown()  # NOT_SERVING for good, also to Watch streams already open
    for poller in pollers:
        poller.stop()
    if scheduler:
        scheduler.stop()
    server.stop(STOP_GRACE_SECONDS).wait()
    log.info("stopped")


def load_models(configs: Sequence[ModelConfig], stop: StopSignal, warmup: bool = True) -> ModelSet:
    """Load every model's aspired versions; StartupError if any fails or a model has nothing to serve.

    ``warmup``: run each version's warm-up records, where it has them (``--enable_model_warmup``).
    """
    load = functools.partial(load_servable, warmup=warmup)
    served: list[ServedModel] = []
    for config in configs:
        if stop.is_set():
            break
        model = ServedModel(config, load)
        errors = model.refresh()
        if errors:
            raise StartupError("; ".join(errors))
        if not model.available():
            raise StartupError(nothing_to_serve(config))
        served.append(model)
    return ModelSet(served, load)


def _start_server(
    options: ServerOptions,
    models: ModelSet,
    reloader: ConfigReloader,
    run: Runner,
    checks: health.HealthServicer | None,
) -> tuple[Any, int]:
    executor = ThreadPoolExecutor(options.grpc_max_threads, thread_name_prefix="localserving-grpc")
    server = grpc.server(executor, options=server_options(options.grpc_channel_arguments))
    add_services(server, models, reloader, run, options.typed_field_answers)
    if checks:
        _report_health(checks, health_pb2.HealthCheckResponse.NOT_SERVING)  # until the server has started
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    address = f"{HOST}:{options.port}"
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}")
    server.start()
    return server, port
