"""The memory budget derived from the container's limit (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``),
with limit files under tmp_path as the root of the cgroup tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.serving.memory_limit import (
    NO_LIMIT_BUDGET,
    derive_budget,
    memory_budget,
    memory_limit_bytes,
    resident_bytes,
)
from app.serving.server import build_services
from app.settings import SettingsError
from tests.conftest import dev_settings
from tests.support.backend import LocalBackend

MIB = 1 << 20
CONTAINER = "0::/\n"  # /proc/self/cgroup in a container with its own cgroup namespace (v2)
V1_CONTAINER = "9:memory:/\n0::/\n"  # a cgroup v1 host: the memory controller's tree has its own line
V1_NO_LIMIT = "9223372036854771712"


def cgroup(root: Path, files: dict[str, str], proc_cgroup: str = CONTAINER) -> Path:
    """A cgroup tree at ``root`` with ``files`` (paths relative to it); returns the /proc/self/cgroup file."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return proc


@pytest.mark.parametrize(
    ("files", "proc_cgroup", "limit"),
    [
        ({"memory.max": str(512 * MIB)}, CONTAINER, 512 * MIB),
        ({"memory.max": "max"}, CONTAINER, None),
        ({}, CONTAINER, None),
        ({"memory.max": "lots"}, CONTAINER, None),
        ({"memory.max": "0"}, CONTAINER, None),
        ({"memory/memory.limit_in_bytes": str(256 * MIB)}, V1_CONTAINER, 256 * MIB),
        ({"memory/memory.limit_in_bytes": V1_NO_LIMIT}, V1_CONTAINER, None),
        ({"memory/memory.limit_in_bytes": "-1"}, V1_CONTAINER, None),
        # Both trees (a hybrid host): the tighter limit counts.
        ({"memory.max": str(512 * MIB), "memory/memory.limit_in_bytes": str(300 * MIB)}, V1_CONTAINER, 300 * MIB),
    ],
)
def test_the_container_limit(tmp_path: Path, files: dict[str, str], proc_cgroup: str, limit: int | None) -> None:
    root = tmp_path / "cgroup"
    assert memory_limit_bytes(root, cgroup(root, files, proc_cgroup)) == limit


def test_the_tightest_limit_from_the_process_cgroup_up_to_the_root_counts(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    pod, v1_pod = "kubepods/pod1", "memory/kubepods/pod1"
    files = {f"{pod}/memory.max": str(1024 * MIB), f"{pod}/tier/memory.max": "max"}
    proc = cgroup(root, files, "9:memory:/kubepods/pod1/tier\n0::/kubepods/pod1/tier\n")
    assert memory_limit_bytes(root, proc) == 1024 * MIB
    (root / pod / "tier" / "memory.max").write_text(str(600 * MIB))
    assert memory_limit_bytes(root, proc) == 600 * MIB
    (root / v1_pod).mkdir(parents=True)
    (root / v1_pod / "memory.limit_in_bytes").write_text(str(400 * MIB))
    assert memory_limit_bytes(root, proc) == 400 * MIB


@pytest.mark.parametrize(
    ("limit", "workers", "idle", "budget"),
    [
        (512 * MIB, 1, 80 * MIB, (512 - 64 - 80) * MIB),  # the headroom: at least 64 MiB
        (4096 * MIB, 1, 80 * MIB, (4096 - 512 - 80) * MIB),  # an eighth of the limit
        (4096 * MIB, 4, 80 * MIB, (4096 - 512) // 4 * MIB - 80 * MIB),  # shared, each less its own idle footprint
        (None, 1, 80 * MIB, NO_LIMIT_BUDGET),
        (None, 4, 80 * MIB, NO_LIMIT_BUDGET // 4),
        (100 * MIB, 1, 80 * MIB, 0),
    ],
)
def test_the_derived_budget(limit: int | None, workers: int, idle: int, budget: int) -> None:
    assert derive_budget(limit, workers, idle) == budget


def test_a_setting_wins_and_a_derived_budget_too_small_for_one_body_fails_the_start(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = cgroup(root, {"memory.max": str(256 * MIB)})
    settings = dev_settings("127.0.0.1:1")
    assert memory_budget(settings, 1, root, proc, idle_bytes=80 * MIB) == (256 - 64 - 80) * MIB
    with pytest.raises(SettingsError, match=r"server\.memory_budget_bytes: derived .* 2 workers"):
        memory_budget(settings, 2, root, proc, idle_bytes=80 * MIB)  # 16 MiB each, under server.max_body_bytes
    explicit = dev_settings("127.0.0.1:1", ["server.memory_budget_bytes=300000000"])
    assert memory_budget(explicit, 2, root, proc, idle_bytes=80 * MIB) == 300_000_000


@pytest.mark.gen_test(timeout=30)
async def test_build_services_derives_the_budget_from_the_limit_file(backend: LocalBackend, tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup(root, {"memory.max": str(1024 * MIB)})
    services = await build_services(dev_settings(backend.address), cgroup_root=root)
    try:
        capacity = services.pipeline.memory.capacity
        resident_after = resident_bytes()  # at least what the process held when the budget was derived
        headroom = 1024 * MIB // 8
        assert 1024 * MIB - headroom - resident_after <= capacity <= 1024 * MIB - headroom
        assert services.metrics is not None
        assert services.metrics.memory_budget._value.get() == capacity
    finally:
        await services.close()
    settings = dev_settings(backend.address, ["server.memory_budget_bytes=100000000"])
    services = await build_services(settings, cgroup_root=root)
    try:
        assert services.pipeline.memory.capacity == 100_000_000  # the setting wins over the limit
    finally:
        await services.close()
