"""One hop's answer, checked as it arrives: status, declared length, Content-Type, first bytes, the byte cap.

The head is checked before any of the body is read; the body is read under the byte cap
(counted after content decoding, so a gzip bomb stops at the cap) and its first bytes
must be an image format we decode.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from app.fetch.errors import ContentTypeForbidden, SourceTooLarge, SourceUnreachable
from app.fetch.limits import DownloadHold, FetchLimits
from processing.errors import ImageDecodeFailed
from processing.sniff import sniff_format

SNIFF_BYTES = 16
ONE_BUFFER_BYTES = 1 << 20  # bodies from this size are read into one buffer (_read_into_one)


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


async def read_body(response: aiohttp.ClientResponse, limits: FetchLimits, hold: DownloadHold | None = None) -> bytes:
    """The body, decoded, refused past ``limits.max_bytes`` or when its first bytes are not an image.

    With ``hold`` (the request's memory budget), the bytes are reserved before they are read: by the declared
    length at once, else chunk by chunk. Making the one ``bytes`` object holds them twice for a moment (the
    chunks and their join, or the buffer and its copy), so that second copy is reserved while it lasts. A
    refusal gives back what it reserved.
    """
    held = _Held(hold)
    try:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and "Content-Encoding" not in response.headers:
            size = int(length)  # framed by a length already checked against the cap: one read
            await held.grow(2 * size)
            body = await _read_into_one(response.content, size) if size >= ONE_BUFFER_BYTES else await response.read()
            held.shrink(size)
        else:
            body = await _read_capped(response.content, limits.max_bytes, held)
        check_magic(body[:SNIFF_BYTES])
    except BaseException:
        held.shrink(held.nbytes)
        raise
    return body


class _Held:
    """What one download added to its request's hold, so that a failure takes back exactly that."""

    def __init__(self, hold: DownloadHold | None) -> None:
        self.hold = hold
        self.nbytes = 0

    async def grow(self, nbytes: int) -> None:
        if self.hold is not None:
            await self.hold.grow(nbytes)
            self.nbytes += nbytes

    def shrink(self, nbytes: int) -> None:
        if self.hold is not None:
            self.hold.shrink(nbytes)
            self.nbytes -= nbytes


async def _read_into_one(content: aiohttp.StreamReader, length: int) -> bytes:
    """A big body copied chunk by chunk into one buffer of its declared length, then into its ``bytes``.

    aiohttp's ``read`` keeps every chunk until it joins them: in a burst, tens of downloads' chunks interleave
    in the heap, and the holes they leave are too small for the next 19 MiB join, so the heap grows past what
    the budget holds (tests/hostile/test_memory_bursts.py). Here each chunk is let go as soon as it is copied.
    """
    buffer = bytearray(length)
    with memoryview(buffer) as view:
        filled = 0
        async for chunk in content.iter_any():
            if filled + len(chunk) > length:
                raise SourceTooLarge(f"the source sent more than the {length} bytes it declared")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    if filled != length:
        raise SourceUnreachable(f"the source closed the connection after {filled} of the {length} bytes it declared")
    return bytes(buffer)


async def _read_capped(content: aiohttp.StreamReader, max_bytes: int, held: _Held) -> bytes:
    chunks: list[bytes] = []
    size = 0
    checked = False
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise SourceTooLarge(f"the source sent more than {max_bytes} bytes")
        await held.grow(len(chunk))
        chunks.append(chunk)
        if not checked and size >= SNIFF_BYTES:  # refuse a stream that is not an image without reading it all
            check_magic(b"".join(chunks)[:SNIFF_BYTES])
            checked = True
    await held.grow(size)  # the joined copy, while the chunks still exist
    body = b"".join(chunks)
    chunks.clear()
    held.shrink(size)
    return body


def check_magic(head: bytes) -> None:
    if not head:
        raise ImageDecodeFailed("the source returned an empty body")
    if sniff_format(head) is None:
        raise ContentTypeForbidden("the source's bytes are not a JPEG, PNG, WebP, GIF or BMP image")
