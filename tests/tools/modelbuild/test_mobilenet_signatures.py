"""The demo mobilenet_v2's embedding signatures, over gRPC from the real local backend (the pytest process never
imports TensorFlow): the embedding is the classifier's own input."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tornado.ioloop

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelRef
from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES
from tools.modelbuild.package_data import mobilenet_v2_weights_path
from tools.modelbuild.preprocess import normalize, read_rgb, to_uint8_input
from tools.modelbuild.torch_checkpoint import load_state_dict

PHOTOS = ("coffee.jpg", "chelsea.jpg", "astronaut.jpg", "rocket.jpg")


@pytest.fixture
def client(io_loop: tornado.ioloop.IOLoop) -> Iterator[TFServingClient]:
    client = TFServingClient("pick_first", retry_after_s=1)
    yield client
    io_loop.run_sync(client.close)


async def predict(
    client: TFServingClient, backend: LocalBackend, signature: str, batch: np.ndarray
) -> dict[str, np.ndarray]:
    ref = ModelRef("mobilenet_v2", signature=signature)
    result = await client.predict(backend.address, ref, {"images": batch}, (), timeout=60)
    return dict(result.outputs)


def centred(logits: np.ndarray) -> np.ndarray:
    """Logits up to the constant softmax cannot see: each row minus its mean."""
    result: np.ndarray = logits - logits.mean(axis=1, keepdims=True)
    return result


@pytest.mark.gen_test(timeout=120)
async def test_the_embedding_is_the_classifiers_own_input(client: TFServingClient, backend: LocalBackend) -> None:
    """``W . features + b`` equals serving_uint8's logits (recovered from its probabilities) on the same tensor."""
    batch = np.stack([to_uint8_input(read_rgb(FIXTURES / photo)) for photo in PHOTOS])
    embedded = await predict(client, backend, "embed_uint8", batch)
    probabilities = (await predict(client, backend, "serving_uint8", batch))["probabilities"]
    state = load_state_dict(mobilenet_v2_weights_path())
    features = embedded["features"].astype(np.float64)
    assert features.shape == (4, 1280)
    logits = features @ state["classifier.1.weight"].T.astype(np.float64) + state["classifier.1.bias"]
    difference = np.abs(centred(logits) - centred(np.log(probabilities.astype(np.float64)))).max()
    assert difference < 1e-4, difference
    # ``embedding`` is the same vector at unit length
    np.testing.assert_allclose(np.linalg.norm(embedded["embedding"], axis=1), 1.0, rtol=1e-5)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(embedded["embedding"], unit, atol=1e-6)


@pytest.mark.gen_test(timeout=120)
async def test_embed_takes_the_float_input_serving_default_takes(
    client: TFServingClient, backend: LocalBackend
) -> None:
    crop = to_uint8_input(read_rgb(FIXTURES / "coffee.jpg"))
    as_float = await predict(client, backend, "embed", normalize(crop)[None])
    as_uint8 = await predict(client, backend, "embed_uint8", crop[None])
    np.testing.assert_allclose(as_float["embedding"], as_uint8["embedding"], atol=1e-5)
