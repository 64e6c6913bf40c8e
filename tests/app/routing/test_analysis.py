"""The canary analysis on its own: both tests against scipy's, the blocks that keep a stall from fooling the rank
test, and one comparison's verdict and reason."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from app.routing.analysis import Check, RequestLog, Requests, compare, failure_p_value, latency_p_value, time_blocks


@pytest.mark.parametrize("seed", range(5))
def test_one_block_is_scipys_mann_whitney_u_with_ties_and_a_margin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    canary = np.round(rng.lognormal(np.log(12), 0.3, 60))  # whole milliseconds: ties
    others = np.round(rng.lognormal(np.log(10), 0.3, 300))
    for margin in (1.0, 1.2):
        expected = stats.mannwhitneyu(canary / margin, others, alternative="greater", method="asymptotic").pvalue
        assert latency_p_value(canary, others, margin) == pytest.approx(expected, rel=1e-9)


def test_blocks_combine_scipys_per_block_u_statistics_with_van_elterens_weights() -> None:
    rng = np.random.default_rng(11)
    canary, others = np.round(rng.lognormal(np.log(12), 0.3, 90)), np.round(rng.lognormal(np.log(10), 0.3, 400))
    canary_blocks, other_blocks = rng.integers(0, 6, 90), rng.integers(0, 6, 400)
    shift = spread = 0.0
    for block in range(6):
        ours, theirs = canary[canary_blocks == block] / 1.25, others[other_blocks == block]
        n1, n2 = len(ours), len(theirs)
        size, values = n1 + n2, np.concatenate([ours, theirs])
        ties = sum(t**3 - t for t in np.unique(values, return_counts=True)[1])
        u = stats.mannwhitneyu(ours, theirs).statistic
        shift += (u - n1 * n2 / 2) / (size + 1)
        spread += n1 * n2 / 12 * ((size + 1) - ties / (size * (size - 1))) / (size + 1) ** 2
    smallest_step = 1 / (max(np.bincount(canary_blocks) + np.bincount(other_blocks)) + 1)
    expected = stats.norm.sf((shift - 0.5 * smallest_step) / np.sqrt(spread))
    assert latency_p_value(canary, others, 1.25, canary_blocks, other_blocks) == pytest.approx(expected, rel=1e-9)


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


def requests(rng: np.random.Generator, n: int, median_s: float, failure_rate: float) -> Requests:
    failed = rng.random(n) < failure_rate
    seconds = np.where(failed, np.nan, rng.lognormal(np.log(median_s), 0.3, n))
    return Requests(np.sort(rng.uniform(0, 10, n)), seconds, failed)


def judge(canary: Requests, others: Requests) -> Check:
    return compare(canary, others, confidence=0.999, margin=1.2, max_error_rate_increase=0.05, min_samples=50)


def test_a_check_names_the_test_and_its_numbers() -> None:
    rng = np.random.default_rng(3)
    slow = judge(requests(rng, 200, 0.030, 0.02), requests(rng, 800, 0.010, 0.02))
    assert slow.worse and slow.latency_p < 1e-6 and "latency median 30 ms against 10 ms" in slow.reason
    failing = judge(requests(rng, 200, 0.010, 0.20), requests(rng, 800, 0.010, 0.02))
    assert failing.worse and failing.failure_p < 1e-6 and "Fisher exact" in failing.reason
    assert (failing.canary_requests, failing.other_requests) == (200, 800)
    same = judge(requests(rng, 200, 0.010, 0.02), requests(rng, 800, 0.010, 0.02))
    assert not same.worse and same.reason == ""


def test_a_small_increase_in_failures_is_no_rollback_however_significant() -> None:
    rng = np.random.default_rng(4)
    check = judge(requests(rng, 5000, 0.010, 0.06), requests(rng, 20000, 0.010, 0.02))
    assert not check.worse and check.failure_p == 1.0  # +4 points, under max_error_rate_increase


def test_too_few_requests_are_not_judged() -> None:
    rng = np.random.default_rng(5)
    check = judge(requests(rng, 49, 0.100, 1.0), requests(rng, 800, 0.010, 0.0))
    assert not check.worse and check.canary_requests == 49


def test_a_request_log_keeps_the_last_requests_in_order_and_selects_by_time() -> None:
    log = RequestLog(3)
    for at in range(5):
        log.append(float(at), None if at == 3 else at / 10, at == 4)
    kept = log.since()
    assert (len(log), kept.at.tolist(), kept.failed.tolist()) == (3, [2.0, 3.0, 4.0], [False, False, True])
    assert np.isnan(kept.seconds[1]) and log.since(3.0).at.tolist() == [3.0, 4.0]
