"""``--workers N``: pre-forked processes accept on one shared socket and stop together."""

from __future__ import annotations

import json
import os
import select
import signal
import time
import urllib.request
from pathlib import Path

from tests.support.backend import LocalBackend
from tests.support.imageserver import ImageServer
from tests.support.tier import start_tier


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def listening_inodes(pid: int) -> set[str]:
    """The socket inodes a process holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def test_two_workers_serve_one_port_and_stop_together(backend: LocalBackend, images: ImageServer) -> None:
    tier = start_tier(backend.address, workers=2)
    try:
        ready = [line for line in tier.output if "imagegate: ready on" in line]
        assert len(ready) == 2 and ready[0] == ready[1], ready  # two whole lines, one address
        workers = children_of(tier.proc.pid)
        assert len(workers) == 2
        shared = listening_inodes(workers[0]) & listening_inodes(workers[1])
        assert shared, "the workers do not share a listening socket"
        for _ in range(4):
            request = urllib.request.Request(
                tier.base_url + "/v1/models/tiny:predict",
                data=json.dumps([images.url("coffee.jpg")]).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=20) as response:
                assert json.loads(response.read())["predictions"][0]["classes"]
    finally:
        tier.proc.send_signal(signal.SIGTERM)
        code = tier.proc.wait(timeout=20)
    assert code == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the parent"


def test_workers_exit_when_the_parent_is_killed(backend: LocalBackend) -> None:
    tier = start_tier(backend.address, workers=2)
    workers = children_of(tier.proc.pid)
    assert len(workers) == 2
    handles = [os.pidfd_open(pid) for pid in workers]  # readable once that process has exited
    try:
        tier.proc.kill()  # SIGKILL: the parent cannot forward anything
        tier.proc.wait(timeout=10)
        pending = list(handles)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(pending, [], [], deadline - time.monotonic())
            pending = [fd for fd in pending if fd not in ready]
        assert not pending, "orphaned workers kept running"
    finally:
        for fd in handles:
            os.close(fd)
