"""Load the models, start the gRPC server, print the readiness line, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from tools.localserving.batching import BatchScheduler
from tools.localserving.config import ModelConfig, ServerOptions
from tools.localserving.models import ModelSet, ServedModel, VersionPoller, nothing_to_serve
from tools.localserving.servable import load_servable
from tools.localserving.service import BatchingRunner, Runner, add_services, run_directly
from tools.localserving.signals import StopSignal
from tools.localserving.transport import GRPC_OPTIONS, HOST

log = logging.getLogger("localserving")

READY_PREFIX = "localserving: ready on "
STOP_GRACE_SECONDS = 5.0


class StartupError(Exception):
    """The server cannot start: a model failed to load, has no versions, or the port is taken."""


def serve(options: ServerOptions, stop: StopSignal) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code."""
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the readiness line only
        models = load_models(options.models, stop)
    if stop.is_set():
        return 0
    scheduler = BatchScheduler(options.batching) if options.batching else None
    if scheduler:
        scheduler.start()
    server, port = _start_server(options, models, BatchingRunner(scheduler) if scheduler else run_directly)
    poller = VersionPoller(models, options.poll_wait_seconds)
    if options.poll_wait_seconds > 0:
        poller.start()
    print(f"{READY_PREFIX}{HOST}:{port} models={models.describe()}", flush=True)
    log.info("stopping on %s", signal.Signals(stop.wait()).name)
    _shut_down(poller, scheduler, server)
    return 0


def _shut_down(poller: VersionPoller, scheduler: BatchScheduler | None, server: Any) -> None:
    """Stop polling, run what is queued for batching, let calls in flight finish."""
    poller.stop()
    if scheduler:
        scheduler.stop()
    server.stop(STOP_GRACE_SECONDS).wait()
    log.info("stopped")


def load_models(configs: Sequence[ModelConfig], stop: StopSignal) -> ModelSet:
    """Load every model's aspired versions; StartupError if any fails or a model has nothing to serve."""
    served: list[ServedModel] = []
    for config in configs:
        if stop.is_set():
            break
        model = ServedModel(config, load_servable)
        errors = model.refresh()
        if errors:
            raise StartupError("; ".join(errors))
        if not model.available():
            raise StartupError(nothing_to_serve(config))
        served.append(model)
    return ModelSet(served)


def _start_server(options: ServerOptions, models: ModelSet, run: Runner) -> tuple[Any, int]:
    executor = ThreadPoolExecutor(options.grpc_max_threads, thread_name_prefix="localserving-grpc")
    server = grpc.server(executor, options=GRPC_OPTIONS)
    add_services(server, models, run, options.typed_field_answers)
    address = f"{HOST}:{options.port}"
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}")
    server.start()
    return server, port
