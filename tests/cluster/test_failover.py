"""Failover and scale-out across TF Serving replicas, with real processes on loopback, as a cluster moves them.

The tier runs as ``python -m app`` with the config of the Kubernetes ConfigMap (deploy/k8s/tier.yaml), the
backend address pointed at one DNS name that a test-run DNS server answers (``tests/support/dns.py``), the
labels path and the listen address made local. Behind the name: local backend replicas serving the
ConfigMap's model, each on its own pod address (``tests/cluster/podnet.py``), all with TF Serving's
``--grpc_channel_arguments=grpc.max_connection_age_ms``. Client threads keep a steady load on the tier.

Each test prints, with ``-s``, the requests, failures and p50/p99 latency of each window of its event.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.load import SteadyLoad, Summary
from tests.cluster.podnet import PodAddress, shared_free_port
from tests.support.backend import LocalBackend, start_local_backend
from tests.support.dns import LoopbackDNS
from tests.support.tier import ROOT, TierProcess, start_tier

pytestmark = pytest.mark.slow

NAME = "tfserving.test"
MODEL = "mobilenet_v2"  # the ConfigMap's model
POD_HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]  # three in DNS at first, one added later
MAX_CONNECTION_AGE_MS = 2000
CLIENTS = 4
STEADY_REQUESTS = 100
SCALE_OUT_SLACK_S = 3.0
# One Predict of the ConfigMap's model carries a 224x224x3 uint8 tensor (150 KB); connection set-up, pings and
# metadata calls stay far below this.
PREDICT_BYTES = 100_000
IMAGE = ROOT / "tests" / "fixtures" / "images" / "chelsea.jpg"


@dataclass
class Replica:
    pod: PodAddress
    backend: LocalBackend


@dataclass
class Cluster:
    dns: LoopbackDNS
    replicas: list[Replica]
    tier: TierProcess
    load: SteadyLoad
    models_dir: Path

    def took_traffic_since(self, replica: Replica, bytes_before: int) -> bool:
        return replica.pod.bytes_to_replica - bytes_before >= PREDICT_BYTES


def replica_args() -> list[str]:
    age = f"grpc.max_connection_age_ms={MAX_CONNECTION_AGE_MS}"
    return ["--enable_grpc_healthcheck_service", f"--grpc_channel_arguments={age}"]


def start_replica(models_dir: Path, port: int = 0) -> LocalBackend:
    return start_local_backend(
        model_name=MODEL, model_base_path=models_dir / MODEL, port=port, extra_args=replica_args()
    )


def configmap_config(backend_target: str, models_dir: Path) -> dict[str, Any]:
    """The ConfigMap's config.yaml (deploy/k8s/config.yaml) with the backend, labels path and listen address
    local, and only the model the replicas serve."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "k8s" / "config.yaml").read_text())
    config["models"] = {MODEL: config["models"][MODEL]}
    assert config["backend"]["load_balancing"] == "round_robin"
    assert config["backend"]["address"].startswith("dns:///")
    config["backend"]["address"] = backend_target
    config["server"]["host"] = "127.0.0.1"
    config["models"][MODEL]["postprocess"]["labels"] = str(models_dir / MODEL / "labels.txt")
    return config


@pytest.fixture(scope="module")
def cluster(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    port = shared_free_port(POD_HOSTS)
    with ThreadPoolExecutor(len(POD_HOSTS)) as pool:
        futures = [pool.submit(start_replica, models_dir) for _ in POD_HOSTS]
    backends = [future.result() for future in futures if future.exception() is None]
    replicas = [Replica(PodAddress(host, port, b.port), b) for host, b in zip(POD_HOSTS, backends, strict=False)]
    dns = LoopbackDNS(NAME).start()
    tier: TierProcess | None = None
    load: SteadyLoad | None = None
    try:
        for future in futures:
            future.result()  # raises the first replica's start-up failure
        dns.answer(POD_HOSTS[:3])
        config = configmap_config(f"dns://127.0.0.1:{dns.port}/{NAME}:{port}", models_dir)
        config_file = tmp_path_factory.mktemp("tier") / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        tier = start_tier(config["backend"]["address"], config=config_file)
        body = json.dumps({"instances": [{"b64": base64.b64encode(IMAGE.read_bytes()).decode()}]}).encode()
        load = SteadyLoad(tier.base_url, f"/v1/models/{MODEL}:predict", body, CLIENTS).start()
        yield Cluster(dns, replicas, tier, load, models_dir)
    finally:
        if load is not None:
            load.stop()
        if tier is not None:
            assert tier.stop() == 0, "".join(tier.output[-50:])
        dns.stop()
        for replica in replicas:
            replica.pod.close()
            if replica.backend.proc.poll() is None:
                replica.backend.stop()


def report(title: str, summaries: list[Summary]) -> None:
    print(f"\n{title}")
    for summary in summaries:
        print("  " + summary.line())
        for error in sorted(set(summary.errors))[:5]:
            print(f"      {error}")


def wait_until_serving_on(cluster: Cluster, replicas: list[Replica], what: str) -> float:
    before = [replica.pod.bytes_to_replica for replica in replicas]
    return cluster.load.wait_for(
        lambda: all(cluster.took_traffic_since(r, b) for r, b in zip(replicas, before, strict=True)), what, 60
    )


def steady_window(cluster: Cluster, replicas: list[Replica]) -> tuple[float, float]:
    """STEADY_REQUESTS answered while every one of ``replicas`` takes traffic: the baseline of an event."""
    load = cluster.load
    first = load.count()
    start = load.wait_for(lambda: load.count() > first, "an answer", 60)
    wait_until_serving_on(cluster, replicas, "every replica takes traffic")
    end = load.wait_for(lambda: load.count() >= first + STEADY_REQUESTS, f"{STEADY_REQUESTS} answers", 60)
    return start, end


def test_kill_9_of_a_replica_under_load_fails_no_request_and_the_restarted_replica_takes_traffic(
    cluster: Cluster,
) -> None:
    """kill -9 of one of three replicas right after a Predict reached it, while clients keep sending: the calls
    it had in flight fail with UNAVAILABLE on the tier's channel and the retry policy sends them to another
    replica (batches of several images too: the channel keeps up to the message limit for retrying); new
    calls skip it. Restarted on the same pod address, it is connected again (reconnect backoff, at most
    1 s) and takes its share."""
    load, victim = cluster.load, cluster.replicas[0]
    steady_from, _ = steady_window(cluster, cluster.replicas[:3])

    victim.pod.wait_for_bytes(victim.pod.bytes_to_replica + PREDICT_BYTES, 30)  # a Predict has just arrived
    killed = time.monotonic()
    victim.backend.proc.send_signal(signal.SIGKILL)
    victim.backend.proc.wait(10)
    victim.pod.replica_stopped()
    victim.backend = start_replica(cluster.models_dir, port=victim.backend.port)
    victim.pod.replica_started(victim.backend.port)
    restarted = time.monotonic()
    back = wait_until_serving_on(cluster, [victim], "the restarted replica takes traffic")

    summaries = [
        load.summary("steady, 3 replicas", steady_from, killed),
        load.summary("kill -9 of replica 1 until restarted (ready)", killed, restarted),
        load.summary("restarted replica ready until it takes traffic", restarted, back),
    ]
    report("kill -9 of one replica of three under steady load", summaries)
    assert [s.failures for s in summaries] == [0, 0, 0], [s.errors[:3] for s in summaries]


def test_a_replica_added_to_dns_takes_traffic_within_the_maximum_connection_age(cluster: Cluster) -> None:
    """The fourth replica appears in the DNS answers; the tier's channel looks the name up again when a
    connection is closed by its maximum age (GOAWAY), and starts sending to it."""
    load, added = cluster.load, cluster.replicas[3]
    start, _ = steady_window(cluster, cluster.replicas[:3])
    before = added.pod.bytes_to_replica
    queries_before = cluster.dns.queries

    cluster.dns.answer(POD_HOSTS)
    changed = time.monotonic()
    # Within the maximum age (+10% jitter) a connection is closed and the name looked up again; the slack
    # covers connecting to the new replica and the requests then in flight.
    within = 1.1 * MAX_CONNECTION_AGE_MS / 1000 + SCALE_OUT_SLACK_S
    found = load.wait_for(lambda: cluster.dns.queries > queries_before, "the tier looks the name up again", within)
    serving = load.wait_for(
        lambda: cluster.took_traffic_since(added, before),
        "the fourth replica takes traffic",
        within - (found - changed),
    )

    summaries = [
        load.summary("3 replicas, before the DNS change", start, changed),
        load.summary("4th replica in DNS until the tier re-resolves", changed, found),
        load.summary("re-resolved until the 4th replica takes traffic", found, serving),
    ]
    report(f"scale-out: a fourth replica added to DNS (max connection age {MAX_CONNECTION_AGE_MS} ms)", summaries)
    print(f"  4th replica took traffic {serving - changed:.2f} s after the DNS change")
    assert [s.failures for s in summaries] == [0, 0, 0], [s.errors[:3] for s in summaries]
