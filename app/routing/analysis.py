"""Canary analysis: is a canary worse than the other routes over the same span of time? Pure, numpy only.

Two one-sided tests, each at ``1 - confidence``:

- **Latency**, Mann-Whitney U (normal approximation, ties corrected, continuity corrected): do the canary's
  latencies divided by ``margin`` tend to exceed the others'? A rank test needs no equal sample sizes and no
  distribution, and a stall that hits both sides in the span shifts both alike. With ``margin`` 1.2 a canary
  1.2x slower sits exactly on the null hypothesis, so it is judged worse by one check with probability
  ``1 - confidence``; a faster or equal one, less.
- **Failures**, Fisher's exact test on failed / answered requests: does the canary fail more often? It is
  worse only when that is significant and its failure rate also exceeds the others' by more than
  ``max_error_rate_increase`` (a practical margin: a significant +0.5 point is not a rollback).

Kayenta (Spinnaker) judges canaries with the same rank test over the same interval. Both tests are written
here rather than taken from scipy.stats: its ``mannwhitneyu`` costs ~650 us a call against ~40 us here, the
simulation (``python -m tools.canary_sim``) makes ~100,000 checks, and the product stays numpy-only;
tests/app/routing/test_analysis.py checks both against scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

BLOCK = 10  # canary requests per block of start times in the latency test


class Sample(NamedTuple):
    """One request on one route."""

    at: float  # when it was answered, on the router's clock (seconds)
    seconds: float | None  # its latency; None when it does not count for latency (failed, or warming up)
    failed: bool  # the model or the backend failed it


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
    ours = np.concatenate([np.ones(n1), np.zeros(n2)])
    by_value = np.argsort(values)
    order = by_value[np.argsort(blocks[by_value], kind="stable")]  # by block, then by value (faster than lexsort)
    values, blocks, ours = values[order], blocks[order], ours[order]
    n = n1 + n2
    new_block = np.concatenate([[True], blocks[1:] != blocks[:-1]])
    new_value = new_block | np.concatenate([[True], values[1:] != values[:-1]])
    block_of = np.cumsum(new_block) - 1
    tie_starts = np.flatnonzero(new_value)
    tie_sizes = np.diff(tie_starts, append=n).astype(float)
    mean_position = (tie_starts + (tie_sizes - 1) / 2)[np.cumsum(new_value) - 1]
    rank = mean_position - np.flatnonzero(new_block)[block_of] + 1
    size = np.bincount(block_of).astype(float)
    mine = np.bincount(block_of, weights=ours)
    theirs = size - mine
    u = np.bincount(block_of, weights=rank * ours) - mine * (mine + 1) / 2
    ties = np.bincount(block_of[tie_starts], weights=tie_sizes**3 - tie_sizes, minlength=len(size))
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(size > 1, mine * theirs / 12 * ((size + 1) - ties / (size * (size - 1))), 0.0)
    weight = 1 / (size + 1)
    total = float((weight**2 * variance).sum())
    if total <= 0:
        return 1.0  # no block holds both sides with differing values: nothing to rank
    judged = variance > 0
    shift = float((weight * (u - mine * theirs / 2)).sum()) - 0.5 * float(weight[judged].min())
    return 0.5 * math.erfc(shift / math.sqrt(total) / math.sqrt(2))


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
    canary: Sequence[Sample],
    others: Sequence[Sample],
    *,
    confidence: float,
    margin: float,
    max_error_rate_increase: float,
    min_samples: int,
    per_block: int = BLOCK,
) -> Check:
    """Whether ``canary`` is worse than ``others``: the caller gives both over the same span of time."""
    alpha = 1 - confidence
    if len(canary) < min_samples or not others:
        return Check(False, "", len(canary), len(others))
    at, seconds, failed = _columns(canary)
    their_at, their_seconds, their_failed = _columns(others)
    span = float(at.max() - at.min())
    rate, others_rate = float(failed.mean()), float(their_failed.mean())
    failure_p = 1.0
    if rate - others_rate > max_error_rate_increase:
        failure_p = failure_p_value(int(failed.sum()), len(canary), int(their_failed.sum()), len(others))
    judged, their_judged = ~np.isnan(seconds), ~np.isnan(their_seconds)
    ours, theirs = seconds[judged], their_seconds[their_judged]
    latency_p = 1.0
    if len(ours) >= min_samples and len(theirs) >= min_samples:
        blocks = time_blocks((at - seconds)[judged], (their_at - their_seconds)[their_judged], per_block)
        latency_p = latency_p_value(ours, theirs, margin, *blocks)
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


def _columns(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answer times, latencies (NaN where a request does not count for latency) and failures, as arrays."""
    at, seconds, failed = zip(*samples, strict=True)
    return np.array(at, dtype=float), np.array(seconds, dtype=float), np.array(failed, dtype=float)
