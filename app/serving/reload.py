"""Configuration reload without a restart: SIGHUP re-reads the configuration and swaps it in.

The new settings are read from the same file, environment and flags, validated, and the models'
metadata is read again; only then are new services built and the HTTP server pointed at them, in one
step. Requests in flight finish on the services they started with, which are closed once
``server.shutdown_timeout_s`` has passed. A wrong file is refused with a log line naming the key while
the old configuration keeps serving. Every key reloads except the listen address and port (and
``--workers``, a flag): a change there is refused, since it needs a restart. The metrics and the
process state carry over; routes start again from their configured weights.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from app.serving.lingering import LingeringHTTPServer
from app.serving.server import Services, build_services, configure_server, make_app
from app.settings import Settings, SettingsError

log = logging.getLogger("imagegate")


def _check_restart_keys(old: Settings, new: Settings) -> None:
    for key in ("host", "port"):
        before, after = getattr(old.server, key), getattr(new.server, key)
        if before != after:
            raise SettingsError(f"server.{key}: changed from {before!r} to {after!r}; that needs a restart")


class Reloader:
    def __init__(self, server: LingeringHTTPServer, services: Services, load: Callable[[], Settings]) -> None:
        self.server = server
        self.services = services  # the ones new requests go to
        self._load = load
        self._lock = asyncio.Lock()
        self._watcher: PeriodicCallback | None = None
        self._retired: set[asyncio.Task[Any]] = set()  # reloads under way and old services waiting to close

    async def reload(self) -> bool:
        """True if the new configuration now serves; False if it was refused (the old one still serves)."""
        async with self._lock:
            old = self.services
            try:
                settings = self._load()
                _check_restart_keys(old.settings, settings)
                new = await build_services(settings, keep=old)
            except SettingsError as exc:
                log.error("reload refused, still serving the previous configuration: %s", exc)
                return False
            except Exception:  # a bug: the previous configuration still serves, and the traceback says why
                log.exception("reload failed, still serving the previous configuration")
                return False
            self.server.request_callback = make_app(new)
            configure_server(self.server, new)
            self.services = new
            retire = asyncio.ensure_future(self._close_later(old, settings.server.shutdown_timeout_s))
            self._retired.add(retire)
            retire.add_done_callback(self._retired.discard)
            log.warning("configuration reloaded: models %s", ", ".join(settings.models))
            return True

    def watch(self, path: Path, period_s: float) -> None:
        """Reload whenever the bytes of ``path`` change (checked every ``period_s``)."""
        last = _digest(path)

        def check() -> None:
            nonlocal last
            now = _digest(path)
            if now != last:
                last = now
                self.reload_soon()

        self._watcher = PeriodicCallback(check, period_s * 1000)
        self._watcher.start()

    def reload_soon(self) -> None:
        """Start a reload (the SIGHUP handler): one at a time, in the order asked."""
        task = asyncio.ensure_future(self.reload())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _close_later(self, services: Services, after_s: float) -> None:
        try:
            await asyncio.sleep(after_s)  # requests that started on them have had their shutdown budget
        finally:
            await services.close()

    async def close(self) -> None:
        """Close the current services, and retired ones at once (the process is stopping)."""
        if self._watcher is not None:
            self._watcher.stop()
        for task in list(self._retired):
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self.services.close()


def _digest(path: Path) -> bytes | None:
    """The file's content hash; None while it cannot be read (a reload then reports why)."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None
