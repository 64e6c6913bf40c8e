"""glibc malloc tuning at start: image-sized buffers reuse heap memory instead of fresh pages."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from app.serving.allocator import tune_malloc

# Four 600 KB buffers made and dropped together, as one request's tensors are: with glibc's
# defaults they come from fresh mmap pages (or a heap top that is trimmed), faulted in again
# every round. Prints the page faults the rounds cost.
WORKLOAD = """
import resource, sys
import numpy as np
from app.serving.allocator import tune_malloc
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
