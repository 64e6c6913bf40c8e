"""Scenario 14 (issue 29, item 1): the float32 path against the uint8 path, tier CPU per image, in one run.

Issue 29's table: the bench's fake TF Serving (``tools/fakeserving.py``) answering the tiny model's
``serving_default`` signature, float32 on the wire, the model configured with ``input.scale`` 1/255 and a softmax
postprocess; 640x480 JPEGs, 4 URLs a request, 16 connections (scenario 1's load). The same load goes to the tier
configured for ``serving_uint8``, the two run alternately, each in a new tier process, over the rounds; each keeps its
lowest CPU per image (utime+stime over the images answered: other tenants of the cores only ever add to it).

The float32 path also runs as it stood at the commits in ``STEPS`` (checked out with ``git worktree`` as
scenario 9's levers are), so what each change bought is read from the same run. Last, the wire alone: this
process sends the two Predict requests (4 rows of 224x224x3, uint8 and float32, already encoded) to the same fake
over one grpc.aio channel, 4 calls at a time, its own user and system CPU per image around each batch of calls:
what carrying four times the bytes costs any client, whatever it did before the call. And in this process, from
the workload's decoded 640x480 pixels, one batch row made the former way (``former_row``: a float copy, scaled in
place, transposed, copied into the row) against ``preprocess`` writing it (CPU per image, alternating).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from app.backend.protos import predict_pb2
from app.backend.tensors import encode_predict_request
from app.backend.types import ModelRef
from app.settings import DecodeSettings
from processing.image import DecodeLimits, PreprocessSpec, _convert_color, _resize, decode_image, preprocess
from tools.bench.levers import Lever, start

if TYPE_CHECKING:
    from tools.bench.run import Harness

TARGET_MS = 0.15  # float32 within this much tier CPU of uint8, per 640x480 image
SCALE = 1 / 255
STEPS: tuple[tuple[str, str], ...] = (  # the float32 path at earlier commits: (what it was, commit)
    ("before issue 29: astype, scale in place, copied into the batch row", "2da93fe"),
)
WIRE_CALLS = 300  # 4-image Predicts per dtype and round, 4 at a time
PREDICT = "/tensorflow.serving.PredictionService/Predict"
ROW_ROUNDS = 200
TINY = PreprocessSpec(224, 224, "stretch", None, "rgb", "float32", SCALE, (0.0,), (1.0,), "nhwc", 0)
ROW_SPECS = {  # the tiny model as scenario 14 configures it, and the other normalisations a model may ask for
    "scale 1/255": TINY,
    "ImageNet mean/std": dataclasses.replace(TINY, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "ImageNet mean/std, nchw": dataclasses.replace(
        TINY, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), layout="nchw"
    ),
}
UINT8 = "uint8 (serving_uint8), working tree"
FLOAT32 = "float32 (serving_default, scale 1/255), working tree"


def models(h: Harness, dtype: str) -> dict[str, dict[str, Any]]:
    """The tiny model as scenario 1 has it (softmax, top 3), or its float32 signature with ``input.scale``."""
    if dtype == "uint8":
        return h.tiny()
    tiny = h.tiny("serving_default")["tiny"]
    return {"tiny": {**tiny, "input": {"scale": SCALE}}}


def contenders(h: Harness) -> list[tuple[str, Lever, Path]]:
    uint8 = h.tier_config("tiny", models(h, "uint8"), h.backend_address)
    float32 = h.tier_config("tiny_float32_scale", models(h, "float32"), h.backend_address)
    found = [(UINT8, Lever(UINT8, None), uint8), (FLOAT32, Lever(FLOAT32, None), float32)]
    found += [(f"float32 {name}", Lever(name, commit), float32) for name, commit in STEPS]
    return found


def scenario_float32(h: Harness) -> None:
    from tools.bench.run import _summary, _verdict

    bodies = h.bodies("small4", h.workload.small, per_request=4)
    runs: dict[str, list[dict[str, Any]]] = {}
    for _round in range(h.timing.rounds + 1):
        for name, lever, config in contenders(h):
            child, url = start(h, lever, config)
            try:
                result = h.load_measured(child.pid, url, bodies, concurrency=16)
            finally:
                child.stop()
            print(f"    {name}: {_summary(result)}", flush=True)
            runs.setdefault(name, []).append(result)
    wire = asyncio.run(wire_cpu(h.backend_address, h.timing.rounds + 1))
    h.raw["float32"] = {"tier": runs, "wire": wire}
    best = {name: min(results, key=lambda r: float(r["cpu_ms_per_image"])) for name, results in runs.items()}
    uint8, float32 = best[UINT8]["cpu_ms_per_image"], best[FLOAT32]["cpu_ms_per_image"]
    gap = float32 - uint8
    h.add(
        "14 float32 vs uint8 on the wire, 4 x 640x480 per request, c=16",
        f"float32 tier CPU per image within {TARGET_MS} ms of uint8",
        f"tier CPU ms per image: float32 {float32:.3f} ({_cpus(runs[FLOAT32])}; "
        f"{best[FLOAT32]['images_per_s']:.0f} img/s), uint8 {uint8:.3f} ({_cpus(runs[UINT8])}; "
        f"{best[UINT8]['images_per_s']:.0f} img/s); item errors "
        f"{sum(r['item_errors'] for r in (*runs[FLOAT32], *runs[UINT8]))}",
        f"{gap:+.3f} ms",
        _verdict(gap <= TARGET_MS),
    )
    low = {dtype: min(wire[dtype], key=lambda r: r["cpu_ms"]) for dtype in wire}
    wire_gap = low["float32"]["cpu_ms"] - low["uint8"]["cpu_ms"]
    h.add(
        "14 the wire alone: 4-image Predicts, encoded, c=4, grpc.aio from the bench process",
        "(info) client CPU per image float32 against uint8",
        "CPU ms per image (user/system, lowest of "
        + f"{len(wire['uint8'])}): float32 {low['float32']['user_ms']:.3f}/{low['float32']['system_ms']:.3f}, "
        + f"uint8 {low['uint8']['user_ms']:.3f}/{low['uint8']['system_ms']:.3f}; the tier's gap less this: "
        + f"{gap - wire_gap:+.3f} ms",
        f"{wire_gap:+.3f} ms",
        "info",
    )
    rows = row_cpu(h)
    h.raw["float32"]["rows"] = rows
    h.add(
        "14 one batch row from decoded 640x480 pixels, in this process",
        "(info) CPU us per image, former way -> preprocess into the row",
        "; ".join(f"{name}: {former:.0f} -> {now:.0f}" for name, (former, now) in rows.items())
        + f" (median of {ROW_ROUNDS} rounds)",
        f"{rows['scale 1/255'][1] / rows['scale 1/255'][0]:.2f}x (scale)",
        "info",
    )
    for name, commit in STEPS:
        results = runs[f"float32 {name}"]
        cpu = min(float(r["cpu_ms_per_image"]) for r in results)
        h.add(
            f"14 float32 at {commit}: {name}",
            "(info) CPU per image against the working tree's uint8",
            f"CPU ms per image {_cpus(results)} (lowest {cpu:.3f}); img/s "
            + ", ".join(f"{r['images_per_s']:.0f}" for r in results),
            f"{cpu - uint8:+.3f} ms",
            "info",
        )


async def wire_cpu(address: str, rounds: int) -> dict[str, list[dict[str, float]]]:
    """This process's user and system CPU ms per image sending 4-image Predicts of each dtype, alternating."""
    requests = {dtype: _request(dtype) for dtype in ("uint8", "float32")}
    found: dict[str, list[dict[str, float]]] = {dtype: [] for dtype in requests}
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(PREDICT)
        for _round in range(rounds):
            for dtype, request in requests.items():
                await call(request)
                before = os.times()
                for _ in range(WIRE_CALLS // 4):
                    await asyncio.gather(*(call(request) for _ in range(4)))
                after = os.times()
                per_image = 1000.0 / (WIRE_CALLS * 4)
                user, system = (after.user - before.user) * per_image, (after.system - before.system) * per_image
                found[dtype].append({"user_ms": user, "system_ms": system, "cpu_ms": user + system})
    return found


def _request(dtype: str) -> bytes:
    signature = "serving_uint8" if dtype == "uint8" else "serving_default"
    head = predict_pb2.PredictRequest(model_spec=ModelRef("tiny", signature=signature).to_proto())
    return encode_predict_request(head, {"images": np.zeros((4, 224, 224, 3), dtype=dtype)})


def row_cpu(h: Harness) -> dict[str, tuple[float, float]]:
    """Median CPU us per image of the former row and of ``preprocess`` into the row, per spec in ``ROW_SPECS``."""
    limits = DecodeLimits(DecodeSettings().max_pixels, DecodeSettings().max_side)
    images = [(h.workload.directory / name).read_bytes() for name in h.workload.small]
    found: dict[str, tuple[float, float]] = {}
    for name, spec in ROW_SPECS.items():
        rgbs = [decode_image(data, limits, spec.min_decoded_side()) for data in images]
        batch = np.empty((len(rgbs), *spec.shape), dtype=np.float32)
        ways: dict[str, Callable[[np.ndarray, PreprocessSpec, np.ndarray], object]] = {
            "former": former_row,
            "now": preprocess,
        }
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(ROW_ROUNDS):
            for way in list(ways)[r % 2 :] + list(ways)[: r % 2]:
                started = time.process_time()
                for rgb, row in zip(rgbs, batch, strict=True):
                    ways[way](rgb, spec, row)
                samples[way].append((time.process_time() - started) * 1e6 / len(rgbs))
        found[name] = (statistics.median(samples["former"]), statistics.median(samples["now"]))
    return found


def former_row(rgb: np.ndarray, spec: PreprocessSpec, row: np.ndarray) -> None:
    """The row as it was made before issue 29 (2da93fe): a float copy normalised in place, then copied into the row."""
    tensor = _convert_color(_resize(rgb, spec), spec.color).astype(np.float32)
    if spec.scale != 1.0:
        tensor *= np.float32(spec.scale)
    if any(m != 0.0 for m in spec.mean):
        tensor -= np.asarray(spec.mean, dtype=np.float32)
    if any(s != 1.0 for s in spec.std):
        tensor /= np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "nchw":
        tensor = np.transpose(tensor, (2, 0, 1))
    row[...] = np.ascontiguousarray(tensor)


def _cpus(results: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['cpu_ms_per_image']:.2f}" for r in results)
