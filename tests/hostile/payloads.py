"""Hostile payloads: a gzip bomb, a PNG that declares a huge canvas, a multipart body builder."""

from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Any

MIB = 1 << 20


def gzip_bomb(gibibytes: int = 1) -> bytes:
    """About 1 MB of gzip that inflates to ``gibibytes`` GiB of zeros behind a JPEG signature.

    After a full flush the compressor's output does not refer back, so one compressed
    mebibyte of zeros can be repeated. The trailer is left out: no reader gets that far.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(b"\xff\xd8\xff" + bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + segment * (1024 * gibibytes - 1)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG signature and IHDR that declare a canvas, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostileBoundary") -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; a part is (field name, filename or None, data)."""
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send_until_hung_up(handler: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    """An ImageServer route body: send the answer, ignoring a client that hangs up early."""
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        handler.wfile.write(body)
