"""glibc malloc tuning at start: image-sized buffers reuse heap memory instead of fresh pages."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from app.serving.allocator import HandBack, tune_malloc

# Four 600 KB buffers made and dropped together, as one request's tensors are: with glibc's
# defaults they come from fresh mmap pages (or a heap top that is trimmed), faulted in again
# every round. Prints the page faults the rounds cost.
WORKLOAD = """
import resource, sys
import numpy as np
from app.serving.allocator import HandBack, tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc(32 << 20, 64 << 20)
def round_():
    buffers = [np.ones(600_000, np.uint8) for _ in range(4)]
    joined = b"".join(b.tobytes() for b in buffers)
    return len(joined)
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", WORKLOAD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_zero_leaves_the_allocator_alone() -> None:
    assert tune_malloc(0, 0)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="this C library has no mallopt (not glibc)")
def test_tuned_buffers_stop_faulting_in_fresh_pages() -> None:
    default, tuned = page_faults("default"), page_faults("tuned")
    assert tuned * 10 < default, f"page faults over 100 rounds: {default} with glibc's defaults, {tuned} tuned"


# --- Handing memory back after a burst ------------------------------------------------

# A burst as the tier makes one: many 64 KiB body chunks and 19 MiB joined bodies, made and dropped, with the
# tier's thresholds set. Prints the resident memory (MiB) after the burst, then after malloc_trim(0).
BURST = """
import sys
from app.serving.allocator import malloc_trim, tune_malloc
from app.serving.memory_limit import resident_bytes
assert tune_malloc(4 << 20, 64 << 20)  # the tier's thresholds
bodies = []
for _ in range(16):
    chunks = [bytes(bytearray(65536)) for _ in range(304)]
    bodies.append((chunks, b"".join(chunks)))
keep = [bytes(100) for _ in range(1000)]  # small objects made late, high in the heap
bodies.clear()
print(resident_bytes() >> 20)
assert malloc_trim()
print(resident_bytes() >> 20)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="this C library has no malloc_trim")
def test_malloc_trim_hands_a_burst_back() -> None:
    out = subprocess.run([sys.executable, "-c", BURST], capture_output=True, text=True, check=True)
    after_burst, after_trim = (int(line) for line in out.stdout.split())
    assert after_burst - after_trim > 250, f"resident MiB after the burst: {after_burst}, trimmed: {after_trim}"


class Resident:
    """A resident-memory figure the test sets, and a trim that lowers it to ``after_trim`` when it runs."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.after_trim = value
        self.trims = 0

    def __call__(self) -> int:
        return self.value

    def trim(self) -> bool:
        self.trims += 1
        self.value = self.after_trim
        return True


@pytest.mark.gen_test
async def test_hand_back_waits_for_quiet_and_for_growth_past_the_slack() -> None:
    resident = Resident(100)
    policy = HandBack(slack_bytes=50, resident=resident, trim=resident.trim)
    resident.value = 140
    assert policy.check(quiet=True) is None  # within the slack
    resident.value, resident.after_trim = 400, 120
    assert policy.check(quiet=False) is None  # requests in flight: steady traffic keeps its heap
    running = policy.check(quiet=True)
    assert running is not None and policy.check(quiet=True) is running  # one at a time
    assert await running == 120
    assert (resident.trims, policy.mark, policy.handed_back) == (1, 120, 1)
    resident.value = 160
    assert policy.check(quiet=True) is None  # the new mark is what the last one left
    assert resident.trims == 1
