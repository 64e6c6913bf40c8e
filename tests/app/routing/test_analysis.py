"""The canary analysis on its own: both tests against scipy's, the blocks that keep a stall from fooling the rank
test, and one comparison's verdict and reason."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from app.routing.analysis import Check, Sample, compare, failure_p_value, latency_p_value, time_blocks


@pytest.mark.parametrize("seed", range(5))
def test_one_block_is_scipys_mann_whitney_u_with_ties_and_a_margin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    canary = np.round(rng.lognormal(np.log(12), 0.3, 60))  # whole milliseconds: ties
    others = np.round(rng.lognormal(np.log(10), 0.3, 300))
    for margin in (1.0, 1.2):
        expected = stats.mannwhitneyu(canary / margin, others, alternative="greater", method="asymptotic").pvalue
        assert latency_p_value(canary, others, margin) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "table", [(24, 200, 16, 800), (0, 10, 0, 40), (10, 10, 0, 40), (3, 50, 5, 200), (7, 60, 1, 300), (2, 200, 20, 800)]
)
def test_the_failure_test_is_scipys_one_sided_fisher_exact(table: tuple[int, int, int, int]) -> None:
    failed, total, others_failed, others_total = table
    contingency = [[failed, total - failed], [others_failed, others_total - others_failed]]
    expected = stats.fisher_exact(contingency, alternative="greater").pvalue
    assert failure_p_value(*table) == pytest.approx(expected, rel=1e-9)


def test_blocks_by_start_time_keep_a_stall_on_both_sides_from_looking_like_a_slow_canary() -> None:
    """A stall makes every request that starts in it slow, on both sides; by chance the canary got more of them.

    Ranked as one sample, the canary looks slower; ranked within blocks of start time, it is not.
    """
    rng = np.random.default_rng(7)
    starts = np.sort(rng.uniform(0, 10, 1000))
    on_canary = rng.random(1000) < np.where((starts > 4) & (starts < 6), 0.4, 0.2)  # more canary in the stall
    latency = rng.lognormal(np.log(0.010), 0.3, 1000) + np.where((starts > 4) & (starts < 6), 6 - starts, 0)
    canary, others = latency[on_canary], latency[~on_canary]
    assert latency_p_value(canary, others, 1.0) < 1e-5
    blocks = time_blocks(starts[on_canary], starts[~on_canary], 10)
    assert latency_p_value(canary, others, 1.0, *blocks) > 0.05


def test_time_blocks_hold_per_block_canary_starts_each() -> None:
    canary_blocks, other_blocks = time_blocks(np.arange(25.0), np.array([-1.0, 4.5, 9.5, 30.0]), 10)
    assert np.bincount(canary_blocks).tolist() == [10, 10, 5]
    assert other_blocks.tolist() == [0, 0, 0, 2]


def samples(rng: np.random.Generator, n: int, median_s: float, failure_rate: float) -> list[Sample]:
    at = np.sort(rng.uniform(0, 10, n))
    seconds = rng.lognormal(np.log(median_s), 0.3, n)
    failed = rng.random(n) < failure_rate
    return [
        Sample(t, None if f else s, bool(f))
        for t, s, f in zip(at.tolist(), seconds.tolist(), failed.tolist(), strict=True)
    ]


def judge(canary: list[Sample], others: list[Sample]) -> Check:
    return compare(canary, others, confidence=0.999, margin=1.2, max_error_rate_increase=0.05, min_samples=50)


def test_a_check_names_the_test_and_its_numbers() -> None:
    rng = np.random.default_rng(3)
    slow = judge(samples(rng, 200, 0.030, 0.02), samples(rng, 800, 0.010, 0.02))
    assert slow.worse and slow.latency_p < 1e-6 and "latency median 30 ms against 10 ms" in slow.reason
    failing = judge(samples(rng, 200, 0.010, 0.20), samples(rng, 800, 0.010, 0.02))
    assert failing.worse and failing.failure_p < 1e-6 and "Fisher exact" in failing.reason
    assert (failing.canary_requests, failing.other_requests) == (200, 800)
    same = judge(samples(rng, 200, 0.010, 0.02), samples(rng, 800, 0.010, 0.02))
    assert not same.worse and same.reason == ""


def test_a_small_increase_in_failures_is_no_rollback_however_significant() -> None:
    rng = np.random.default_rng(4)
    check = judge(samples(rng, 5000, 0.010, 0.06), samples(rng, 20000, 0.010, 0.02))
    assert not check.worse and check.failure_p == 1.0  # +4 points, under max_error_rate_increase


def test_too_few_requests_are_not_judged() -> None:
    rng = np.random.default_rng(5)
    check = judge(samples(rng, 49, 0.100, 1.0), samples(rng, 800, 0.010, 0.0))
    assert not check.worse and check.canary_requests == 49
