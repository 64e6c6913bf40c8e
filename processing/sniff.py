"""Image format sniffing and header dimensions, read before any pixel is decoded.

Reading width and height from the header lets us refuse a decompression bomb (a small
file that declares a huge canvas) before OpenCV allocates anything.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from processing.errors import ImageDecodeFailed

# An image's bytes as the tier holds them: a body's one buffer (bytearray) or a download (bytes), not converted.
ImageBytes = bytes | bytearray

ACCEPTED_FORMATS = ("jpeg", "png", "webp", "gif", "bmp")


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def sniff_format(data: ImageBytes) -> str | None:
    """The format named by the first bytes, or None when it is not one we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    return None


def read_header(data: ImageBytes) -> ImageHeader:
    """Format and declared dimensions; raises ImageDecodeFailed when they cannot be read."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeFailed("not a JPEG, PNG, WebP, GIF or BMP image")
    try:
        width, height = _DIMENSION_READERS[fmt](data)
    except (struct.error, IndexError, ValueError) as exc:
        raise ImageDecodeFailed(f"{fmt.upper()} header is truncated or corrupt") from exc
    if width <= 0 or height <= 0:
        raise ImageDecodeFailed(f"{fmt.upper()} header declares an empty image")
    return ImageHeader(fmt, width, height)


def _png_size(data: ImageBytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _gif_size(data: ImageBytes) -> tuple[int, int]:
    width, height = struct.unpack("<HH", data[6:10])
    return int(width), int(height)


def _bmp_size(data: ImageBytes) -> tuple[int, int]:
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
        return int(width), int(height)
    width, height = struct.unpack("<ii", data[18:26])
    return abs(int(width)), abs(int(height))


def _webp_size(data: ImageBytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ValueError("unknown WebP chunk")


# JPEG start-of-frame markers that carry dimensions (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD9)) | {0x01}


def jpeg_segments(data: ImageBytes) -> Iterator[tuple[int, int, int]]:
    """Each header segment of a JPEG up to its scan data: (marker, offset of its length field, length).

    Raises IndexError or struct.error on data that ends first, ValueError on a length below 2.
    """
    pos = 2
    while True:
        while data[pos] != 0xFF:
            pos += 1
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == 0xD9 or marker == 0xDA:
            return
        length = struct.unpack(">H", data[pos : pos + 2])[0]
        yield marker, pos, length
        if length < 2:
            raise ValueError("bad segment length")
        pos += length


def _jpeg_size(data: ImageBytes) -> tuple[int, int]:
    for marker, pos, _length in jpeg_segments(data):
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return int(width), int(height)
    raise ValueError("no frame header before scan data")


_DIMENSION_READERS = {
    "jpeg": _jpeg_size,
    "png": _png_size,
    "webp": _webp_size,
    "gif": _gif_size,
    "bmp": _bmp_size,
}
