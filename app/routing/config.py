"""The ``models.<name>.routes`` settings: plain frozen values, read and validated by ``app/settings.py``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RouteTarget:
    """One side of a split: a TF Serving version or label, its weight, and whether it is a canary."""

    name: str
    version: int | None = None
    label: str | None = None  # exactly one of version and label
    weight: int = 0  # shares are weight / sum of weights
    canary: bool = False  # watched against the others, and rolled back when worse


@dataclass(frozen=True)
class RollbackSettings:
    """When a canary is rolled back: the rule and its measured error rates are in docs/rollouts.md."""

    window: int = 200  # the canary's last requests judged, against the others' requests over the same time span
    min_samples: int = 50  # a canary with fewer requests in its window is not judged
    max_error_rate_increase: float = 0.05  # failure rates closer than this are never a rollback
    max_latency_ratio: float = 1.25  # latencies divided by this before the rank test: slower by less is no rollback
    confidence: float = 0.999  # of each test of a check (one-sided): 1 - its false-positive rate
    consecutive: int = 2  # checks in a row that must find the canary worse before it is rolled back
    check_every: int = 25  # canary requests between checks
    warmup_requests: int = 10  # each route's first requests after a (re)start are not judged for latency
    max_p99_ratio: float | None = None  # removed (replaced by max_latency_ratio): set, it is refused at start


@dataclass(frozen=True)
class ShadowSettings:
    """A share of the routed requests also sent to another version or label; its answers are only measured."""

    version: int | None = None
    label: str | None = None
    fraction: float = 0.0  # 0: no shadow traffic


@dataclass(frozen=True)
class RoutesSettings:
    key_header: str = "X-User-Id"  # sticky key; without it, the request id
    targets: tuple[RouteTarget, ...] = ()  # none: the model's default version, as without routes
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    poll_s: float = 1.0  # each worker asks TF Serving this often whether the targets are AVAILABLE; 0: at start only
