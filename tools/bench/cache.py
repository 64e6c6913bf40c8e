"""Scenario 12: repeated images answered from the answer cache (issue 29 item 3), against the same load uncached.

The tier on the fake backend (model ``tiny``, as scenario 1), multipart uploads, 4 x 640x480 files per request,
c=16, rotating over the workload's 8 photos: with ``cache.max_bytes`` set, every image after
the first pass is a hit (no decode, no Predict); without it, every image is decoded and predicted. The figure is the
tier process's CPU (utime + stime) per image answered, each contender's lowest of the rounds, both from one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.bench.run import Harness

CPU_TARGET_MS = 0.3
PER_REQUEST = 4
CACHE_BYTES = 16 << 20  # far more than the 8 photos' entries: no eviction, every repeat a hit


BOUNDARY = "imagegate-bench-cache"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_bodies(h: Harness) -> Path:
    """A JSON-lines file of multipart bodies (bytes as latin-1), each ``PER_REQUEST`` photos, rotating over them."""
    photos = [(h.workload.directory / name).read_bytes() for name in h.workload.small]
    path = h.out / "bodies_small4_multipart.jsonl"
    lines = []
    for i in range(len(photos)):
        body = b""
        for j in range(PER_REQUEST):
            head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{j}.jpg"\r\n'
            body += head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + photos[(i * PER_REQUEST + j) % len(photos)]
            body += b"\r\n"
        body += f"--{BOUNDARY}--\r\n".encode()
        lines.append(json.dumps({"body": body.decode("latin-1"), "images": PER_REQUEST, "binary": True}))
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario_cache(h: Harness) -> None:
    from tools.bench.run import _summary, _verdict

    bodies = upload_bodies(h)
    config = h.tier_config("cache", h.tiny(), h.backend_address)
    best: dict[str, dict[str, Any]] = {}
    for _round in range(h.timing.rounds):
        for name, sets in (("uncached", ()), ("cached", (f"cache.max_bytes={CACHE_BYTES}",))):
            child, url = h.start_tier(config, sets=sets)
            try:
                result = h.load_measured(child.pid, url, bodies, concurrency=16, content_type=CONTENT_TYPE)
            finally:
                child.stop()
            print(f"    {name}: {_summary(result)}", flush=True)
            if name not in best or result["cpu_ms_per_image"] < best[name]["cpu_ms_per_image"]:
                best[name] = result  # the lowest: other tenants of the cores only ever add to it
    h.raw["cache"] = best
    cached, uncached = best["cached"], best["uncached"]
    cpu = cached["cpu_ms_per_image"]
    h.add(
        "12 answer cache, repeated 4 x 640x480 uploads (multipart) per request, c=16",
        f"tier CPU per repeated image <= {CPU_TARGET_MS} ms",
        f"cached {cpu:.3f} ms per image ({cached['images_per_s']:.0f} img/s, item errors {cached['item_errors']}); "
        f"uncached {uncached['cpu_ms_per_image']:.3f} ms ({uncached['images_per_s']:.0f} img/s)",
        f"{cpu / CPU_TARGET_MS:.2f}x of cap",
        _verdict(cpu <= CPU_TARGET_MS and not cached["item_errors"]),
    )
