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


def strings(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


async def from_bytes(
    client: TFServingClient, backend: LocalBackend, images: list[bytes], orientation: list[int]
) -> np.ndarray:
    ref = ModelRef("mobilenet_v2", signature="serving_bytes")
    inputs = {"images": strings(images), "orientation": np.array(orientation, dtype=np.int32)}
    result = await client.predict(backend.address, ref, inputs, (), timeout=60)
    return result.outputs["probabilities"]


@pytest.mark.gen_test(timeout=120)
async def test_serving_bytes_agrees_with_serving_uint8_fed_the_reference_preprocessing(
    client: TFServingClient, backend: LocalBackend
) -> None:
    """Decoded, resized and cropped in the graph against preprocess.py's full decode and area resize."""
    reference = await predict(
        client, backend, "serving_uint8", np.stack([to_uint8_input(read_rgb(FIXTURES / p)) for p in PHOTOS])
    )
    in_graph = await from_bytes(client, backend, [(FIXTURES / p).read_bytes() for p in PHOTOS], [1] * len(PHOTOS))
    assert in_graph.argmax(axis=1).tolist() == reference["probabilities"].argmax(axis=1).tolist()
    largest = float(np.abs(in_graph - reference["probabilities"]).max())
    assert largest <= 0.03, largest


@pytest.mark.gen_test(timeout=120)
async def test_serving_bytes_turns_a_photo_upright_by_its_orientation(
    client: TFServingClient, backend: LocalBackend
) -> None:
    """chelsea stored turned a quarter left and tagged orientation 6 (turn right to view): as the upright photo."""
    import cv2

    from tests.support.exif import with_exif_orientation

    pixels = cv2.imread(str(FIXTURES / "chelsea.jpg"))
    ok, stored = cv2.imencode(
        ".jpg", cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    ok, plain = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    upright, turned, sideways = await from_bytes(
        client, backend, [plain.tobytes(), with_exif_orientation(stored.tobytes(), 6), stored.tobytes()], [1, 6, 1]
    )
    assert np.abs(upright - turned).max() < 0.05
    assert turned.argmax() == upright.argmax()
    assert np.abs(upright - sideways).max() > 4 * np.abs(upright - turned).max()  # the orientation is what mattered
