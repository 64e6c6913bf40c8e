"""A machine kept busy on purpose: processes that spin on a core each, for a bounded time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_hogs(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes that each spin on a core for at most ``seconds``; stopped when the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
