"""The built models behave: run ``python -m tools.modelbuild`` and ``modelbuild.check`` in subprocesses.

This process never imports TensorFlow (other tests rely on stub proto packages), so every TF
call happens in a child Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "build" / "models"
IMAGES = ROOT / "tests" / "fixtures" / "images"
DEPLOY_CONFIG = ROOT / "deploy" / "models.config"
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
PHOTOS = ("coffee.jpg", "chelsea.jpg", "astronaut.jpg", "rocket.jpg")

pytestmark = pytest.mark.slow


def _run_module(*args: str) -> str:
    command = [sys.executable, "-m", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """The check's JSON, after making sure the (cached) models are built."""
    _run_module("tools.modelbuild", "--out", str(MODELS))
    args = ["--models", str(MODELS), "--images", str(IMAGES)]
    configs = ["--config", str(MODELS / "models.config"), "--config", str(DEPLOY_CONFIG)]
    result: dict[str, Any] = json.loads(_run_module("tools.modelbuild.check", *args, *configs))
    return result


def test_coffee_is_espresso(report: dict[str, Any]) -> None:
    best = report["mobilenet_v2"]["coffee.jpg"]["float"][0]
    assert (best["class_id"], best["label"]) == (967, "espresso")
    assert best["score"] > 0.5


def test_chelsea_is_a_cat(report: dict[str, Any]) -> None:
    assert report["mobilenet_v2"]["chelsea.jpg"]["float"][0]["class_id"] in CAT_CLASSES


@pytest.mark.parametrize("photo", PHOTOS)
def test_float_and_uint8_signatures_agree(report: dict[str, Any], photo: str) -> None:
    result = report["mobilenet_v2"][photo]
    assert result["max_abs_diff"] < 1e-4
    assert [t["class_id"] for t in result["float"]] == [t["class_id"] for t in result["uint8"]]
    assert len(result["float"]) == 5


def test_tiny_names_solid_colours(report: dict[str, Any]) -> None:
    for case in report["tiny"]:
        assert case["float"] == case["expected"], case
        assert case["uint8"] == case["expected"], case


def test_digits_v2_beats_v1(report: dict[str, Any]) -> None:
    accuracy = report["digits"]["held_out_accuracy"]
    assert accuracy["2"] > 0.9
    assert accuracy["2"] > accuracy["1"] + 0.1


def test_digits_v2_reads_the_fixture_pngs(report: dict[str, Any]) -> None:
    for name, predictions in report["digits"]["fixtures"].items():
        assert predictions["2"] == int(name.removeprefix("digit_").removesuffix(".png"))


def test_configs_parse_with_tf_serving_protos(report: dict[str, Any]) -> None:
    for names in report["configs"].values():
        assert names == ["mobilenet_v2", "tiny", "digits", "squares", "faces"]


def test_labels_files() -> None:
    imagenet = (MODELS / "mobilenet_v2" / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(imagenet) == 1000
    assert imagenet[967] == "espresso" and imagenet[282] == "tiger cat"
    assert (MODELS / "digits" / "labels.txt").read_text(encoding="utf-8").splitlines() == list("0123456789")
    assert len((MODELS / "tiny" / "labels.txt").read_text(encoding="utf-8").splitlines()) == 8
    assert (MODELS / "squares" / "labels.txt").read_text(encoding="utf-8").splitlines() == ["red", "green", "blue"]
    assert (MODELS / "faces" / "labels.txt").read_text(encoding="utf-8").splitlines() == ["face"]


def test_this_process_never_loaded_tensorflow(report: dict[str, Any]) -> None:
    assert "tensorflow.python" not in sys.modules


def test_second_build_does_nothing(report: dict[str, Any]) -> None:
    lines = _run_module("tools.modelbuild", "--out", str(MODELS)).splitlines()
    for name in ("mobilenet_v2", "tiny", "digits", "models.config"):
        assert any(line.startswith(f"{name}: up to date") for line in lines), lines
