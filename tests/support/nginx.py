"""A real nginx in front of the tier, keeping upstream connections alive as production proxies do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.nginx import start_proxy


@contextmanager
def nginx_in_front_of(upstream_port: int, *, request_buffering: bool = True) -> Iterator[tuple[int, Path]]:
    """nginx proxying to 127.0.0.1:``upstream_port`` (``tools.nginx.PROXY``); yields its port and its error log."""
    nginx = start_proxy(upstream_port, request_buffering=request_buffering)
    try:
        yield nginx.port, nginx.error_log
    finally:
        nginx.stop()
