"""One hop's answer, checked as it arrives: status, declared length, Content-Type, first bytes, the byte cap.

The head is checked before any of the body is read; the body is read under the byte cap
(counted after content decoding, so a gzip bomb stops at the cap) and its first bytes
must be an image format we decode.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from app.fetch.errors import ContentTypeForbidden, SourceTooLarge
from app.fetch.limits import FetchLimits
from processing.errors import ImageDecodeFailed
from processing.sniff import sniff_format

SNIFF_BYTES = 16


def check_head(headers: Mapping[str, str], limits: FetchLimits) -> None:
    """Refuse a successful answer by its headers: a declared length over the cap, a type that is not an image."""
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > limits.max_bytes:
        raise SourceTooLarge(f"the source declares {int(length)} bytes; the limit is {limits.max_bytes}")
    media_type = headers.get("Content-Type")
    if media_type is not None:
        media = media_type.split(";")[0].strip().lower()
        if media not in limits.content_types:
            raise ContentTypeForbidden(f"the source's Content-Type {media!r} is not an accepted image type")


async def read_body(response: aiohttp.ClientResponse, limits: FetchLimits) -> bytes:
    """The body, decoded, refused past ``limits.max_bytes`` or when its first bytes are not an image."""
    if response.headers.get("Content-Length") is not None and "Content-Encoding" not in response.headers:
        body = await response.read()  # framed by a length already checked against the cap: one read
    else:
        body = await _read_capped(response.content, limits.max_bytes)
    check_magic(body[:SNIFF_BYTES])
    return body


async def _read_capped(content: aiohttp.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    checked = False
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise SourceTooLarge(f"the source sent more than {max_bytes} bytes")
        chunks.append(chunk)
        if not checked and size >= SNIFF_BYTES:  # refuse a stream that is not an image without reading it all
            check_magic(b"".join(chunks)[:SNIFF_BYTES])
            checked = True
    return b"".join(chunks)


def check_magic(head: bytes) -> None:
    if not head:
        raise ImageDecodeFailed("the source returned an empty body")
    if sniff_format(head) is None:
        raise ContentTypeForbidden("the source's bytes are not a JPEG, PNG, WebP, GIF or BMP image")
