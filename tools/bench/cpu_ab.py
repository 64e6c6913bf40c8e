"""``python -m tools.bench.cpu_ab``: the tier's CPU per image under two sets of settings, side by side.

Scenario 1's load (``python -m tools.bench``: 4 x 640x480 URLs per request, c=16, nginx, the fake backend;
``--large``: scenario 2's, 1 x 12 MP per request, c=8),
against a tier started with ``--a`` settings and one with ``--b``, in ``--pairs`` pairs, the order alternating
(a/b, b/a, ...), each run in a new tier process; per run the tier's utime+stime over the images answered, as
scenario 8 (the cost of metrics) does. Prints each pair and the median of the b/a ratios. For a setting that
changes the tier's CPU by less than the machine's noise (about 5 % between runs here), read the pairs, not the
median alone.

    python -m tools.bench.cpu_ab --b server.malloc_hand_back_s=0 --pairs 3

``--a-root``/``--b-root`` run that side's tier from another tree (its ``app`` package, this virtualenv), e.g. a
``git archive`` of the base commit, to compare code rather than settings:

    git archive 2da93fe | tar -x -C /tmp/base && python -m tools.bench.cpu_ab --a-root /tmp/base --pairs 3

Each run also prints its CPU per image by thread (the event loop, the decode pool, gRPC's own threads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.bench import procs
from tools.bench.imagehost import start_image_host
from tools.bench.images import make_workload
from tools.bench.levers import THREAD_GROUPS
from tools.bench.run import FULL, OUT, QUICK, Harness, _cpu_per_image, _summary
from tools.fakeserving import start_fakeserving
from tools.process import Child, start_child
from tools.tier import READY as TIER_READY


def start_tier_from(root: Path, config: Path, sets: Sequence[str]) -> tuple[Child, str]:
    """The tier of the tree at ``root`` (``python -m app`` run from there with this virtualenv)."""
    args = [sys.executable, "-m", "app", "--config", str(config), "--port", "0", "--log-level", "WARNING"]
    for item in ["server.drain_delay_s=0", *sets]:
        args += ["--set", item]
    child = start_child("tier", args, TIER_READY, cwd=root)
    return child, f"{child.match.group(1)}/v1/models/tiny:predict"


def run_pairs(
    h: Harness,
    sets: dict[str, list[str]],
    pairs: int,
    large: bool = False,
    roots: dict[str, Path | None] | None = None,
) -> list[dict[str, float]]:
    if large:  # scenario 2's load: one 12 MP image per request, c=8
        bodies, concurrency = h.bodies("large1", h.workload.large, per_request=1), 8
    else:
        bodies, concurrency = h.bodies("small4", h.workload.small, per_request=4), 16
    config = h.tier_config("tiny", h.tiny(), h.backend_address)
    found: list[dict[str, float]] = []
    for pair in range(pairs):
        costs: dict[str, float] = {}
        for name in ("a", "b") if pair % 2 == 0 else ("b", "a"):
            root = (roots or {}).get(name)
            child, url = h.start_tier(config, sets[name]) if root is None else start_tier_from(root, config, sets[name])
            try:
                cpu, counters = procs.cpu_seconds(child.pid), procs.thread_counters(child.pid)
                result = h.load(url, bodies, concurrency=concurrency)
                costs[name] = _cpu_per_image(procs.cpu_seconds(child.pid) - cpu, result)
                after = procs.thread_counters(child.pid)
                start, end = procs.group_cpu_seconds(counters), procs.group_cpu_seconds(after)
                split = {g: _cpu_per_image(end[g] - start[g], result) for g in THREAD_GROUPS}
                counted = _per_image(counters, after, result)
            finally:
                child.stop()
            where = f" from {root}" if root is not None else ""
            by_thread = ", ".join(f"{g} {split[g]:.3f}" for g in THREAD_GROUPS)
            summary = _summary({**result, "cpu_ms_per_image": costs[name]})
            print(f"  {name} {sets[name]}{where}: {summary} ({by_thread})", flush=True)
            print(f"    per image: {counted}", flush=True)
        found.append(costs)
    return found


def _per_image(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], result: dict[str, float]
) -> str:
    """Each thread group's user and system ms, minor faults and context switches (voluntary/involuntary) per image."""
    images = max(float(result["images_per_s"]) * float(result["seconds"] + result["warmup_s"]), 1.0)
    parts = []
    for group in ("loop", "python"):
        d = {k: (after[group][k] - before[group][k]) / images for k in procs.COUNTERS}
        parts.append(
            f"{group} user {d['user'] * 1e3:.3f} sys {d['sys'] * 1e3:.3f} ms, minflt {d['minflt']:.2f}, "
            f"csw {d['vcsw']:.2f}/{d['ivcsw']:.2f}"
        )
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.cpu_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--a", action="append", default=[], metavar="KEY=VALUE", help="settings of a (repeatable)")
    parser.add_argument("--b", action="append", default=[], metavar="KEY=VALUE", help="settings of b (repeatable)")
    parser.add_argument("--a-root", type=Path, help="run a's tier from this tree (default: this one)")
    parser.add_argument("--b-root", type=Path, help="run b's tier from this tree (default: this one)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 s runs instead of 12 s")
    parser.add_argument("--large", action="store_true", help="scenario 2's load (1 x 12 MP, c=8) instead")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    workload = make_workload(OUT / "images")
    host = start_image_host(workload.directory)
    try:
        backend = start_fakeserving()
        try:
            h = Harness(QUICK if args.quick else FULL, workload, host, backend)
            roots = {"a": args.a_root, "b": args.b_root}
            pairs = run_pairs(h, {"a": args.a, "b": args.b}, args.pairs, args.large, roots)
        finally:
            backend.stop()
    finally:
        host.stop()
    ratios = [p["b"] / p["a"] for p in pairs]
    each = ", ".join(f"{p['a']:.3f}/{p['b']:.3f}" for p in pairs)
    image = "12 MP" if args.large else "640x480"
    print(f"CPU ms per {image} image, a/b by pair: {each}; b/a median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
