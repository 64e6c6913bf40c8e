from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from processing.errors import ImageDecodeFailed, ImageTooLarge
from processing.image import decode_image, decode_with_opencv, image_to_tensor, preprocess
from processing.sniff import read_header
from tests.support.exif import with_exif_orientation
from tests.support.specs import decode_limits, preprocess_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
LIMITS = decode_limits()


def encode(pixels: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, pixels, params or [])
    assert ok
    return bytes(buffer)


def solid_bgr(b: int, g: int, r: int, h: int = 20, w: int = 30) -> np.ndarray:
    return np.full((h, w, 3), (b, g, r), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".jpg", ".webp", ".gif"])
def test_every_format_decodes_to_rgb(ext: str) -> None:
    data = encode(solid_bgr(0, 0, 250), ext)  # pure red in BGR order
    rgb = decode_image(data, LIMITS)
    assert rgb.shape == (20, 30, 3)
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 40 and b < 40


def test_greyscale_png_becomes_three_equal_channels() -> None:
    grey = np.full((8, 9), 77, dtype=np.uint8)
    rgb = decode_image(encode(grey, ".png"), LIMITS)
    assert rgb.shape == (8, 9, 3)
    assert (rgb == 77).all()


def test_sixteen_bit_png_is_scaled_to_eight_bit() -> None:
    deep = np.full((4, 4, 3), 0xFF00, dtype=np.uint16)
    rgb = decode_image(encode(deep, ".png"), LIMITS)
    assert rgb.dtype == np.uint8
    assert (rgb == 0xFF).all()


def test_transparent_png_is_composited_on_white() -> None:
    bgra = np.zeros((4, 4, 4), dtype=np.uint8)  # black, fully transparent
    bgra[:2, :, 3] = 255  # top half opaque black
    rgb = decode_image(encode(bgra, ".png"), LIMITS)
    assert (rgb[:2] == 0).all()
    assert (rgb[2:] == 255).all()


def test_exif_orientation_is_applied() -> None:
    """A 40x20 (w x h) JPEG tagged 'rotate 90 CW' (orientation 6) comes out 20 wide, 40 high."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (0, 0, 255)  # left half red
    jpeg = encode(pixels, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    rgb = decode_image(with_exif_orientation(jpeg, 6), LIMITS)
    assert rgb.shape == (40, 20, 3)
    assert rgb[:20, :, 0].mean() > 200  # the red half is now on top
    assert rgb[20:, :, 0].mean() < 50


def test_cmyk_jpeg_decodes_to_rgb() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, "JPEG", quality=95)  # pure red in CMYK
    rgb = decode_image(buffer.getvalue(), LIMITS)
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    assert rgb.shape == (16, 16, 3) and r > 200 and g < 60 and b < 60


def test_animated_gif_gives_the_first_frame() -> None:
    from PIL import Image

    frames = [Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 2
    rgb = decode_image(buffer.getvalue(), LIMITS)
    assert rgb[..., 0].mean() > 200 and rgb[..., 2].mean() < 50  # the red first frame


def test_truncated_jpeg_is_an_error_not_a_crash() -> None:
    data = (FIXTURES / "coffee.jpg").read_bytes()
    with pytest.raises(ImageDecodeFailed):
        decode_image(data[:300], LIMITS)


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"GIF89a", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"])
def test_garbage_is_an_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeFailed):
        decode_image(data, LIMITS)


def test_png_declaring_huge_canvas_is_refused_before_decoding() -> None:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk
    assert read_header(data).width == 60000
    with pytest.raises(ImageTooLarge, match="60000x60000"):
        decode_image(data, LIMITS)


def test_side_limit_applies_even_under_the_pixel_cap() -> None:
    data = encode(np.zeros((2, 300, 3), dtype=np.uint8), ".png")
    with pytest.raises(ImageTooLarge):
        decode_image(data, decode_limits(max_pixels=10**9, max_side=299))


def test_jpeg_is_downscaled_in_the_dct_domain_when_the_target_allows() -> None:
    big = np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8)
    data = encode(big, ".jpg")
    assert decode_image(data, LIMITS, min_side=224).shape == (240, 320, 3)  # factor 4
    assert decode_image(data, LIMITS, min_side=256).shape == (480, 640, 3)  # factor 2
    assert decode_image(data, LIMITS, min_side=0).shape == (960, 1280, 3)


def test_crop_mode_matches_torchvision_geometry() -> None:
    """Shorter side to 256, then a centred 224 crop."""
    rgb = np.zeros((300, 600, 3), dtype=np.uint8)
    rgb[:, 300:] = 255  # right half white
    spec = preprocess_spec(height=224, width=224, resize="crop", resize_shorter=256, dtype="uint8")
    out = preprocess(rgb, spec)
    assert out.shape == (224, 224, 3)
    # resized to 512x256: the centre crop spans x 144..368, the white edge at 256 -> column 112
    assert out[:, :110].max() == 0 and out[:, 114:].min() == 255


def test_letterbox_keeps_aspect_and_pads() -> None:
    rgb = np.full((100, 200, 3), 255, dtype=np.uint8)
    spec = preprocess_spec(height=100, width=100, resize="letterbox", dtype="uint8", pad_value=0)
    out = preprocess(rgb, spec)
    assert (out[25:75] == 255).all() and (out[:24] == 0).all() and (out[76:] == 0).all()


def test_normalisation_colour_order_and_layout() -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    spec = preprocess_spec(height=2, width=2, color="bgr", scale=1 / 255, mean=(0.5,), std=(0.5,), layout="nchw")
    out = preprocess(rgb, spec)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [-1.0, -1.0, 1.0], atol=1e-6)  # B, G, R


def test_gray_output_has_one_channel() -> None:
    spec = preprocess_spec(height=8, width=8, color="gray")
    out = image_to_tensor(encode(solid_bgr(255, 255, 255), ".png"), spec, LIMITS)
    assert out.shape == (8, 8, 1)
    assert out.max() == pytest.approx(255.0)


def test_fixture_photo_becomes_a_model_tensor() -> None:
    spec = preprocess_spec(height=224, width=224, resize="crop", resize_shorter=256, dtype="uint8")
    out = image_to_tensor((FIXTURES / "coffee.jpg").read_bytes(), spec, LIMITS)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("min_side", [0, 224, 256, 480])
@pytest.mark.parametrize("name", ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"])
def test_jpeg_pixels_equal_opencvs_at_every_reduction(name: str, min_side: int) -> None:
    """libjpeg-turbo's TurboJPEG API at OpenCV's reductions gives OpenCV's pixels, bit for bit."""
    data = (FIXTURES / name).read_bytes()
    photo = cv2.imread(str(FIXTURES / name))
    assert photo is not None
    big = encode(cv2.resize(photo, (photo.shape[1] * 4, photo.shape[0] * 4)), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])
    for jpeg in (data, big):
        expected = decode_with_opencv(jpeg, read_header(jpeg), min_side)
        np.testing.assert_array_equal(decode_image(jpeg, LIMITS, min_side=min_side), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_image_as_opencv_does(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    jpeg = with_exif_orientation(encode(pixels, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), orientation)
    expected = decode_with_opencv(jpeg, read_header(jpeg))
    np.testing.assert_array_equal(decode_image(jpeg, LIMITS), expected)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_colour_modes_and_progressive_decode_as_opencv_does(mode: str, progressive: bool) -> None:
    from PIL import Image

    photo = Image.open(FIXTURES / "chelsea.jpg").convert(mode)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90, progressive=progressive)
    jpeg = buffer.getvalue()
    expected = decode_with_opencv(jpeg, read_header(jpeg))
    np.testing.assert_array_equal(decode_image(jpeg, LIMITS), expected)


@pytest.mark.parametrize("cut", [300, 1000, 20000, -2])
def test_a_jpeg_truncated_anywhere_is_refused(cut: int) -> None:
    data = (FIXTURES / "coffee.jpg").read_bytes()
    with pytest.raises(ImageDecodeFailed):
        decode_image(data[:cut], LIMITS)


def test_a_jpeg_the_turbojpeg_api_refuses_gets_opencvs_answer() -> None:
    """A lossless (SOF3) frame header: libjpeg-turbo's TurboJPEG API refuses it; OpenCV then decides."""
    data = (FIXTURES / "coffee.jpg").read_bytes()
    sof = data.index(b"\xff\xc0")
    with pytest.raises(ImageDecodeFailed):
        decode_image(data[:sof] + b"\xff\xc3" + data[sof + 2 :], LIMITS)
