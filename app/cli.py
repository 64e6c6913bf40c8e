"""The tier's command line: ``python -m app --config deploy/config.dev.yaml``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from app.allocator import tune_malloc
from app.pipeline import Admission
from app.server import build_services, listen, make_app
from app.settings import Settings, SettingsError, load_settings

SHED_REPORT_S = 10.0
PR_SET_PDEATHSIG = 1

log = logging.getLogger("imagegate")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="imagegate", description="Image-inference gateway for TF Serving.")
    parser.add_argument("--config", type=Path, help="YAML settings file (see deploy/config.example.yaml)")
    parser.add_argument("--host", help="listen address (server.host)")
    parser.add_argument("--port", help="listen port (server.port)")
    parser.add_argument("--backend", help="default TF Serving address host:port (backend.address)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, e.g. fetch.max_bytes=1000000",
    )
    parser.add_argument("--workers", type=int, default=1, help="pre-forked processes sharing the socket (default 1)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = list(args.set)
    for flag, key in (("host", "server.host"), ("port", "server.port"), ("backend", "backend.address")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_settings(args.config, environ, overrides)


def say(line: str) -> None:
    """One line on stdout in one write, so pre-forked workers sharing the pipe never interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report_shed(admission: Admission, period_s: float = SHED_REPORT_S) -> None:
    """One line for the requests refused at capacity since the last call (they get no access log line each)."""
    refused = admission.take_refused()
    if refused:
        log.warning("at capacity: %d requests answered 503 in the last %.0f s", refused, period_s)


async def serve(settings: Settings, announce: str = "", sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, finish, and close the backend channels."""
    services = await build_services(settings)
    server, port = listen(make_app(services), settings, sockets)
    shed_report = PeriodicCallback(functools.partial(report_shed, services.pipeline.admission), SHED_REPORT_S * 1000)
    shed_report.start()
    host = settings.server.host
    say(f"imagegate: ready on http://{host}:{port} models={','.join(settings.models)}")
    if announce:
        say(announce.format(host=host, port=port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    shed_report.stop()
    server.stop()
    await server.close_all_connections()
    await services.close()
    say("imagegate: stopped")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args, os.environ if environ is None else environ)
        tune_malloc(settings.server.malloc_mmap_threshold, settings.server.malloc_trim_threshold)
        if args.workers > 1:
            return run_workers(settings, args.workers)
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"imagegate: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def exit_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM if the parent dies (even by SIGKILL), where Linux allows it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


def run_workers(settings: Settings, workers: int) -> int:
    """Pre-fork ``workers`` processes that accept on one shared socket; SIGTERM/SIGINT stop them all."""
    sockets = bind_sockets(settings.server.port, settings.server.host)
    if settings.server.decode_threads == 0:  # share the cores between workers instead of one pool per core each
        threads = max(1, (os.cpu_count() or 2) // workers)
        settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, decode_threads=threads))
    children = []
    parent = os.getpid()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            exit_with_parent(parent)
            try:
                asyncio.run(serve(settings, sockets=sockets))
            except SettingsError as exc:
                print(f"imagegate: configuration error: {exc}", file=sys.stderr)
                os._exit(2)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    return max(codes, default=0)
