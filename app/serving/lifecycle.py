"""The process's life: build the services, serve, drain on SIGTERM or SIGINT, and close."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from app.admission import Admission
from app.backend.rpc_errors import BackendFailures
from app.memory import MemoryBudget
from app.serving.allocator import HandBack
from app.serving.lingering import Lingering
from app.serving.reload import Reloader
from app.serving.server import build_services, start_http
from app.serving.state import ProcessState, wait_for_event
from app.settings import ServerSettings, Settings

REPORT_PERIOD_S = 10.0

log = logging.getLogger("imagegate")


def say(line: str) -> None:
    """One line on stdout in one write, so pre-forked workers sharing the pipe never interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report_period(
    admission: Admission,
    failures: BackendFailures,
    period_s: float = REPORT_PERIOD_S,
    lingering: Lingering | None = None,
    memory: MemoryBudget | None = None,
) -> None:
    """A line each for the requests refused at capacity or for want of memory, the backend's failures and the
    refused connections closed at once (``server.lingering_max_connections`` lingering already) since the last call.

    None gets a log line per request: in an overload or an outage that would be hundreds a second.
    """
    refused = admission.take_refused()
    if refused:
        log.warning("at capacity: %d requests answered 503 in the last %.0f s", refused, period_s)
    short = memory.take_refused() if memory is not None else 0
    if short:
        log.warning("memory budget full: %d requests answered 503 in the last %.0f s", short, period_s)
    counts = failures.take()
    if counts:
        summary = ", ".join(f"{count} {code}" for code, count in sorted(counts.items()))
        log.warning("backend failures in the last %.0f s: %s", period_s, summary)
    if lingering is not None and (capped := lingering.take_capped()):
        log.warning(
            "lingering close: %d refused connections closed at once in the last %.0f s (%d lingering)",
            capped,
            period_s,
            lingering.count,
        )


class Signals:
    """SIGTERM and SIGINT as events: the first asks for a drain, a second for an exit at once."""

    def __init__(self) -> None:
        self.first: signal.Signals | None = None
        self.received = asyncio.Event()
        self.again = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.first is None:
            self.first = sig
            self.received.set()
        else:
            self.again.set()

    async def wait_again(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True if a second signal came meanwhile."""
        return await wait_for_event(self.again, timeout_s)


async def serve(
    settings: Settings,
    announce: str = "",
    sockets: list[socket.socket] | None = None,
    load: Callable[[], Settings] | None = None,
    config_file: Path | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain (see ``drain``) and close; the process's exit code.

    SIGHUP reloads the configuration through ``load`` (app/serving/reload.py), when it is given; so does
    a change of ``config_file`` when ``server.config_poll_s`` is set.
    """
    services = await build_services(settings)
    server, port = start_http(services, sockets)
    signals = Signals()
    reloader = Reloader(server, services, load or (lambda: settings))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: reloader.reload_soon())
    if config_file is not None and settings.server.config_poll_s > 0:
        reloader.watch(config_file, settings.server.config_poll_s)

    def report() -> None:
        current = reloader.services
        report_period(
            current.pipeline.admission,
            current.client.failures,
            lingering=server.lingering,
            memory=current.pipeline.memory,
        )

    reporter = PeriodicCallback(report, REPORT_PERIOD_S * 1000)
    reporter.start()
    hand_back = _hand_back(settings.server, services.state)
    host = settings.server.host
    say(f"imagegate: ready on http://{host}:{port} models={','.join(settings.models)}")
    if announce:
        say(announce.format(host=host, port=port))
    await signals.received.wait()
    forced = await drain(server, services.state, reloader.services.settings.server, signals)
    reporter.stop()
    if hand_back is not None:
        hand_back.stop()
    report()
    services.state.stop()
    await server.close_all_connections()
    await reloader.close()
    say("imagegate: stopped" + (" at once on a second signal" if forced else ""))
    return 1 if forced else 0


def _hand_back(server: ServerSettings, state: ProcessState) -> PeriodicCallback | None:
    """Free heap handed back to the kernel after a burst, checked every ``server.malloc_hand_back_s`` (0: never)."""
    if server.malloc_hand_back_s <= 0:
        return None
    policy = HandBack()
    checker = PeriodicCallback(lambda: policy.check(state.in_flight == 0), server.malloc_hand_back_s * 1000)
    checker.start()
    return checker


async def drain(server: HTTPServer, state: ProcessState, limits: ServerSettings, signals: Signals) -> bool:
    """Leave without losing a request; True if a second signal cut it short.

    /readyz answers 503 at once and answers say ``Connection: close``. On SIGTERM the tier keeps
    accepting for ``drain_delay_s`` (the time endpoints take to stop sending it traffic; SIGINT, a
    person at a terminal, skips it); then it stops accepting, and requests in flight get
    ``shutdown_timeout_s`` to finish.
    """
    state.drain()
    delay = limits.drain_delay_s if signals.first == signal.SIGTERM else 0.0
    say(f"imagegate: draining ({signals.first.name if signals.first else 'signal'}): accepting for {delay:g} s more")
    if await signals.wait_again(delay):
        return True
    server.stop()
    idle = asyncio.ensure_future(state.wait_idle(limits.shutdown_timeout_s))
    again = asyncio.ensure_future(signals.again.wait())
    done, _ = await asyncio.wait({idle, again}, return_when=asyncio.FIRST_COMPLETED)
    idle.cancel()
    again.cancel()
    if again in done:
        return True
    if not idle.result():
        log.warning(
            "shutdown: %d requests still in flight after %g s; closing them", state.in_flight, limits.shutdown_timeout_s
        )
    return False
