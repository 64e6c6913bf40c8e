"""``python -m tools.bench.grpc_calls``: the client's CPU per 4-image Predict, by way of calling gRPC (issue 29).

One process, one fake TF Serving (``tools/fakeserving.py``, started as the bench starts it), 4 x 224x224x3
Predicts already encoded (uint8: 0.6 MB, float32: 2.4 MB), ``--concurrency`` calls in flight (16, scenario 1's),
each contender in turn, the order rotating every round. Per contender and dtype this process's own counters
(``getrusage``: every thread, gRPC's included) around ``--calls`` calls: user and system ms per call, the event
loop thread's share (``RUSAGE_THREAD`` of the loop's thread), and minor page faults per call. The lowest of the
rounds is reported (other tenants of the cores only ever add to it), with every round beside it.

Contenders:

- ``aio``: as the tier calls today: a grpc.aio channel with the tier's options, ``call_backend`` (retries, error
  mapping, deadline, request-id metadata) over the Predict multicallable taking the encoded request;
- ``sync-future``: the synchronous channel's multicallable, ``.future()`` with a done-callback bridged into the
  loop with ``loop.call_soon_threadsafe`` (a cancelled await cancels the gRPC future), through the same
  ``call_backend``;
- ``aio+OPTION``: the aio contender with one more channel argument (see ``OPTION_SETS``);
- ``aio fresh-bytes``: the aio contender with the request joined anew for every call, as the tier does (a fresh
  2.4 MB buffer may be faulted in per call);
- ``TFServingClient.predict``: the tier's whole Predict, from the input arrays (encoded per call) to the answer's
  arrays.

The process runs with the tier's malloc tuning (``app/serving/allocator.py``), so big buffers come from the heap
as they do in the tier (``--no-malloc-tuning``: glibc's defaults).

    python -m tools.bench.grpc_calls --rounds 3 --calls 400
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import numpy as np

from app.backend.protos import predict_pb2
from app.backend.rpc_errors import BackendFailures, call_backend
from app.backend.tensors import encode_predict_request, predict_request_parts
from app.backend.tfserving import MAX_MESSAGE_BYTES, PREDICT_METHOD, TFServingClient
from app.backend.types import ModelRef
from app.serving.allocator import tune_malloc
from app.settings import ServerSettings
from tools.fakeserving import start_fakeserving

TIER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
]
OPTION_SETS: dict[str, list[tuple[str, Any]]] = {  # channel arguments of grpc core that touch a big send
    "write_buffer 4M": [("grpc.http2.write_buffer_size", 4 << 20)],
    "max_frame 16M": [("grpc.http2.max_frame_size", (16 << 20) - 1)],
    "lookahead 4M": [("grpc.http2.lookahead_bytes", 4 << 20)],
    "bdp_probe 0": [("grpc.http2.bdp_probe", 0)],
    "read_chunk 1M": [
        ("grpc.experimental.tcp_read_chunk_size", 1 << 20),
        ("grpc.experimental.tcp_min_read_chunk_size", 256 << 10),
        ("grpc.experimental.tcp_max_read_chunk_size", 4 << 20),
    ],
    "tx_zerocopy": [
        ("grpc.experimental.tcp_tx_zerocopy_enabled", 1),
        ("grpc.experimental.tcp_tx_zerocopy_send_bytes_threshold", 64 << 10),
    ],
    "preferred_frame_size": [("grpc.experimental.http2.enable_preferred_frame_size", 1)],
    "optimize throughput": [("grpc.optimization_target", "throughput")],
    "minimal_stack": [("grpc.minimal_stack", 1)],
    "throughput+max_frame 16M": [
        ("grpc.optimization_target", "throughput"),
        ("grpc.http2.max_frame_size", (16 << 20) - 1),
    ],
}
TIMEOUT_S = 10.0
METADATA = (("x-request-id", "bench-grpc-calls"),)
MODEL = ModelRef("tiny")
Call = Callable[[bytes], Awaitable[Any]]
Made = tuple[Call, Callable[[], Awaitable[None]]]  # a contender's call and how to close its channel


@dataclass
class Sample:
    user_ms: float
    system_ms: float
    loop_ms: float
    faults: float

    @property
    def cpu_ms(self) -> float:
        return self.user_ms + self.system_ms


@dataclass
class Contender:
    name: str
    make: Callable[[str], Made] | None  # None: ``TFServingClient.predict``
    fresh_bytes: bool = False
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def aio_contender(
    options: Sequence[tuple[str, Any]] = (),
) -> Callable[[str], Made]:
    def make(address: str) -> Made:
        channel = grpc.aio.insecure_channel(address, options=[*TIER_OPTIONS, *options])
        method = channel.unary_unary(PREDICT_METHOD, response_deserializer=predict_pb2.PredictResponse.FromString)
        failures = BackendFailures(1)

        async def call(request: bytes) -> Any:
            return await call_backend(method, request, TIMEOUT_S, MODEL, failures, METADATA)

        return call, channel.close

    return make


class FutureMethod(Protocol):
    """What the bridge needs of a sync multicallable."""

    def future(self, request: bytes, timeout: float, metadata: Any = None) -> grpc.Future: ...


def future_bridged(method: FutureMethod) -> Callable[..., Awaitable[Any]]:
    """``method`` called with ``.future()``, its outcome handed to the running loop from gRPC's thread."""

    async def call(request: bytes, timeout: float, metadata: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        future = method.future(request, timeout=timeout, metadata=metadata)

        def settle(done: grpc.Future) -> None:
            if not waiter.done():
                exc = done.exception() if not done.cancelled() else None
                if exc is not None:
                    waiter.set_exception(exc)
                elif not done.cancelled():
                    waiter.set_result(done.result())

        future.add_done_callback(lambda done: loop.call_soon_threadsafe(settle, done))
        try:
            return await waiter
        except asyncio.CancelledError:
            future.cancel()
            raise

    return call


def sync_contender(address: str) -> Made:
    channel = grpc.insecure_channel(address, options=TIER_OPTIONS)
    method = channel.unary_unary(PREDICT_METHOD, response_deserializer=predict_pb2.PredictResponse.FromString)
    bridged = future_bridged(method)
    failures = BackendFailures(1)

    async def call(request: bytes) -> Any:
        return await call_backend(bridged, request, TIMEOUT_S, MODEL, failures, METADATA)

    async def close() -> None:
        channel.close()

    return call, close


def contenders(names: Sequence[str] | None) -> list[Contender]:
    found = [
        Contender("aio", aio_contender()),
        Contender("aio (again)", aio_contender()),  # a control: the spread between two identical contenders
        Contender("sync-future", sync_contender),
        Contender("aio fresh-bytes", aio_contender(), fresh_bytes=True),
        Contender("TFServingClient.predict", None),
    ]
    found += [Contender(f"aio+{name}", aio_contender(options)) for name, options in OPTION_SETS.items()]
    return [c for c in found if names is None or c.name in names]


def request_inputs(dtype: str) -> tuple[predict_pb2.PredictRequest, dict[str, np.ndarray]]:
    signature = "serving_uint8" if dtype == "uint8" else "serving_default"
    head = predict_pb2.PredictRequest(model_spec=ModelRef("tiny", signature=signature).to_proto())
    rng = np.random.default_rng(29)
    pixels = rng.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    return head, {"images": pixels if dtype == "uint8" else pixels.astype(np.float32) / 255}


async def measure(call: Call, dtype: str, fresh: bool, calls: int, concurrency: int) -> Sample:
    head, inputs = request_inputs(dtype)
    encoded = encode_predict_request(head, inputs)

    async def one() -> None:
        await call(b"".join(predict_request_parts(head, inputs)) if fresh else encoded)

    return await measure_calls(one, calls, concurrency)


async def measure_client(address: str, dtype: str, calls: int, concurrency: int) -> Sample:
    """The tier's whole Predict: ``TFServingClient.predict`` from the arrays to the answer's arrays."""
    _head, inputs = request_inputs(dtype)
    model = ModelRef("tiny", signature="serving_uint8" if dtype == "uint8" else "serving_default")
    client = TFServingClient("pick_first", 1)

    async def one() -> None:
        await client.predict(address, model, inputs, ("logits",), TIMEOUT_S, METADATA)

    try:
        return await measure_calls(one, calls, concurrency)
    finally:
        await client.close()


async def measure_calls(one: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> Sample:
    """This process's counters around ``calls`` calls of ``one``, ``concurrency`` at a time, after a warm-up."""
    for _ in range(concurrency):  # connect, warm the channel and the allocator
        await one()
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    before, loop_before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_THREAD)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after, loop_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_THREAD)
    per_call = 1000.0 / calls
    loop_cpu = (loop_after.ru_utime + loop_after.ru_stime) - (loop_before.ru_utime + loop_before.ru_stime)
    return Sample(
        (after.ru_utime - before.ru_utime) * per_call,
        (after.ru_stime - before.ru_stime) * per_call,
        loop_cpu * per_call,
        (after.ru_minflt - before.ru_minflt) / calls,
    )


async def run(address: str, found: list[Contender], rounds: int, calls: int, concurrency: int) -> None:
    for r in range(rounds):
        order = found[r % len(found) :] + found[: r % len(found)]
        for contender in order:
            if contender.make is None:
                for dtype in ("uint8", "float32"):
                    sample = await measure_client(address, dtype, calls, concurrency)
                    contender.samples.setdefault(dtype, []).append(sample)
                continue
            call, close = contender.make(address)
            try:
                for dtype in ("uint8", "float32"):
                    sample = await measure(call, dtype, contender.fresh_bytes, calls, concurrency)
                    contender.samples.setdefault(dtype, []).append(sample)
            finally:
                await close()
        print(f"round {r + 1} of {rounds} done (threads now {threading.active_count()})", flush=True)


def report(found: list[Contender]) -> None:
    print("ms per 4-image call, lowest-CPU round: user/system (loop thread) faults; all rounds' CPU")
    base = {dtype: min(s.cpu_ms for s in found[0].samples[dtype]) for dtype in ("uint8", "float32")}
    for contender in found:
        cells = []
        for dtype in ("uint8", "float32"):
            samples = contender.samples[dtype]
            low = min(samples, key=lambda s: s.cpu_ms)
            cells.append(
                f"{dtype} {low.user_ms:.3f}/{low.system_ms:.3f} (loop {low.loop_ms:.3f}) {low.faults:.0f} flt "
                f"[{', '.join(f'{s.cpu_ms:.3f}' for s in samples)}; "
                f"median {statistics.median(s.cpu_ms for s in samples):.3f}] "
                f"{low.cpu_ms - base[dtype]:+.3f} vs {found[0].name}"
            )
        print(f"  {contender.name:22s} " + " | ".join(cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpc_calls", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=400, help="4-image Predicts per contender, dtype and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", action="append", help="a contender's name (repeatable); default: all")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="glibc's malloc defaults, not the tier's")
    args = parser.parse_args(argv)
    if not args.no_malloc_tuning:
        server = ServerSettings()
        tune_malloc(server.malloc_mmap_threshold, server.malloc_trim_threshold)
    found = contenders(args.only)
    backend = start_fakeserving()
    try:
        asyncio.run(run(backend.match.group(1), found, args.rounds, args.calls, args.concurrency))
    finally:
        backend.stop()
    report(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
