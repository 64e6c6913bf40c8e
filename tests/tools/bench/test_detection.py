"""The detection bench row's pieces: its candidates overlap as a pre-suppression model's do, and one timing runs."""

from __future__ import annotations

import numpy as np

from tools.bench.detection import CANDIDATES, candidates, ms_per_image


def test_the_candidates_are_a_hundred_overlapping_boxes_that_suppression_thins() -> None:
    outputs = candidates()
    assert outputs["detection_boxes"].shape == (1, CANDIDATES, 4)
    assert np.all(outputs["detection_boxes"][0, :, 2:] > outputs["detection_boxes"][0, :, :2])
    ms, kept = ms_per_image("hard", repeats=1, calls=1)
    assert ms > 0 and 3 <= kept < CANDIDATES // 2
