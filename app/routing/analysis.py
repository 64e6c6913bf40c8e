"""Canary analysis: is a canary worse than the other routes over the same span of time? Pure, numpy only.

Two one-sided tests, each at ``1 - confidence``:

- **Latency**, Mann-Whitney U (normal approximation, ties and continuity corrected): do the canary's
  latencies divided by ``margin`` tend to exceed the others'? A rank test needs no equal sample sizes and
  no distribution. Requests are ranked only against requests that started near them (blocks of ``BLOCK``
  canary starts, and the others' starts among them), and the blocks combined with Van Elteren's weights: a
  stall delays everything that starts in it, on both sides, and whichever side happened to get more of it
  would look slower if all were ranked as one sample. A canary exactly ``margin`` times slower sits on the
  null hypothesis: one check finds it worse with probability about ``1 - confidence``; a faster one, less.
- **Failures**, Fisher's exact test on failed / answered requests: does the canary fail more often? It is
  worse only when that is significant and its failure rate also exceeds the others' by more than
  ``max_error_rate_increase`` (a practical margin: a significant +0.5 point is not a rollback).

Kayenta (Spinnaker) judges canaries with a Mann-Whitney U test over the same interval. Both tests are
written here rather than taken from scipy.stats: its ``mannwhitneyu`` costs ~650 us a call, ten times
this, the simulation (``python -m tools.canary_sim``) makes ~100,000 checks, and the product stays
numpy-only; tests/app/routing/test_analysis.py checks both against scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BLOCK = 10  # canary requests per block of start times in the latency test


@dataclass(frozen=True)
class Requests:
    """Requests of one or more routes as columns."""

    at: np.ndarray  # when each was answered, on the router's clock (seconds)
    seconds: np.ndarray  # its latency; NaN when it does not count for latency (failed, or warming up)
    failed: np.ndarray  # bool: the model or the backend failed it

    def __len__(self) -> int:
        return len(self.at)

    @staticmethod
    def joined(parts: Sequence[Requests]) -> Requests:
        if not parts:
            return Requests(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))
        return Requests(
            *(np.concatenate([getattr(p, column) for p in parts]) for column in ("at", "seconds", "failed"))
        )


class RequestLog:
    """A route's last ``capacity`` requests, appended in the order they were answered: a ring of numpy columns."""

    def __init__(self, capacity: int) -> None:
        self._at, self._seconds = np.zeros(capacity), np.zeros(capacity)
        self._failed = np.zeros(capacity, dtype=bool)
        self._capacity, self._next, self._count = capacity, 0, 0

    def __len__(self) -> int:
        return self._count

    def append(self, at: float, seconds: float | None, failed: bool) -> None:
        """One request; ``seconds`` None when its latency does not count."""
        i = self._next
        self._at[i], self._seconds[i], self._failed[i] = at, math.nan if seconds is None else seconds, failed
        self._next = i + 1 if i + 1 < self._capacity else 0
        if self._count < self._capacity:
            self._count += 1

    def since(self, start: float = -math.inf) -> Requests:
        """The requests answered at ``start`` or later, oldest first."""
        columns = [self._ordered(column) for column in (self._at, self._seconds, self._failed)]
        first = int(np.searchsorted(columns[0], start, side="left"))
        return Requests(*(column[first:] for column in columns))

    def _ordered(self, column: np.ndarray) -> np.ndarray:
        if self._count < self._capacity:
            return column[: self._count]
        return np.concatenate([column[self._next :], column[: self._next]])


@dataclass(frozen=True)
class Check:
    """One comparison of a canary with the others over the same span: worse or not, why, and the numbers."""

    worse: bool
    reason: str  # why it is worse; "" when it is not (or could not be judged)
    canary_requests: int = 0
    other_requests: int = 0
    span_s: float = 0.0
    latency_p: float = 1.0  # one-sided Mann-Whitney U p-value, 1.0 when not judged
    failure_p: float = 1.0  # one-sided Fisher exact p-value, 1.0 when not judged


def latency_p_value(
    canary: np.ndarray,
    others: np.ndarray,
    margin: float,
    canary_blocks: np.ndarray | None = None,
    other_blocks: np.ndarray | None = None,
) -> float:
    """One-sided p-value for "the canary's latencies over ``margin`` exceed the others'".

    Mann-Whitney U within each block (by default one block, the plain test), combined with Van Elteren's
    weights 1 / (block size + 1): requests are only ranked against requests of the same block.
    """
    n1, n2 = len(canary), len(others)
    values = np.concatenate([np.asarray(canary, dtype=float) / margin, np.asarray(others, dtype=float)])
    blocks = np.concatenate(
        [
            np.zeros(n1, dtype=np.int64) if canary_blocks is None else canary_blocks,
            np.zeros(n2, dtype=np.int64) if other_blocks is None else other_blocks,
        ]
    )
    top = float(values.max()) if n1 + n2 else 0.0
    # One sort by block, then by value: latencies are not negative, so block + value / (top * (1 + 1e-9)) orders
    # both, and two values that this rounds together are within 1e-13 of each other: a tie.
    key = blocks + values / (top * (1 + 1e-9) if top > 0 else 1.0)
    order = np.argsort(key)
    key, blocks, ours = key[order], blocks[order], order < n1
    size = np.bincount(blocks).astype(float)
    mine = np.bincount(blocks, weights=ours, minlength=len(size))
    first = (np.cumsum(size) - size)[blocks]  # each position's block start
    tied = key[1:] == key[:-1]
    if tied.any():
        rank, ties = _tied_ranks(key, blocks, first, len(size))
    else:
        rank, ties = np.arange(1.0, len(key) + 1) - first, np.zeros(len(size))
    theirs = size - mine
    u = np.bincount(blocks, weights=rank * ours, minlength=len(size)) - mine * (mine + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(size > 1, mine * theirs / 12 * ((size + 1) - ties / (size * (size - 1))), 0.0)
    weight = 1 / (size + 1)
    total = float((weight**2 * variance).sum())
    if total <= 0:
        return 1.0  # no block holds both sides with differing values: nothing to rank
    shift = float((weight * (u - mine * theirs / 2)).sum()) - 0.5 * float(weight[variance > 0].min())
    return 0.5 * math.erfc(shift / math.sqrt(total) / math.sqrt(2))


def _tied_ranks(key: np.ndarray, blocks: np.ndarray, first: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks within blocks, the mean rank for equal keys, and each block's tie term (sum of t^3 - t)."""
    new = np.concatenate([[True], key[1:] != key[:-1]])
    starts = np.flatnonzero(new)
    sizes = np.diff(starts, append=len(key)).astype(float)
    mean_position = (starts + (sizes - 1) / 2)[np.cumsum(new) - 1]
    ties = np.bincount(blocks[starts], weights=sizes**3 - sizes, minlength=count)
    return mean_position - first + 1, ties


def time_blocks(canary_starts: np.ndarray, other_starts: np.ndarray, per_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Block ids by start time: each block spans ``per_block`` canary starts and the others' starts among them."""
    edges = np.sort(canary_starts)[per_block::per_block]
    return np.searchsorted(edges, canary_starts, side="right"), np.searchsorted(edges, other_starts, side="right")


def failure_p_value(canary_failed: int, canary_total: int, others_failed: int, others_total: int) -> float:
    """One-sided Fisher exact p-value for "the canary fails more often than the others"."""
    total, failed = canary_total + others_total, canary_failed + others_failed
    top = min(failed, canary_total)
    if canary_failed > top or not total:
        return 1.0
    log_all = _log_choose(total, canary_total)
    terms = [
        _log_choose(failed, k) + _log_choose(total - failed, canary_total - k) - log_all
        for k in range(canary_failed, top + 1)
    ]
    return min(1.0, sum(math.exp(t) for t in terms))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def compare(
    canary: Requests,
    others: Requests,
    *,
    confidence: float,
    margin: float,
    max_error_rate_increase: float,
    min_samples: int,
    per_block: int = BLOCK,
) -> Check:
    """Whether ``canary`` is worse than ``others``: the caller gives both over the same span of time."""
    alpha = 1 - confidence
    if len(canary) < min_samples or not len(others):
        return Check(False, "", len(canary), len(others))
    span = float(canary.at.max() - canary.at.min())
    failed, others_failed = int(canary.failed.sum()), int(others.failed.sum())
    rate, others_rate = failed / len(canary), others_failed / len(others)
    failure_p = 1.0
    if rate - others_rate > max_error_rate_increase:
        failure_p = failure_p_value(failed, len(canary), others_failed, len(others))
    judged, their_judged = ~np.isnan(canary.seconds), ~np.isnan(others.seconds)
    ours, theirs = canary.seconds[judged], others.seconds[their_judged]
    latency_p = 1.0
    if len(ours) >= min_samples and len(theirs) >= min_samples:
        starts = (canary.at[judged] - ours, others.at[their_judged] - theirs)
        latency_p = latency_p_value(ours, theirs, margin, *time_blocks(*starts, per_block))
    reason = ""
    if failure_p < alpha:
        reason = (
            f"failure rate {rate:.1%} against {others_rate:.1%} on the other routes over the same {span:.1f} s"
            f" ({len(canary)} and {len(others)} requests; Fisher exact p = {failure_p:.2g} < {alpha:.2g})"
        )
    elif latency_p < alpha:
        reason = (
            f"latency median {np.median(ours) * 1000:.0f} ms against {np.median(theirs) * 1000:.0f} ms on the"
            f" other routes over the same {span:.1f} s, slower by more than {margin:g}x"
            f" (Van Elteren U p = {latency_p:.2g} < {alpha:.2g})"
        )
    return Check(bool(reason), reason, len(canary), len(others), span, latency_p, failure_p)
