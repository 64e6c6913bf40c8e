"""The tier end to end: real HTTP on loopback, the real local backend over gRPC, real photos."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.serving.server import build_services
from app.settings import SettingsError
from processing.image import PreprocessSpec, image_to_tensor
from tests.conftest import Tier, TierFactory, dev_settings
from tests.support.backend import LocalBackend, start_local_backend
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.specs import decode_limits
from tests.support.tier import ROOT
from tests.support.waiting import wait_for

PREDICT = "/v1/models/mobilenet_v2:predict"
CAT_CLASSES = {"tabby cat", "tiger cat", "Egyptian Mau"}  # ids 281, 282, 285


async def post(url: str, body: bytes | str, content_type: str) -> HTTPResponse:
    response = await AsyncHTTPClient().fetch(
        url, method="POST", body=body, headers={"Content-Type": content_type}, raise_error=False
    )
    return response


async def post_json(tier: Tier, path: str, document: Any) -> tuple[int, Any]:
    response = await post(tier.url(path), json.dumps(document), "application/json")
    return response.code, json.loads(response.body)


async def get_json(tier: Tier, path: str) -> tuple[int, Any]:
    response = await AsyncHTTPClient().fetch(tier.url(path), raise_error=False)
    return response.code, json.loads(response.body)


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in (fields or {}).items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for field, filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        body += head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def top1(item: dict[str, Any]) -> str:
    label: str = item["classes"][0]["label"]
    return label


def photo(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.gen_test(timeout=30)
async def test_coffee_by_url_is_espresso(tier: Tier, images: ImageServer) -> None:
    code, answer = await post_json(tier, PREDICT, [images.url("coffee.jpg")])
    assert code == 200, answer
    assert answer["model"] == {"name": "mobilenet_v2", "version": 1}
    (item,) = answer["predictions"]
    assert item["source"] == images.url("coffee.jpg")
    assert top1(item) == "espresso" and item["classes"][0]["class_id"] == 967
    assert item["classes"][0]["score"] > 0.5
    assert len(item["classes"]) == 5
    scores = [c["score"] for c in item["classes"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.gen_test(timeout=30)
async def test_coffee_by_upload_with_both_field_names(tier: Tier) -> None:
    body, content_type = multipart(
        [("image", "coffee.jpg", photo("coffee.jpg")), ("data", "cat.jpg", photo("chelsea.jpg"))]
    )
    response = await post(tier.url(PREDICT), body, content_type)
    assert response.code == 200, response.body
    first, second = json.loads(response.body)["predictions"]
    assert (first["source"], top1(first)) == ("coffee.jpg", "espresso")
    assert second["source"] == "cat.jpg" and top1(second) in CAT_CLASSES


@pytest.mark.gen_test(timeout=30)
async def test_coffee_by_raw_body(tier: Tier) -> None:
    response = await post(tier.url(PREDICT), photo("coffee.jpg"), "image/jpeg")
    assert response.code == 200, response.body
    (item,) = json.loads(response.body)["predictions"]
    assert item["source"] == "body" and top1(item) == "espresso"


@pytest.mark.gen_test(timeout=30)
async def test_object_form_with_b64_url_and_top_k(tier: Tier, images: ImageServer) -> None:
    b64 = base64.b64encode(photo("coffee.jpg")).decode()
    document = {"instances": [{"b64": b64}, {"url": images.url("chelsea.jpg")}], "top_k": 2}
    code, answer = await post_json(tier, PREDICT, document)
    assert code == 200, answer
    first, second = answer["predictions"]
    assert top1(first) == "espresso" and len(first["classes"]) == 2
    assert top1(second) in CAT_CLASSES


@pytest.mark.gen_test(timeout=30)
async def test_a_wrong_top_k_in_the_query_is_refused_when_the_body_sets_one(tier: Tier) -> None:
    """It used to be ignored (the body's top_k won unchecked); found by schemathesis."""
    b64 = base64.b64encode(photo("coffee.jpg")).decode()
    code, answer = await post_json(tier, PREDICT + "?top_k=8138989912", {"instances": [{"b64": b64}], "top_k": 2})
    assert code == 400 and answer["error"]["code"] == "invalid_request"
    body, content_type = multipart([("image", "coffee.jpg", photo("coffee.jpg"))], {"top_k": "2"})
    response = await post(tier.url(PREDICT + "?top_k=abc"), body, content_type)
    assert response.code == 400
    code, answer = await post_json(tier, PREDICT + "?top_k=5", {"instances": [{"b64": b64}], "top_k": 2})
    assert code == 200 and len(answer["predictions"][0]["classes"]) == 2  # a valid query's is the default


@pytest.mark.gen_test(timeout=60)
async def test_order_is_kept_and_bad_urls_fail_alone(tier: Tier, images: ImageServer) -> None:
    urls = [
        images.url("chelsea.jpg"),
        images.url("gone.jpg"),
        images.url("coffee.jpg"),
        "ftp://example.com/x.jpg",
        images.url("chelsea.jpg"),
    ]
    code, answer = await post_json(tier, PREDICT, urls)
    assert code == 200, answer
    items = answer["predictions"]
    assert [item["source"] for item in items] == urls
    assert top1(items[0]) in CAT_CLASSES and top1(items[4]) in CAT_CLASSES
    assert top1(items[2]) == "espresso"
    assert items[1]["error"] == {"code": "source_http_error", "message": "GET returned 404"}
    assert items[3]["error"]["code"] == "url_invalid"
    assert "classes" not in items[1] and "error" not in items[0]


@pytest.mark.gen_test(timeout=30)
async def test_versions_and_labels_choose_what_answers(tier: Tier) -> None:
    digit = photo("digit_3.png")
    for path, version in [
        ("/v1/models/digits:predict", 2),
        ("/v1/models/digits/versions/1:predict", 1),
        ("/v1/models/digits/versions/2:predict", 2),
        ("/v1/models/digits/labels/stable:predict", 1),
        ("/v1/models/digits/labels/canary:predict", 2),
    ]:
        response = await post(tier.url(path), digit, "image/png")
        assert response.code == 200, (path, response.body)
        answer = json.loads(response.body)
        assert answer["model"]["version"] == version, path
    assert top1(answer["predictions"][0]) == "3"


@pytest.mark.gen_test(timeout=30)
async def test_unknown_model_version_and_label_are_404(tier: Tier) -> None:
    for path in [
        "/v1/models/nope:predict",
        "/v1/models/digits/versions/9:predict",
        "/v1/models/digits/labels/nope:predict",
    ]:
        response = await post(tier.url(path), photo("digit_3.png"), "image/png")
        assert response.code == 404, path
        assert json.loads(response.body)["error"]["code"] == "model_not_found"


@pytest.mark.gen_test(timeout=30)
async def test_bad_request_as_a_whole(tier: Tier) -> None:
    response = await post(tier.url(PREDICT), "{nope", "application/json")
    assert response.code == 400
    assert json.loads(response.body)["error"]["code"] == "invalid_request"
    response = await post(tier.url(PREDICT), "hello", "text/plain")
    assert response.code == 415
    assert json.loads(response.body)["error"]["code"] == "unsupported_media_type"
    code, answer = await get_json(tier, "/v1/nothing-here")
    assert code == 404 and answer["error"]["code"] == "not_found"


@pytest.mark.gen_test(timeout=30)
async def test_model_listing_status_and_metadata(tier: Tier) -> None:
    code, listing = await get_json(tier, "/v1/models")
    assert code == 200
    by_name = {m["name"]: m for m in listing["models"]}
    served = {"mobilenet_v2", "tiny", "digits", "mobilenet_v2_bytes", "mobilenet_v2_embed", "squares", "faces"}
    assert set(by_name) == served
    assert by_name["mobilenet_v2"]["input"] == {
        "name": "images",
        "dtype": "uint8",
        "shape": [-1, 224, 224, 3],
    }

    code, status = await get_json(tier, "/v1/models/digits")
    assert code == 200
    states = {s["version"]: s["state"] for s in status["model_version_status"]}
    assert states == {"1": "AVAILABLE", "2": "AVAILABLE"}

    code, status = await get_json(tier, "/v1/models/digits/versions/1")
    assert [s["version"] for s in status["model_version_status"]] == ["1"]

    code, metadata = await get_json(tier, "/v1/models/mobilenet_v2/metadata")
    assert code == 200
    signature = metadata["metadata"]["signature_def"]["serving_uint8"]
    assert signature["inputs"]["images"]["dtype"] == "uint8"
    assert signature["outputs"]["probabilities"]["shape"] == [-1, 1000]

    code, answer = await get_json(tier, "/v1/models/nope/metadata")
    assert code == 404 and answer["error"]["code"] == "model_not_found"


@pytest.mark.gen_test(timeout=30)
async def test_health_and_readiness(tier: Tier) -> None:
    assert (await get_json(tier, "/healthz")) == (200, {"status": "ok"})
    assert (await get_json(tier, "/readyz")) == (200, {"ready": True, "state": "ready"})
    assert (await get_json(tier, "/v2/health/ready")) == (200, {"ready": True})


@pytest.mark.gen_test(timeout=30)
async def test_raw_output_model_returns_tensors(make_tier: TierFactory) -> None:
    tier = await make_tier(["models.tiny.postprocess.kind=raw"])
    response = await post(tier.url("/v1/models/tiny:predict"), photo("coffee.jpg"), "image/jpeg")
    assert response.code == 200, response.body
    (item,) = json.loads(response.body)["predictions"]
    assert set(item) == {"source", "outputs"}
    assert len(item["outputs"]["logits"]) == 8


@pytest.mark.gen_test(timeout=30)
async def test_float_signature_path_matches_uint8_path(make_tier: TierFactory) -> None:
    """The same photo through the float32 signature (normalised in the tier) and the uint8 one."""
    tier = await make_tier(
        [
            "models.mobilenet_float.served_name=mobilenet_v2",
            "models.mobilenet_float.signature=serving_default",
            "models.mobilenet_float.input.resize=crop",
            "models.mobilenet_float.input.resize_shorter=256",
            "models.mobilenet_float.input.scale=0.00392156862745098",
            "models.mobilenet_float.input.mean=[0.485, 0.456, 0.406]",
            "models.mobilenet_float.input.std=[0.229, 0.224, 0.225]",
        ]
    )
    as_uint8 = json.loads((await post(tier.url(PREDICT), photo("coffee.jpg"), "image/jpeg")).body)
    as_float = json.loads(
        (await post(tier.url("/v1/models/mobilenet_float:predict"), photo("coffee.jpg"), "image/jpeg")).body
    )
    a, b = as_uint8["predictions"][0]["classes"], as_float["predictions"][0]["classes"]
    assert [c["class_id"] for c in a] == [c["class_id"] for c in b]
    assert abs(a[0]["score"] - b[0]["score"]) < 1e-4


@pytest.mark.gen_test(timeout=60)
async def test_scores_equal_the_savedmodel_called_directly(tier: Tier, models_dir: Path, tmp_path: Path) -> None:
    spec = tier.services.pipeline.models["mobilenet_v2"].preprocess
    assert isinstance(spec, PreprocessSpec)
    tensor = image_to_tensor(photo("chelsea.jpg"), spec, decode_limits())
    np.save(tmp_path / "in.npy", tensor[None])
    args = ["-m", "tests.support.direct_predict", str(models_dir / "mobilenet_v2" / "1"), "serving_uint8"]
    args += ["images", str(tmp_path / "in.npy"), str(tmp_path / "out.npz")]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    direct = np.load(tmp_path / "out.npz")["probabilities"][0]
    response = await post(tier.url(PREDICT + "?top_k=1000"), photo("chelsea.jpg"), "image/jpeg")
    classes = json.loads(response.body)["predictions"][0]["classes"]
    via_tier = np.zeros(1000)
    for c in classes:
        via_tier[c["class_id"]] = c["score"]
    assert np.max(np.abs(via_tier - direct)) < 1e-4


@pytest.mark.gen_test(timeout=60)
async def test_backend_down_is_503_fast_and_readyz_stays_ready(make_tier: TierFactory, models_dir: Path) -> None:
    """A backend every replica shares must not take the tier out of its Service: /readyz follows the process;
    /v2/health/ready and imagegate_model_available follow the backend (docs/operations.md)."""
    own = start_local_backend(model_config_file=models_dir / "models.config")
    try:
        tier = await make_tier(settings=dev_settings(own.address, ["server.retry_after_s=3"]))
        assert await model_available(tier, "tiny") == 1.0  # a scrape while the backend answers, as Prometheus does
        own.stop()
        started = time.monotonic()
        response = await post(tier.url("/v1/models/tiny:predict"), photo("coffee.jpg"), "image/jpeg")
        elapsed = time.monotonic() - started
        assert response.code == 503, response.body
        assert json.loads(response.body)["error"]["code"] == "backend_unavailable"
        assert response.headers["Retry-After"] == "3"
        assert elapsed < 1.0
        assert (await get_json(tier, "/readyz")) == (200, {"ready": True, "state": "ready"})
        assert (await get_json(tier, "/v2/health/ready")) == (400, {"ready": False})
        assert await model_available(tier, "tiny") == 0.0
        own = start_local_backend(model_config_file=models_dir / "models.config", port=own.port)
        # The channel reconnects after its backoff (at most 1 s); a probe polls, and so does this.
        ready = tier.url("/v2/health/ready")
        await asyncio.to_thread(wait_for, lambda: status_of(ready) == 200, "/v2/health/ready to answer 200")
        assert await model_available(tier, "tiny") == 1.0
    finally:
        own.stop()


async def model_available(tier: Tier, model: str) -> float:
    """``imagegate_model_available`` of the model's version 1, from a scrape."""
    body = (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "imagegate_model_available" and sample.labels == {"model": model, "version": "1"}:
                return float(sample.value)
    raise AssertionError(f"no imagegate_model_available for {model} version 1 in the scrape")


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.gen_test(timeout=30)
async def test_config_that_contradicts_the_model_fails_at_start(backend: LocalBackend) -> None:
    for override, key in [
        ("models.mobilenet_v2.input.height=200", "models.mobilenet_v2.input.height"),
        ("models.mobilenet_v2.input.dtype=float32", "models.mobilenet_v2.input.dtype"),
        ("models.mobilenet_v2.signature=nope", "models.mobilenet_v2.signature"),
        ("models.mobilenet_v2.output=nope", "models.mobilenet_v2.output"),
        ("models.digits.input.color=rgb", "models.digits.input.color"),
    ]:
        with pytest.raises(SettingsError, match=key):
            await build_services(dev_settings(backend.address, [override]))


def test_tier_process_does_not_load_tensorflow(backend: LocalBackend) -> None:
    code = (
        "import sys, asyncio, pathlib\n"
        "from app.serving.server import build_services\n"
        "from app.settings import load_settings\n"
        "config = pathlib.Path('deploy/config.dev.yaml')\n"
        f"settings = load_settings(config, {{}}, ['backend.address={backend.address}'])\n"
        "services = asyncio.run(build_services(settings))\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'tensorflow.python' not in sys.modules, 'tensorflow.python imported'\n"
        "assert '_pywrap_tensorflow' not in maps and 'libtensorflow' not in maps, 'TF runtime mapped'\n"
        "print('no-tensorflow')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "no-tensorflow" in result.stdout


@pytest.mark.gen_test(timeout=30)
async def test_page_headers_and_no_cors(tier: Tier) -> None:
    page = await AsyncHTTPClient().fetch(tier.url("/"))
    assert b"<html" in page.body
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    api = await AsyncHTTPClient().fetch(tier.url("/v1/models"), headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in api.headers
    assert json.loads(api.body)["limits"] == {"max_upload_bytes": 20 << 20, "max_images_per_request": 32}
