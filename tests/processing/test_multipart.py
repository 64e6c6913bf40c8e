from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.errors import GatewayError, InvalidRequest, PayloadTooLarge
from processing.multipart import MultipartParser, boundary_from_content_type

BOUNDARY = b"XyZ123"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        if filename is not None:
            out += b"Content-Type: image/jpeg\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def parse(body: bytes, chunk: int, max_parts: int = 10, max_file: int = 1000) -> list[tuple[str, str | None, bytes]]:
    parser = MultipartParser(BOUNDARY, max_parts, max_file)
    for i in range(0, len(body), chunk):
        parser.feed(body[i : i + chunk])
    return [(p.name, p.filename, bytes(p.data)) for p in parser.finish()]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 10_000])
def test_parts_survive_any_chunking(chunk: int) -> None:
    parts = [("image", "a.jpg", b"\xff\xd8\r\n--Xy" * 5), ("top_k", None, b"3"), ("data", "b.png", b"")]
    assert parse(form(*parts), chunk) == parts


def test_boundary_from_content_type() -> None:
    assert boundary_from_content_type('multipart/form-data; boundary="abc"') == b"abc"
    with pytest.raises(InvalidRequest):
        boundary_from_content_type("multipart/form-data")


def test_file_over_cap_is_refused_while_streaming() -> None:
    parser = MultipartParser(BOUNDARY, 10, max_file_bytes=100)
    head = form(("image", "a.jpg", b""))[: -len(BOUNDARY) - 8]
    parser.feed(head)
    with pytest.raises(PayloadTooLarge, match=r"a\.jpg"):
        for _ in range(10):
            parser.feed(b"x" * 50)  # refused after about 100 bytes, long before the body ends


def test_too_many_parts() -> None:
    with pytest.raises(PayloadTooLarge, match="more than 2"):
        parse(form(*[("image", f"{i}.jpg", b"x") for i in range(3)]), 1000, max_parts=2)


def test_unterminated_body_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        parse(form(("image", "a.jpg", b"x"))[:-10], 1000)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_any_bytes_parse_or_fail_with_our_error(raw: bytes, chunk: int) -> None:
    with contextlib.suppress(GatewayError):
        parse(b"--" + BOUNDARY + raw, chunk)
