"""The Open Inference Protocol v2, through Triton's own HTTP client (``tritonclient[http]``) against a tier process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.tier import TierProcess, start_tier

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
DIGIT = (FIXTURES / "digit_3.png").read_bytes()
OUTPUT = "probabilities"


@pytest.fixture(scope="module")
def oip_tier(backend: LocalBackend) -> Iterator[TierProcess]:
    tier = start_tier(backend.address)
    yield tier
    tier.stop()
    assert "Traceback" not in "".join(tier.output)


@pytest.fixture(scope="module")
def client(oip_tier: TierProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(oip_tier.base_url.removeprefix("http://"))
    yield c
    c.close()


def image_input(*images: bytes, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=binary)
    return tensor


def test_server_metadata_live_and_ready(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "imagegate"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    assert client.is_server_live() and client.is_server_ready()


def test_model_metadata_presents_one_bytes_input_and_the_models_output(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("mobilenet_v2")
    assert meta["name"] == "mobilenet_v2" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == [OUTPUT]
    assert client.get_model_metadata("digits")["versions"] == ["1", "2"]
    assert client.get_model_metadata("digits", "2")["versions"] == ["2"]


def test_model_readiness_by_version(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("mobilenet_v2")
    assert client.is_model_ready("digits", "1") and client.is_model_ready("digits", "2")
    assert not client.is_model_ready("digits", "3")
    assert not client.is_model_ready("nope")


def test_binary_infer_with_the_classification_extension(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        "mobilenet_v2", [image_input(COFFEE)], outputs=[triton.InferRequestedOutput(OUTPUT, class_count=3)]
    )
    top = result.as_numpy(OUTPUT)
    assert top.shape == (1, 3)
    score, index, label = top[0][0].decode().split(":")
    assert (index, label) == ("967", "espresso") and float(score) > 0.5
    assert result.get_response()["model_version"] == "1"


def test_binary_infer_of_the_whole_score_vector(client: triton.InferenceServerClient) -> None:
    result = client.infer("mobilenet_v2", [image_input(COFFEE, COFFEE)])  # no outputs named: all, in binary
    scores = result.as_numpy(OUTPUT)
    assert scores.dtype == np.float32 and scores.shape == (2, 1000)
    assert list(scores.argmax(axis=1)) == [967, 967]
    assert scores.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-3)


def test_json_infer_with_urls(client: triton.InferenceServerClient, images: ImageServer) -> None:
    urls = image_input(images.url("/coffee.jpg").encode(), binary=False)
    result = client.infer(
        "mobilenet_v2",
        [urls],
        outputs=[triton.InferRequestedOutput(OUTPUT, binary_data=False, class_count=1)],
        parameters={"image_source": "url"},
        request_id="r-1",
    )
    response = result.get_response()
    assert response["id"] == "r-1"
    assert response["outputs"][0]["data"][0].endswith(":967:espresso")


def test_versions_in_the_path(client: triton.InferenceServerClient) -> None:
    for version in ("1", "2"):
        result = client.infer(
            "digits",
            [image_input(DIGIT)],
            model_version=version,
            outputs=[triton.InferRequestedOutput("probabilities", class_count=1)],
        )
        assert result.get_response()["model_version"] == version
    best = result.as_numpy("probabilities")[0][0].decode().split(":")
    assert best[1] == "3"  # version 2 reads the digit


def test_errors_follow_the_protocol(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [image_input(COFFEE)])
    assert unknown.value.status() == "404" and "not configured" in unknown.value.message()
    with pytest.raises(InferenceServerException) as version:
        client.infer("digits", [image_input(DIGIT)], model_version="7")
    assert version.value.status() == "404"


def test_a_failed_image_fails_the_infer_naming_it(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as failed:
        client.infer("mobilenet_v2", [image_input(COFFEE, b"not an image")])
    assert failed.value.status() == "400"
    assert "image[1]" in failed.value.message() and "image_decode_failed" in failed.value.message()


def test_other_v2_paths_answer_in_the_protocols_error_form(oip_tier: TierProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(oip_tier.base_url + "/v2/models/digits/versions/x")
    assert missing.value.code == 404
    assert set(json.loads(missing.value.read())) == {"error"}


def test_an_embedding_model_answers_its_vectors_as_fp32(client: triton.InferenceServerClient) -> None:
    chelsea = (FIXTURES / "chelsea.jpg").read_bytes()
    result = client.infer("mobilenet_v2_embed", [image_input(COFFEE, chelsea)])
    vectors = result.as_numpy("embedding")
    assert vectors.dtype == np.float32 and vectors.shape == (2, 1280)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    with pytest.raises(InferenceServerException, match="classification extension"):
        client.infer(
            "mobilenet_v2_embed",
            [image_input(COFFEE)],
            outputs=[triton.InferRequestedOutput("embedding", class_count=1)],
        )


def test_the_bytes_model_takes_the_same_bytes_input(client: triton.InferenceServerClient) -> None:
    """v2's input is the images' bytes for every model: the encoded model gets them as they came."""
    result = client.infer(
        "mobilenet_v2_bytes", [image_input(COFFEE)], outputs=[triton.InferRequestedOutput(OUTPUT, class_count=1)]
    )
    assert result.as_numpy(OUTPUT)[0][0].decode().endswith(":967:espresso")


def squares_jpeg() -> bytes:
    """Red, green and blue squares on grey, 400x200, stored turned (EXIF 6): their boxes are known exactly."""
    from tests.processing.kinds.test_detection_mapping import displayed, stored_jpeg

    return stored_jpeg(displayed(False)[0], 6)


def test_model_metadata_describes_the_models_own_outputs(client: triton.InferenceServerClient) -> None:
    assert client.get_model_metadata("mobilenet_v2")["outputs"] == [
        {"name": OUTPUT, "datatype": "FP32", "shape": [-1, 1000]}
    ]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in client.get_model_metadata("squares")["outputs"]}
    assert outputs == {
        "detection_boxes": ("FP32", [-1, 3, 4]),
        "detection_classes": ("FP32", [-1, 3]),
        "detection_keypoints": ("FP32", [-1, 3, 2, 2]),
        "detection_scores": ("FP32", [-1, 3]),
        "num_detections": ("FP32", [-1]),
        "detections": ("BYTES", [-1, 1]),
    }


def test_a_detection_model_answers_its_tensors_and_the_boxes_in_the_images_pixels(
    client: triton.InferenceServerClient, oip_tier: TierProcess
) -> None:
    image = squares_jpeg()
    result = client.infer("squares", [image_input(image, image)])  # every output, binary
    assert result.as_numpy("detection_boxes").shape == (2, 3, 4)
    found = result.as_numpy("detections")
    assert found.shape == (2, 1)
    first = json.loads(found[0][0])
    request = urllib.request.Request(
        oip_tier.base_url + "/v1/models/squares:predict", image, {"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request) as answer:
        assert first == json.load(answer)["predictions"][0]["detections"]  # v1's answer, to the digit
    assert [d["label"] for d in first] == ["red", "green", "blue"]
    assert first[0]["box"] == pytest.approx({"x": 8, "y": 16, "width": 64, "height": 64}, abs=1.0)
    assert json.loads(found[1][0]) == first


def test_a_detection_infer_takes_its_parameters_and_answers_json(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("detections", binary_data=False)]
    result = client.infer(
        "squares", [image_input(squares_jpeg())], outputs=outputs, parameters={"score_threshold": 0.75}
    )
    assert [d["label"] for d in json.loads(result.as_numpy("detections")[0][0])] == ["red", "green"]
    capped = client.infer("squares", [image_input(squares_jpeg())], outputs=outputs, parameters={"max_detections": 1})
    assert [d["label"] for d in json.loads(capped.as_numpy("detections")[0][0])] == ["red"]
    with pytest.raises(InferenceServerException, match="applies only to detection models"):
        client.infer("mobilenet_v2", [image_input(COFFEE)], parameters={"score_threshold": 0.5})
    with pytest.raises(InferenceServerException, match="'max_detections' must be an integer from 1 to 1000"):
        client.infer("squares", [image_input(squares_jpeg())], parameters={"max_detections": 0})
