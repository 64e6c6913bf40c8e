"""The load generator: a fixed number of keep-alive connections POSTing in a closed loop.

It runs in its own process (``python -m tools.bench.load``) so it never shares the measured
server's GIL, speaks just enough HTTP/1.1 over asyncio streams to stay cheap, and is
bounded both in requests and in time. It prints one JSON document: requests/s,
images/s, latency percentiles, status counts, and the latencies of shed (503) answers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # of 200 answers, seconds
    shed_latencies: list[float] = field(default_factory=list)  # of 503 answers
    statuses: dict[int, int] = field(default_factory=dict)
    images_ok: int = 0
    item_errors: int = 0
    shed_without_retry_after: int = 0
    connection_errors: int = 0
    response_bytes: int = 0
    sample: str = ""


@dataclass
class Plan:
    host: str
    port: int
    path: str
    bodies: list[tuple[bytes, int]]  # (body, images in it)
    content_type: str
    concurrency: int
    max_requests: int
    duration_s: float
    warmup_s: float


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return Response(int(status), headers, body, keep_alive and "content-length" in headers)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def request_bytes(plan: Plan, body: bytes) -> bytes:
    head = (
        f"POST {plan.path} HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
        f"Content-Type: {plan.content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def worker(plan: Plan, requests: Iterator[tuple[bytes, int]], tally: Tally, phase: dict[str, float]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    for payload, images in requests:
        started = time.perf_counter()
        if started >= phase["end"]:
            break
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(plan.host, plan.port)
                started = time.perf_counter()
            writer.write(payload)
            response = await read_response(reader)
            elapsed = time.perf_counter() - started
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if started >= phase["measure"]:
                tally.connection_errors += 1
            _close(writer)
            writer = None
            continue
        if started >= phase["measure"]:
            _count(tally, response, images, elapsed)
        if not response.keep_alive:
            _close(writer)
            writer = None
    _close(writer)


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


def _count(tally: Tally, response: Response, images: int, elapsed: float) -> None:
    tally.statuses[response.status] = tally.statuses.get(response.status, 0) + 1
    tally.response_bytes += len(response.body)
    if response.status == 200:
        tally.latencies.append(elapsed)
        errors = response.body.count(b'"error"')
        tally.item_errors += errors
        tally.images_ok += images - errors
        if not tally.sample:
            tally.sample = response.body[:4000].decode("utf-8", "replace")
    elif response.status == 503:
        tally.shed_latencies.append(elapsed)
        if "retry-after" not in response.headers:
            tally.shed_without_retry_after += 1
    elif not tally.sample:
        tally.sample = f"{response.status}: " + response.body[:4000].decode("utf-8", "replace")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run(plan: Plan) -> dict[str, Any]:
    tally = Tally()
    start = time.perf_counter()
    phase = {"measure": start + plan.warmup_s, "end": start + plan.warmup_s + plan.duration_s}
    cycle = itertools.cycle(plan.bodies)
    budget = itertools.islice(cycle, plan.max_requests)
    requests = ((request_bytes(plan, body), images) for body, images in budget)
    await asyncio.gather(*(worker(plan, requests, tally, phase) for _ in range(plan.concurrency)))
    elapsed = max(1e-9, min(time.perf_counter(), phase["end"]) - phase["measure"])
    return {**summarise(tally, elapsed), "warmup_s": plan.warmup_s}


def summarise(tally: Tally, elapsed: float) -> dict[str, Any]:
    answered = sum(tally.statuses.values())
    ok = tally.statuses.get(200, 0)
    ms = 1000.0
    return {
        "seconds": round(elapsed, 3),
        "requests": answered,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "connection_errors": tally.connection_errors,
        "item_errors": tally.item_errors,
        "requests_per_s": ok / elapsed,
        "images_per_s": tally.images_ok / elapsed,
        "p50_ms": percentile(tally.latencies, 50) * ms,
        "p90_ms": percentile(tally.latencies, 90) * ms,
        "p99_ms": percentile(tally.latencies, 99) * ms,
        "max_ms": max(tally.latencies, default=float("nan")) * ms,
        "shed": len(tally.shed_latencies),
        "shed_p50_ms": percentile(tally.shed_latencies, 50) * ms,
        "shed_p99_ms": percentile(tally.shed_latencies, 99) * ms,
        "shed_max_ms": max(tally.shed_latencies, default=float("nan")) * ms,
        "shed_without_retry_after": tally.shed_without_retry_after,
        "response_bytes": tally.response_bytes,
        "sample": tally.sample,
    }


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="tools.bench.load", description="Closed-loop HTTP POST load.")
    parser.add_argument("--url", required=True)
    parser.add_argument(
        "--bodies",
        type=Path,
        required=True,
        help="JSON lines: {'body': str, 'images': n, 'binary': true for bytes as latin-1}",
    )
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1_000_000, help="at most this many, warm-up included")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    url = urllib.parse.urlsplit(args.url)
    lines = [json.loads(line) for line in args.bodies.read_text().splitlines() if line.strip()]
    return Plan(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        path=url.path + (f"?{url.query}" if url.query else ""),
        bodies=[
            (line["body"].encode("latin-1" if line.get("binary") else "utf-8"), int(line["images"])) for line in lines
        ],
        content_type=args.content_type,
        concurrency=args.concurrency,
        max_requests=args.requests,
        duration_s=args.duration,
        warmup_s=args.warmup,
    )


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    print(json.dumps(asyncio.run(run(plan))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
