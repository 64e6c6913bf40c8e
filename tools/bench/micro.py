"""Issue 18's small levers, measured in-process by this process's CPU clock: ``python -m tools.bench.micro``.

- the gRPC Predict: grpc.aio (the tier's) against the synchronous stub's ``.future()`` handed back to
  the event loop, 4 x 224x224x3 uint8 per call against ``tools.fakeserving``, 4 calls in flight;
- JSON: the standard library (the tier's) against orjson, for a 4-image answer and a 4-URL request body;
- the event loop: asyncio's against uvloop's, for a round of tasks, futures and thread hand-offs.

Contenders alternate over the rounds; each figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import orjson
import uvloop

from app.backend.protos import predict_pb2
from app.backend.tensors import encode_predict_request
from tools.bench import procs
from tools.fakeserving import start_fakeserving

PREDICT = "/tensorflow.serving.PredictionService/Predict"
OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def cpu() -> float:
    return time.process_time()  # every thread of this process, at the clock's full resolution


def predict_request() -> bytes:
    head = predict_pb2.PredictRequest()
    head.model_spec.name, head.model_spec.signature_name = "tiny", "serving_uint8"
    return encode_predict_request(head, {"images": np.zeros((4, 224, 224, 3), np.uint8)})


async def _calls(one: Callable[[], Awaitable[Any]], calls: int, in_flight: int = 4) -> float:
    gate = asyncio.Semaphore(in_flight)

    async def gated() -> None:
        async with gate:
            await one()

    await asyncio.gather(*[gated() for _ in range(100)])  # warm
    start = cpu()
    await asyncio.gather(*[gated() for _ in range(calls)])
    return (cpu() - start) / calls


async def grpc_aio(address: str, request: bytes, calls: int) -> float:
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        call = channel.unary_unary(PREDICT, request_serializer=bytes, response_deserializer=_parse)
        return await _calls(lambda: call(request, timeout=10), calls)


async def grpc_sync_future(address: str, request: bytes, calls: int) -> float:
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        call = channel.unary_unary(PREDICT, request_serializer=bytes, response_deserializer=_parse)
        loop = asyncio.get_running_loop()

        async def one() -> Any:
            done: asyncio.Future[Any] = loop.create_future()
            call.future(request, timeout=10).add_done_callback(
                lambda f: loop.call_soon_threadsafe(done.set_result, f.result())
            )
            return await done

        return await _calls(one, calls)


def _parse(data: bytes) -> predict_pb2.PredictResponse:
    return predict_pb2.PredictResponse.FromString(data)


def per_call(work: Callable[[], object], repeat: int) -> float:
    work()
    start = cpu()
    for _ in range(repeat):
        work()
    return (cpu() - start) / repeat


async def hand_offs(pool: ThreadPoolExecutor, rounds: int) -> float:
    """CPU per request-shaped round on the loop: 4 tasks, each a sleep(0), then one thread-pool hand-off."""
    loop = asyncio.get_running_loop()

    async def item() -> None:
        await asyncio.sleep(0)

    start = cpu()
    for _ in range(rounds):
        await asyncio.gather(*[item() for _ in range(4)])
        await loop.run_in_executor(pool, int)
    return (cpu() - start) / rounds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.micro", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    backend = start_fakeserving()
    request = predict_request()
    answer = {
        "model": {"name": "tiny", "version": 1},
        "predictions": [
            {
                "source": f"http://images.example/photo_{i}.jpg",
                "classes": [{"id": j, "label": f"class {j}", "score": 0.1234567 * j} for j in range(3)],
            }
            for i in range(4)
        ],
        "timing_ms": 12.34,
    }
    body = json.dumps([f"http://images.example/photo_{i}.jpg" for i in range(4)]).encode()
    found: dict[str, list[float]] = {}
    pool = ThreadPoolExecutor(1)

    def add(name: str, seconds: float) -> None:
        found.setdefault(name, []).append(seconds * 1e6)

    try:
        address = backend.match.group(1)
        for _ in range(args.rounds):
            add("Predict, grpc.aio (kept)", asyncio.run(grpc_aio(address, request, args.calls)))
            add("Predict, sync stub .future()", asyncio.run(grpc_sync_future(address, request, args.calls)))
            add("answer, json.dumps (kept)", per_call(lambda: json.dumps(answer, separators=(",", ":")), 20000))
            add("answer, orjson.dumps", per_call(lambda: orjson.dumps(answer), 20000))
            add("body, json.loads (kept)", per_call(lambda: json.loads(body), 20000))
            add("body, orjson.loads", per_call(lambda: orjson.loads(body), 20000))
            add("loop round, asyncio (kept)", asyncio.run(hand_offs(pool, 5000)))
            add("loop round, uvloop", uvloop.run(hand_offs(pool, 5000)))
    finally:
        pool.shutdown()
        backend.stop()
    print(procs.median_table("what", "CPU µs", found, digits=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
