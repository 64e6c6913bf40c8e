"""Latency of the local TF-Serving-compatible backend, and its gRPC overhead over calling the model in-process.

    python -m bench.backend_latency [--models build/models] [--model mobilenet_v2] [--iterations 300]

Runs one after the other, never side by side, so neither steals the other's CPU:

1. a child process that loads the SavedModel with TensorFlow and times its serving signature called
   directly (``signature(images=tf.constant(x))`` then ``.numpy()``), at batch 1 and 32;
2. ``python -m localserving`` serving the same model, timed from this process (which never imports
   TensorFlow) over gRPC: build the PredictRequest (tensor_content), call, decode the answer.

The gRPC overhead is the difference of the two medians at batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "localserving: ready on "
BATCH_SIZES = (1, 32)
INPUT_SHAPE = (224, 224, 3)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1e3,
    }


def time_calls(call: Callable[[], object], iterations: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def images(batch: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(batch).uniform(-1, 1, (batch, *INPUT_SHAPE)).astype(np.float32)


def iterations_for(batch: int, iterations: int) -> int:
    return iterations if batch == 1 else max(10, iterations // 10)


def in_process(version_dir: Path, signature: str, iterations: int) -> dict[str, dict[str, float]]:
    """Child mode: time the SavedModel's signature called directly (this process imports TensorFlow)."""
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    results = {}
    for batch in BATCH_SIZES:
        tensor = images(batch)

        def call(x: np.ndarray[Any, Any] = tensor) -> object:
            return {name: value.numpy() for name, value in function(images=tf.constant(x)).items()}

        results[str(batch)] = time_calls(call, iterations_for(batch, iterations), warmup=5)
    return results


def over_grpc(address: str, model: str, signature: str, iterations: int) -> dict[str, dict[str, float]]:
    """Time Predict from this process, as the tier would call it."""
    import grpc

    from app.protos import predict_pb2, prediction_service_pb2_grpc, types_pb2

    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    channel = grpc.insecure_channel(address, options=options)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    results = {}
    for batch in BATCH_SIZES:
        tensor = images(batch)

        def call(x: np.ndarray[Any, Any] = tensor) -> object:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.model_spec.signature_name = signature
            proto = request.inputs["images"]
            proto.dtype = types_pb2.DT_FLOAT
            for size in x.shape:
                proto.tensor_shape.dim.add().size = size
            proto.tensor_content = x.tobytes()
            response = stub.Predict(request, timeout=60)
            return {name: np.frombuffer(out.tensor_content, np.float32) for name, out in response.outputs.items()}

        results[str(batch)] = time_calls(call, iterations_for(batch, iterations), warmup=5)
    channel.close()
    return results


def run_in_process_child(version_dir: Path, signature: str, iterations: int) -> dict[str, dict[str, float]]:
    command = [sys.executable, "-m", "bench.backend_latency", "--child", str(version_dir)]
    command += ["--signature", signature, "--iterations", str(iterations)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"in-process child failed:\n{done.stderr[-3000:]}")
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def with_local_backend(model: str, base_path: Path, measure: Callable[[str], Any]) -> Any:
    command = [sys.executable, "-m", "localserving", "--port", "0", "--model_name", model]
    command += ["--model_base_path", str(base_path)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(READY_PREFIX):
            raise SystemExit(f"localserving did not start (exit code {proc.wait()})")
        return measure(line.removeprefix(READY_PREFIX).split()[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def report(model: str, direct: dict[str, dict[str, float]], grpc_: dict[str, dict[str, float]]) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"{model}: Predict latency, {os.cpu_count()} CPUs, load average {load}",
        f"{'path':<36}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}",
    ]
    for batch in map(str, BATCH_SIZES):
        for name, results in (("in-process SavedModel signature", direct), ("gRPC Predict via localserving", grpc_)):
            row = results[batch]
            lines.append(f"{name:<36}{batch:>6}{row['p50_ms']:>10.2f}{row['p90_ms']:>10.2f}")
    for batch in map(str, BATCH_SIZES):
        overhead = grpc_[batch]["p50_ms"] - direct[batch]["p50_ms"]
        lines.append(f"gRPC overhead at batch {batch} (p50 difference): {overhead:+.2f} ms")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backend_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--iterations", type=int, default=300, help="timed calls at batch 1 (a tenth at 32)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(in_process(args.child, args.signature, args.iterations)))
        return 0
    base_path = args.models / args.model
    versions = sorted((int(p.name) for p in base_path.iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"no versions under {base_path}: run `make models` first")
    direct = run_in_process_child(base_path / str(versions[0]), args.signature, args.iterations)
    served = with_local_backend(
        args.model, base_path, lambda address: over_grpc(address, args.model, args.signature, args.iterations)
    )
    print(report(args.model, direct, served))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
