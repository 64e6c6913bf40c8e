"""Progress on standard error: a tqdm bar on a terminal, plain periodic lines otherwise (a log, a CI job).

tqdm rather than rich: one pure-Python package of 80 kB with no dependencies, where rich brings Pygments and
markdown-it (about 4 MB); the client ships in the tier's wheel and image, so it should weigh little. It is
imported only when there is a terminal to draw on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from app.bulk import PROG


class Progress(Protocol):
    def advance(self, done: int, failed: int) -> None:
        """``done`` more inputs have their line, ``failed`` of them with an error."""

    def close(self) -> None: ...


def make_progress(stream: TextIO, total: int, every_s: float) -> Progress:
    if stream.isatty():
        return TerminalProgress(stream, total)
    return PlainProgress(stream, total, every_s)


class TerminalProgress:
    """A bar with the count, images/s and ETA, redrawn in place."""

    def __init__(self, stream: TextIO, total: int) -> None:
        from tqdm import tqdm

        # Follow the terminal's size; tqdm draws nothing on one that reports none (0x0, as a bare pty).
        sized = _columns(stream) > 0
        self._bar = tqdm(
            total=total,
            unit="img",
            desc="classify",
            file=stream,
            dynamic_ncols=sized,
            ncols=None if sized else 80,
            nrows=None if sized else 24,
        )
        self._failed = 0

    def advance(self, done: int, failed: int) -> None:
        if failed:
            self._failed += failed
            self._bar.set_postfix(failed=self._failed, refresh=False)
        self._bar.update(done)

    def close(self) -> None:
        self._bar.close()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 0


class PlainProgress:
    """A line at most every ``every_s`` seconds: ``done/total (percent), failed, images/s, ETA``."""

    def __init__(self, stream: TextIO, total: int, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._total = total
        self._every_s = every_s
        self._clock = clock
        self._started = self._last = clock()
        self.done = self.failed = 0

    def advance(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            print(self.line(now - self._started), file=self._stream, flush=True)

    def line(self, elapsed_s: float) -> str:
        rate = self.done / elapsed_s if elapsed_s > 0 else 0.0
        left = self._total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "unknown"
        percent = 100 * self.done / self._total if self._total else 100.0
        return (
            f"{PROG}: {self.done}/{self._total} ({percent:.0f}%), {self.failed} failed, {rate:.1f} images/s, ETA {eta}"
        )

    def close(self) -> None:
        pass
