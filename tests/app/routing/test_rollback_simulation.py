"""The rollback rule's error rates, measured by driving ``ModelRouter.record()`` on a synthetic clock with seeded
latency and failure distributions, stalls hitting both sides (``tools/canary_sim.py`` says how they are drawn).

1,000 rollouts of 1,000 canary requests at 80/20 per canary, default rollback settings, on seed 23, which was not
used to tune the defaults (seeds 1 and 2 were). ``python -m tools.canary_sim`` prints the same numbers.
"""

from __future__ import annotations

import pytest

from tools.canary_sim import FAILING, SAME, SLIGHTLY_SLOWER, SLOWER, measure

SEED, ROLLOUTS = 23, 1000


@pytest.mark.slow
def test_a_canary_drawn_from_stables_distributions_is_rolled_back_in_at_most_half_a_percent() -> None:
    assert measure(SAME, ROLLOUTS, SEED).rate <= 0.005


@pytest.mark.slow
def test_a_canary_1_2x_slower_is_kept_in_at_least_99_percent() -> None:
    assert measure(SLIGHTLY_SLOWER, ROLLOUTS, SEED).rate <= 0.01


def test_a_canary_3x_slower_is_rolled_back_within_300_of_its_requests_every_time() -> None:
    assert measure(SLOWER, ROLLOUTS, SEED, canary_requests=300).within(300) == 1.0


def test_a_canary_with_10_points_more_failures_is_rolled_back_within_300_of_its_requests_in_99_percent() -> None:
    assert measure(FAILING, ROLLOUTS, SEED, canary_requests=300).within(300) >= 0.99
