"""Which TF Serving version or label answers a request for a model with routes, and when a canary is rolled back.

Assignment is sticky: a request's key (the ``routes.key_header`` header, else its request id) is
hashed to a point in [0, 1), and the targets own consecutive ranges of that interval in their
configured order, sized by weight. Changing a weight moves only the keys in the range that changed
hands: going from 10 % to 20 % canary moves 10 % of the keys, all towards the canary.

Each target keeps a sliding window of its last requests: images answered, images the model failed
(``model_output_invalid``, ``internal_error``, and every image of a request the backend failed), and
latency. A canary with ``min_samples`` requests in its window whose failure rate exceeds the other
targets' by ``max_error_rate_increase``, or whose p99 latency exceeds theirs ``max_p99_ratio`` times,
is rolled back: its weight drops to 0 and stays there until an admin resets the routes.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.settings import RoutesSettings, RouteTarget

log = logging.getLogger("imagegate")

MODEL_FAILURES = frozenset({"model_output_invalid", "internal_error"})


@dataclass
class _Sample:
    images: int
    failed: int
    seconds: float


@dataclass
class _Side:
    target: RouteTarget
    weight: int
    window: deque[_Sample]
    state: str = "serving"  # serving | rolled_back | promoted
    reason: str = ""

    def failure_rate(self) -> float:
        images = sum(s.images for s in self.window)
        return sum(s.failed for s in self.window) / images if images else 0.0


def _p99(samples: list[_Sample]) -> float:
    ordered = sorted(s.seconds for s in samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


@dataclass
class ModelRouter:
    model: str
    routes: RoutesSettings
    on_rollback: Callable[[str, str], None] = lambda model, target: None
    sides: list[_Side] = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the configured weights, windows emptied."""
        window = self.routes.rollback.window
        self.sides = [_Side(t, t.weight, deque(maxlen=window)) for t in self.routes.targets]

    def choose(self, key: str) -> RouteTarget | None:
        """The target for ``key``; None when the model has no routes (or every weight is 0)."""
        total = sum(side.weight for side in self.sides)
        if not total:
            return None
        digest = hashlib.blake2b(f"{self.model}\0{key}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64 * total
        for side in self.sides:
            if point < side.weight:
                return side.target
            point -= side.weight
        return self.sides[-1].target

    def record(self, target: RouteTarget, images: int, failed: int, seconds: float) -> None:
        side = self._side(target.name)
        side.window.append(_Sample(images, failed, seconds))
        if target.canary and side.state == "serving":
            reason = self._verdict(side)
            if reason:
                side.weight, side.state, side.reason = 0, "rolled_back", reason
                log.warning("rolled back %s route %s: %s", self.model, target.name, reason)
                self.on_rollback(self.model, target.name)

    def _verdict(self, canary: _Side) -> str:
        """Why the canary should be rolled back, or "" while it is no worse than the others."""
        rules = self.routes.rollback
        if len(canary.window) < rules.min_samples:
            return ""
        others = [s for side in self.sides if not side.target.canary for s in side.window]
        images = sum(s.images for s in others)
        stable_rate = sum(s.failed for s in others) / images if images else 0.0
        rate = canary.failure_rate()
        if rate - stable_rate > rules.max_error_rate_increase:
            return f"failure rate {rate:.1%} against {stable_rate:.1%} on the other routes"
        if len(others) >= rules.min_samples:
            ours, theirs = _p99(list(canary.window)), _p99(others)
            if theirs and ours > theirs * rules.max_p99_ratio:
                return f"p99 latency {ours * 1000:.0f} ms against {theirs * 1000:.0f} ms on the other routes"
        return ""

    def promote(self, name: str) -> None:
        """``name`` takes all the traffic; the others drop to 0."""
        promoted = self._side(name)
        for side in self.sides:
            side.weight = 0
        promoted.weight, promoted.state, promoted.reason = 1, "promoted", "promoted by an admin"

    def _side(self, name: str) -> _Side:
        for side in self.sides:
            if side.target.name == name:
                return side
        raise KeyError(name)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.target.name,
                "version": s.target.version,
                "label": s.target.label,
                "weight": s.weight,
                "canary": s.target.canary,
                "state": s.state,
                "reason": s.reason,
                "window": {"requests": len(s.window), "failure_rate": round(s.failure_rate(), 4)},
            }
            for s in self.sides
        ]
