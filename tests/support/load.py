"""A machine kept busy on purpose: processes that spin on a core each, for a bounded time."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tools.process import Child

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_hogs(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes that each spin on a core for at most ``seconds``; stopped when the block ends."""
    hogs = [
        Child.start(f"cpu-hog-{i}", [sys.executable, "-c", SPIN.format(seconds=seconds)], None) for i in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
