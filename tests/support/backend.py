"""The local backend for tests: ``tools.localserving.launcher`` starts it, stops it and reloads its config (the
tools start theirs there too); ``side_by_side`` starts several at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from tools.localserving.launcher import LocalBackend, reload_config, start_local_backend
from tools.process import ROOT as REPO_ROOT

__all__ = ["REPO_ROOT", "LocalBackend", "reload_config", "side_by_side", "start_local_backend"]

Started = TypeVar("Started")


@contextmanager
def side_by_side(
    starts: Mapping[str, Callable[[], Started]], stop: Callable[[Started], None]
) -> Iterator[dict[str, Started]]:
    """Runs every start at once (each backend imports TensorFlow, seconds apiece) and yields what they started,
    by name; stops all of it after. If one fails, the ones that started are stopped and the first error raised."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {name: pool.submit(start) for name, start in starts.items()}
    started = {name: future.result() for name, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            future.result()  # raises the first start-up failure
        yield started
    finally:
        for item in started.values():
            stop(item)
