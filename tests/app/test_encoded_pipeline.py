"""Encoded images through the pipeline and the micro-batcher, on the fake backend's serving_bytes signature (a
DT_STRING input and an orientation input): each caller gets its own rows back, the fake echoing each image's length."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from processing.sources import ImageSource
from tests.app.test_pipeline import PipelineFactory, fake_settings, make_pipeline, new_context, run, top_score
from tools.fakeserving import FakeBackend

__all__ = ["make_pipeline"]  # the fixture, used by name


def png(side: int) -> bytes:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))
    assert ok
    return bytes(encoded.tobytes())


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_requests_share_one_predict_of_bytes_and_each_gets_its_own_rows(
    make_pipeline: PipelineFactory, fake: FakeBackend
) -> None:
    overrides = ("models.tiny.signature=serving_bytes", "models.tiny.batching.max_batch_size=3")
    pipeline = await make_pipeline(fake_settings(fake, *overrides, "models.tiny.batching.max_wait_ms=60000"))
    model = pipeline.models["tiny"]
    assert (model.input_kind.name, model.orientation_input) == ("encoded", "orientation")
    small, medium, large = png(8), png(16), png(32)
    first, second = await asyncio.gather(
        run(pipeline, "tiny", [ImageSource("a", data=small), ImageSource("b", data=medium)], new_context()),
        run(pipeline, "tiny", [ImageSource("c", data=large), ImageSource("x", data=b"not an image")], new_context()),
    )
    assert fake.log.batch_sizes == [3]
    assert [top_score(item) for item in first["predictions"]] == [len(small), len(medium)]
    assert top_score(second["predictions"][0]) == len(large)
    assert second["predictions"][1]["error"]["code"] == "image_decode_failed"
