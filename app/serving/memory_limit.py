"""How many bytes this process's requests may hold at once: ``server.memory_budget_bytes``, or the container's share.

Derived (the setting left at 0) from the container's memory limit: the tightest of cgroup v2 ``memory.max``
and cgroup v1 ``memory.limit_in_bytes``, from the process's cgroup up to the root (``max``, v1's "no limit"
value, a missing or malformed file: no limit). From that limit:

- less a headroom of an eighth of it, at least ``HEADROOM_MIN`` (64 MiB), for what requests hold outside
  the budget (socket and parser buffers, Python objects, the allocator's free memory not yet handed back);
- shared equally between the ``--workers``;
- less each process's idle footprint: its resident memory when the budget is derived.

Without a limit the requests of all workers together may hold ``NO_LIMIT_BUDGET`` (1 GiB), shared the same
way. A derived budget that cannot hold one request's largest body or download fails the start, naming the key.
"""

from __future__ import annotations

from pathlib import Path

from app.serving.cgroup import CGROUP_ROOT, PROC_SELF_CGROUP, cgroup_chain
from app.settings import Settings, SettingsError
from app.settings_checks import largest_reservation

MIB = 1 << 20
HEADROOM_MIN = 64 * MIB
HEADROOM_FRACTION = 8  # of the limit
NO_LIMIT_BUDGET = 1 << 30
V1_UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as the largest page-aligned 63-bit number
PROC_SELF_STATUS = Path("/proc/self/status")


def memory_limit_bytes(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The container's memory limit in bytes, or None when there is none (or none can be read)."""
    files = [directory / "memory.max" for directory in cgroup_chain(cgroup_root, proc_cgroup)]
    files += [d / "memory.limit_in_bytes" for d in cgroup_chain(cgroup_root, proc_cgroup, "memory")]
    limits = (_read_limit(path) for path in files)
    return min((limit for limit in limits if limit is not None), default=None)


def derive_budget(limit: int | None, workers: int, idle_bytes: int) -> int:
    """One process's budget from the container's ``limit`` (None: no limit), as the module says."""
    if limit is None:
        return NO_LIMIT_BUDGET // workers
    headroom = max(HEADROOM_MIN, limit // HEADROOM_FRACTION)
    return max(0, (limit - headroom) // workers - idle_bytes)


def memory_budget(
    settings: Settings,
    workers: int = 1,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_SELF_CGROUP,
    idle_bytes: int | None = None,
) -> int:
    """``server.memory_budget_bytes``, or the budget derived for one of ``workers`` processes; raises SettingsError.

    ``idle_bytes`` is the process's idle footprint, its resident memory now unless given.
    """
    if settings.server.memory_budget_bytes:
        return settings.server.memory_budget_bytes
    limit = memory_limit_bytes(cgroup_root, proc_cgroup)
    idle = resident_bytes() if idle_bytes is None else idle_bytes
    budget = derive_budget(limit, workers, idle)
    needed = largest_reservation(settings)
    if budget < needed:
        raise SettingsError(
            f"server.memory_budget_bytes: derived {budget} bytes per process (container limit {limit}, {workers} "
            f"workers, {idle} bytes idle each), less than the {needed} that one request's largest body or download "
            "may hold: raise the limit, run fewer workers, or lower server.max_body_bytes and fetch.max_bytes"
        )
    return budget


def resident_bytes(status: Path = PROC_SELF_STATUS) -> int:
    """This process's resident memory (``VmRSS``), 0 when it cannot be read."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _read_limit(path: Path) -> int | None:
    """Bytes from ``memory.max`` or ``memory.limit_in_bytes``; ``max``, "no limit", missing or malformed: None."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    limit = int(text)
    return limit if 0 < limit < V1_UNLIMITED else None
