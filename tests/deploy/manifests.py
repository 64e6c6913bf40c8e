"""The deployment checks' shared parts: the command-line tools, and the manifests as kustomize renders them.

The tools come from the ``dev`` extra (setup.cfg), each with what it checks against inside its wheel, so
the checks run offline. A missing tool fails the test with the reason instead of skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The base, the one-node development overlay, the production overlay, and production with the operators'
# add-ons (alerts for the Prometheus operator, the tier's autoscaling through KEDA).
KUSTOMIZATIONS = ("deploy/k8s", "deploy/k8s-dev", "deploy/k8s-prod", "deploy/k8s-prod-addons")
# The custom resources, each checked against a schema kept here (kubernetes-validate knows only the API's own).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): ROOT / "deploy" / "schemas" / "prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): ROOT / "deploy" / "schemas" / "scaledobject_v1alpha1.json",
}

Doc = dict[str, Any]


def tool(name: str) -> str:
    """The path of a command-line tool: the virtualenv's own first (the dev extra installs it there)."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: setup.cfg's dev extra provides it (make venv)", pytrace=False)
    return found


def run_tool(name: str, args: Sequence[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion; the caller asserts on the exit code and shows the output."""
    return subprocess.run([tool(name), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def render(kustomization: str) -> list[Doc]:
    """``kubectl kustomize`` output, one mapping per object."""
    result = run_tool("kubectl", ["kustomize", kustomization])
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def named(docs: Sequence[Doc], kind: str, name: str) -> Doc:
    """The one object of this kind whose name is ``name`` (or, for generated ConfigMaps, starts with it)."""
    found = [d for d in docs if d["kind"] == kind and _name_matches(d["metadata"]["name"], name, kind)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _name_matches(actual: str, wanted: str, kind: str) -> bool:
    if kind == "ConfigMap":  # configMapGenerator adds "-<hash>"
        return actual == wanted or actual.rsplit("-", 1)[0] == wanted
    return actual == wanted


def workloads(docs: Sequence[Doc]) -> Iterator[Doc]:
    """The objects that carry a pod template."""
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"))


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(spec: Mapping[str, Any]) -> list[Doc]:
    """The pod's init containers, then its containers."""
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(workload: Doc, name: str) -> Doc:
    (found,) = [c for c in containers(pod_spec(workload)) if c["name"] == name]
    return found


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions, or a Service's plain map) against pod labels."""
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    wanted = {**plain, **selector.get("matchLabels", {})}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present, values = expr["key"] in labels, expr.get("values", [])
        ok = {
            "In": present and labels.get(expr["key"]) in values,
            "NotIn": labels.get(expr["key"]) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return bool(wanted or selector.get("matchExpressions"))
