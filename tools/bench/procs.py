"""What the benchmark reads of a running process (``tools.process`` starts and stops them): its process tree,
memory and CPU from ``/proc``; and the Markdown table the in-process tools print."""

from __future__ import annotations

import os
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20


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


@dataclass
class MemorySamples:
    """The RSS of a process tree while a load ran: the largest process and the sum at their highest, and each
    sample's largest process."""

    max_process_rss: int = 0
    max_total_rss: int = 0
    samples: list[int] = field(default_factory=list)

    def add(self, rss: list[int]) -> None:
        self.max_process_rss = max(self.max_process_rss, *rss)
        self.max_total_rss = max(self.max_total_rss, sum(rss))
        self.samples.append(max(rss))


@contextmanager
def sampling_memory(pid: int, interval_s: float = 0.1) -> Iterator[MemorySamples]:
    """Samples the RSS of ``pid``'s tree every ``interval_s`` on a thread, for as long as the block runs."""
    found = MemorySamples()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            found.add([memory(p)[0] for p in process_tree(pid)])
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, name="memory-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


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
    return group_cpu_seconds(thread_counters(pid))


def group_cpu_seconds(counters: dict[str, dict[str, float]]) -> dict[str, float]:
    """User + system seconds per thread group, from ``thread_counters``' reading."""
    return {group: found["user"] + found["sys"] for group, found in counters.items()}


COUNTERS = ("user", "sys", "minflt", "vcsw", "ivcsw")  # thread_counters' fields


def thread_counters(pid: int) -> dict[str, dict[str, float]]:
    """Per thread group (as ``thread_cpu_seconds``): user and system CPU seconds, minor page faults and voluntary
    and involuntary context switches, summed over the group's threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    main_name = Path(f"/proc/{pid}/comm").read_text().strip()
    groups = {group: dict.fromkeys(COUNTERS, 0.0) for group in ("loop", "python", "other")}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        found = groups["loop" if task.name == str(pid) else "python" if name == main_name else "other"]
        found["user"] += int(fields[11]) / ticks
        found["sys"] += int(fields[12]) / ticks
        found["minflt"] += int(fields[7])
        found["vcsw"] += int(status["voluntary_ctxt_switches"])
        found["ivcsw"] += int(status["nonvoluntary_ctxt_switches"])
    return groups


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
