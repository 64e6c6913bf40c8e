"""``python -m tools.canary_sim``: the canary rule's error rates, measured by driving ``ModelRouter.record()``.

Development only. Each simulated rollout sends requests at ``rate_per_s`` (Poisson arrivals), 20 % of them
to the canary (a coin per request), until the canary has answered ``canary_requests``; each is recorded
when it is answered, on a synthetic clock, in the order of answering. A request's latency is

    (service + spike + stall wait) x slowdown (canary only)

- service: log-normal, median 10 ms, sigma 0.3;
- spike: 1 % of requests, alone, get a Pareto (alpha 1.5) tail from 20 ms up (a GC pause, a page fault);
- stall wait: the machine stalls 0.5 times a second for a log-normal time (median 50 ms, sigma 1: some last
  seconds), and a request that arrives during a stall waits for its end, whichever route it is on.

The canary's slowdown multiplies all three (the strict reading: a canary 1.25x slower, stalls included, is
exactly on the default margin). Requests fail independently: 2 % on every route, plus the canary's extra.
Five canaries are measured: one drawn from stable's distributions, one 1.2x slower, one 3x slower, one
with +10 points of failures, and one on the margin (1.25x), to show the boundary. The default seed (23)
was never used to tune the rule's defaults (seeds 1 and 2 were).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.routing.router import ModelRouter
from app.settings import RollbackSettings, RoutesSettings, RouteTarget

STABLE = RouteTarget("stable", label="stable", weight=80)
CANARY = RouteTarget("canary", version=2, weight=20, canary=True)


@dataclass(frozen=True)
class Canary:
    name: str
    slowdown: float = 1.0
    extra_failure_rate: float = 0.0


SAME = Canary("drawn from stable's distributions")
SLIGHTLY_SLOWER = Canary("1.2x slower", slowdown=1.2)
SLOWER = Canary("3x slower", slowdown=3.0)
FAILING = Canary("+10 points of failures", extra_failure_rate=0.10)
ON_THE_MARGIN = Canary("1.25x slower (the default margin)", slowdown=1.25)
CANARIES = (SAME, SLIGHTLY_SLOWER, SLOWER, FAILING, ON_THE_MARGIN)


@dataclass(frozen=True)
class Traffic:
    canary_share: float = 0.2
    rate_per_s: float = 200.0
    service_median_s: float = 0.010
    service_sigma: float = 0.3
    spike_chance: float = 0.01
    spike_min_s: float = 0.020
    spike_alpha: float = 1.5
    stalls_per_s: float = 0.5
    stall_median_s: float = 0.050
    stall_sigma: float = 1.0
    failure_rate: float = 0.02


@dataclass
class Measured:
    canary: Canary
    rollouts: int = 0
    rolled_back_at: list[int] = field(default_factory=list)  # the canary requests answered by each rollback

    @property
    def rate(self) -> float:
        return len(self.rolled_back_at) / self.rollouts

    def within(self, requests: int) -> float:
        """The share of rollouts rolled back by the canary's ``requests``-th request."""
        return sum(at <= requests for at in self.rolled_back_at) / self.rollouts


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def rollout(
    rng: np.random.Generator, canary: Canary, rules: RollbackSettings, canary_requests: int, traffic: Traffic
) -> int | None:
    """The canary requests answered when it was rolled back, or None if it never was."""
    n = int(canary_requests / traffic.canary_share * 1.3) + 100
    arrivals = np.cumsum(rng.exponential(1 / traffic.rate_per_s, n))
    on_canary = rng.random(n) < traffic.canary_share
    latency = rng.lognormal(np.log(traffic.service_median_s), traffic.service_sigma, n)
    spiked = rng.random(n) < traffic.spike_chance
    latency[spiked] += traffic.spike_min_s * (1 + rng.pareto(traffic.spike_alpha, int(spiked.sum())))
    latency += _stall_waits(rng, arrivals, traffic)
    latency[on_canary] *= canary.slowdown
    failed = rng.random(n) < traffic.failure_rate + on_canary * canary.extra_failure_rate
    answered = arrivals + latency
    order = np.argsort(answered, kind="stable")

    clock = _Clock()
    router = ModelRouter("sim", RoutesSettings(targets=(STABLE, CANARY), rollback=rules), clock=clock)
    judged = router.sides[1]
    recorded = 0
    for at, to_canary, seconds, fail in zip(
        answered[order].tolist(),
        on_canary[order].tolist(),
        latency[order].tolist(),
        failed[order].tolist(),
        strict=True,
    ):
        clock.now = at
        router.record(CANARY if to_canary else STABLE, 1, int(fail), seconds)
        if to_canary:
            recorded += 1
            if judged.state != "serving":
                return recorded
            if recorded == canary_requests:
                return None
    raise AssertionError("too few arrivals drawn")  # n is 30 % more than the canary share needs


def _stall_waits(rng: np.random.Generator, arrivals: np.ndarray, traffic: Traffic) -> np.ndarray:
    """Each arrival's wait for the end of the machine stall it arrived in (0 outside stalls)."""
    horizon = float(arrivals[-1])
    starts = np.sort(rng.uniform(0, horizon, rng.poisson(traffic.stalls_per_s * horizon)))
    if not len(starts):
        return np.zeros_like(arrivals)
    ends = np.maximum.accumulate(
        starts + rng.lognormal(np.log(traffic.stall_median_s), traffic.stall_sigma, len(starts))
    )
    last = np.searchsorted(starts, arrivals, side="right") - 1
    waits = np.where(last >= 0, ends[np.maximum(last, 0)] - arrivals, 0.0)
    return np.maximum(waits, 0.0)


def measure(
    canary: Canary,
    rollouts: int,
    seed: int,
    rules: RollbackSettings | None = None,
    canary_requests: int = 1000,
    traffic: Traffic | None = None,
) -> Measured:
    """``rollouts`` simulated rollouts of ``canary``, each with its own stream of ``seed``."""
    rules, traffic = rules or RollbackSettings(), traffic or Traffic()
    measured = Measured(canary, rollouts)
    for stream in np.random.SeedSequence(seed).spawn(rollouts):
        at = rollout(np.random.default_rng(stream), canary, rules, canary_requests, traffic)
        if at is not None:
            measured.rolled_back_at.append(at)
    return measured


def report(measured: Measured) -> str:
    at = sorted(measured.rolled_back_at)
    when = f"; by canary request: median {at[len(at) // 2]}, max {at[-1]}" if at else ""
    return (
        f"{measured.canary.name:<34} rolled back in {len(at):>4} of {measured.rollouts} ({measured.rate:.1%});"
        f" within 300 requests {measured.within(300):.1%}{when}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.canary_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=23, help="23 was not used for tuning")
    args = parser.parse_args(argv)
    logging.getLogger("imagegate").setLevel(logging.ERROR)  # not a WARNING line per rollback
    print(f"{args.rollouts} rollouts of 1,000 canary requests at 80/20, seed {args.seed}, default rollback settings")
    for canary in CANARIES:
        print(report(measure(canary, args.rollouts, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
