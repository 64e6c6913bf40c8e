"""An incremental multipart/form-data parser that enforces its limits while bytes arrive.

Fed chunk by chunk as the request body streams in, it refuses a part over the size
cap, too many parts, or oversized part headers as soon as the offending byte arrives,
so memory never holds more than the caps allow.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, field

from processing.errors import InvalidRequest, PayloadTooLarge

MAX_HEADER_BYTES = 8192
MAX_FIELD_BYTES = 4096  # a non-file field, such as top_k


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytearray = field(default_factory=bytearray)


def boundary_from_content_type(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type; raises InvalidRequest."""
    message = email.message.Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise InvalidRequest("multipart/form-data needs a boundary of 1 to 70 characters")
    return boundary.encode("latin-1", errors="replace")


class MultipartParser:
    """Feed it body chunks with ``feed``; ``finish`` returns the parts."""

    def __init__(self, boundary: bytes, max_parts: int, max_file_bytes: int) -> None:
        self._delimiter = b"--" + boundary
        self._body_delimiter = b"\r\n" + self._delimiter
        self._max_parts = max_parts
        self._max_file_bytes = max_file_bytes
        self._buffer = bytearray()
        self._state = "preamble"
        self._parts: list[Part] = []

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        progressing = True
        while progressing and self._state != "end":
            progressing = getattr(self, f"_on_{self._state}")()

    def finish(self) -> list[Part]:
        if self._state != "end":
            raise InvalidRequest("multipart body ended before its closing boundary")
        return self._parts

    def _on_preamble(self) -> bool:
        index = self._buffer.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise InvalidRequest("multipart body does not start with its boundary")
            del self._buffer[: max(0, len(self._buffer) - keep)]
            return False
        del self._buffer[: index + len(self._delimiter)]
        self._state = "after_delimiter"
        return True

    def _on_after_delimiter(self) -> bool:
        if len(self._buffer) < 2:
            return False
        marker = bytes(self._buffer[:2])
        if marker == b"--":
            self._state = "end"
            self._buffer.clear()
            return False
        if marker != b"\r\n":
            raise InvalidRequest("malformed multipart boundary line")
        del self._buffer[:2]
        self._state = "headers"
        return True

    def _on_headers(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise PayloadTooLarge(f"a multipart part's headers exceed {MAX_HEADER_BYTES} bytes")
            return False
        if len(self._parts) >= self._max_parts:
            raise PayloadTooLarge(f"more than {self._max_parts} multipart parts")
        self._parts.append(_parse_part_headers(bytes(self._buffer[:end])))
        del self._buffer[: end + 4]
        self._state = "body"
        return True

    def _on_body(self) -> bool:
        part = self._parts[-1]
        index = self._buffer.find(self._body_delimiter)
        if index < 0:
            safe = len(self._buffer) - (len(self._body_delimiter) - 1)
            if safe > 0:
                self._append(part, safe)
                del self._buffer[:safe]
            return False
        self._append(part, index)
        del self._buffer[: index + len(self._body_delimiter)]
        self._state = "after_delimiter"
        return True

    def _append(self, part: Part, size: int) -> None:
        """The buffer's first ``size`` bytes onto the part, copied once (a slice would copy them twice)."""
        limit = self._max_file_bytes if part.filename is not None else MAX_FIELD_BYTES
        if len(part.data) + size > limit:
            what = f"upload {part.filename!r}" if part.filename is not None else f"field {part.name!r}"
            raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
        with memoryview(self._buffer) as view:
            part.data += view[:size]


def _parse_part_headers(block: bytes) -> Part:
    message = email.message.Message()
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise InvalidRequest("malformed multipart part header")
        message[key.strip()] = value.strip()
    if message.get_content_disposition() != "form-data":
        raise InvalidRequest("each multipart part needs Content-Disposition: form-data")
    name = message.get_param("name", header="content-disposition")
    filename = message.get_filename()
    if not isinstance(name, str):  # absent, or an RFC 2231 tuple we do not accept
        raise InvalidRequest("a multipart part has no field name")
    content_type = message.get("content-type")
    return Part(name=name, filename=filename, content_type=content_type)
