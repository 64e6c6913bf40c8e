"""glibc malloc settings for a process that makes and drops many 100 KB - 10 MB buffers.

Every image makes a few such buffers (the download, the decoded pixels, the resized
tensor, the batch, the serialised Predict request). Above ``M_MMAP_THRESHOLD`` (128 KiB
until glibc's dynamic threshold moves) glibc gives each one fresh pages from ``mmap``
and returns them on free, and the thread pool's arenas trim their heaps just as eagerly,
so the kernel zero-fills and faults in every page of every buffer again: measured here,
building a 600 KB Predict request cost 1.4 ms instead of 0.07 ms, and decode+resize of a
640x480 JPEG 1.39 instead of 1.00 ms. Raising both thresholds keeps freed buffers in the
heap for the next image; the price is that up to ``trim_threshold`` bytes of free heap
per arena stay resident after a burst of large images, and, below the top of each heap,
every freed page until something hands it back.

The mmap threshold stops at 4 MiB (``server.malloc_mmap_threshold``; it was 32 MiB): every
buffer of an image of the benchmark's sizes (a 12 MP JPEG is 1.9 MB) stays below it, while a
body-sized buffer (a 19 MiB upload or download) gets pages of its own, handed back when it is
freed, instead of a hole in the heap that the next one does not fit into: in a burst of them the
heap grew about 100 MiB past what the memory budget held (tools/bench/README.md).

``HandBack`` does that after a burst: once the process is quiet, ``malloc_trim(0)`` returns
the free pages of every arena to the kernel (tools/bench/README.md, "Memory handed back",
has what each way tried bought).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

from app.serving.memory_limit import resident_bytes

log = logging.getLogger("imagegate")
MIB = 1 << 20
HAND_BACK_SLACK = 32 * MIB  # resident memory this far above the last low mark, the process quiet: hand back

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds (bytes; 0 leaves one alone). False where that is not possible."""
    if not mmap_threshold and not trim_threshold:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.warning("malloc tuning skipped: no mallopt in this C library")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = True
    for option, value in ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold)):
        if value:
            ok = mallopt(option, value) == 1 and ok
    if not ok:
        log.warning("malloc tuning refused by the C library (mmap %d, trim %d)", mmap_threshold, trim_threshold)
    return ok


def malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: the free pages of every arena handed back to the kernel. False where unavailable.

    ctypes releases the GIL for the call; it takes each arena's lock in turn.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


class HandBack:
    """After a burst, the freed heap handed back to the kernel, when the process is quiet.

    ``check(quiet)`` is called every ``server.malloc_hand_back_s`` (``app/serving/lifecycle.py``). When no
    request is in flight and the resident memory is more than ``slack_bytes`` above its mark (at first the
    idle footprint at start, then what was left after the last hand-back), ``trim`` runs in a thread, off
    the event loop, and what is left becomes the new mark. Steady traffic keeps its heap: the process is
    rarely quiet then, and does not grow past the slack, so the thresholds above keep paying.
    """

    def __init__(
        self,
        slack_bytes: int = HAND_BACK_SLACK,
        resident: Callable[[], int] = resident_bytes,
        trim: Callable[[], bool] = malloc_trim,
    ) -> None:
        self.slack_bytes = slack_bytes
        self._resident = resident
        self._trim = trim
        self.mark = resident()
        self.handed_back = 0  # times trim ran
        self._running: asyncio.Future[int] | None = None

    def check(self, quiet: bool) -> asyncio.Future[int] | None:
        """Hand back now if the process is ``quiet`` and has grown past the slack; the running hand-back, if any."""
        if self._running is not None or not quiet or self._resident() <= self.mark + self.slack_bytes:
            return self._running
        self._running = asyncio.get_running_loop().run_in_executor(None, self._hand_back)
        self._running.add_done_callback(self._done)
        return self._running

    def _hand_back(self) -> int:
        self._trim()
        return self._resident()

    def _done(self, running: asyncio.Future[int]) -> None:
        self._running = None
        if running.cancelled() or running.exception() is not None:
            log.warning("handing memory back failed", exc_info=None if running.cancelled() else running.exception())
            return
        log.info(
            "memory handed back after a burst: resident %d MiB, the mark was %d MiB",
            running.result() // MIB,
            self.mark // MIB,
        )
        self.mark = running.result()
        self.handed_back += 1
