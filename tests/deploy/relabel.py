"""What Prometheus's Kubernetes pod discovery and relabelling make of a pod: just enough to check our scrape config.

The pod role gives one target per declared container port (a container without ports gives one
without a port), with the pod's labels and annotations as ``__meta_kubernetes_pod_*`` labels. The
rules are applied as Prometheus does: source labels joined with ``;``, the regex anchored at both
ends, ``$1`` and ``${1}`` expanded in the replacement; ``keep``, ``drop`` and ``replace`` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.deploy.manifests import Doc, containers

Target = dict[str, str]


def meta_name(prefix: str, key: str) -> str:
    """A Kubernetes label or annotation key as a Prometheus label name."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", key)


def pod_targets(template: Doc, namespace: str, pod_name: str, pod_ip: str) -> list[Target]:
    """The targets the pod role discovers for a pod made from ``template`` (a workload's pod template)."""
    metadata = template.get("metadata", {})
    common = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_ip": pod_ip,
    }
    for key, value in metadata.get("labels", {}).items():
        common[meta_name("__meta_kubernetes_pod_label_", key)] = str(value)
    for key, value in metadata.get("annotations", {}).items():
        common[meta_name("__meta_kubernetes_pod_annotation_", key)] = str(value)
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    targets = []
    for container in containers(template["spec"]):
        base = {**common, "__meta_kubernetes_pod_container_name": container["name"]}
        ports = container.get("ports", [])
        if not ports:
            targets.append({**base, "__address__": host})
        for port in ports:
            targets.append(
                {
                    **base,
                    "__address__": f"{host}:{port['containerPort']}",
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                }
            )
    return targets


def relabel(target: Mapping[str, str], rules: Sequence[Mapping[str, Any]]) -> Target | None:
    """The target after ``rules``, with the default path; None when a rule drops it."""
    labels = {"__metrics_path__": "/metrics", **target}
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(str(rule.get("regex", "(.*)")), value)
        if action not in ("keep", "drop", "replace"):
            raise AssertionError(f"relabel action {action} is not simulated here")
        if (action == "keep" and match is None) or (action == "drop" and match is not None):
            return None
        if action == "replace" and match is not None:
            labels[rule["target_label"]] = expand(str(rule.get("replacement", "$1")), match)
    return labels


def expand(replacement: str, match: re.Match[str]) -> str:
    """``$1`` and ``${1}`` replaced by the regex's groups, as Prometheus does."""
    return re.sub(r"\$\{?(\d+)\}?", lambda ref: match.group(int(ref.group(1))) or "", replacement)
