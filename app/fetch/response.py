"""One hop's response, checked as it arrives: status, length, Content-Type, first bytes, the byte cap.

A refusal found while the response arrives is recorded on the hop's ``HopResponse`` (the
response delegate of Tornado's ``HTTP1Connection``), which raises ``StopReading``: Tornado
then closes the connection, and the recorded refusal is what the fetcher raises.
"""

from __future__ import annotations

from tornado.httputil import HTTPHeaders, HTTPInputError, HTTPMessageDelegate, RequestStartLine, ResponseStartLine

from app.fetch.errors import ContentTypeForbidden, SourceTooLarge
from app.fetch.limits import FetchLimits
from processing.errors import ImageDecodeFailed, ItemError
from processing.sniff import sniff_format

SNIFF_BYTES = 16
# The body of a redirect or an error answer is read and dropped up to this size, then
# the connection is closed: we never need it.
DISCARDED_BODY_BYTES = 64 << 10


class StopReading(HTTPInputError):
    """Raised from the response delegate to make Tornado close the connection.

    An ``HTTPInputError`` so Tornado logs one INFO line instead of an ERROR traceback.
    """


class HopResponse(HTTPMessageDelegate):
    """One hop's response: the checks run as its head and body arrive, and what they found."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.chunks: list[bytes] = []
        self.size = 0
        self.checked_head = False
        self.code = 0
        self.keep_alive = False
        self.location: str | None = None
        self.refusal: ItemError | None = None
        self.stopped = False
        self.started = False  # a status line arrived
        self.finished = False  # the body was read to its end

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    def stop(self, refusal: ItemError | None = None) -> StopReading:
        """Record why this hop ends early; the caller raises the returned exception."""
        self.refusal = self.refusal or refusal
        self.stopped = True
        return StopReading(refusal.log_message if refusal else "imagegate stopped reading")

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders) -> None:
        if self.stopped:
            raise self.stop()
        assert isinstance(start_line, ResponseStartLine)
        self.started = True
        self.code = start_line.code
        self.keep_alive = keeps_alive(start_line, headers)
        self.location = headers.get("Location")
        if self.is_success:
            try:
                self._check_length(headers.get("Content-Length"))
                self._check_type(headers.get("Content-Type"))
            except ItemError as exc:
                raise self.stop(exc) from None

    def _check_length(self, value: str | None) -> None:
        if value is not None and value.strip().isdigit() and int(value) > self.limits.max_bytes:
            raise SourceTooLarge(f"the source declares {int(value)} bytes; the limit is {self.limits.max_bytes}")

    def _check_type(self, value: str | None) -> None:
        if value is None:
            return
        media = value.split(";")[0].strip().lower()
        if media not in self.limits.content_types:
            raise ContentTypeForbidden(f"the source's Content-Type {media!r} is not an accepted image type")

    def data_received(self, chunk: bytes) -> None:
        if self.stopped:
            raise self.stop()
        self.size += len(chunk)
        if not self.is_success:
            if self.size > DISCARDED_BODY_BYTES:
                raise self.stop()
            return
        if self.size > self.limits.max_bytes:
            raise self.stop(SourceTooLarge(f"the source sent more than {self.limits.max_bytes} bytes"))
        self.chunks.append(chunk)
        if not self.checked_head and self.size >= SNIFF_BYTES:
            try:
                self.check_magic()
            except ItemError as exc:
                raise self.stop(exc) from None

    def finish(self) -> None:
        self.finished = True

    def on_connection_close(self) -> None:
        self.keep_alive = False

    def check_magic(self) -> None:
        self.checked_head = True
        head = b"".join(self.chunks)[:SNIFF_BYTES]
        if not head:
            raise ImageDecodeFailed("the source returned an empty body")
        if sniff_format(head) is None:
            raise ContentTypeForbidden("the source's bytes are not a JPEG, PNG, WebP, GIF or BMP image")

    def body(self) -> bytes:
        if not self.checked_head:
            self.check_magic()
        return b"".join(self.chunks)


def keeps_alive(start_line: ResponseStartLine, headers: HTTPHeaders) -> bool:
    """Whether the server lets us send another request on this connection after this response."""
    connection = (headers.get("Connection") or "").lower()
    framed = "Content-Length" in headers or "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    if start_line.version == "HTTP/1.1":
        return framed and connection != "close"
    return framed and connection == "keep-alive"
