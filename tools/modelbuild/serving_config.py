"""TF Serving's ``--model_config_file`` (ModelServerConfig, protobuf text format) for the demo models.

``render`` is pure and TF-free; ``parse_model_names`` checks a file with the real protos and so
imports TensorFlow (run it in a build or check process, never in the web tier's tests).

``python -m tools.modelbuild.serving_config /models > deploy/models.config`` regenerates the
committed config for the tensorflow/serving docker image.
"""

from __future__ import annotations

import sys

MODEL_NAMES = ("mobilenet_v2", "tiny", "digits", "squares", "faces")
DIGITS_VERSION_LABELS = (("stable", 1), ("canary", 2))


def _model_block(name: str, base_path: str) -> list[str]:
    lines = [
        "  config {",
        f'    name: "{name}"',
        f'    base_path: "{base_path}"',
        '    model_platform: "tensorflow"',
    ]
    if name == "digits":
        versions = [f"        versions: {v}" for _, v in DIGITS_VERSION_LABELS]
        lines += ["    model_version_policy {", "      specific {", *versions, "      }", "    }"]
        lines += [f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in DIGITS_VERSION_LABELS]
    return [*lines, "  }"]


def render(models_dir: str) -> str:
    """The config text for models under ``models_dir`` (an absolute path, no trailing slash needed)."""
    base = models_dir.rstrip("/")
    lines = ["model_config_list {"]
    for name in MODEL_NAMES:
        lines += _model_block(name, f"{base}/{name}")
    return "\n".join([*lines, "}"]) + "\n"


def parse_model_names(text: str) -> list[str]:
    """Parse ``text`` as a ModelServerConfig (raises on any error) and return its model names."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    return [str(model.name) for model in config.model_config_list.config]


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "/models"))
