"""Which TF Serving version or label answers a request for a model with routes, and when a canary is rolled back.

Assignment is sticky: a request's key (the ``routes.key_header`` header, else its request id) is
hashed to a point in [0, 1), and the targets own consecutive ranges of that interval in their
configured order, sized by weight. Changing a weight moves only the keys in the range that changed
hands: going from 10 % to 20 % canary moves 10 % of the keys, all towards the canary.

Each route keeps its last requests: when answered (on ``clock``), latency, and whether the model or the
backend failed it. Every ``check_every`` requests of a canary, its last ``window`` requests are compared
with the other routes' requests over the same time span (``app/routing/analysis.py``); a canary found
worse by ``consecutive`` checks in a row is rolled back: its weight drops to 0 and stays there until an
admin resets the routes. A target TF Serving does not have AVAILABLE waits, with no share of the keys,
until it has (``set_available``, called by ``app/routing/poller.py``). A request a canary fails is answered
again by the heaviest route that is no canary (``fallback_for``; the retry itself is ``routed.py``'s).

``generation`` counts the changes to what a target answers with: a reset, a promote, a rollback, a target
that becomes AVAILABLE or stops being so, a label the poller sees resolve to another version. The answer
cache (``app/cache.py``) keys on it, so an answer kept before a change is never given after it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.routing.analysis import Check, RequestLog, Requests, compare
from app.settings import RoutesSettings, RouteTarget

log = logging.getLogger("imagegate")

MODEL_FAILURES = frozenset({"model_output_invalid", "internal_error"})
OTHERS_PER_WINDOW = 20  # a route that is no canary keeps this many times ``window`` requests for the comparison


@dataclass
class _Side:
    target: RouteTarget
    weight: int
    window: RequestLog
    state: str = "serving"  # serving | rolled_back | promoted
    reason: str = ""
    requests: int = 0  # recorded since the last reset, or since it stopped waiting
    worse_checks: int = 0  # checks in a row that found this canary worse
    waiting: bool = False  # its version or label is not AVAILABLE on TF Serving (app/routing/poller.py)
    resolved: int | None = None  # the version its label resolved to at the poller's last round

    @property
    def share(self) -> int:
        """Its weight in the split now: none while it waits."""
        return 0 if self.waiting else self.weight

    def failure_rate(self) -> float:
        return float(self.window.since().failed.mean()) if len(self.window) else 0.0


@dataclass
class ModelRouter:
    model: str
    routes: RoutesSettings
    on_rollback: Callable[[str, str], None] = lambda model, target: None
    clock: Callable[[], float] = time.monotonic  # when a request was answered; the simulation brings its own
    sides: list[_Side] = field(init=False)
    generation: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the configured weights, windows emptied; a target that waits for TF Serving still waits."""
        window = self.routes.rollback.window
        self.generation += 1
        before = {side.target.name: side for side in getattr(self, "sides", ())}
        self.sides = [
            _Side(t, t.weight, RequestLog(window if t.canary else window * OTHERS_PER_WINDOW))
            for t in self.routes.targets
        ]
        for side in self.sides:  # what TF Serving has stays as the poller last saw it
            if side.target.name in before:
                side.waiting, side.resolved = before[side.target.name].waiting, before[side.target.name].resolved

    def choose(self, key: str) -> RouteTarget | None:
        """The target for ``key``; None when the model has no routes (or every weight is 0).

        When every target with a weight waits, they keep their weights: the backend's default version, which
        may well be the canary, is no better an answer than a target that is not ready.
        """
        weights = [side.share for side in self.sides]
        if not sum(weights):
            weights = [side.weight for side in self.sides]
        total = sum(weights)
        if not total:
            return None
        digest = hashlib.blake2b(f"{self.model}\0{key}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64 * total
        for side, weight in zip(self.sides, weights, strict=True):
            if point < weight:
                return side.target
            point -= weight
        return self.sides[-1].target

    def fallback_for(self, target: RouteTarget) -> RouteTarget | None:
        """Which route answers again a request that ``target`` failed: None unless it is a canary still serving.

        The heaviest route that is no canary and has a weight, preferring one that does not wait for TF Serving
        (a tie goes to the first configured).
        """
        if not target.canary or self._side(target.name).state != "serving":
            return None
        stable = [side for side in self.sides if not side.target.canary and side.weight]
        return max(stable, key=lambda side: (not side.waiting, side.weight)).target if stable else None

    def set_available(self, name: str, available: bool) -> None:
        """Whether TF Serving has target ``name`` AVAILABLE: it gets no traffic until it has.

        Its first ``warmup_requests`` after it stops waiting are its warm-up, not judged for latency.
        """
        side = self._side(name)
        if available and side.waiting:
            self.generation += 1
            side.waiting, side.requests = False, 0
            log.info("%s route %s is AVAILABLE on TF Serving: it gets its share", self.model, name)
        elif not available and not side.waiting:
            self.generation += 1
            side.waiting = True
            log.warning("%s route %s is not AVAILABLE on TF Serving: no traffic until it is", self.model, name)

    def resolved(self, name: str, version: int) -> None:
        """The label of target ``name`` resolves to ``version`` on TF Serving now (the poller's round)."""
        side = self._side(name)
        if side.resolved is not None and side.resolved != version:
            self.generation += 1
            log.info("%s route %s now resolves to version %d", self.model, name, version)
        side.resolved = version

    def record(self, target: RouteTarget, images: int, failed: int, seconds: float) -> None:
        """One request answered by ``target``: ``failed`` of its ``images`` failed by the model or the backend."""
        rules = self.routes.rollback
        side = self._side(target.name)
        side.requests += 1
        judged = not failed and side.requests > rules.warmup_requests
        side.window.append(self.clock(), seconds if judged else None, failed > 0)
        if target.canary and side.state == "serving" and side.requests % rules.check_every == 0:
            self._judge(side)

    def _judge(self, canary: _Side) -> None:
        """One check of ``canary``; the ``consecutive``-th worse one in a row rolls it back."""
        check = self.check(canary.target.name)
        canary.worse_checks = canary.worse_checks + 1 if check.worse else 0
        consecutive = self.routes.rollback.consecutive
        if canary.worse_checks >= consecutive:
            reason = f"{check.reason}; {consecutive} checks in a row"
            canary.weight, canary.state, canary.reason = 0, "rolled_back", reason
            self.generation += 1
            log.warning("rolled back %s route %s: %s", self.model, canary.target.name, reason)
            self.on_rollback(self.model, canary.target.name)

    def check(self, name: str) -> Check:
        """The canary ``name``'s window against the other routes' requests answered since its oldest one."""
        rules, canary = self.routes.rollback, self._side(name).window.since()
        return compare(
            canary,
            self.others_since(canary.at[0] if len(canary) else float("inf")),
            confidence=rules.confidence,
            margin=rules.max_latency_ratio,
            max_error_rate_increase=rules.max_error_rate_increase,
            min_samples=rules.min_samples,
        )

    def others_since(self, start: float) -> Requests:
        """The requests the routes that are no canary answered since ``start``."""
        return Requests.joined([side.window.since(start) for side in self.sides if not side.target.canary])

    def promote(self, name: str) -> None:
        """``name`` takes all the traffic; the others drop to 0."""
        promoted = self._side(name)
        self.generation += 1
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
                "weight": s.share,
                "canary": s.target.canary,
                "state": "waiting" if s.waiting and s.state == "serving" else s.state,
                "reason": s.reason,
                "window": {"requests": len(s.window), "failure_rate": round(s.failure_rate(), 4)},
            }
            for s in self.sides
        ]


@dataclass
class ServedVersions:
    """The versions TF Serving has AVAILABLE of each model without routes, as the poller last saw them.

    Only watched while the answer cache is on (``app/cache.py``): a request that names no version goes to the
    model's latest, so a version loaded or unloaded changes what it answers with. ``generation`` moves then.
    """

    poll_s: dict[str, float]  # the models watched, and how often (their ``routes.poll_s``; 0: at start only)
    seen: dict[str, frozenset[int]] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)

    def saw(self, model: str, available: frozenset[int]) -> None:
        if model in self.seen and self.seen[model] != available:
            self.generations[model] = self.generations.get(model, 0) + 1
            log.info("%s: TF Serving has versions %s AVAILABLE now", model, sorted(available))
        self.seen[model] = available

    def generation(self, model: str) -> int:
        return self.generations.get(model, 0)
