from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.errors import GatewayError
from processing.image import decode_image
from processing.sniff import read_header, sniff_format
from tests.support.specs import decode_limits

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.mark.parametrize(("name", "size"), [("coffee.jpg", (600, 400)), ("digit_3.png", (64, 64))])
def test_header_dimensions_of_real_files(name: str, size: tuple[int, int]) -> None:
    header = read_header((FIXTURES / name).read_bytes())
    assert (header.width, header.height) == size


def test_sniff_rejects_html() -> None:
    assert sniff_format(b"<!doctype html>") is None


@given(st.binary(max_size=400))
def test_decoder_never_raises_anything_but_our_errors(data: bytes) -> None:
    with contextlib.suppress(GatewayError):
        decode_image(data, decode_limits(max_pixels=1 << 20, max_side=4096))


@given(
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]),
    st.binary(max_size=200),
)
def test_decoder_on_valid_magic_with_random_tails(magic: bytes, tail: bytes) -> None:
    with contextlib.suppress(GatewayError):
        decode_image(magic + tail, decode_limits(max_pixels=1 << 20, max_side=4096))
