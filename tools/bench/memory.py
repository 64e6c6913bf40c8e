"""``python -m tools.bench.memory``: what a burst of big images does to the tier's memory (issue 24).

Starts the fake backend and a tier process (``tiny``, ``server.decode_threads`` fixed), then per
(image, concurrency): a fresh tier, ``--rounds`` rounds of ``concurrency`` requests sent at once,
each on its own connection, then ``--settle`` seconds of quiet. Prints, per run, the idle RSS, VmHWM
(``/proc/<pid>/status``), RSS 1 s, 5 s and ``--settle`` s after the last round, the statuses and
connection errors, the tier's CPU seconds, and the copy factor: (VmHWM - idle) / concurrency, in
MiB and in bodies (how many copies of each request's bytes the tier held at its peak).

Images, 19 MiB each, made once under ``build/bench/memory/``: ``noise`` (a JPEG's first bytes, then
seeded random bytes: refused at decode) and ``photo`` (a real 4096x4096 JPEG: a fixture photo scaled
up with seeded noise, quality 90). ``--mode upload`` sends each as a raw ``image/jpeg`` body;
``--mode urls`` sends JSON lists of four URLs of it (distinct query strings, so none is fetched once
for two) served by nginx (or Python's ``http.server``).

``--tier-root DIR`` runs the tier from another checkout (``git archive <commit> | tar -x -C DIR``),
to measure the code before a change with this tool; ``--budget BYTES`` sets
``server.memory_budget_bytes`` (left out otherwise, so older code starts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg

from tools.bench import procs
from tools.bench.imagehost import ImageHost, start_image_host
from tools.bench.images import FIXTURES, _read, photo_like
from tools.bench.load import read_response
from tools.bench.procs import MIB
from tools.fakeserving import start_fakeserving
from tools.process import ROOT, Child, start_child

OUT = ROOT / "build" / "bench" / "memory"
BODY_BYTES = 19 * MIB
PHOTO_SIDE = 4096
PHOTO_NOISE_SIGMA = 30.0  # with quality 90: 19.04 MiB, under server.max_upload_bytes (20 MiB)
PHOTO_QUALITY = 90
IMAGES = ("noise", "photo")
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
TIER_READY = r"imagegate: ready on (http://\S+)"
PREDICT = "/v1/models/tiny:predict"
SEND_BYTES = 256 << 10
AFTER_S = (1.0, 5.0)  # RSS is also read this long after the last round, before --settle


@dataclass
class Run:
    image: str
    mode: str
    concurrency: int
    rounds: int
    body_bytes: int  # bytes of images per request
    idle_mb: float = 0.0
    hwm_mb: float = 0.0
    rss_after_mb: dict[str, float] = field(default_factory=dict)  # seconds after the last round -> MB
    statuses: dict[str, int] = field(default_factory=dict)
    connection_errors: int = 0
    cpu_s: float = 0.0
    round_s: list[float] = field(default_factory=list)

    @property
    def copy_mb(self) -> float:
        """(VmHWM - idle) / concurrency, MiB: what the tier held per request at its peak."""
        return (self.hwm_mb - self.idle_mb) / self.concurrency

    @property
    def copies(self) -> float:
        """The copy factor in bodies: how many times each request's bytes were held at the peak."""
        return self.copy_mb * MIB / self.body_bytes


def noise_jpeg(size: int = BODY_BYTES, seed: int = 24) -> bytes:
    """``size`` bytes that start as a JPEG does, then seeded noise: accepted as an image, refused at decode."""
    noise = np.random.default_rng(seed).integers(0, 256, size - len(JPEG_HEAD), dtype=np.uint8)
    return JPEG_HEAD + noise.tobytes()


def make_images(directory: Path = OUT) -> dict[str, Path]:
    """The two 19 MiB images, written once (deterministic: seeded)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.jpg" for name in IMAGES}
    if not paths["noise"].is_file():
        paths["noise"].write_bytes(noise_jpeg())
    if not paths["photo"].is_file():
        pixels = photo_like(_read(FIXTURES / "coffee.jpg"), (PHOTO_SIDE, PHOTO_SIDE), 24, PHOTO_NOISE_SIGMA)
        paths["photo"].write_bytes(simplejpeg.encode_jpeg(pixels, quality=PHOTO_QUALITY, colorspace="BGR"))
    return paths


def tier_config(directory: Path, backend: str) -> Path:
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "page": False},
        "backend": {"address": backend},
        "fetch": {"allow_cidrs": ["127.0.0.0/8"]},
        "models": {"tiny": {"signature": "serving_uint8", "postprocess": {"softmax": True, "top_k": 3}}},
    }
    path = directory / "tier_memory.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


async def post(base: str, path: str, body: bytes, content_type: str, timeout_s: float) -> Answer | None:
    """POST ``body`` on a new connection; the answer, or None on a connection error or timeout.

    The body is written while the answer is read, so an answer sent before the whole body (an early
    refusal) is counted as the answer it is, whatever happens to the rest of the write.
    """
    host, port = base.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, int(port))
            sending = asyncio.ensure_future(_send(writer, head, body))
            try:
                response = await read_response(reader)
            finally:
                sending.cancel()
                writer.close()
            return Answer(response.status, response.headers, response.body)
    except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
        return None


async def _send(writer: asyncio.StreamWriter, head: bytes, body: bytes) -> None:
    """``head`` and ``body`` a slice at a time (a 19 MiB write would be copied into the transport's buffer)."""
    writer.write(head)
    view = memoryview(body)
    try:
        for start in range(0, len(view), SEND_BYTES):
            writer.write(view[start : start + SEND_BYTES])
            await writer.drain()
    except OSError:
        pass  # the tier answered and closed early: the answer is what counts


def request_bodies(mode: str, image: Path, host: ImageHost | None, concurrency: int, round_: int) -> list[bytes]:
    if mode == "upload":
        data = image.read_bytes()
        return [data] * concurrency  # one object: the client's own memory stays small
    assert host is not None
    return [
        json.dumps([host.url(f"{image.name}?r={round_}&i={i}&j={j}") for j in range(4)]).encode()
        for i in range(concurrency)
    ]


def measure(
    tier: Child, base: str, run: Run, image: Path, host: ImageHost | None, settle_s: float, timeout_s: float
) -> None:
    time.sleep(1.0)
    run.idle_mb = procs.memory(tier.pid)[0] / MIB
    content_type = "image/jpeg" if run.mode == "upload" else "application/json"
    cpu_before = procs.cpu_seconds(tier.pid)
    statuses: Counter[str] = Counter()
    for round_ in range(run.rounds):
        bodies = request_bodies(run.mode, image, host, run.concurrency, round_)
        started = time.perf_counter()
        answers = asyncio.run(burst(base, bodies, content_type, timeout_s))
        run.round_s.append(round(time.perf_counter() - started, 2))
        statuses.update("connection error" if a is None else str(a.status) for a in answers)
    run.cpu_s = round(procs.cpu_seconds(tier.pid) - cpu_before, 2)
    run.hwm_mb = procs.memory(tier.pid)[1] / MIB
    run.connection_errors = statuses.pop("connection error", 0)
    run.statuses = dict(sorted(statuses.items()))
    waited = 0.0
    for after in (*AFTER_S, settle_s):
        if after > waited:
            time.sleep(after - waited)
            waited = after
            run.rss_after_mb[f"{after:g}"] = round(procs.memory(tier.pid)[0] / MIB, 1)


async def burst(
    base: str, bodies: Sequence[bytes], content_type: str, timeout_s: float, path: str = PREDICT
) -> list[Answer | None]:
    """Every body POSTed at once, each on its own connection; the answers in order."""
    return list(await asyncio.gather(*(post(base, path, body, content_type, timeout_s) for body in bodies)))


def one_run(args: argparse.Namespace, image: str, concurrency: int, paths: dict[str, Path], backend: str) -> Run:
    per_request = paths[image].stat().st_size * (4 if args.mode == "urls" else 1)
    run = Run(image, args.mode, concurrency, args.rounds, per_request)
    sets = [f"server.decode_threads={args.decode_threads}", *args.set]
    if args.budget is not None:
        sets.append(f"server.memory_budget_bytes={args.budget}")
    command = ["-m", "app", "--config", str(tier_config(OUT, backend)), "--port", "0", "--log-level", "WARNING"]
    for item in sets:
        command += ["--set", item]
    with ExitStack() as stack:
        host = None
        if args.mode == "urls":
            host = start_image_host(OUT)
            stack.callback(host.stop)
        tier = start_child("tier", [sys.executable, *command], TIER_READY, cwd=args.tier_root)
        stack.callback(tier.stop)
        measure(tier, tier.match.group(1), run, paths[image], host, args.settle, args.timeout)
    return run


def table(runs: Sequence[Run]) -> str:
    after = ", ".join(f"{s} s" for s in runs[0].rss_after_mb) if runs else ""
    lines = [
        f"| image | mode | c | idle MB | VmHWM MB | RSS after ({after}) MB | statuses (conn errors) "
        "| copy MB / request | copies | tier CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        rss = ", ".join(f"{v:.0f}" for v in r.rss_after_mb.values())
        statuses = ", ".join(f"{k}: {v}" for k, v in r.statuses.items())
        lines.append(
            f"| {r.image} | {r.mode} | {r.concurrency} | {r.idle_mb:.0f} | {r.hwm_mb:.0f} | {rss} "
            f"| {statuses} ({r.connection_errors}) | {r.copy_mb:.1f} | {r.copies:.2f} | {r.cpu_s:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--image", choices=IMAGES, nargs="+", default=list(IMAGES))
    parser.add_argument("--mode", choices=("upload", "urls"), default="upload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of quiet before the last RSS reading")
    parser.add_argument("--budget", type=int, help="server.memory_budget_bytes (left out when not given)")
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more tier settings")
    parser.add_argument("--tier-root", type=Path, default=ROOT, help="the checkout the tier runs from")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--json", type=Path, help="also write the runs here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths = make_images()
    backend = start_fakeserving()
    runs: list[Run] = []
    try:
        for image in args.image:
            for concurrency in args.concurrency:
                run = one_run(args, image, concurrency, paths, backend.match.group(1))
                runs.append(run)
                print(json.dumps({**asdict(run), "copy_mb": run.copy_mb, "copies": run.copies}), flush=True)
    finally:
        backend.stop()
    print(table(runs))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    median_round = statistics.median(s for r in runs for s in r.round_s) if runs else 0.0
    print(f"tier from {args.tier_root}; median round {median_round:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
