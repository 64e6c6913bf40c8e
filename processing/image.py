"""Decoding bytes into RGB pixels and preprocessing them into model input tensors.

Everything here is pure and CPU-bound: the tier runs ``image_to_tensor`` in a thread
pool (OpenCV releases the GIL while it works).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from processing.errors import ImageDecodeFailed, ImageTooLarge
from processing.geometry import ImageGeometry, crop_size, geometry, letterbox_size
from processing.jpeg import decode_jpeg, exif_orientation, jpeg_size
from processing.sniff import ImageBytes, ImageHeader, read_header

ResizeMode = Literal["stretch", "crop", "letterbox"]
ColorOrder = Literal["rgb", "bgr", "gray"]
TensorDtype = Literal["float32", "uint8"]
Layout = Literal["nhwc", "nchw"]

_REDUCED_FLAGS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    max_side: int


@dataclass(frozen=True)
class PreprocessSpec:
    """How one model wants its input: size, resize mode, colour order, normalisation, layout."""

    height: int
    width: int
    resize: ResizeMode
    resize_shorter: int | None  # crop mode: shorter side before the centre crop
    color: ColorOrder
    dtype: TensorDtype
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: Layout
    pad_value: int  # letterbox border

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image tensor shape, without the batch dimension."""
        if self.layout == "nchw":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    def min_decoded_side(self) -> int:
        """The shortest decoded side that still needs no upscaling."""
        if self.resize == "crop":
            return self.resize_shorter or max(self.height, self.width)
        return max(self.height, self.width)


def image_to_tensor(data: ImageBytes, spec: PreprocessSpec, limits: DecodeLimits) -> np.ndarray:
    """Decode ``data`` and preprocess it into one model input (no batch dimension)."""
    return image_to_tensor_and_geometry(data, spec, limits)[0]


def image_to_tensor_and_geometry(
    data: ImageBytes, spec: PreprocessSpec, limits: DecodeLimits, out: np.ndarray | None = None
) -> tuple[np.ndarray, ImageGeometry]:
    """One model input (written into ``out`` if given, e.g. its batch row), and where the displayed image went in it
    (``geometry``: the resize is its one source)."""
    decoded = decode(data, limits, min_side=spec.min_decoded_side())
    rgb = decoded.pixels
    return preprocess(rgb, spec, out), geometry(rgb.shape[1], rgb.shape[0], spec, decoded.shown, decoded.orientation)


def check_dimensions(header: ImageHeader, limits: DecodeLimits) -> None:
    """Refuse an image whose header declares too many pixels, before decoding it."""
    w, h = header.width, header.height
    if w > limits.max_side or h > limits.max_side:
        raise ImageTooLarge(f"image is {w}x{h}; no side may exceed {limits.max_side} pixels")
    if w * h > limits.max_pixels:
        raise ImageTooLarge(f"image is {w}x{h} ({w * h} pixels); the limit is {limits.max_pixels} pixels")


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels and what decoding read on the way, so that nothing reads the header or the EXIF again."""

    pixels: np.ndarray  # RGB uint8 (H, W, 3), upright, possibly reduced in the DCT domain
    header: ImageHeader  # the declared format and size, as stored (before orientation)
    orientation: int  # the EXIF orientation (1-8) the pixels were turned by; 1 for none and for non-JPEGs

    @property
    def shown(self) -> tuple[int, int]:
        """(width, height) of the image as displayed: full resolution, sides swapped when turned a quarter."""
        if self.orientation in (5, 6, 7, 8):
            return self.header.height, self.header.width
        return self.header.width, self.header.height


def decode_image(data: ImageBytes, limits: DecodeLimits, min_side: int = 0) -> np.ndarray:
    """RGB uint8 pixels (H, W, 3), EXIF-rotated; JPEGs are downscaled in the DCT domain when allowed."""
    return decode(data, limits, min_side).pixels


def decode(data: ImageBytes, limits: DecodeLimits, min_side: int = 0) -> DecodedImage:
    """``data`` decoded (RGB uint8, EXIF-rotated, JPEGs downscaled in the DCT domain when allowed), with its header.

    JPEGs go to libjpeg-turbo's TurboJPEG API (processing/jpeg.py: finer scales, RGB out); what it refuses, and
    every other format, to OpenCV.
    """
    header = read_header(data)
    check_dimensions(header, limits)
    if header.format != "jpeg":
        return DecodedImage(decode_with_opencv(data, header, min_side), header, 1)
    orientation = exif_orientation(data)
    return DecodedImage(_decode_jpeg_or_opencv(data, header, limits, min_side, orientation), header, orientation)


def _decode_jpeg_or_opencv(
    data: ImageBytes, header: ImageHeader, limits: DecodeLimits, min_side: int, orientation: int
) -> np.ndarray:
    try:
        size = jpeg_size(data)
    except ValueError:
        return decode_with_opencv(data, header, min_side)
    # libjpeg-turbo's own reading of the header, should it differ from ours (OpenCV's limits are the
    # backstop on its path; this is the one on this path).
    check_dimensions(ImageHeader("jpeg", *size), limits)
    try:
        return decode_jpeg(data, size, min_side, orientation)
    except ValueError:
        pass  # e.g. 12-bit or lossless JPEG, which the TurboJPEG API refuses: OpenCV gets its turn
    return decode_with_opencv(data, header, min_side)


def decode_with_opencv(data: ImageBytes, header: ImageHeader, min_side: int = 0) -> np.ndarray:
    """RGB uint8 pixels decoded by OpenCV (which applies EXIF orientation); JPEGs reduced by 2, 4 or 8 when allowed."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    flags = _jpeg_flags(header, min_side) if header.format == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        pixels = cv2.imdecode(buffer, flags)
    except cv2.error as exc:  # OpenCV's own limits (app/serving/opencv.py) refuse by raising
        raise ImageDecodeFailed(f"{header.format.upper()} image could not be decoded", log_message=str(exc)) from exc
    if pixels is None or pixels.size == 0:
        raise ImageDecodeFailed(f"{header.format.upper()} image is truncated or corrupt")
    return _to_rgb8(pixels)


def _jpeg_flags(header: ImageHeader, min_side: int) -> int:
    shorter = min(header.width, header.height)
    for factor, flag in _REDUCED_FLAGS:
        if min_side > 0 and shorter // factor >= min_side:
            return int(flag)
    return int(cv2.IMREAD_COLOR)


def _to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """Any decoded layout (grey, grey+alpha, BGR, BGRA; 8 or 16 bit) as RGB uint8."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ImageDecodeFailed(f"unsupported sample type {pixels.dtype}")
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    channels = pixels.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if channels == 2:
        grey = _over_white(pixels[:, :, :1], pixels[:, :, 1])
        return np.ascontiguousarray(np.repeat(grey, 3, axis=2))
    if channels == 4:
        pixels = _over_white(pixels[:, :, :3], pixels[:, :, 3])
    rgb: np.ndarray = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return rgb


def _over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white, as a browser shows a transparent image on a white page."""
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    blended = color.astype(np.float32) * a + 255.0 * (1.0 - a)
    composite: np.ndarray = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return composite


def preprocess(rgb: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Resize, convert colour, normalise and lay out one RGB image as the model expects, into ``out`` if given.

    ``out`` (``spec.shape``, the spec's dtype; e.g. a row of the request's batch) is written in one pass from the
    resized pixels: no float image in between, no copy of the finished tensor.
    """
    resized = _resize(rgb, spec)
    colored = _convert_color(resized, spec.color)
    return _normalise(colored, spec, out)


def _resize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    if spec.resize == "crop":
        return _resize_crop(rgb, spec)
    if spec.resize == "letterbox":
        return _letterbox(rgb, spec)
    return _resize_to(rgb, spec.width, spec.height)


def _resize_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    for step in shrink_steps(w, h, width, height):
        rgb = cv2.resize(rgb, step, interpolation=cv2.INTER_LINEAR)
    return np.asarray(rgb)


def shrink_steps(w: int, h: int, width: int, height: int) -> list[tuple[int, int]]:
    """The (width, height) of each bilinear resize that takes a ``w`` x ``h`` image to ``width`` x ``height``.

    A shrink of 2x or more needs anti-aliasing, which INTER_AREA at a fractional factor gives at 8x bilinear's CPU.
    Here a side at least 4x its target is halved first; then each side that shrinks goes by bilinear to twice its
    target, and a last 2:1 step halves them. Bilinear at exactly half a side averages each pair of pixels, a box
    filter, which OpenCV runs as its vectorised integer INTER_AREA when both sides halve. The box spans what
    INTER_AREA's spans, at 0.3-0.4x its CPU; mobilenet_v2's scores stay within the check of
    tests/processing/test_resize_fidelity.py.
    """
    if w < 2 * width and h < 2 * height:
        return [(width, height)]
    steps = []
    while w >= 4 * width or h >= 4 * height:
        w, h = (w // 2 if w >= 4 * width else w), (h // 2 if h >= 4 * height else h)
        steps.append((w, h))
    twice = (2 * width if w > width else width, 2 * height if h > height else height)
    return [*steps, twice, (width, height)]


def _resize_crop(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    h, w = rgb.shape[:2]
    new_w, new_h = crop_size(w, h, spec)
    resized = _resize_to(rgb, new_w, new_h)
    top = (new_h - spec.height) // 2
    left = (new_w - spec.width) // 2
    return resized[top : top + spec.height, left : left + spec.width]


def _letterbox(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    h, w = rgb.shape[:2]
    new_w, new_h = letterbox_size(w, h, spec)
    resized = _resize_to(rgb, new_w, new_h)
    canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
    top = (spec.height - new_h) // 2
    left = (spec.width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _convert_color(rgb: np.ndarray, color: ColorOrder) -> np.ndarray:
    if color == "bgr":
        return rgb[:, :, ::-1]
    if color == "gray":
        return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))[:, :, None]
    return rgb


def _normalise(pixels: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """``pixels`` (H, W, C uint8) scaled, less ``mean``, over ``std``, laid out, written into ``out`` in one pass.

    Float32 values are those of ``((x * scale) - mean) / std`` in float32, to the bit: a scale alone is one
    multiply; anything else reads a 256-entry table per channel made with that formula (``_lookup_table``).
    """
    dtype = np.uint8 if spec.dtype == "uint8" else np.float32
    if out is None:
        out = np.empty(spec.shape, dtype=dtype)
    if spec.layout == "nchw":
        for channel, plane in enumerate(cv2.split(np.ascontiguousarray(pixels))):
            _normalise_plane(plane, spec, channel, out[channel])
    elif spec.dtype == "uint8":
        np.copyto(out, pixels)
    elif _scale_only(spec):
        np.multiply(pixels, np.float32(spec.scale), out=out, dtype=np.float32)
    else:
        _look_up(pixels, _lookup_table(spec), out)
    return out


def _normalise_plane(plane: np.ndarray, spec: PreprocessSpec, channel: int, out: np.ndarray) -> None:
    if spec.dtype == "uint8":
        np.copyto(out, plane)
    else:
        _look_up(plane, _plane_tables(spec)[channel], out)


def _look_up(pixels: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    if out.flags.c_contiguous:  # a batch row is; OpenCV refuses a strided ``dst``
        cv2.LUT(pixels, table, dst=out)
    else:
        np.copyto(out, cv2.LUT(pixels, table))


def _scale_only(spec: PreprocessSpec) -> bool:
    return all(m == 0.0 for m in spec.mean) and all(s == 1.0 for s in spec.std)


@functools.lru_cache(maxsize=64)
def _lookup_table(spec: PreprocessSpec) -> np.ndarray:
    """What each uint8 value of each channel becomes, [1, 256, C] float32, as cv2.LUT reads it."""
    values = np.repeat(np.arange(256, dtype=np.float32)[:, None], spec.channels, axis=1)
    if spec.scale != 1.0:
        values *= np.float32(spec.scale)
    if any(m != 0.0 for m in spec.mean):
        values -= np.asarray(spec.mean, dtype=np.float32)
    if any(s != 1.0 for s in spec.std):
        values /= np.asarray(spec.std, dtype=np.float32)
    table: np.ndarray = values.reshape(1, 256, spec.channels)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=64)
def _plane_tables(spec: PreprocessSpec) -> tuple[np.ndarray, ...]:
    """``_lookup_table`` one contiguous [1, 256] table per channel, for planes laid out channel first."""
    table = _lookup_table(spec)
    return tuple(np.ascontiguousarray(table[:, :, c]) for c in range(spec.channels))
