"""What one download and the keep-alive pool may take; built from the ``fetch.*`` settings, no defaults here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.settings import FetchSettings


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float
    total_timeout_s: float
    max_bytes: int
    max_redirects: int
    max_concurrent: int
    content_types: tuple[str, ...]

    @classmethod
    def from_settings(cls, f: FetchSettings) -> FetchLimits:
        return cls(
            f.connect_timeout_s, f.total_timeout_s, f.max_bytes, f.max_redirects, f.max_concurrent, f.content_types
        )


@dataclass(frozen=True)
class PoolLimits:
    max_idle_per_origin: int
    max_idle_total: int
    idle_timeout_s: float

    @classmethod
    def from_settings(cls, f: FetchSettings) -> PoolLimits:
        return cls(f.keepalive_per_host, f.keepalive_total, f.keepalive_idle_s)


class DownloadHold(Protocol):
    """A request's share of the process's memory budget (``app/memory.py``): a download grows it before it reads.

    ``grow`` waits for room, or raises the budget's refusal; ``shrink`` gives bytes back.
    """

    async def grow(self, nbytes: int) -> None: ...

    def shrink(self, nbytes: int) -> None: ...
