"""How the pieces meet at run time: TF Serving answers its probes and ages its connections, models reach both
pods, the grace periods cover the drains, the autoscaler owns the tier's replica count."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from app.settings import ServerSettings
from tests.deploy.manifests import Doc, container, containers, named, pod_spec, render, selects, workloads
from tests.support.tier import ROOT

TIER_IMAGE, MODELS_IMAGE = "imagegate", "imagegate-models"
HEADROOM_S = 10  # over the longest a stop may take, for the kubelet's own work and a slow node
DNS_CACHE_S = 5  # CoreDNS's default cache for the headless Service's answer


def image_name(image: str) -> str:
    """``registry/path/name:tag`` or ``...@sha256:...`` -> ``name``."""
    return image.split("@")[0].rsplit("/", 1)[-1].partition(":")[0]


def _args(c: Doc) -> dict[str, str]:
    pairs = (a.removeprefix("--").partition("=") for a in [*c.get("command", []), *c.get("args", [])])
    return {key: value for key, _, value in pairs}


def _channel_args(tfserving: Doc) -> dict[str, int]:
    pairs = (item.split("=") for item in _args(tfserving)["grpc_channel_arguments"].split(","))
    return {key: int(value) for key, value in pairs}


def test_tfserving_serves_the_health_service_its_probes_ask(rendered: list[Doc]) -> None:
    tfserving = container(named(rendered, "Deployment", "tfserving"), "tfserving")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert tfserving[probe]["grpc"]["port"] == 8500
    assert int(_args(tfserving)["port"]) == 8500
    # Off by default: without it every gRPC probe fails and no replica ever becomes Ready.
    assert _args(tfserving)["enable_grpc_healthcheck_service"] == "true"


def test_tfserving_ages_connections_and_outlives_them_when_stopping(rendered: list[Doc]) -> None:
    deployment = named(rendered, "Deployment", "tfserving")
    tfserving = container(deployment, "tfserving")
    channel = _channel_args(tfserving)
    # gRPC adds up to 10 % jitter to the age; calls under way get the grace on top.
    age_ms, grace_ms = channel["grpc.max_connection_age_ms"], channel["grpc.max_connection_age_grace_ms"]
    connections_gone_s = (age_ms * 1.1 + grace_ms) / 1000
    pre_stop = tfserving["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) >= connections_gone_s
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + HEADROOM_S
    # A rollout stops the next old replica only once the tier can have found the new one: after a connection
    # aged out and DNS caches let go.
    assert deployment["spec"]["minReadySeconds"] >= connections_gone_s + DNS_CACHE_S


def spread_gaps(docs: list[Doc]) -> list[str]:
    """Deployments not spread one per node (hard) and across zones (soft), each over its own pods."""
    found = []
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        name, labels = deployment["metadata"]["name"], deployment["spec"]["template"]["metadata"]["labels"]
        constraints = {c["topologyKey"]: c for c in pod_spec(deployment).get("topologySpreadConstraints", [])}
        wanted = {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
        for key, when in wanted.items():
            constraint = constraints.get(key)
            if constraint is None or constraint["whenUnsatisfiable"] != when or constraint["maxSkew"] != 1:
                found.append(f"{name}: no {key} spread ({when}, maxSkew 1)")
            elif not selects(constraint["labelSelector"], labels):
                found.append(f"{name}: the {key} spread counts other pods")
    return found


def test_both_deployments_spread_across_nodes_and_zones(rendered: list[Doc]) -> None:
    assert spread_gaps(rendered) == []


@pytest.mark.parametrize("kind", ["no constraint", "soft hostname", "other pods"])
def test_the_spread_check_notices(rendered: list[Doc], kind: str) -> None:
    broken = copy.deepcopy(rendered)
    constraints = pod_spec(named(broken, "Deployment", "tfserving"))["topologySpreadConstraints"]
    if kind == "no constraint":
        constraints.pop()
    elif kind == "soft hostname":
        constraints[0]["whenUnsatisfiable"] = "ScheduleAnyway"
    else:
        constraints[0]["labelSelector"] = {"matchLabels": {"app.kubernetes.io/name": "imagegate"}}
    assert spread_gaps(broken)


def tier_drain_s() -> float:
    """How long the tier's drain may take with the ConfigMap's settings: /readyz 503 and keep serving for
    ``server.drain_delay_s``, then in-flight requests get ``server.shutdown_timeout_s``, and a connection
    refused early may linger for ``server.lingering_time_s``."""
    configured = yaml.safe_load((ROOT / "deploy" / "k8s" / "config.yaml").read_text()).get("server", {})
    defaults = ServerSettings()
    keys = ("drain_delay_s", "shutdown_timeout_s", "lingering_time_s")
    return float(sum(configured.get(key, getattr(defaults, key)) for key in keys))


def test_the_tier_has_time_to_drain(rendered: list[Doc]) -> None:
    spec = pod_spec(named(rendered, "Deployment", "imagegate"))
    assert spec["terminationGracePeriodSeconds"] >= tier_drain_s() + HEADROOM_S
    tier = container(named(rendered, "Deployment", "imagegate"), "tier")
    # The tier keeps serving during drain_delay_s itself: a preStop sleep would only add to the wait.
    assert "preStop" not in tier.get("lifecycle", {})


def test_the_tier_probes_its_health_endpoints(rendered: list[Doc]) -> None:
    tier = container(named(rendered, "Deployment", "imagegate"), "tier")
    assert tier["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert tier["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert tier["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = tier["startupProbe"]
    # The tier listens only once it has every model's metadata (backend.startup_timeout_s: 120 in config.yaml).
    assert startup["periodSeconds"] * startup["failureThreshold"] > 120


def test_models_reach_both_pods_through_init_containers(rendered: list[Doc]) -> None:
    for workload, main, mount in (("tfserving", "tfserving", "/models"), ("imagegate", "tier", "/models")):
        spec = pod_spec(named(rendered, "Deployment", workload))
        (init,) = spec["initContainers"]
        assert image_name(init["image"]) == MODELS_IMAGE
        (filled,) = init["volumeMounts"]
        volume = next(v for v in spec["volumes"] if v["name"] == filled["name"])
        assert "emptyDir" in volume, "models need no storage class"
        target = filled["mountPath"].rstrip("/") + "/"
        assert any(arg.startswith(target) for arg in init["command"]), f"{workload}: the copy misses its volume"
        mounts = container(named(rendered, "Deployment", workload), main)["volumeMounts"]
        mounted = next(m for m in mounts if m["name"] == filled["name"])
        assert mounted["mountPath"] == mount and mounted.get("readOnly") is True
    tfserving = container(named(rendered, "Deployment", "tfserving"), "tfserving")
    assert _args(tfserving)["model_config_file"].startswith("/models/")


@pytest.mark.parametrize("name", ["imagegate", "tfserving"])
def test_an_autoscaler_owns_each_replica_count(rendered: list[Doc], name: str) -> None:
    assert "replicas" not in named(rendered, "Deployment", name)["spec"]
    scalers = [d for d in rendered if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    (scaler,) = [d for d in scalers if d["spec"]["scaleTargetRef"]["name"] == name]  # two would fight
    if scaler["kind"] == "ScaledObject":  # KEDA (deploy/k8s-addons/keda): CPU among the saturation triggers
        assert 1 <= scaler["spec"]["minReplicaCount"] <= scaler["spec"]["maxReplicaCount"]
        assert "cpu" in {t["type"] for t in scaler["spec"]["triggers"]}
        return
    assert 1 <= scaler["spec"]["minReplicas"] <= scaler["spec"]["maxReplicas"]
    (metric,) = scaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_the_tier_is_ready_for_prometheus(rendered: list[Doc]) -> None:
    deployment = named(rendered, "Deployment", "imagegate")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["containerPort"] for p in container(deployment, "tier")["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) in ports
    assert annotations["prometheus.io/path"] == "/metrics"


def test_every_image_is_pinned(rendered: list[Doc]) -> None:
    for workload in rendered:
        if workload["kind"] != "Deployment":
            continue
        for c in containers(pod_spec(workload)):
            image = c["image"]
            assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", image.rsplit("/", 1)[-1]), image
            assert not image.endswith(":latest"), image


def production_gaps(docs: list[Doc]) -> list[str]:
    """Images not registry-qualified and pinned by digest; TF Serving's memory not Guaranteed."""
    found = []
    for workload in workloads(docs):
        for c in containers(pod_spec(workload)):
            registry, _, rest = c["image"].partition("/")
            if "." not in registry and ":" not in registry:
                found.append(f"{c['name']}: {c['image']} names no registry")
            if not re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", rest):
                found.append(f"{c['name']}: {c['image']} is not pinned by digest")
    resources = container(named(docs, "Deployment", "tfserving"), "tfserving")["resources"]
    if resources["requests"]["memory"] != resources["limits"]["memory"]:
        found.append(f"tfserving: memory requests {resources['requests']} != limits {resources['limits']}")
    return found


def test_the_production_overlay_pins_images_by_digest_and_guarantees_tfserving_memory() -> None:
    docs = render("deploy/k8s-prod")
    assert production_gaps(docs) == []
    assert production_gaps(render("deploy/k8s")), "the base is what the overlay changes"


@pytest.mark.parametrize("kind", ["tag", "no registry", "burstable"])
def test_the_production_check_notices(kind: str) -> None:
    docs = render("deploy/k8s-prod")
    tfserving = container(named(docs, "Deployment", "tfserving"), "tfserving")
    if kind == "tag":
        tfserving["image"] = "docker.io/tensorflow/serving:2.19.1"
    elif kind == "no registry":
        tfserving["image"] = "tensorflow/serving@sha256:" + "0" * 64
    else:
        tfserving["resources"]["requests"]["memory"] = "1Gi"
    assert production_gaps(docs)
