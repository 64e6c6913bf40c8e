"""The router on its own: weighted sticky splits, minimal movement on a weight change, rollback verdicts on a
synthetic clock."""

from __future__ import annotations

import numpy as np

from app.routing.router import ModelRouter
from app.settings import RollbackSettings, RoutesSettings, RouteTarget

STABLE = RouteTarget("stable", label="stable", weight=90)
CANARY = RouteTarget("canary", version=2, weight=10, canary=True)


def router(*targets: RouteTarget) -> ModelRouter:
    return ModelRouter("digits", RoutesSettings(targets=targets))


def share(r: ModelRouter, keys: range) -> float:
    return sum(r.choose(f"user-{k}") == CANARY for k in keys) / len(keys)


def test_the_split_follows_the_weights_and_a_key_always_gets_the_same_side() -> None:
    r = router(STABLE, CANARY)
    assert abs(share(r, range(20_000)) - 0.10) < 0.01
    assert all(r.choose("user-7") == r.choose("user-7") for _ in range(10))


def test_a_weight_change_moves_only_the_keys_it_must() -> None:
    before = router(STABLE, CANARY)
    after = router(
        RouteTarget("stable", label="stable", weight=80), RouteTarget("canary", version=2, weight=20, canary=True)
    )
    keys = [f"user-{k}" for k in range(20_000)]
    moved = [k for k in keys if before.choose(k).name != after.choose(k).name]  # type: ignore[union-attr]
    assert 0.09 < len(moved) / len(keys) < 0.11  # the 10 points that changed hands, no more
    assert all(after.choose(k).name == "canary" for k in moved)  # type: ignore[union-attr]


def test_no_targets_or_no_weight_chooses_nothing() -> None:
    assert router().choose("x") is None


class Clock:
    """The router's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def judged(clock: Clock, **rollback: int) -> ModelRouter:
    """A 90/10 router that checks its canary every 5 requests from the 10th, and rolls back after 2 worse checks."""
    rules = {"window": 20, "min_samples": 10, "check_every": 5, "consecutive": 2, "warmup_requests": 0} | rollback
    return ModelRouter(
        "digits", RoutesSettings(targets=(STABLE, CANARY), rollback=RollbackSettings(**rules)), clock=clock
    )


def play(r: ModelRouter, clock: Clock, canary_seconds: list[float], stable_seconds: float, fail: bool = False) -> None:
    """Each canary request, with 4 stable ones around it (80/20), 10 ms apart."""
    for seconds in canary_seconds:
        for _ in range(4):
            clock.now += 0.01
            r.record(STABLE, 1, 0, stable_seconds)
        clock.now += 0.01
        r.record(CANARY, 1, int(fail), seconds)


def lognormal(seed: int, median_s: float, n: int) -> list[float]:
    return np.random.default_rng(seed).lognormal(np.log(median_s), 0.3, n).tolist()  # type: ignore[no-any-return]


def test_a_canary_that_fails_more_is_rolled_back_after_consecutive_checks_and_stays_there() -> None:
    rolled: list[tuple[str, str]] = []
    clock = Clock()
    r = judged(clock)
    r.on_rollback = lambda model, target: rolled.append((model, target))
    play(r, clock, [0.01] * 14, 0.01, fail=True)
    assert r.describe()[1]["state"] == "serving"  # worse at its 10th request: one check, not two
    play(r, clock, [0.01], 0.01, fail=True)
    described = {side["name"]: side for side in r.describe()}
    assert described["canary"]["state"] == "rolled_back" and described["canary"]["weight"] == 0
    assert "failure rate 100.0% against 0.0%" in described["canary"]["reason"]
    assert described["canary"]["reason"].endswith("2 checks in a row")
    assert rolled == [("digits", "canary")]
    assert all(r.choose(f"user-{k}") == STABLE for k in range(500))
    r.reset()
    assert r.describe()[1]["weight"] == 10 and r.describe()[1]["state"] == "serving"


def test_a_3x_slower_canary_is_rolled_back_and_a_1_1x_slower_one_is_not() -> None:
    for slowdown, state in ((3.0, "rolled_back"), (1.1, "serving")):
        clock = Clock()
        r = judged(clock, window=50, min_samples=50, check_every=10)
        for canary, stable in zip(lognormal(1, 0.010 * slowdown, 100), lognormal(2, 0.010, 100), strict=True):
            play(r, clock, [canary], stable)
        assert r.describe()[1]["state"] == state, r.describe()[1]["reason"]
        if state == "rolled_back":
            assert "latency median" in r.describe()[1]["reason"] and "against 10 ms" in r.describe()[1]["reason"]


def test_only_the_same_time_span_counts_a_busy_spell_is_no_rollback() -> None:
    """Stable answered in 10 ms on a quiet machine before the canary started; then the machine got busy and
    both answer in 30 ms. Against stable's quiet requests the canary would look 3x slower; it is not rolled back.
    """
    clock = Clock()
    r = judged(clock)
    for _ in range(200):
        clock.now += 0.01
        r.record(STABLE, 1, 0, 0.010)
    play(r, clock, lognormal(3, 0.030, 40), 0.030)
    assert r.describe()[1]["state"] == "serving"


def test_a_canarys_first_requests_are_its_warm_up_and_not_judged_for_latency() -> None:
    for warmup, state in ((10, "serving"), (0, "rolled_back")):
        clock = Clock()
        r = judged(clock, consecutive=1, warmup_requests=warmup)
        play(r, clock, [0.300] * 10 + [0.010] * 10, 0.010)  # cold for 10 requests, then as fast as stable
        assert r.describe()[1]["state"] == state


def test_promote_gives_one_route_everything() -> None:
    r = router(STABLE, CANARY)
    r.promote("canary")
    assert all(r.choose(f"user-{k}") == CANARY for k in range(200))


def test_a_waiting_target_gets_no_keys_until_available_and_its_warm_up_starts_again() -> None:
    r = router(STABLE, CANARY)
    r.set_available("canary", False)
    assert share(r, range(2000)) == 0 and r.describe()[1]["state"] == "waiting" and r.describe()[1]["weight"] == 0
    r.reset()
    assert share(r, range(2000)) == 0  # an admin's reset does not make the backend load it
    r.record(CANARY, 1, 0, 0.01)
    r.set_available("canary", True)
    assert abs(share(r, range(20_000)) - 0.10) < 0.01 and r.describe()[1]["state"] == "serving"
    assert r.sides[1].requests == 0  # its next warmup_requests are not judged for latency


def test_when_every_target_waits_the_configured_weights_still_choose() -> None:
    """Not the backend's default version, which may be the canary itself."""
    r = router(STABLE, CANARY)
    r.set_available("stable", False)
    r.set_available("canary", False)
    assert abs(share(r, range(20_000)) - 0.10) < 0.01


def test_a_canarys_failure_is_answered_by_the_heaviest_route_that_is_no_canary_and_serves() -> None:
    small, big = RouteTarget("small", version=1, weight=20), RouteTarget("big", label="stable", weight=70)
    r = router(small, big, CANARY)
    assert r.fallback_for(CANARY) == big
    assert r.fallback_for(big) is None  # only a canary's failure is answered again
    r.set_available("big", False)
    assert r.fallback_for(CANARY) == small  # not one that waits for TF Serving, while another serves
    r.set_available("small", False)
    assert r.fallback_for(CANARY) == big  # all wait: the heaviest still
    r.promote("canary")
    assert r.fallback_for(CANARY) is None  # the canary is the stable now


def test_a_canary_alone_has_no_route_to_fall_back_to() -> None:
    assert router(CANARY).fallback_for(CANARY) is None


def test_the_generation_moves_on_every_change_to_what_a_target_answers_with_and_only_then() -> None:
    """The answer cache keys on it (app/cache.py): a rollback, promote, reset, availability or label move."""
    clock = Clock()
    r = judged(clock)
    seen = [r.generation]

    def moved() -> bool:
        seen.append(r.generation)
        return seen[-1] != seen[-2]

    play(r, clock, [0.01] * 14, 0.01)  # requests that judge nothing worse
    r.set_available("canary", True)  # already available: nothing changes
    r.resolved("stable", 1)  # the first version seen for the label
    r.resolved("stable", 1)
    assert not moved()
    play(r, clock, [0.01] * 15, 0.01, fail=True)
    assert r.describe()[1]["state"] == "rolled_back" and moved()
    r.reset()
    assert moved()
    r.promote("stable")
    assert moved()
    r.set_available("canary", False)
    assert moved()
    r.set_available("canary", True)
    assert moved()
    r.resolved("stable", 2)
    assert moved()
