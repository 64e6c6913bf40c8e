"""The squares detector's classes (TF-free, so the build's labels step and tests can share them): class ids 1, 2, 3."""

from __future__ import annotations

LABELS = ("red", "green", "blue")


def square_names() -> list[str]:
    """Labels in class-id order (the first line is class id 1, the Object Detection API's label-map convention)."""
    return list(LABELS)
