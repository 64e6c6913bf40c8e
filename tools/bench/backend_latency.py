"""Latency of the local TF-Serving-compatible backend, and its gRPC overhead over calling the model in-process.

    python -m tools.bench.backend_latency [--models build/models] [--model mobilenet_v2] [--iterations 300]

1. First, alone: a child process loads the SavedModel with TensorFlow and times its serving signature
   called directly (``signature(images=tf.constant(x))`` then ``.numpy()``), at batch 1 and 32.
2. Then, from this process (which never imports TensorFlow), Predict over gRPC as the tier calls it: build
   the PredictRequest (tensor_content), call, decode the answer. Calls alternate, one at a time, between
   ``python -m tools.localserving`` serving the same model and a plain gRPC server set up like localserving
   (options, malloc tuning) that parses the request and returns a canned answer of the same size, which is
   what moving these bytes through Python gRPC costs at all. Alternating puts both under the same load.

The overhead of localserving over the in-process call is measured per request as the client's time minus
the signature's run time inside the server (sent back as trailing metadata ``localserving-run-seconds``);
unlike the difference of two medians taken minutes apart, it does not drift with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tools.process import ROOT, start_child

ADDRESS = re.compile(r"^(?:localserving: ready|canned answers) on (127\.0\.0\.1:\d+)")
RUN_SECONDS_KEY = "localserving-run-seconds"
BATCH_SIZES = (1, 32)
INPUT_SHAPE = (224, 224, 3)
OUTPUT_WIDTH = 1000
WARMUP_CALLS = 5

Array = np.ndarray[Any, np.dtype[Any]]
Stats = dict[str, float]
Results = dict[str, Stats]  # by batch size
Call = Callable[[Array], float]  # returns the time spent inside the server's model run, 0 if unknown


def percentiles(samples: Sequence[float], prefix: str = "") -> Stats:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return {f"{prefix}p50_ms": statistics.median(ordered) * 1e3, f"{prefix}p90_ms": p90 * 1e3}


def images(batch: int, dtype: str) -> Array:
    """Inputs for the signature: normalised floats, or raw pixels for a uint8 signature."""
    rng = np.random.default_rng(batch)
    if dtype == "uint8":
        return rng.integers(0, 256, (batch, *INPUT_SHAPE), dtype=np.uint8)
    return rng.uniform(-1, 1, (batch, *INPUT_SHAPE)).astype(np.float32)


def input_dtype(signature: str) -> str:
    """The demo models' uint8 signatures are named serving_uint8; the rest take float32."""
    return "uint8" if signature.endswith("uint8") else "float32"


def iterations_for(batch: int, iterations: int) -> int:
    return iterations if batch == 1 else max(10, iterations // 10)


def time_interleaved(calls: Mapping[str, Call], iterations: int, dtype: str) -> dict[str, Results]:
    """Per batch size, alternate one call of each kind; wall time and wall time minus the inner time."""
    results: dict[str, Results] = {name: {} for name in calls}
    for batch in BATCH_SIZES:
        x = images(batch, dtype)
        for call in calls.values():
            for _ in range(WARMUP_CALLS):
                call(x)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        for _ in range(iterations_for(batch, iterations)):
            for name, call in calls.items():
                started = time.perf_counter()
                inner = call(x)
                elapsed = time.perf_counter() - started
                samples[name].append((elapsed, elapsed - inner))
        for name, pairs in samples.items():
            walls, outers = zip(*pairs, strict=True)
            results[name][str(batch)] = percentiles(walls) | percentiles(outers, prefix="overhead_")
    return results


def in_process(version_dir: Path, signature: str, iterations: int) -> Results:
    """Child mode: time the SavedModel's signature called directly (this process imports TensorFlow)."""
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures[signature]

    def call(x: Array) -> float:
        _outputs = {name: value.numpy() for name, value in function(images=tf.constant(x)).items()}
        return 0.0

    return time_interleaved({"direct": call}, iterations, input_dtype(signature))["direct"]


def predict_call(address: str, model: str, signature: str, stack: ExitStack) -> Call:
    """A Predict call from this process, built and decoded as the tier does it."""
    import grpc

    from app.backend.protos import predict_pb2, prediction_service_pb2_grpc, types_pb2

    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    channel = stack.enter_context(grpc.insecure_channel(address, options=options))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call(x: Array) -> float:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        proto = request.inputs["images"]
        proto.dtype = types_pb2.DT_UINT8 if x.dtype == np.uint8 else types_pb2.DT_FLOAT
        for size in x.shape:
            proto.tensor_shape.dim.add().size = size
        proto.tensor_content = x.tobytes()
        response, rpc = stub.Predict.with_call(request, timeout=60)
        _outputs = {name: np.frombuffer(out.tensor_content, np.float32) for name, out in response.outputs.items()}
        return float(dict(rpc.trailing_metadata()).get(RUN_SECONDS_KEY, 0.0))

    return call


def serve_canned_answers() -> None:
    """Child mode: localserving's gRPC setup, parsing each request, answering zeros of the right size."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from app.backend.protos import predict_pb2, types_pb2
    from tools.localserving.memory import keep_freed_memory
    from tools.localserving.transport import GRPC_OPTIONS, HOST

    keep_freed_memory()

    def predict(request: Any, context: Any) -> Any:
        tensor = next(iter(request.inputs.values()))
        batch = tensor.tensor_shape.dim[0].size
        np.frombuffer(tensor.tensor_content, np.float32)
        response = predict_pb2.PredictResponse()
        output = response.outputs["probabilities"]
        output.dtype = types_pb2.DT_FLOAT
        output.tensor_shape.dim.add().size = batch
        output.tensor_shape.dim.add().size = OUTPUT_WIDTH
        output.tensor_content = np.zeros((batch, OUTPUT_WIDTH), np.float32).tobytes()
        return response

    server = grpc.server(ThreadPoolExecutor(64), options=GRPC_OPTIONS)
    handler = grpc.unary_unary_rpc_method_handler(
        predict,
        request_deserializer=predict_pb2.PredictRequest.FromString,
        response_serializer=lambda response: response.SerializeToString(),
    )
    service = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": handler})
    server.add_generic_rpc_handlers((service,))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    print(f"canned answers on {HOST}:{port}", flush=True)
    server.wait_for_termination()


def run_in_process_child(version_dir: Path, signature: str, iterations: int) -> Results:
    command = [sys.executable, "-m", "tools.bench.backend_latency", "--in-process", str(version_dir)]
    command += ["--signature", signature, "--iterations", str(iterations)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"in-process child failed:\n{done.stderr[-3000:]}")
    result: Results = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def running(name: str, command: Sequence[str]) -> Iterator[str]:
    """A server process, yielding the address its ready line announces; stopped on exit."""
    child = start_child(name, command, ADDRESS)
    try:
        yield child.match.group(1)
    finally:
        child.stop(30)


def report(model: str, direct: Results, served: Results, floor: Results) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"{model}: Predict latency, {os.cpu_count()} CPUs, load average {load} (other users included)",
        f"{'':<50}{'batch':>6}{'p50 ms':>9}{'p90 ms':>9}",
    ]
    for batch in map(str, BATCH_SIZES):
        rows: list[tuple[str, float, float | None]] = [
            ("signature called in-process (own process)", direct[batch]["p50_ms"], direct[batch]["p90_ms"]),
            ("Predict over gRPC to localserving", served[batch]["p50_ms"], served[batch]["p90_ms"]),
            (
                "  gRPC overhead per request (client - run)",
                served[batch]["overhead_p50_ms"],
                served[batch]["overhead_p90_ms"],
            ),
            ("  gRPC overhead as a difference of p50s", served[batch]["p50_ms"] - direct[batch]["p50_ms"], None),
            ("Python gRPC alone: canned answer, no TF", floor[batch]["p50_ms"], floor[batch]["p90_ms"]),
        ]
        for name, p50, p90 in rows:
            lines.append(f"{name:<50}{batch:>6}{p50:>9.2f}" + ("" if p90 is None else f"{p90:>9.2f}"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.backend_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--iterations", type=int, default=300, help="timed calls at batch 1 (a tenth at 32)")
    parser.add_argument(
        "--client-keeps-freed-memory",
        action="store_true",
        help="tune this process's malloc as localserving does (the tier's client pays the same page faults)",
    )
    parser.add_argument("--in-process", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--canned-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process is not None:
        print(json.dumps(in_process(args.in_process, args.signature, args.iterations)))
        return 0
    if args.canned_server:
        serve_canned_answers()
        return 0
    base_path = args.models / args.model
    versions = sorted((int(p.name) for p in base_path.iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"no versions under {base_path}: run `make models` first")

    if args.client_keeps_freed_memory:
        from tools.localserving.memory import keep_freed_memory

        keep_freed_memory()
    direct = run_in_process_child(base_path / str(versions[0]), args.signature, args.iterations)
    localserving = [sys.executable, "-m", "tools.localserving", "--port=0", f"--model_name={args.model}"]
    canned = [sys.executable, "-m", "tools.bench.backend_latency", "--canned-server"]
    with ExitStack() as stack:
        served = stack.enter_context(running("localserving", [*localserving, f"--model_base_path={base_path}"]))
        floor = stack.enter_context(running("canned answers", canned))
        calls = {
            name: predict_call(address, args.model, args.signature, stack)
            for name, address in (("served", served), ("floor", floor))
        }
        results = time_interleaved(calls, args.iterations, input_dtype(args.signature))
    print(report(args.model, direct, results["served"], results["floor"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
