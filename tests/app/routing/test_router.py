"""The router on its own: weighted sticky splits, minimal movement on a weight change, rollback verdicts."""

from __future__ import annotations

from app.routing.router import ModelRouter
from app.settings import RollbackSettings, RoutesSettings, RouteTarget

STABLE = RouteTarget("stable", label="stable", weight=90)
CANARY = RouteTarget("canary", version=2, weight=10, canary=True)


def router(*targets: RouteTarget, window: int = 20, min_samples: int = 10) -> ModelRouter:
    rollback = RollbackSettings(window=window, min_samples=min_samples, max_error_rate_increase=0.05, max_p99_ratio=3.0)
    return ModelRouter("digits", RoutesSettings(targets=targets, rollback=rollback))


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


def test_a_canary_that_fails_more_is_rolled_back_after_its_minimum_sample_and_stays_there() -> None:
    rolled: list[tuple[str, str]] = []
    r = router(STABLE, CANARY)
    r.on_rollback = lambda model, target: rolled.append((model, target))
    for _ in range(9):
        r.record(STABLE, 1, 0, 0.01)
        r.record(CANARY, 1, 1, 0.01)
    assert r.describe()[1]["state"] == "serving"  # 9 < min_samples
    r.record(CANARY, 1, 1, 0.01)
    described = {side["name"]: side for side in r.describe()}
    assert described["canary"]["state"] == "rolled_back" and described["canary"]["weight"] == 0
    assert "failure rate 100.0%" in described["canary"]["reason"]
    assert rolled == [("digits", "canary")]
    assert all(r.choose(f"user-{k}") == STABLE for k in range(500))
    r.reset()
    assert r.describe()[1]["weight"] == 10 and r.describe()[1]["state"] == "serving"


def test_a_slow_canary_is_rolled_back_and_a_healthy_one_is_not() -> None:
    slow, healthy = router(STABLE, CANARY), router(STABLE, CANARY)
    for _ in range(20):
        for r in (slow, healthy):
            r.record(STABLE, 1, 0, 0.010)
        slow.record(CANARY, 1, 0, 0.100)
        healthy.record(CANARY, 1, 0, 0.012)
    assert slow.describe()[1]["state"] == "rolled_back" and "p99 latency" in slow.describe()[1]["reason"]
    assert healthy.describe()[1]["state"] == "serving"


def test_promote_gives_one_route_everything() -> None:
    r = router(STABLE, CANARY)
    r.promote("canary")
    assert all(r.choose(f"user-{k}") == CANARY for k in range(200))
