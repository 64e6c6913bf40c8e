"""torchvision's ImageNet evaluation transform, in numpy and OpenCV.

``Resize(256)`` (shorter side to 256, aspect kept), ``CenterCrop(224)``, ``ToTensor()`` (/255),
``Normalize(mean, std)``; laid out NHWC for TensorFlow. OpenCV's area filter stands in for
PIL's antialiased bilinear when shrinking, so results are close to, not bit-identical with,
torchvision's; both the SavedModel checks and the torch comparison use these same tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

RESIZE_SHORTER_TO = 256
CROP_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_rgb(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Decode an image file to an RGB uint8 array (H, W, 3)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def resize_shorter_side(rgb: np.ndarray[Any, Any], size: int = RESIZE_SHORTER_TO) -> np.ndarray[Any, Any]:
    """Scale so the shorter side is ``size``; the longer side is truncated as torchvision does."""
    height, width = rgb.shape[:2]
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    interpolation = cv2.INTER_AREA if short > size else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(rgb, (new_w, new_h), interpolation=interpolation))


def center_crop(rgb: np.ndarray[Any, Any], size: int = CROP_SIZE) -> np.ndarray[Any, Any]:
    """The central ``size`` x ``size`` window, offsets rounded as torchvision rounds them."""
    height, width = rgb.shape[:2]
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return rgb[top : top + size, left : left + size]


def to_uint8_input(rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Resize and crop: the ``serving_uint8`` input for one image, (224, 224, 3) uint8."""
    return np.ascontiguousarray(center_crop(resize_shorter_side(rgb)), dtype=np.uint8)


def normalize(crop: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """``ToTensor`` + ``Normalize``: the ``serving_default`` input for a uint8 crop, float32."""
    scaled = crop.astype(np.float32) / np.float32(255.0)
    return np.asarray((scaled - IMAGENET_MEAN) / IMAGENET_STD, dtype=np.float32)
