"""The stage budget tool times every stage of one image (no time is asserted, only that each stage ran)."""

from __future__ import annotations

import cv2
import numpy as np

from tools.bench.stages import measure, stages


def test_every_stage_of_one_jpeg_gets_a_cpu_time() -> None:
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert ok
    calls = stages(jpeg.tobytes())
    times = measure(calls, repeats=1, rounds=1)
    assert set(times) == set(calls) and "decode" in times
    assert all(ms >= 0.0 for ms in times.values())
