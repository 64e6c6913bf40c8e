"""A run: batches through a bounded pool of workers, each finished line written at once, then the tally."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice

from app.bulk.inputs import Input
from app.bulk.predict import Line

Batch = Sequence[Input]
# How often the run looks whether Ctrl-C was pressed while it waits for a batch.
INTERRUPT_CHECK_S = 0.1


@dataclass
class Tally:
    classified: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by error code

    @property
    def done(self) -> int:
        return self.classified + self.failed.total()

    def count(self, line: Line) -> bool:
        """Count ``line``; True when it is a failure."""
        if "error" in line:
            self.failed[line["error"]["code"]] += 1
            return True
        self.classified += 1
        return False


def batches(inputs: Iterable[Input], size: int) -> Iterator[Batch]:
    """URLs and files in batches of ``size``, never mixed (they go up in different body forms)."""
    items = list(inputs)
    for kind in (True, False):
        same = iter([item for item in items if item.is_url is kind])
        while chunk := list(islice(same, size)):
            yield chunk


def run_batches(
    work: Callable[[Batch], list[Line]], todo: Iterable[Batch], concurrency: int, finished: Callable[[list[Line]], None]
) -> None:
    """Run ``work`` on every batch, ``concurrency`` at a time, calling ``finished`` in this thread as each ends.

    A batch that raises stops the run once the lines of the batches already done are handed over; batches
    not started are dropped and those under way are abandoned (their inputs are simply not in the output,
    so --resume sends them again). Ctrl-C stops the same way, raising KeyboardInterrupt from here.
    """
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="imagegate-classify")
    pending = iter(todo)
    running: set[Future[list[Line]]] = set()
    try:
        with ctrl_c_as_flag() as interrupted:
            while True:
                running.update(pool.submit(work, batch) for batch in islice(pending, concurrency - len(running)))
                if not running:
                    break
                done, running = wait(running, INTERRUPT_CHECK_S, return_when=FIRST_COMPLETED)
                _hand_over(done, finished)
                if interrupted:
                    raise KeyboardInterrupt
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _hand_over(done: Iterable[Future[list[Line]]], finished: Callable[[list[Line]], None]) -> None:
    """The finished batches' lines to ``finished``; then the first failure, if any, is raised."""
    failures = [exc for future in done if (exc := future.exception()) is not None]
    for future in done:
        if future.exception() is None:
            finished(future.result())
    if failures:
        raise failures[0]


@contextmanager
def ctrl_c_as_flag() -> Iterator[list[bool]]:
    """Ctrl-C sets a flag (a non-empty list) that the caller reads between waits.

    Python raises KeyboardInterrupt wherever the main thread is, and inside a lock's release in
    concurrent.futures' wait that leaves the lock broken ("release unlocked lock") instead of stopping
    the run; the flag lets the run stop between two waits. Elsewhere than the main thread, nothing changes.
    """
    flag: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.append(True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def summary(tally: Tally, elapsed_s: float, retried: Counter[str]) -> str:
    """``9 classified, 1 failed (source_http_error: 1) in 1.2 s, 8.3 images/s; 3 requests retried (...)``."""
    failed = ", ".join(f"{code}: {n}" for code, n in sorted(tally.failed.items()))
    text = f"{tally.classified} classified, {tally.failed.total()} failed" + (f" ({failed})" if failed else "")
    rate = tally.done / elapsed_s if elapsed_s > 0 else 0.0
    text += f" in {elapsed_s:.1f} s, {rate:.1f} images/s"
    if retried:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(retried.items()))
        text += f"; {retried.total()} requests retried ({reasons})"
    return text
