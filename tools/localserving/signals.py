"""SIGTERM and SIGINT as a stop request the main thread can wait for."""

from __future__ import annotations

import select
import signal
import socket
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Installs handlers for SIGTERM and SIGINT that only record the signal.

    The handler takes no locks (a lock held by the interrupted main thread would deadlock it); the
    interpreter's wakeup fd wakes ``wait`` instead.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)

    def is_set(self) -> bool:
        return self.received is not None

    def wait(self) -> int:
        """Block until SIGTERM or SIGINT has arrived; returns the signal number."""
        while self.received is None:
            select.select([self._reader], [], [])
            self._drain()
        return self.received

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def _drain(self) -> None:
        try:
            while self._reader.recv(64):
                pass
        except BlockingIOError:
            pass
