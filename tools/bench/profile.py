"""Profiling the tier under scenario 1's load: ``python -m tools.bench --profile py-spy`` (or ``pyinstrument``).

py-spy samples every thread of the running tier from outside (native frames off), once
over all threads and once only where the GIL is held, and this module folds the
samples into the functions that cost the most, by self time and by inclusive time.
pyinstrument runs the tier inside its profiler and sees the event loop thread only.
Output goes to ``build/bench/profile_*``.
"""

from __future__ import annotations

import collections
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tools.process import ROOT, start_child
from tools.tier import READY as TIER_READY

if TYPE_CHECKING:
    from tools.bench.run import Harness

OUT = ROOT / "build" / "bench"


def fold(lines: Iterable[str], top: int = 25) -> str:
    """The top functions of py-spy's raw (collapsed) stacks, by self and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    out += ["", "incl %  function"]
    out += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out) + "\n"


def _short(frame: str) -> str:
    """``fetch (app/fetcher.py:123)`` without the line number, paths made relative."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def profile_tier(h: Harness, tool: str, per_request: int = 4, concurrency: int = 16) -> None:
    bodies = h.bodies(f"small{per_request}", h.workload.small, per_request=per_request)
    config = h.tier_config("tiny", h.tiny(), h.backend_address)
    if tool == "pyinstrument":
        _pyinstrument(h, config, bodies, concurrency)
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    for mode, extra in (("all", ["--threads"]), ("gil", ["--gil"])):
        child, url = h.start_tier(config)
        raw = OUT / f"profile_{mode}_c{concurrency}.txt"
        seconds = int(h.timing.duration_s + h.timing.warmup_s)
        args = [py_spy, "record", "--pid", str(child.pid), "--format", "raw", "--rate", "250"]
        args += ["--duration", str(seconds), "--output", str(raw), "--nonblocking", *extra]
        recorder = start_child("py-spy", args, None)
        try:
            result = h.load(url, bodies, concurrency=concurrency)
            recorder.proc.wait(timeout=seconds + 60)
        finally:
            child.stop()
        summary = fold(raw.read_text().splitlines()) if raw.is_file() else recorder.tail()
        report = f"# py-spy, {mode}: {result['images_per_s']:.0f} img/s during the profile\n\n{summary}"
        (OUT / f"profile_{mode}_c{concurrency}_top.txt").write_text(report)
        print(report, flush=True)


def _pyinstrument(h: Harness, config: Path, bodies: Path, concurrency: int) -> None:
    html = OUT / "profile_pyinstrument.html"
    args = [sys.executable, "-m", "pyinstrument", "-r", "html", "-o", str(html), "-m", "app", "--config", str(config)]
    args += ["--port", "0", "--log-level", "WARNING"]
    child = start_child("tier", args, TIER_READY)
    try:
        result = h.load(f"{child.match.group(1)}/v1/models/tiny:predict", bodies, concurrency=concurrency)
    finally:
        child.stop()  # pyinstrument writes its report as the tier exits
    print(f"pyinstrument: {result['images_per_s']:.0f} img/s; report in {html}", flush=True)
