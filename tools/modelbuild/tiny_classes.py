"""The tiny model's colour classes (TF-free, so checks and tests can share them)."""

from __future__ import annotations

# (label, RGB prototype in [0, 1]); the order is the class id.
COLOUR_PROTOTYPES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (1.0, 0.0, 0.0)),
    ("green", (0.0, 1.0, 0.0)),
    ("blue", (0.0, 0.0, 1.0)),
    ("yellow", (1.0, 1.0, 0.0)),
    ("cyan", (0.0, 1.0, 1.0)),
    ("magenta", (1.0, 0.0, 1.0)),
    ("white", (1.0, 1.0, 1.0)),
    ("black", (0.0, 0.0, 0.0)),
)


def colour_names() -> list[str]:
    """Labels in class-id order."""
    return [name for name, _ in COLOUR_PROTOTYPES]
