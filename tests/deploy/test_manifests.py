"""The rendered Kubernetes manifests: valid against the API's schemas, every container within Pod Security
"restricted" with probes and resource requests, every selector matching a pod template.

Each policy check is a function returning its findings, and each has a test that breaks a copy of the
manifests to show the check notices.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import CRD_SCHEMAS, Doc, containers, named, pod_spec, render, run_tool, selects, workloads

# The oldest release with gRPC probes on by default and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
# Pod Security "restricted" (Kubernetes 1.25+).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
NAMESPACED_SELECTORS = ("Service", "PodDisruptionBudget", "NetworkPolicy")


def is_custom(doc: Doc) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS


def kubernetes_validate(docs: Sequence[Doc], tmp_path: Path, version: str) -> str:
    """kubernetes-validate's complaints; a kind it has no schema for is one (it warns and exits 0)."""
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    result = run_tool("kubernetes-validate", ["--strict", "--quiet", "-k", version, str(manifest)])
    output = result.stdout + result.stderr
    return output if result.returncode or "Couldn't find schema" in output else ""


def custom_resource_errors(docs: Sequence[Doc], tmp_path: Path) -> str:
    """check-jsonschema's complaints about each custom resource, against its schema in deploy/schemas."""
    found = ""
    for index, doc in enumerate(d for d in docs if is_custom(d)):
        document = tmp_path / f"custom-{index}.json"
        document.write_text(json.dumps(doc), encoding="utf-8")
        schema = CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])]
        result = run_tool("check-jsonschema", ["--schemafile", str(schema), str(document)])
        found += result.stdout + result.stderr if result.returncode else ""
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict(rendered: list[Doc], tmp_path: Path, version: str) -> None:
    assert kubernetes_validate([d for d in rendered if not is_custom(d)], tmp_path, version) == ""


def test_custom_resources_follow_their_schemas(rendered: list[Doc], tmp_path: Path) -> None:
    assert custom_resource_errors(rendered, tmp_path) == ""


def test_an_unknown_kind_fails_validation(tmp_path: Path) -> None:
    unknown = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}, "spec": {}}
    assert "Couldn't find schema" in kubernetes_validate([unknown], tmp_path, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize("kind", ["a misspelt field", "a bad duration", "no threshold"])
def test_the_custom_resource_check_notices(tmp_path: Path, kind: str) -> None:
    docs = copy.deepcopy(render("deploy/k8s-prod-addons"))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")["spec"]
    if kind == "a misspelt field":
        rule["expresion"] = rule.pop("expr")
    elif kind == "a bad duration":
        rule["for"] = "5 minutes"
    else:
        scaled["triggers"][0]["metadata"].pop("threshold")
    assert custom_resource_errors(docs, tmp_path)


def restricted_violations(spec: Doc) -> list[str]:
    """What breaks Pod Security "restricted" in one pod spec (the admission controller's own rules)."""
    found = [f"{key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    pod_ctx = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} is {sorted(kinds)}")
    for c in containers(spec):
        ctx, where = c.get("securityContext", {}), f"container {c['name']}"
        if ctx.get("privileged"):
            found.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser is 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile is {seccomp}")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{where}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: adds capabilities {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{where}: hostPort")
        # Ours, beyond the profile: nothing writes the image's filesystem.
        if ctx.get("readOnlyRootFilesystem") is not True:
            found.append(f"{where}: readOnlyRootFilesystem is not true")
    return found


def probe_and_resource_gaps(spec: Doc) -> list[str]:
    """Containers without the three probes (init containers run once: none), requests, or a memory limit."""
    found = []
    for c in spec.get("containers", []):
        found += [f"{c['name']}: no {p}" for p in ("startupProbe", "readinessProbe", "livenessProbe") if p not in c]
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(name, {})
            port = (probe.get("httpGet") or probe.get("grpc") or probe.get("tcpSocket") or {}).get("port")
            if probe and port not in ports:
                found.append(f"{c['name']}: {name} on port {port}, which the container does not declare")
    for c in containers(spec):
        resources = c.get("resources", {})
        found += [f"{c['name']}: no {r} request" for r in ("cpu", "memory") if r not in resources.get("requests", {})]
        if "memory" not in resources.get("limits", {}):
            found.append(f"{c['name']}: no memory limit")
    return found


def unmatched_selectors(docs: Sequence[Doc]) -> list[str]:
    """Services, PDBs, NetworkPolicies and HPAs whose selector or target reaches no pod template."""
    templates = [(w["metadata"].get("namespace"), w) for w in workloads(docs)]
    found = []
    for doc in docs:
        namespace, label = doc["metadata"].get("namespace"), f"{doc['kind']} {doc['metadata']['name']}"
        same_ns = [w for ns, w in templates if ns == namespace]
        for selector in _selectors(doc):
            matched = [w for w in same_ns if selects(selector, w["spec"]["template"]["metadata"].get("labels", {}))]
            if not matched:
                found.append(f"{label}: selector {selector} matches no pod template")
            elif doc["kind"] == "Service":
                found += _missing_target_ports(label, doc, matched)
        if doc["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            ref = {"kind": "Deployment", **doc["spec"]["scaleTargetRef"]}  # KEDA's default kind
            if not any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"] for w in same_ns):
                found.append(f"{label}: scaleTargetRef {ref['kind']}/{ref['name']} does not exist")
    return found


def _selectors(doc: Doc) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Service":
        return [spec["selector"]] if spec.get("selector") else []
    if doc["kind"] == "PodDisruptionBudget":
        return [spec["selector"]]
    if doc["kind"] == "NetworkPolicy":
        # An empty podSelector is every pod of the namespace; a peer with a namespaceSelector is in another one.
        peers = [peer for rule in spec.get("egress", []) for peer in rule.get("to", [])]
        peers += [peer for rule in spec.get("ingress", []) for peer in rule.get("from", [])]
        own = [spec["podSelector"]] if spec["podSelector"] else []
        return [*own, *(p["podSelector"] for p in peers if "podSelector" in p and "namespaceSelector" not in p)]
    return []


def _missing_target_ports(label: str, service: Doc, matched: list[Doc]) -> list[str]:
    names = {p.get("name") for w in matched for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
    numbers = {p["containerPort"] for w in matched for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
    return [
        f"{label}: targetPort {p.get('targetPort')} is not a port of its pods"
        for p in service["spec"]["ports"]
        if p.get("targetPort", p["port"]) not in names | numbers
    ]


def test_every_container_is_within_pod_security_restricted(rendered: list[Doc]) -> None:
    for workload in workloads(rendered):
        assert restricted_violations(pod_spec(workload)) == [], workload["metadata"]["name"]


def test_every_container_has_probes_requests_and_a_memory_limit(rendered: list[Doc]) -> None:
    for workload in workloads(rendered):
        assert probe_and_resource_gaps(pod_spec(workload)) == [], workload["metadata"]["name"]


def test_every_selector_matches_a_pod_template(rendered: list[Doc]) -> None:
    assert unmatched_selectors(rendered) == []
    kinds = {d["kind"] for d in rendered}
    assert {"Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds


def test_the_namespace_is_created_and_enforces_restricted(rendered: list[Doc]) -> None:
    namespaces = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Namespace"}
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in namespaces, f"{doc['kind']} {doc['metadata']['name']}"
    for namespace in namespaces.values():
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_configmap_volume_names_a_rendered_configmap(rendered: list[Doc]) -> None:
    configmaps = {d["metadata"]["name"] for d in rendered if d["kind"] == "ConfigMap"}
    for workload in workloads(rendered):
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps


Breakage = Callable[[list[Doc]], None]


def _tier_spec(docs: list[Doc]) -> Doc:
    return pod_spec(named(docs, "Deployment", "imagegate"))


def _egress_to_tfserving(docs: list[Doc]) -> dict[str, str]:
    labels: dict[str, str] = named(docs, "NetworkPolicy", "imagegate-egress")["spec"]["egress"][0]["to"][0][
        "podSelector"
    ]["matchLabels"]
    return labels


BREAK_RESTRICTED: dict[str, Breakage] = {
    "root user": lambda d: _tier_spec(d)["securityContext"].update(runAsUser=0),
    "no seccomp": lambda d: _tier_spec(d)["securityContext"].pop("seccompProfile"),
    "escalation": lambda d: _tier_spec(d)["initContainers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
    "capability": lambda d: _tier_spec(d)["containers"][0]["securityContext"]["capabilities"].update(add=["NET_RAW"]),
    "hostPath": lambda d: _tier_spec(d)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "writable root": lambda d: _tier_spec(d)["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
}
BREAK_PROBES: dict[str, Breakage] = {
    "no startup probe": lambda d: _tier_spec(d)["containers"][0].pop("startupProbe"),
    "probe on an undeclared port": lambda d: _tier_spec(d)["containers"][0]["readinessProbe"]["httpGet"].update(
        port="metrics"
    ),
    "init container without requests": lambda d: _tier_spec(d)["initContainers"][0].pop("resources"),
}
BREAK_SELECTORS: dict[str, Breakage] = {
    "service": lambda d: named(d, "Service", "imagegate")["spec"]["selector"].update({"app.kubernetes.io/name": "x"}),
    "service port": lambda d: named(d, "Service", "imagegate")["spec"]["ports"][0].update(targetPort="web"),
    "pdb": lambda d: named(d, "PodDisruptionBudget", "tfserving")["spec"]["selector"]["matchLabels"].update(x="y"),
    "hpa": lambda d: named(d, "HorizontalPodAutoscaler", "tfserving")["spec"]["scaleTargetRef"].update(name="x"),
    "egress peer": lambda d: _egress_to_tfserving(d).update({"app.kubernetes.io/name": "tf-serving"}),
}


@pytest.mark.parametrize("breakage", BREAK_RESTRICTED.values(), ids=BREAK_RESTRICTED.keys())
def test_the_restricted_check_notices(rendered: list[Doc], breakage: Breakage) -> None:
    broken = copy.deepcopy(rendered)
    breakage(broken)
    assert restricted_violations(_tier_spec(broken))


@pytest.mark.parametrize("breakage", BREAK_PROBES.values(), ids=BREAK_PROBES.keys())
def test_the_probe_and_resource_check_notices(rendered: list[Doc], breakage: Breakage) -> None:
    broken = copy.deepcopy(rendered)
    breakage(broken)
    assert probe_and_resource_gaps(_tier_spec(broken))


@pytest.mark.parametrize("breakage", BREAK_SELECTORS.values(), ids=BREAK_SELECTORS.keys())
def test_the_selector_check_notices(rendered: list[Doc], breakage: Breakage) -> None:
    broken = copy.deepcopy(rendered)
    breakage(broken)
    assert unmatched_selectors(broken)
