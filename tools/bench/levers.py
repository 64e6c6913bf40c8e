"""Scenario 9 (issue 18): what each throughput lever bought, every one measured in the same run.

Each lever is the tier as it stood at a commit of this repository (checked out once into
``build/bench/levers/<commit>`` with ``git worktree``, and run from there with this
virtualenv), or the working tree started another way (``uvloop``). They run one after
another under scenario 1's load (4 x 640x480 URLs per request, c=16, the fake backend),
interleaved over the rounds, so the machine's drift is spread over all of them. The
figure to read is the tier's CPU per image (its own utime+stime over the images it
answered), which moves by a few per cent between runs where images/s moves by tens. Other
tenants only ever add to it (a shared core's cache and its sibling hyperthread), so each
lever's figure is its lowest over the rounds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench import procs
from tools.process import ROOT, Child, start_child
from tools.tier import READY as TIER_READY

if TYPE_CHECKING:
    from tools.bench.run import Harness

LEVERS_DIR = ROOT / "build" / "bench" / "levers"
THREAD_GROUPS = ("loop", "python", "other")  # procs.thread_cpu_seconds


@dataclass(frozen=True)
class Lever:
    name: str
    commit: str | None  # None: the working tree
    module: str = "app"  # what ``python -m`` runs: the tier, or a launcher that starts it another way
    kept: bool = True  # whether the product keeps this lever


LEVERS: tuple[Lever, ...] = (
    Lever("before issue 18: Tornado HTTP1Connection downloads, a hand-off per image, OpenCV decode", "6a479df"),
    Lever("simplejpeg decode alone, on that base", "b4548f3"),
    Lever("+ aiohttp downloads", "df296e9"),
    Lever("+ one thread-pool hand-off per request, decoded into the batch", "89a544d"),
    Lever("+ simplejpeg decode (all three)", "e1134f3"),
    Lever("+ the batch postprocessed at once, no EXIF walk without EXIF", "02737fb"),
    Lever("+ the fetcher's hot path (a URL read once, literal checked without a timed resolve)", "0c51bb9"),
    Lever("the working tree (+ JSON nesting counted in C first)", None),
    Lever("the working tree on uvloop", None, module="tools.bench.uvloop_tier", kept=False),
    Lever("floor: Tornado's HTTP server alone, a canned answer", None, module="tools.bench.tornado_floor", kept=False),
)


def checkout(commit: str) -> Path:
    """A worktree of ``commit`` under build/bench/levers, made once."""
    path = LEVERS_DIR / commit
    if not (path / "app").is_dir():
        LEVERS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--force", "--detach", str(path), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path


def former_keys(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``models`` in the keys every lever's commit reads: they predate ``postprocess.activation`` (issue 26), and
    the tier still reads the former ``softmax: true`` as ``activation: softmax`` (app/model_settings.py)."""
    former = {}
    for name, model in models.items():
        post = dict(model.get("postprocess", {}))
        if post.pop("activation", None) == "softmax":
            post["softmax"] = True
        former[name] = {**model, "postprocess": post}
    return former


def start(h: Harness, lever: Lever, config: Path) -> tuple[Child, str]:
    cwd = checkout(lever.commit) if lever.commit is not None else ROOT
    args = [sys.executable, "-m", lever.module, "--config", str(config), "--port", "0", "--log-level", "WARNING"]
    child = start_child("tier", args, TIER_READY, cwd=cwd)
    return child, f"{child.match.group(1)}/v1/models/tiny:predict"


def scenario_levers(h: Harness, levers: Sequence[Lever] = LEVERS) -> None:
    from tools.bench.run import _cpu_per_image, _summary

    bodies = h.bodies("small4", h.workload.small, per_request=4)
    config = h.tier_config("tiny_levers", former_keys(h.tiny()), h.backend_address)
    runs: dict[str, list[dict[str, Any]]] = {lever.name: [] for lever in levers}
    for _round in range(h.timing.rounds + 1):
        for lever in levers:
            child, url = start(h, lever, config)
            try:
                cpu, threads = procs.cpu_seconds(child.pid), procs.thread_cpu_seconds(child.pid)
                result = h.load(url, bodies, concurrency=16)
                result["cpu_ms_per_image"] = _cpu_per_image(procs.cpu_seconds(child.pid) - cpu, result)
                after = procs.thread_cpu_seconds(child.pid)
                result["thread_cpu_ms_per_image"] = {
                    group: _cpu_per_image(after[group] - threads[group], result) for group in threads
                }
            finally:
                child.stop()
            print(f"    {lever.name}: {_summary(result)}", flush=True)
            runs[lever.name].append(result)
    h.raw["levers"] = runs
    first = min(r["cpu_ms_per_image"] for r in runs[levers[0].name])
    for lever in levers:
        results = runs[lever.name]
        best = min(results, key=lambda r: float(r["cpu_ms_per_image"]))
        cpu = best["cpu_ms_per_image"]
        rates = ", ".join(f"{r['images_per_s']:.0f}" for r in results)
        cpus = ", ".join(f"{r['cpu_ms_per_image']:.2f}" for r in results)
        errors = sum(r["item_errors"] + r["connection_errors"] for r in results)
        by_thread = ", ".join(f"{group} {best['thread_cpu_ms_per_image'][group]:.2f}" for group in THREAD_GROUPS)
        where = lever.commit or "working tree"
        h.add(
            f"9 lever: {lever.name} ({where}{'' if lever.kept else ', not kept'})",
            "(info) CPU per image against the first row",
            f"CPU ms per image {cpus} (lowest {cpu:.3f}; its threads: {by_thread}); img/s {rates}; errors {errors}",
            f"{cpu / first:.3f}x",
            "info",
        )
