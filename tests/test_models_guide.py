"""docs/models.md's guide works: its Keras export code runs (in a subprocess: this process never loads TensorFlow),
the local backend serves what it wrote, and the tier, started with the guide's configuration, answers the
guide's requests for each kind."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tornado.httpclient import AsyncHTTPClient

from app.settings import load_settings
from tests.app.test_kinds_tier import rotated_photo
from tests.app.test_tier import multipart, photo, post
from tests.conftest import TierFactory
from tests.support.backend import LocalBackend, start_local_backend
from tests.support.tier import ROOT

GUIDE = ROOT / "docs" / "models.md"
LABELS = ["cat", "dog", "bird", "car"]

pytestmark = pytest.mark.slow


def guide_block(marker: str, language: str) -> str:
    """The fenced block right after ``<!-- guide: marker -->`` in docs/models.md."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- guide: {marker} -->\n```{language}\n(.*?)\n```", text, flags=re.DOTALL)
    assert found, f"docs/models.md has no {language} block marked guide: {marker}"
    return found.group(1) + "\n"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's export script, run as the guide says; the models directory it wrote into."""
    work = tmp_path_factory.mktemp("guide")
    script = work / "export_for_imagegate.py"
    script.write_text(guide_block("export", "python"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(work / "models" / "my_model")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return work / "models"


@pytest.fixture(scope="module")
def guide_backend(exported: Path) -> Iterator[LocalBackend]:
    backend = start_local_backend(model_name="my_model", model_base_path=exported / "my_model")
    yield backend
    backend.stop()


async def predict(base_url: str, model: str, body: bytes, content_type: str) -> dict[str, Any]:
    response = await post(f"{base_url}/v1/models/{model}:predict", body, content_type)
    assert response.code == 200, response.body
    answer: dict[str, Any] = json.loads(response.body)
    return answer


@pytest.mark.gen_test(timeout=120)
async def test_the_guides_model_serves_every_kind_through_the_tier(
    make_tier: TierFactory, exported: Path, guide_backend: LocalBackend, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(guide_block("config", "yaml").replace("/models/", f"{exported}/"), encoding="utf-8")
    # Beside the guide's models, the tag signature's logits as they are: what the multi-label answer must follow.
    logits = ["served_name=my_model", "signature=tag", "input.resize=crop", "postprocess.kind=tensors"]
    overrides = [f"backend.address={guide_backend.address}", "server.port=0"]
    settings = load_settings(config, {}, [*overrides, *(f"models.my_model_logits.{o}" for o in logits)])
    tier = await make_tier(settings=settings)
    coffee = multipart([("image", "coffee.jpg", photo("coffee.jpg"))])

    (classes,) = (await predict(tier.base_url, "my_model", *coffee))["predictions"]
    assert len(classes["classes"]) == 3 and {c["label"] for c in classes["classes"]} <= set(LABELS)

    (tags,) = (await predict(tier.base_url, "my_model_tags", *coffee))["predictions"]
    (raw,) = (await predict(tier.base_url, "my_model_logits", *coffee))["predictions"]
    sigmoid = 1 / (1 + np.exp(-np.asarray(raw["outputs"]["logits"])))
    assert [c["label"] for c in tags["classes"]] == [LABELS[i] for i in np.argsort(-sigmoid) if sigmoid[i] > 0.45]

    packed = multipart([("image", "coffee.jpg", photo("coffee.jpg"))], {"encoding": "base64"})
    (embedded,) = (await predict(tier.base_url, "my_model_embed", *packed))["predictions"]
    vector = np.frombuffer(base64.b64decode(embedded["embedding"]), dtype="<f4")
    assert embedded["dimension"] == len(vector) == 16 and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)

    tagged, _ = rotated_photo("coffee.jpg")
    upright, turned = (
        await predict(
            tier.base_url,
            "my_model_bytes",
            *multipart([("image", "coffee.jpg", photo("coffee.jpg")), ("image", "tagged.jpg", tagged)]),
        )
    )["predictions"]
    assert [c["label"] for c in upright["classes"]] == [c["label"] for c in turned["classes"]]
    listing = json.loads((await AsyncHTTPClient().fetch(f"{tier.base_url}/v1/models")).body)
    inputs = {m["name"]: m["input"] for m in listing["models"]}
    assert inputs["my_model_bytes"]["encoding"] == "bytes" and inputs["my_model_bytes"]["orientation"] == "orientation"
