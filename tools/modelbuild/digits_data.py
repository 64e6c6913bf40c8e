"""scikit-learn's bundled 8x8 digits, split once and for all into training and held-out sets (TF-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HELD_OUT_FRACTION = 0.25
SPLIT_SEED = 0
PIXEL_MAX = 16.0

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class DigitsSplit:
    """Images (N, 8, 8, 1) float32 in [0, 1] (1 = ink) and labels (N,) int64."""

    train_images: FloatArray
    train_labels: IntArray
    test_images: FloatArray
    test_labels: IntArray


def to_model_input(pixels: np.ndarray[Any, Any]) -> FloatArray:
    """load_digits' 0..16 pixels (N, 64) or (N, 8, 8) -> the model's (N, 8, 8, 1) in [0, 1]."""
    return (np.asarray(pixels, dtype=np.float32) / PIXEL_MAX).reshape(-1, 8, 8, 1)


def load_split() -> DigitsSplit:
    """The same stratified 75/25 split every time."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images,
        digits.target,
        test_size=HELD_OUT_FRACTION,
        random_state=SPLIT_SEED,
        stratify=digits.target,
    )
    as_labels = np.int64
    return DigitsSplit(
        to_model_input(x_train), y_train.astype(as_labels), to_model_input(x_test), y_test.astype(as_labels)
    )
