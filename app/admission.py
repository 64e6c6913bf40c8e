"""The process-wide bound on images in flight: beyond it, a request is refused at once with 503."""

from __future__ import annotations

from app.errors import Overloaded


class Admission:
    """Bounds the images in flight across the process; beyond it, refuse at once."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.refused = 0  # requests refused since the last take_refused()

    def acquire(self, count: int) -> None:
        if self.in_flight + count > self.limit:
            self.refused += 1
            raise Overloaded(
                f"the tier is at capacity ({self.limit} images in flight); retry shortly",
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += count

    def release(self, count: int) -> None:
        self.in_flight -= count

    def take_refused(self) -> int:
        refused, self.refused = self.refused, 0
        return refused
