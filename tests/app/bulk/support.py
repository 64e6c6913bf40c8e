"""Running ``imagegate classify`` against an in-process tier without blocking the tier's IOLoop."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from dataclasses import dataclass
from typing import Any

from app.bulk.cli import main

CLASSIFIED_FIXTURES = 8  # tests/fixtures/images


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


async def classify(*args: str, stdin: str = "") -> Outcome:
    """``imagegate classify ARGS`` in a worker thread, so the tier in this thread's IOLoop keeps serving."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        return main(list(args), stdin=io.StringIO(stdin), stdout=out, stderr=err)

    code = await asyncio.get_running_loop().run_in_executor(None, run)
    return Outcome(code, out.getvalue(), err.getvalue())


def read_lines(path: Any) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
