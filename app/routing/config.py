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
    window: int = 200  # the last requests of each side compared
    min_samples: int = 50  # a canary with fewer requests in its window is not judged
    max_error_rate_increase: float = 0.05  # canary item error rate minus stable's, as a fraction
    max_p99_ratio: float = 3.0  # canary p99 latency over stable's


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
