"""The process's state: one object the health handlers read and the signal handlers change.

starting -> ready (listening, models resolved) -> draining (SIGTERM/SIGINT: /readyz answers 503, answers
say ``Connection: close``, in-flight requests finish) -> stopping (closing the backend channels).
It also counts the requests in flight, so the drain knows when the last one has been answered.
"""

from __future__ import annotations

import asyncio
import enum


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"


class ProcessState:
    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def draining(self) -> bool:
        """Draining or stopping: the process is on its way out."""
        return self.phase in (Phase.DRAINING, Phase.STOPPING)

    @property
    def phase_name(self) -> str:
        return self.phase.value

    def serving(self) -> None:
        if self.phase is Phase.STARTING:
            self.phase = Phase.READY

    def drain(self) -> None:
        if not self.draining:
            self.phase = Phase.DRAINING

    def stop(self) -> None:
        self.phase = Phase.STOPPING

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when no request is in flight, within ``timeout_s``; False if some still were then."""
        return await wait_for_event(self._idle, timeout_s)


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """True if ``event`` is set within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
