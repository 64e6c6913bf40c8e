"""Lingering close: a connection closed while its request's body still arrives is read and drained before it is closed.

An answer given before the request's body has arrived (413 on a declared length, 415, 400 on the headers, 405,
Tornado's own 400 for a ``Content-Length`` over its limit) ends the request, and Tornado closes the connection
instead of reading the rest. Closing a socket with bytes unread, or still arriving, makes the kernel send a reset,
and a client or proxy still sending the body never reads the answer: nginx reports 502 with ``writev() failed (104:
Connection reset by peer)``. So, as nginx's own lingering close does, such a socket is kept: its write side is shut
(the answer has been written, so the client reads it, then the end of the stream), and whatever arrives is read and
dropped until the client closes, or ``server.lingering_time_s`` has passed, or nothing came for
``server.lingering_timeout_s``, or ``server.lingering_max_bytes`` were read; then it is closed. At most
``server.lingering_max_connections`` linger at once (more are closed at once), and all are cut at shutdown.

The hook is the connection's: the HTTP server hands each connection a ``LingeringStream``, and watches each request
for a body that has not been read to its end. Every route, and Tornado's own refusals, get it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from app.settings import ServerSettings

READ_SIZE = 256 * 1024
# How a lingering connection ended: the client closed it, or a limit, an error, the cap or the shutdown did.
ENDS = ("client", "time", "idle", "bytes", "error", "cap", "shutdown")


@dataclass(frozen=True)
class LingerLimits:
    time_s: float  # since the close, at most
    idle_s: float  # without a byte, at most
    max_bytes: int  # read and dropped, at most
    max_connections: int  # lingering at once; beyond it, closed at once

    @classmethod
    def of(cls, s: ServerSettings) -> LingerLimits:
        return cls(s.lingering_time_s, s.lingering_timeout_s, s.lingering_max_bytes, s.lingering_max_connections)


class LingerObserver(Protocol):
    """Told how many connections linger and how each lingering close ended (``app/observability/metrics.py``)."""

    def lingering_now(self, count: int) -> None: ...

    def lingering_ended(self, end: str) -> None: ...


class Lingering:
    """The process's lingering connections: bounded in number, each by time, idle gap and bytes."""

    def __init__(self, limits: LingerLimits, observer: LingerObserver | None = None) -> None:
        self.limits = limits  # replaced on a reload; a connection keeps the limits it started with
        self.observer = observer
        self._open: set[_Drain] = set()
        self._stopped = False
        self._buffer = bytearray(READ_SIZE)  # every drain reads into it: what arrives is dropped (one thread)
        self.capped = 0  # closed at once at the cap since the last take_capped(): summarised, not logged each

    @property
    def count(self) -> int:
        return len(self._open)

    def linger(self, sock: socket.socket) -> None:
        """Close ``sock``, whose answer is written, once the client has stopped sending (within the limits)."""
        if self._stopped or len(self._open) >= self.limits.max_connections:
            self._ended("shutdown" if self._stopped else "cap")
            sock.close()
            return
        try:
            sock.shutdown(socket.SHUT_WR)  # the answer, then the end of the stream: the client reads both
        except OSError:  # the client is gone already
            self._ended("error")
            sock.close()
            return
        self._open.add(_Drain(sock, self.limits, self._buffer, self._drained))
        if self.observer is not None:
            self.observer.lingering_now(len(self._open))

    def stop(self) -> None:
        """Cut every lingering connection, and close the ones to come at once (shutdown)."""
        self._stopped = True
        for drain in list(self._open):
            drain.end("shutdown")

    def _drained(self, drain: _Drain, end: str) -> None:
        self._open.discard(drain)
        if self.observer is not None:
            self.observer.lingering_now(len(self._open))
        self._ended(end)

    def take_capped(self) -> int:
        capped, self.capped = self.capped, 0
        return capped

    def _ended(self, end: str) -> None:
        self.capped += end == "cap"
        if self.observer is not None:
            self.observer.lingering_ended(end)


class _Drain:
    """One socket read and dropped, from the event loop's readiness callbacks, until it ends."""

    def __init__(
        self, sock: socket.socket, limits: LingerLimits, buffer: bytearray, done: Callable[[_Drain, str], None]
    ) -> None:
        self.sock = sock
        self.limits = limits
        self.buffer = buffer
        self.done = done
        self.received = 0
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.loop.add_reader(sock.fileno(), self._readable)
        self.deadline = self.loop.call_later(limits.time_s, self.end, "time")
        self.idle = self.loop.call_later(limits.idle_s, self._idle_check)

    def _readable(self) -> None:
        try:
            count = self.sock.recv_into(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.end("error")
            return
        if count == 0:
            self.end("client")
            return
        self.received += count
        self.last_read = self.loop.time()
        if self.received >= self.limits.max_bytes:
            self.end("bytes")

    def _idle_check(self) -> None:
        quiet_for = self.loop.time() - self.last_read
        if quiet_for >= self.limits.idle_s:
            self.end("idle")
        else:  # bytes came meanwhile: look again when the gap since the last could reach the limit
            self.idle = self.loop.call_later(self.limits.idle_s - quiet_for, self._idle_check)

    def end(self, why: str) -> None:
        if self.sock.fileno() < 0:
            return
        self.loop.remove_reader(self.sock.fileno())
        self.deadline.cancel()
        self.idle.cancel()
        self.sock.close()
        self.done(self, why)


class LingeringStream(IOStream):
    """A connection's stream whose close lingers while a request's body is still arriving (``body_pending``)."""

    def __init__(self, sock: socket.socket, lingering: Lingering, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self.lingering = lingering
        self.body_pending = False

    def close_fd(self) -> None:
        if self.body_pending and self.error is None:  # not after a reset: nothing is arriving
            self.lingering.linger(self.socket)
            self.socket = None  # type: ignore[assignment]  # as IOStream.close_fd leaves it
        else:
            super().close_fd()


class _BodyWatch(httputil.HTTPMessageDelegate):
    """Marks the stream while a request has a body that has not been read to its end."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, stream: LingeringStream) -> None:
        self.delegate = delegate
        self.stream = stream

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        self.stream.body_pending = "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0"
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.stream.body_pending = False  # read to its end (Tornado does not call this after an early answer)
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class LingeringHTTPServer(HTTPServer):
    """Tornado's HTTP server, with a lingering close for connections closed while a body still arrives."""

    lingering: Lingering  # set before it serves (``app/serving/server.py``)

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        if type(stream) is IOStream:  # not TLS: the tier serves plain HTTP behind its proxy
            options = {"max_buffer_size": stream.max_buffer_size, "read_chunk_size": stream.read_chunk_size}
            stream = LingeringStream(stream.socket, self.lingering, **options)
        super().handle_stream(stream, address)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = getattr(request_conn, "stream", None)
        return _BodyWatch(delegate, stream) if isinstance(stream, LingeringStream) else delegate

    async def close_all_connections(self) -> None:
        self.lingering.stop()  # lingering ones are cut, and the connections closed now do not start
        await super().close_all_connections()
