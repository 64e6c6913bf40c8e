"""Child processes for the benchmark: start one, wait for its readiness line, sample its memory, stop it."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.process import stop_process

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


@dataclass
class Child:
    """A started process, its readiness match and how long it took to get there."""

    proc: subprocess.Popen[str]
    name: str
    match: re.Match[str]
    ready_s: float
    output: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)

    def tail(self, lines: int = 20) -> str:
        return "".join(self.output[-lines:])


def start(
    name: str,
    args: Sequence[str],
    ready: str,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    count: int = 1,
    python: Path | None = None,
    cwd: Path = ROOT,
) -> Child:
    """Start ``args`` (a Python module run from ``cwd``, the repository unless given) and wait for ``count``
    lines matching ``ready``.

    ``python`` is the interpreter, this one's unless given (the KServe peer runs in its own virtualenv).
    """
    pattern = re.compile(ready)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(python or sys.executable), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    found: list[tuple[re.Match[str], float]] = []
    event = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(output) < 2000:
                output.append(line)
            match = pattern.search(line)
            if match and not event.is_set():
                found.append((match, time.perf_counter() - started))
                if len(found) >= count:
                    event.set()
        event.set()

    threading.Thread(target=pump, daemon=True).start()
    if not event.wait(timeout) or len(found) < count:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{name} did not become ready:\n" + "".join(output[-40:]))
    match, ready_s = found[0][0], found[-1][1]
    return Child(proc, name, match, ready_s, output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (one level: the tier's pre-forked workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return [pid, *children]


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes; zeros if it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


class MemorySampler:
    """Samples the RSS of a process tree while a load runs: the largest process and the sum."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.max_process_rss = 0
        self.max_total_rss = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = [memory(p)[0] for p in process_tree(self.pid)]
            self.max_process_rss = max(self.max_process_rss, *rss)
            self.max_total_rss = max(self.max_total_rss, sum(rss))
            self.samples.append(max(rss))
            self._stop.wait(self.interval_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children (one level), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time of the threads of ``pid``, in seconds, in three groups: ``loop`` (the main
    thread, where the event loop runs), ``python`` (the other threads Python started, which keep the
    process's name: the decode pool, and asyncio's resolver pool when a host name is looked up) and
    ``other`` (threads that name themselves: gRPC's core)."""
    ticks = os.sysconf("SC_CLK_TCK")
    main_name = Path(f"/proc/{pid}/comm").read_text().strip()
    groups = {"loop": 0, "python": 0, "other": 0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = "loop" if task.name == str(pid) else "python" if name == main_name else "other"
        groups[group] += int(fields[11]) + int(fields[12])
    return {group: value / ticks for group, value in groups.items()}


def peak_process_hwm(pid: int) -> int:
    """The largest VmHWM among ``pid`` and its children."""
    return max(memory(p)[1] for p in process_tree(pid))


def idle_rss(pid: int) -> list[int]:
    """VmRSS of every process of the tree."""
    return [memory(p)[0] for p in process_tree(pid)]


def median_table(what: str, unit: str, found: dict[str, list[float]], digits: int) -> str:
    """A Markdown table of each name's median over the rounds, then every round's value."""
    rounds = max((len(values) for values in found.values()), default=0)
    lines = [f"| {what} | {unit}, median of {rounds} rounds | rounds |", "| --- | --- | --- |"]
    for name, values in found.items():
        each = ", ".join(f"{v:.{digits}f}" for v in values)
        lines.append(f"| {name} | {statistics.median(values):.{digits}f} | {each} |")
    return "\n".join(lines)
