"""Issue 29 item 4: the tier's own per-request work, as its CPU per image less the floors of what it must do.

Scenario 1's tier spends its CPU per 640x480 image on four things it cannot skip, each measured here in the same
run by its own CPU clock, and on its own handling (the tasks, gates, admission, memory holds, wake-ups and
bookkeeping of a request): what is left when the four are taken off.

- decode+resize: ``image_to_tensor`` of the scenario's images in this process, as the tier's ``tiny`` does it;
- HTTP in and out: Tornado's HTTP server alone answering a canned 4-item answer (``tools/bench/tornado_floor.py``)
  under scenario 1's load, its process's CPU per image;
- a download: a bare ``aiohttp.ClientSession`` from the scenario's image host, 16 in flight (``tools.bench.downloads``);
- a quarter of a Predict: one grpc.aio Predict of 4 x 224x224x3 uint8 against the fake backend, 4 in flight
  (``tools.bench.micro``), divided by the 4 images it carries.

The floors are lower bounds taken one at a time; the machine's other tenants only add to each (they are measured
minutes apart from the tier's own run), so the remainder is an estimate to read beside the thread split.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.settings import DecodeSettings
from processing.image import DecodeLimits, PreprocessSpec, image_to_tensor
from tools.process import start_child
from tools.tier import READY as TIER_READY

if TYPE_CHECKING:
    from tools.bench.run import Harness

TIER_CPU_TARGET_MS = 1.6  # issue 29 item 4: tier CPU per 640x480 image on the uint8 path
OWN_WORK_TARGET_MS = 0.15  # issue 29 item 4: the tier's own per-request work per image
ROUNDS = 3  # each floor's lowest of this many


@dataclass(frozen=True)
class Floors:
    decode_resize_ms: float
    http_ms: float
    download_ms: float
    predict_quarter_ms: float

    @property
    def total_ms(self) -> float:
        return self.decode_resize_ms + self.http_ms + self.download_ms + self.predict_quarter_ms


def tiny_spec_and_limits() -> tuple[PreprocessSpec, DecodeLimits]:
    """The preprocessing the bench's tier does for its tiny model (uint8, 224x224 stretch), and the default limits."""
    spec = PreprocessSpec(
        height=224,
        width=224,
        resize="stretch",
        resize_shorter=None,
        color="rgb",
        dtype="uint8",
        scale=1.0,
        mean=(0.0,),
        std=(1.0,),
        layout="nhwc",
        pad_value=0,
    )
    decode = DecodeSettings()
    return spec, DecodeLimits(decode.max_pixels, decode.max_side)


def decode_resize_cpu_ms(h: Harness, repeat: int = 20) -> float:
    """CPU per image of ``image_to_tensor`` for the scenario's 640x480 images, as the tier's tiny model does it."""
    spec, limits = tiny_spec_and_limits()
    images = [(h.workload.directory / name).read_bytes() for name in h.workload.small]
    for data in images:
        image_to_tensor(data, spec, limits)
    started = time.process_time()
    for _ in range(repeat):
        for data in images:
            image_to_tensor(data, spec, limits)
    return 1000 * (time.process_time() - started) / (repeat * len(images))


def http_floor_ms(h: Harness) -> float:
    """Tornado's HTTP server alone under scenario 1's load: its process's CPU per image answered."""

    bodies = h.bodies("small4", h.workload.small, per_request=4)
    args = [sys.executable, "-m", "tools.bench.tornado_floor", "--port", "0"]
    child = start_child("tornado-floor", args, TIER_READY)
    try:
        result = h.load_measured(child.pid, f"{child.match.group(1)}/v1/models/tiny:predict", bodies, concurrency=16)
        return float(result["cpu_ms_per_image"])
    finally:
        child.stop()


async def _download_ms(urls: Sequence[str], count: int) -> float:
    import aiohttp

    from tools.bench.downloads import cpu_per_download

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def bare(url: str) -> bytes:
            async with session.get(url) as response:
                return await response.read()

        return 1000 * await cpu_per_download(bare, urls, count)


async def _predict_ms(address: str, calls: int) -> float:
    from tools.bench.micro import grpc_aio, predict_request

    return 1000 * await grpc_aio(address, predict_request(), calls)


def measure_floors(h: Harness) -> Floors:
    """Each floor's lowest over ``ROUNDS`` rounds (other tenants only ever add to it)."""
    urls = [h.host.url(name) for name in h.workload.small]
    decode, http, download, predict = [], [], [], []
    for _ in range(ROUNDS):
        decode.append(decode_resize_cpu_ms(h))
        download.append(asyncio.run(_download_ms(urls, 1000)))
        predict.append(asyncio.run(_predict_ms(h.backend_address, 400)) / 4)
    http.append(http_floor_ms(h))  # a load run of its own: once
    return Floors(min(decode), min(http), min(download), min(predict))


def own_work_rows(h: Harness, tier_cpu_ms: float) -> None:
    """Scenario 1's issue 29 rows: the tier's CPU per image, and what is left of it once the floors are off."""
    h.add(
        "1 tier CPU per 640x480 image, uint8 path (issue 29)",
        f"<= {TIER_CPU_TARGET_MS} ms",
        f"{tier_cpu_ms:.2f} ms of the tier process's utime+stime per image answered",
        f"{tier_cpu_ms / TIER_CPU_TARGET_MS:.2f}x of cap",
        "PASS" if tier_cpu_ms <= TIER_CPU_TARGET_MS else "MISS",
    )
    floors = measure_floors(h)
    own = tier_cpu_ms - floors.total_ms
    h.raw["own_work"] = {"tier_cpu_ms": tier_cpu_ms, "floors": floors.__dict__, "own_ms": own}
    h.add(
        "1 tier's own per-request work per 640x480 image (issue 29)",
        f"<= {OWN_WORK_TARGET_MS} ms",
        f"{own:.3f} ms = tier {tier_cpu_ms:.3f} - floors {floors.total_ms:.3f} (decode+resize "
        f"{floors.decode_resize_ms:.3f}, HTTP {floors.http_ms:.3f}, download {floors.download_ms:.3f}, "
        f"a quarter Predict {floors.predict_quarter_ms:.3f})",
        f"{own / OWN_WORK_TARGET_MS:.2f}x of cap",
        "PASS" if own <= OWN_WORK_TARGET_MS else "MISS",
    )
