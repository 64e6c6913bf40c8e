"""Build every demo model that is missing or outdated, then the TF Serving config that lists them.

TensorFlow is imported only when something has to be built, so a run over up-to-date
artefacts returns in well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.modelbuild import serving_config
from tools.modelbuild.artifacts import (
    Recipe,
    build_lock,
    build_model,
    is_current,
    read_stamp,
    remove_leftovers,
    write_if_changed,
    write_labels,
)
from tools.modelbuild.imagenet_labels import imagenet_labels
from tools.modelbuild.squares_classes import square_names
from tools.modelbuild.tiny_classes import colour_names

CONFIG_NAME = "models.config"


def _build_mobilenet_v2(target: Path) -> dict[str, object]:
    from tools.modelbuild import mobilenet_v2

    return mobilenet_v2.build(target)


def _build_tiny(target: Path) -> dict[str, object]:
    from tools.modelbuild import tiny

    return tiny.build(target)


def _build_digits(target: Path) -> dict[str, object]:
    from tools.modelbuild import digits

    return digits.build(target)


def _build_squares(target: Path) -> dict[str, object]:
    from tools.modelbuild import squares

    return squares.build(target)


def _build_faces(target: Path) -> dict[str, object]:
    from tools.modelbuild import blazeface

    return blazeface.build(target)


def _face_names() -> list[str]:
    return ["face"]  # class id 1, the only one BlazeFace answers


def _digit_names() -> list[str]:
    return [str(digit) for digit in range(10)]


RECIPES = (  # each SavedModel version ships TF Serving warm-up records (modelbuild/warmup.py) since 2
    Recipe("mobilenet_v2", 4, _build_mobilenet_v2, imagenet_labels),  # 3: embed, embed_uint8, serving_bytes
    Recipe("tiny", 2, _build_tiny, colour_names),
    Recipe("digits", 2, _build_digits, _digit_names),
    Recipe("squares", 1, _build_squares, square_names),  # the fixed-formula detector (detection kind)
    Recipe("faces", 1, _build_faces, _face_names),  # MediaPipe's BlazeFace short-range, ported from its .tflite
)


def _describe(name: str, status: str, stamp: dict[str, Any]) -> str:
    return f"{name}: {status} ({stamp['recipe']}, {stamp['seconds']}s) {json.dumps(stamp['info'])}"


def bring_up_to_date(out: Path, recipe: Recipe) -> tuple[dict[str, Any], str]:
    """The model's stamp, building it if it is missing or outdated, and what was done."""
    stamp = read_stamp(out / recipe.name) if is_current(out, recipe) else None
    if stamp is None:
        return build_model(out, recipe), "built"
    relabelled = write_labels(out / recipe.name, recipe)
    return stamp, f"up to date{', labels.txt rewritten' if relabelled else ''}"


def build_all(out: Path, report: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Bring ``out`` up to date; return each model's stamp (which records e.g. digits' accuracies)."""
    out = out.resolve()
    stamps: dict[str, dict[str, Any]] = {}
    with build_lock(out):
        remove_leftovers(out)
        for recipe in RECIPES:
            stamp, status = bring_up_to_date(out, recipe)
            stamps[recipe.name] = stamp
            report(_describe(recipe.name, status, stamp))
        config_path = out / CONFIG_NAME
        written = write_if_changed(config_path, serving_config.render(str(out)), serving_config.parse_model_names)
        report(f"{CONFIG_NAME}: {'written' if written else 'up to date'} ({config_path})")
    return stamps
