"""Where an image went in its model's input frame, and back: the geometry that maps a model's boxes and keypoints
onto the image as the client displays it (EXIF-upright, full size).

The sizes the resize modes produce live here, so the resize (processing/image.py) and the mapping share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from processing.image import PreprocessSpec


@dataclass(frozen=True)
class ImageGeometry:
    """Where one image went in its model's input frame, so a point in that frame maps back to the image as shown.

    ``width`` x ``height``: the image as the client displays it (EXIF-upright, full resolution, even when the JPEG
    was decoded reduced). The decoded pixels occupy the rectangle ``left, top, scaled_width, scaled_height`` of the
    ``frame_width`` x ``frame_height`` input (inside it for letterbox, beyond it for crop, the frame for stretch),
    and cover the rectangle ``covered_left, covered_top, covered_width, covered_height`` of the displayed image:
    the image itself, unless a JPEG decoded reduced by s has a side that is no multiple of s. libjpeg-turbo rounds
    such a side up, so its last decoded pixel stands for s pixels of which some lie past the stored image's right
    or bottom edge (on the left or top once the EXIF orientation mirrors that side).
    """

    width: int
    height: int
    frame_width: int
    frame_height: int
    left: float
    top: float
    scaled_width: float
    scaled_height: float
    covered_left: float
    covered_top: float
    covered_width: float
    covered_height: float

    def to_displayed(self, points: np.ndarray) -> np.ndarray:
        """``points`` [..., 2] as (x, y) normalised to the input frame, in the displayed image's pixels (unclipped)."""
        sx, sy = self.covered_width / self.scaled_width, self.covered_height / self.scaled_height
        scale = np.array([self.frame_width * sx, self.frame_height * sy])
        offset = np.array([self.covered_left - self.left * sx, self.covered_top - self.top * sy])
        mapped: np.ndarray = np.asarray(points, dtype=np.float64) * scale + offset
        return mapped


def geometry(
    width: int, height: int, spec: PreprocessSpec, shown: tuple[int, int] | None = None, orientation: int = 1
) -> ImageGeometry:
    """Where a decoded ``width`` x ``height`` image goes in ``spec``'s frame (as processing/image.py's resize puts
    it), shown at ``shown`` (width, height; default the decoded size: a JPEG decoded reduced is shown at its full
    size) after the EXIF ``orientation`` it was turned by."""
    shown_w, shown_h = shown or (width, height)
    frame = (spec.width, spec.height)
    covered = covered_rect(width, height, (shown_w, shown_h), orientation)
    if spec.resize == "crop":
        new_w, new_h = crop_size(width, height, spec)
        left, top = (new_w - spec.width) // 2, (new_h - spec.height) // 2
        return ImageGeometry(shown_w, shown_h, *frame, -left, -top, new_w, new_h, *covered)
    if spec.resize == "letterbox":
        new_w, new_h = letterbox_size(width, height, spec)
        left, top = (spec.width - new_w) // 2, (spec.height - new_h) // 2
        return ImageGeometry(shown_w, shown_h, *frame, left, top, new_w, new_h, *covered)
    return ImageGeometry(shown_w, shown_h, *frame, 0, 0, spec.width, spec.height, *covered)


def covered_rect(
    width: int, height: int, shown: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """The rectangle (left, top, width, height) of the displayed image that the decoded ``width`` x ``height``
    pixels cover: the reduction s is the one whose rounded-up sides are the decoded ones (libjpeg-turbo's and
    OpenCV's IMREAD_REDUCED_* alike); past the image go the stored right and bottom edges, wherever
    ``orientation`` shows them."""
    shown_w, shown_h = shown
    factor = next((s for s in (1, 2, 4, 8) if (-(-shown_w // s), -(-shown_h // s)) == (width, height)), None)
    if factor is None:  # not a DCT reduction (nothing decodes so today): the decoded pixels span the image
        return 0.0, 0.0, float(shown_w), float(shown_h)
    covered_w, covered_h = width * factor, height * factor
    left = shown_w - covered_w if orientation in (2, 3, 6, 7) else 0  # the stored right edge shows on the left
    top = shown_h - covered_h if orientation in (3, 4, 7, 8) else 0  # the stored bottom edge shows on top
    return float(left), float(top), float(covered_w), float(covered_h)


def crop_size(w: int, h: int, spec: PreprocessSpec) -> tuple[int, int]:
    """The size crop mode resizes a ``w`` x ``h`` image to before cutting the centre out."""
    shorter = spec.resize_shorter or max(spec.height, spec.width)
    scale = shorter / min(h, w)
    return max(spec.width, round(w * scale)), max(spec.height, round(h * scale))


def letterbox_size(w: int, h: int, spec: PreprocessSpec) -> tuple[int, int]:
    """The size letterbox mode resizes a ``w`` x ``h`` image to before padding it to the frame."""
    scale = min(spec.width / w, spec.height / h)
    return max(1, round(w * scale)), max(1, round(h * scale))
