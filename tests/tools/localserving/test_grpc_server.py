"""TF Serving's gRPC server flags over real gRPC: the standard health service and server channel arguments."""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.backend import LocalBackend, side_by_side, start_local_backend
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import make_base_path
from tests.tools.localserving.rpc import Client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH = "--enable_grpc_healthcheck_service"
MAX_AGE_MS = 300
RECONNECTS_WANTED = 2


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, affine_store: Path) -> Iterator[dict[str, LocalBackend]]:
    """Side by side (each imports TensorFlow): ``aged`` closes connections after MAX_AGE_MS, ``stopping`` is
    stopped by a test; both serve the health service."""
    base = make_base_path(affine_store, tmp_path_factory.mktemp("grpc-server"), "single", [1])
    flags = {
        "aged": [HEALTH, f"--grpc_channel_arguments=grpc.max_connection_age_ms={MAX_AGE_MS}"],
        "stopping": [f"{HEALTH}=true"],
    }
    starts = {
        name: functools.partial(start_local_backend, model_name="single", model_base_path=base, extra_args=args)
        for name, args in flags.items()
    }
    with side_by_side(starts, stop=_stop_if_running) as started:
        yield started


def _stop_if_running(backend: LocalBackend) -> None:
    if backend.proc.poll() is None:  # a test stops ``stopping`` itself
        backend.stop()


def health_stub(channel: grpc.Channel) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(channel)


def check(channel: grpc.Channel, service: str = "") -> int:
    response = health_stub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(response.status)


def test_health_service_reports_serving_for_the_server_and_tf_servings_service_names(
    servers: dict[str, LocalBackend],
) -> None:
    with grpc.insecure_channel(servers["aged"].address) as channel:
        assert check(channel) == SERVING  # what a Kubernetes gRPC probe asks: the server as a whole
        assert check(channel, "ModelService") == SERVING
        assert check(channel, "PredictionService") == SERVING
        with pytest.raises(grpc.RpcError) as error:
            check(channel, "tensorflow.serving.PredictionService")  # TF Serving registers the short names
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_service_is_off_unless_asked_for(demo_backend: LocalBackend) -> None:
    with grpc.insecure_channel(demo_backend.address) as channel, pytest.raises(grpc.RpcError) as error:
        check(channel)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_max_connection_age_makes_a_long_lived_channel_reconnect_without_failing_calls(
    servers: dict[str, LocalBackend],
) -> None:
    """The server sends GOAWAY when a connection reaches its maximum age; the client's channel leaves READY
    and connects again, and no call fails meanwhile. This is what lets a client re-resolve DNS and find new
    replicas (tests/cluster/test_failover.py)."""
    states: list[grpc.ChannelConnectivity] = []
    changed = threading.Condition()

    def record(state: grpc.ChannelConnectivity) -> None:
        with changed:
            states.append(state)

    client = Client.connect(servers["aged"].address)
    client.channel.subscribe(record, try_to_connect=True)
    x = np.ones((1, 3), np.float32)
    calls = 0
    deadline = time.monotonic() + 30 * RECONNECTS_WANTED * MAX_AGE_MS / 1000
    try:
        while _reconnects(states, changed) < RECONNECTS_WANTED:
            assert time.monotonic() < deadline, f"no {RECONNECTS_WANTED} reconnects; states seen: {states}"
            np.testing.assert_array_equal(client.outputs("single", {"x": x})["y"], affine(x, 1))
            calls += 1
    finally:
        client.channel.unsubscribe(record)
        client.close()
    assert calls > RECONNECTS_WANTED


def _reconnects(states: list[grpc.ChannelConnectivity], changed: threading.Condition) -> int:
    """How many times the channel became READY again after having left READY."""
    with changed:
        seen = list(states)
    ready = [i for i, state in enumerate(seen) if state == grpc.ChannelConnectivity.READY]
    return max(0, len(ready) - 1)


def test_health_turns_not_serving_while_stopping(servers: dict[str, LocalBackend]) -> None:
    backend = servers["stopping"]
    with grpc.insecure_channel(backend.address) as channel:
        watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        backend.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        watch.cancel()  # the server lets calls in flight finish before it exits; this one never would
    assert backend.proc.wait(timeout=30) == 0
