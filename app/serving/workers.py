"""``--workers N``: pre-forked processes accepting on one shared socket, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import multiprocess
from tornado.netutil import bind_sockets

from app.observability.metrics import MULTIPROC_ENV, use_multiprocess
from app.serving.cpus import cpu_budget
from app.serving.lifecycle import serve
from app.serving.memory_limit import memory_budget
from app.settings import Settings, SettingsError

PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM if the parent dies (even by SIGKILL), where Linux allows it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


def run_workers(settings: Settings, workers: int, load: Callable[[], Settings], config_file: Path | None = None) -> int:
    """Pre-fork ``workers`` processes that accept on one shared socket; SIGTERM/SIGINT stop them all.

    Their metrics go to files in one directory (prometheus-client's multiprocess mode), so a scrape of
    any worker counts all of them: ``PROMETHEUS_MULTIPROC_DIR`` if set, else a directory of our own.
    """
    with metrics_directory() as directory:
        use_multiprocess(directory)
        return _fork_and_wait(settings, workers, load, config_file)


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="imagegate-metrics-") as directory:
        yield Path(directory)


def _fork_and_wait(settings: Settings, workers: int, load: Callable[[], Settings], config_file: Path | None) -> int:
    sockets = bind_sockets(settings.server.port, settings.server.host)

    # The container's memory shared between the workers, derived once, before anything is held (a reload keeps it).
    derived_memory = 0 if settings.server.memory_budget_bytes else memory_budget(settings, workers)

    def shared(settings: Settings) -> Settings:
        server = settings.server
        if not server.decode_threads:  # share the cores between workers, not one pool per core each
            server = dataclasses.replace(server, decode_threads=max(1, cpu_budget() // workers))
        if not server.memory_budget_bytes:
            server = dataclasses.replace(server, memory_budget_bytes=derived_memory or memory_budget(settings, workers))
        return dataclasses.replace(settings, server=server)

    settings = shared(settings)
    children = []
    parent = os.getpid()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            exit_with_parent(parent)
            try:
                code = asyncio.run(
                    serve(settings, sockets=sockets, load=lambda: shared(load()), config_file=config_file)
                )
            except SettingsError as exc:
                print(f"imagegate: configuration error: {exc}", file=sys.stderr)
                os._exit(2)
            os._exit(code)
        children.append(pid)
    # The workers have the listening socket; a copy kept open here would go on accepting connections into
    # the backlog after every worker has stopped accepting (a drain), which then hang instead of being refused.
    for sock in sockets:
        sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: every worker reloads
        signal.signal(signum, forward)
    codes = []
    for child in children:
        codes.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        multiprocess.mark_process_dead(child)  # type: ignore[no-untyped-call]  # its live gauges stop counting
    return max(codes, default=0)
