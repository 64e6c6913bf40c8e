"""The process's life: build the services, serve, and stop cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import sys

from tornado.ioloop import PeriodicCallback

from app.admission import Admission
from app.backend.rpc_errors import BackendFailures
from app.serving.server import build_services, listen, make_app
from app.settings import Settings

REPORT_PERIOD_S = 10.0

log = logging.getLogger("imagegate")


def say(line: str) -> None:
    """One line on stdout in one write, so pre-forked workers sharing the pipe never interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report_period(admission: Admission, failures: BackendFailures, period_s: float = REPORT_PERIOD_S) -> None:
    """A line each for the requests refused at capacity and the backend's failures since the last call.

    Neither gets a log line per request: in an overload or an outage that would be hundreds a second.
    """
    refused = admission.take_refused()
    if refused:
        log.warning("at capacity: %d requests answered 503 in the last %.0f s", refused, period_s)
    counts = failures.take()
    if counts:
        summary = ", ".join(f"{count} {code}" for code, count in sorted(counts.items()))
        log.warning("backend failures in the last %.0f s: %s", period_s, summary)


async def serve(settings: Settings, announce: str = "", sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, finish, and close the backend channels."""
    services = await build_services(settings)
    server, port = listen(make_app(services), settings, sockets)
    report = functools.partial(report_period, services.pipeline.admission, services.client.failures)
    reporter = PeriodicCallback(report, REPORT_PERIOD_S * 1000)
    reporter.start()
    host = settings.server.host
    say(f"imagegate: ready on http://{host}:{port} models={','.join(settings.models)}")
    if announce:
        say(announce.format(host=host, port=port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    reporter.stop()
    report()
    server.stop()
    await server.close_all_connections()
    await services.close()
    say("imagegate: stopped")
