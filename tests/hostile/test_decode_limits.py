"""Decode limits: a header that declares a huge canvas is refused before any pixel is allocated.

tests/processing/test_image.py covers the PNG case, formats, colour handling and corrupt
data; this adds every other format's header bomb, the exact cap boundaries, and OpenCV's
own limits (set by app/serving/opencv.py where the process starts) as the backstop should our check ever be bypassed.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest

from app.settings_checks import OPENCV_MAX_PIXELS
from processing.errors import ImageTooLarge
from processing.image import check_dimensions, decode_image
from processing.sniff import ImageHeader, read_header
from tests.support.specs import decode_limits

ROOT = Path(__file__).resolve().parents[2]
LIMITS = decode_limits()  # the defaults: 16,777,216 pixels, no side over 16,384


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def jpeg(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof


def progressive_jpeg(width: int, height: int) -> bytes:
    return jpeg(width, height).replace(b"\xff\xc0", b"\xff\xc2")


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"\x2c" + bytes(9) + b"\x02\x02\x44\x01\x00\x3b"


def bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + bytes(16)


def webp_vp8x(width: int, height: int) -> bytes:
    chunk = (
        b"VP8X"
        + struct.pack("<I", 10)
        + bytes(4)
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + bits.to_bytes(4, "little") + bytes(8)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


BOMBS = {
    "png 60000x60000": png(60000, 60000),
    "jpeg 65500x65500": jpeg(65500, 65500),
    "progressive jpeg 65500x65500": progressive_jpeg(65500, 65500),
    "gif 65535x65535": gif(65535, 65535),
    "bmp 30000x30000": bmp(30000, 30000),
    "top-down bmp 30000x30000": bmp(30000, -30000),
    "webp vp8x 16384x16384": webp_vp8x(16384, 16384),
    "webp vp8l 16384x16384": webp_vp8l(16384, 16384),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_header_bomb_in_any_format_is_refused_with_no_large_allocation(name: str) -> None:
    data = BOMBS[name]
    width, height = (int(n) for n in name.rsplit(" ", 1)[1].split("x"))
    assert (read_header(data).width, read_header(data).height) == (width, height)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=f"{width}x{height}"):
            decode_image(data, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # a canvas would be gigabytes


@pytest.mark.parametrize(
    ("width", "height", "allowed"),
    [
        (4096, 4096, True),  # exactly the pixel cap
        (4097, 4096, False),
        (16384, 1024, True),  # the longest side, at the pixel cap
        (16385, 1, False),  # one pixel over the side cap, far under the pixel cap
        (1, 16385, False),
        (65535, 65535, False),
    ],
)
def test_the_default_caps_are_exact(width: int, height: int, allowed: bool) -> None:
    header = ImageHeader("png", width, height)
    if allowed:
        check_dimensions(header, LIMITS)
    else:
        with pytest.raises(ImageTooLarge):
            check_dimensions(header, LIMITS)


def test_the_default_limits_are_the_documented_ones() -> None:
    assert (LIMITS.max_pixels, LIMITS.max_side) == (16_777_216, 16_384)


BACKSTOP_PROBE = textwrap.dedent(
    """
    import struct, sys, zlib
    import numpy as np
    {imports}

    def grey_png(width, height):
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        raw = zlib.compress(bytes(width + 1) * height, 1)
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")

    for width, height in ((9000, 9000), (40000, 8)):
        try:
            pixels = cv2.imdecode(np.frombuffer(grey_png(width, height), np.uint8), cv2.IMREAD_UNCHANGED)
            print("decoded" if pixels is not None else "refused")
        except cv2.error:
            print("refused")
    """
)


def run_probe(imports: str, then: str = "") -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_IO_")}
    script = BACKSTOP_PROBE.format(imports=imports) + textwrap.dedent(then)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


CONFIGURED = "import os; from app.serving.opencv import configure_opencv; configure_opencv(os.environ); import cv2"


def test_opencv_refuses_huge_images_itself_once_the_process_has_configured_it() -> None:
    """A valid 81-megapixel PNG and a 40000-pixel-wide one: over OpenCV's backstop.

    After configure_opencv (what ``python -m app`` runs first), OpenCV refuses both; imported bare
    (the control), it decodes them.
    """
    assert run_probe(CONFIGURED) == ["refused", "refused"]
    assert run_probe("import cv2") == ["decoded", "decoded"]


def test_python_m_app_configures_opencv_before_anything_imports_it() -> None:
    script = textwrap.dedent(
        """
        import os, runpy, sys
        sys.argv = ["app", "--help"]
        try:
            runpy.run_module("app", run_name="__main__")
        except SystemExit:
            pass
        print(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"), sys.modules["cv2"].getNumThreads())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split()[-2:] == [str(OPENCV_MAX_PIXELS), "1"]


def test_importing_the_product_writes_no_environment_and_settings_need_no_opencv() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        before = dict(os.environ)
        import app.settings
        print("cv2" in sys.modules)
        import app.serving.cli, app.serving.server, processing.image
        changed = {k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k)}
        print(changed <= {"LD_LIBRARY_PATH"})  # OpenCV's own loader sets that one
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "True"]


def test_configuring_opencv_after_it_was_imported_is_refused() -> None:
    script = "import os, cv2\nfrom app.serving.opencv import configure_opencv\nconfigure_opencv(os.environ)"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "before cv2 is imported" in result.stderr


def test_when_the_backstop_refuses_the_item_fails_not_the_request() -> None:
    """Caps configured above the backstop (decode.max_pixels=100000000): OpenCV refuses; that is an ItemError."""
    then = """
        from processing.errors import ItemError
        from processing.image import DecodeLimits, decode_image
        try:
            decode_image(grey_png(9000, 9000), DecodeLimits(max_pixels=100_000_000, max_side=40_000))
            print("decoded")
        except ItemError as exc:
            print(exc.code)
        except Exception as exc:
            print("escaped:" + type(exc).__name__)
    """
    assert run_probe(CONFIGURED, then)[-1] in {"image_too_large", "image_decode_failed"}
