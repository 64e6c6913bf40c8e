"""How much CPU this process may use: its cgroup v2 CPU quota (``cpu.max``) when one is set, else its cores.

In a Kubernetes pod with ``limits.cpu: 1500m`` the node may have 64 cores while the process is throttled to
1.5 of them; a thread pool sized from ``os.cpu_count()`` would then run 64 threads on 1.5 CPUs' worth of time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from app.serving.cgroup import CGROUP_ROOT as CGROUP_ROOT  # re-exported: the root callers pass on
from app.serving.cgroup import PROC_SELF_CGROUP, cgroup_chain


def cpu_quota_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """This process's CPU quota in cores (``"150000 100000"`` is 1.5), or None when none is set or readable.

    The process's own cgroup is read from ``proc_cgroup`` (the cgroup v2 line, ``0::/path``); the tightest
    ``cpu.max`` from that cgroup up to ``cgroup_root`` counts, since a parent's quota caps its children. In a
    container the process's cgroup usually is the root itself.
    """
    quotas = (_read_quota(directory / "cpu.max") for directory in cgroup_chain(cgroup_root, proc_cgroup))
    return min((quota for quota in quotas if quota is not None), default=None)


def available_cores() -> int:
    """The cores this process may be scheduled on (its CPU affinity, which a cpuset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_budget(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Threads' worth of CPU: the quota rounded up (at least 1) when set, never more than the cores."""
    cores = available_cores()
    quota = cpu_quota_cores(cgroup_root)
    if quota is None:
        return cores
    return max(1, min(cores, math.ceil(quota)))


def _read_quota(cpu_max: Path) -> float | None:
    """Cores from a ``cpu.max`` file: ``"$MAX $PERIOD"``; ``max`` (no quota), a missing or malformed file: None."""
    try:
        fields = cpu_max.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        return None
    quota, period = int(fields[0]), int(fields[1])
    return quota / period if quota > 0 and period > 0 else None
