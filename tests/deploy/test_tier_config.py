"""The tier's ConfigMap loads with the tier's own command line and settings loader, against the files its pod has.

The pod's filesystem is laid out under a temporary directory: the ConfigMap's files at their mount path,
and the label files put where the pod's initContainer puts them, by running that container's own command
over build/models (what the models image holds at /models). The file's absolute paths are read relative
to that directory; nothing else about the file changes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import subprocess
from pathlib import Path

import yaml

from app.serving.cli import parse_args, settings_from_args
from app.settings import Settings
from tests.deploy.manifests import ROOT, Doc, container, named, pod_spec

MODELS_CONFIG = ROOT / "deploy" / "models.config"


def in_pod(root: Path, path: str | Path) -> Path:
    return root / Path(path).relative_to("/")


def lay_out_pod(rendered: list[Doc], models_dir: Path, root: Path) -> Doc:
    """Write the tier container's mounted files under ``root``; returns the container."""
    deployment = named(rendered, "Deployment", "imagegate")
    spec, tier = pod_spec(deployment), container(deployment, "tier")
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in tier["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = in_pod(root, mount["mountPath"])
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in named(rendered, "ConfigMap", volume["configMap"]["name"])["data"].items():
                (target / key).write_text(text, encoding="utf-8")
        for init in spec.get("initContainers", []):
            for init_mount in (m for m in init["volumeMounts"] if m["name"] == mount["name"]):
                _run_init_container(init, init_mount["mountPath"], target, models_dir)
    return tier


def _run_init_container(init: Doc, mount_path: str, target: Path, models_dir: Path) -> None:
    """The init container's command, in the models image's /models (build/models), writing into ``target``."""
    assert init.get("workingDir", "/models") == "/models"
    prefix = mount_path.rstrip("/") + "/"
    command = [str(target) + "/" + a.removeprefix(prefix) if a.startswith(prefix) else a for a in init["command"]]
    subprocess.run(command, cwd=models_dir, check=True, timeout=30)


def load_in_pod(tier: Doc, root: Path) -> Settings:
    """The tier's own argument parsing and settings loading, with the pod's paths read under ``root``."""
    args = parse_args(tier["args"])
    config = in_pod(root, args.config)
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    for model in document.get("models", {}).values():
        labels = (model or {}).get("postprocess", {}).get("labels")
        if labels:
            assert Path(labels).is_absolute(), "label paths in the pod are absolute"
            model["postprocess"]["labels"] = str(in_pod(root, labels))
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    args.config = config
    return settings_from_args(args, pod_environment(tier))


def pod_environment(tier: Doc) -> dict[str, str]:
    """The container's environment; a value from a Secret reads ``secret:<name>/<key>``."""
    environ = {}
    for variable in tier.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        environ[variable["name"]] = f"secret:{ref['name']}/{ref['key']}" if ref else variable["value"]
    return environ


def test_the_configmap_loads_with_the_tiers_settings_loader(
    rendered: list[Doc], models_dir: Path, tmp_path: Path
) -> None:
    tier = lay_out_pod(rendered, models_dir, tmp_path)
    settings = load_in_pod(tier, tmp_path)
    for name, model in settings.models.items():
        labels = model.postprocess.labels
        assert labels is not None and labels.is_file(), name
        assert labels.is_relative_to(tmp_path / "models"), f"{name}: labels outside the initContainer's volume"
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port in {p["containerPort"] for p in tier["ports"]}


def test_the_configmap_matches_what_tfserving_serves(rendered: list[Doc], models_dir: Path, tmp_path: Path) -> None:
    settings = load_in_pod(lay_out_pod(rendered, models_dir, tmp_path), tmp_path)
    served = set(re.findall(r'name:\s*"([^"]+)"', MODELS_CONFIG.read_text(encoding="utf-8")))
    assert {m.served_name or name for name, m in settings.models.items()} <= served
    service = named(rendered, "Service", "tfserving-headless")
    assert settings.backend.address == f"dns:///{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert settings.backend.load_balancing == "round_robin"


def test_the_configmap_fits_the_pod(rendered: list[Doc], models_dir: Path, tmp_path: Path) -> None:
    tier = lay_out_pod(rendered, models_dir, tmp_path)
    settings = load_in_pod(tier, tmp_path)
    # A container sees the node's cores: the decode pool is sized from the CPU request instead.
    cpu = str(tier["resources"]["requests"]["cpu"])
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert settings.server.decode_threads == max(1, math.ceil(cores))
    startup = tier["startupProbe"]
    assert settings.backend.startup_timeout_s < startup["periodSeconds"] * startup["failureThreshold"]
    # The production fetch policy: no private or loopback sources unless an operator opens them.
    assert settings.fetch.allow_cidrs == () and settings.fetch.allow_hosts == ()


def admin_token_gaps(rendered: list[Doc], settings: Settings) -> list[str]:
    """Where ``server.admin_token`` does not come from a Secret through the environment alone."""
    found = []
    config = yaml.safe_load(named(rendered, "ConfigMap", "imagegate-config")["data"]["config.yaml"])
    if "admin_token" in (config.get("server") or {}):
        found.append("the ConfigMap carries server.admin_token")
    if not settings.server.admin_token.startswith("secret:"):
        found.append(f"server.admin_token is {settings.server.admin_token!r}, not a Secret's")
    tier = container(named(rendered, "Deployment", "imagegate"), "tier")
    for variable in tier.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref.get("optional") is not True:
            found.append(f"{variable['name']}: a missing Secret would keep the pod from starting")
    return found


def test_the_admin_token_comes_from_a_secret(rendered: list[Doc], models_dir: Path, tmp_path: Path) -> None:
    settings = load_in_pod(lay_out_pod(rendered, models_dir, tmp_path), tmp_path)
    assert admin_token_gaps(rendered, settings) == []
    assert settings.server.admin_token == "secret:imagegate-admin/token"


def test_the_admin_token_check_notices(rendered: list[Doc], models_dir: Path, tmp_path: Path) -> None:
    settings = load_in_pod(lay_out_pod(rendered, models_dir, tmp_path), tmp_path)
    plain = dataclasses.replace(settings, server=dataclasses.replace(settings.server, admin_token="hunter2"))
    assert admin_token_gaps(rendered, plain)
    leaked = copy.deepcopy(rendered)
    configmap = named(leaked, "ConfigMap", "imagegate-config")
    configmap["data"]["config.yaml"] = configmap["data"]["config.yaml"].replace(
        "server:\n", "server:\n  admin_token: x\n"
    )
    assert admin_token_gaps(leaked, settings)
    required = copy.deepcopy(rendered)
    (variable,) = container(named(required, "Deployment", "imagegate"), "tier")["env"]
    variable["valueFrom"]["secretKeyRef"].pop("optional")
    assert admin_token_gaps(required, settings)
