"""Blocking raw-socket HTTP clients that misbehave on purpose: endless uploads and slowloris.

They run in a worker thread (``loop.run_in_executor``) so the tier under test keeps
serving on the test's IOLoop meanwhile.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    sent: int  # body bytes sent before the answer came (or the connection broke)
    raw: bytes  # everything the server sent, until it closed
    elapsed_s: float
    reset: bool = False  # the connection was reset (send_through_answer)

    @property
    def status(self) -> int:
        line = self.raw.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0

    @property
    def body(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[2]


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def send_until_answered(port: int, head: bytes, piece: bytes, limit: int, timeout_s: float = 20.0) -> Answer:
    """Send ``head``, then ``piece`` again and again (up to ``limit`` bytes) until the server answers."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head)
        try:
            while sent < limit and not _readable(sock):
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up on us; what it said first is still in our receive buffer
        return Answer(sent, _read_all(sock), time.monotonic() - started)


def trickle(port: int, pieces: Sequence[bytes], delay_s: float, timeout_s: float = 10.0) -> Answer:
    """Send ``pieces`` with a pause between them, as a slowloris client does; stop when the server hangs up."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            for piece in pieces:
                if _readable(sock):
                    break
                sock.sendall(piece)
                sent += len(piece)
                time.sleep(delay_s)  # the client's own slowness, not test synchronisation
        except (BrokenPipeError, ConnectionResetError):
            pass
        return Answer(sent, _read_all(sock), time.monotonic() - started)


def send_through_answer(
    port: int, head: bytes, body: Iterable[bytes | memoryview], answer_first: bool, timeout_s: float = 30.0
) -> Answer:
    """Send ``head`` and all of ``body`` whatever the server answers meanwhile, then read until it closes: a client
    that keeps sending after the answer. With ``answer_first``, the whole answer is read before any of the body is
    sent (for a request refused on its headers); else it is read as it comes. A reset ends it (``reset``)."""
    started = time.monotonic()
    sent, received, ended = 0, b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(head)
            if answer_first:
                received, ended = _read_answer(sock)
            for piece in body:
                while not ended and _readable(sock):
                    data = sock.recv(65536)
                    received, ended = received + data, not data
                sock.sendall(piece)
                sent += len(piece)
            while not ended:
                data = sock.recv(65536)
                received, ended = received + data, not data
        except (BrokenPipeError, ConnectionResetError):
            return Answer(sent, received, time.monotonic() - started, reset=True)
    return Answer(sent, received, time.monotonic() - started)


def _read_answer(sock: socket.socket) -> tuple[bytes, bool]:
    """One answer (by its Content-Length, else until the server's end of stream); it and whether the stream ended."""
    received = b""
    while True:
        head, found, body = received.partition(b"\r\n\r\n")
        lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        if found and lengths and len(body) >= int(lengths[0]):
            return received, False
        data = sock.recv(65536)
        if not data:
            return received, True
        received += data


def _readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return received
        if not data:
            return received
        received += data
