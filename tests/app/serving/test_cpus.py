"""The decode pool's size from the cgroup v2 CPU quota (``cpu.max``), with quota files under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.serving.cpus import available_cores, cpu_budget, cpu_quota_cores
from app.serving.server import build_services
from tests.conftest import dev_settings
from tests.support.backend import LocalBackend

CONTAINER = "0::/\n"  # /proc/self/cgroup in a container with its own cgroup namespace


def cgroup(root: Path, cpu_max: str | None, proc_cgroup: str = CONTAINER) -> Path:
    """A cgroup root whose ``cpu.max`` holds ``cpu_max`` (None: no file); returns the /proc/self/cgroup file."""
    root.mkdir(parents=True, exist_ok=True)
    if cpu_max is not None:
        (root / "cpu.max").write_text(cpu_max + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return proc


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        ("max 100000", None),
        ("150000 100000", 1.5),
        ("200000 100000", 2.0),
        ("50000 100000", 0.5),
        ("25000 50000", 0.5),
    ],
)
def test_quota_in_cores(tmp_path: Path, cpu_max: str, cores: float | None) -> None:
    root = tmp_path / "cgroup"
    assert cpu_quota_cores(root, cgroup(root, cpu_max)) == cores


@pytest.mark.parametrize("cpu_max", [None, "", "max", "150000", "1.5 1", "-1 100000", "100000 0", "a b", "1 2 3"])
def test_missing_or_malformed_quota_is_no_quota(tmp_path: Path, cpu_max: str | None) -> None:
    root = tmp_path / "cgroup"
    assert cpu_quota_cores(root, cgroup(root, cpu_max)) is None


def test_the_tightest_quota_from_the_process_cgroup_up_to_the_root_counts(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = cgroup(root, "max 100000", "1:cpu:/\n0::/kubepods/pod1/tier\n")
    (root / "kubepods" / "pod1" / "tier").mkdir(parents=True)
    (root / "kubepods" / "pod1" / "tier" / "cpu.max").write_text("max 100000\n")
    (root / "kubepods" / "pod1" / "cpu.max").write_text("300000 100000\n")
    assert cpu_quota_cores(root, proc) == 3.0
    (root / "kubepods" / "pod1" / "tier" / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota_cores(root, proc) == 1.5


def test_without_a_cgroup_v2_line_only_the_root_is_read(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    assert cpu_quota_cores(root, cgroup(root, "150000 100000", "4:cpu,cpuacct:/docker/abc\n")) == 1.5
    assert cpu_quota_cores(root, tmp_path / "no-proc-file") == 1.5


@pytest.mark.parametrize(
    ("cpu_max", "threads"),
    [
        ("max 100000", available_cores()),
        ("150000 100000", min(2, available_cores())),
        ("50000 100000", 1),
        ("1000 100000", 1),
        ("6400000 100000", available_cores()),  # a quota above the cores buys no more threads
        ("not a quota", available_cores()),
        (None, available_cores()),
    ],
)
def test_cpu_budget_rounds_the_quota_up_within_the_cores(tmp_path: Path, cpu_max: str | None, threads: int) -> None:
    root = tmp_path / "cgroup"
    cgroup(root, cpu_max)
    assert cpu_budget(root) == threads


@pytest.mark.gen_test(timeout=30)
async def test_build_services_sizes_the_decode_pool_from_the_quota(backend: LocalBackend, tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup(root, "50000 100000")  # half a CPU: one thread, whatever the machine's cores
    for overrides, threads in [((), 1), (("server.decode_threads=3",), 3)]:  # the setting still wins
        services = await build_services(dev_settings(backend.address, overrides), cgroup_root=root)
        try:
            assert services.executor._max_workers == threads
        finally:
            await services.close()
