"""docker-compose.yml: valid against the compose specification, each dependency waited for until healthy, TF
Serving's healthcheck run for real (bash, as in the image) against a stand-in for its REST API, and the
tier's image config loaded by the tier's settings loader with the files compose mounts."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import load_settings
from tests.deploy.manifests import ROOT, run_tool

COMPOSE = ROOT / "docker-compose.yml"
SERVED = set(re.findall(r'name:\s*"([^"]+)"', (ROOT / "deploy" / "models.config").read_text(encoding="utf-8")))


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return found


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = run_tool("check-jsonschema", ["--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dependency_is_waited_for_until_healthy() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions only orders the starts"
        for dependency, condition in depends_on.items():
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in all_services[dependency], dependency
    assert "--enable_grpc_healthcheck_service=true" in all_services["tfserving"]["command"]


class ModelStatusStandIn(http.server.BaseHTTPRequestHandler):
    """TF Serving's GET /v1/models/<name>, with the state the test sets."""

    protocol_version = "HTTP/1.1"
    states: dict[str, str] = {}

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        state = self.states.get(name, "")
        body = f'{{"model_version_status": [{{"version": "1", "state": "{state}"}}]}}'.encode()
        self.send_response(200 if state else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def rest_api() -> Iterator[tuple[int, dict[str, str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ModelStatusStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, ModelStatusStandIn.states
    server.shutdown()
    server.server_close()
    ModelStatusStandIn.states.clear()


def run_tfserving_healthcheck(port: int | None) -> int:
    """The healthcheck's command as compose runs it ($$ is compose's escaped $), on ``port``."""
    test = services()["tfserving"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"], "the image has bash; it has no curl or wget"
    script = test[3].replace("$$", "$")
    script = script.replace("/8501", f"/{port}") if port else script.replace("/8501", "/1")
    bash = shutil.which("bash")
    assert bash, "bash runs the healthcheck"
    return subprocess.run([bash, "-c", script], capture_output=True, timeout=10, check=False).returncode


def test_the_tfserving_healthcheck_asks_every_served_model(rest_api: tuple[int, dict[str, str]]) -> None:
    port, states = rest_api
    states.update(dict.fromkeys(SERVED, "AVAILABLE"))
    assert "--rest_api_port=8501" in services()["tfserving"]["command"]
    assert run_tfserving_healthcheck(port) == 0
    for model in SERVED:
        states[model] = "LOADING"
        assert run_tfserving_healthcheck(port) == 1, f"healthy while {model} is loading"
        states[model] = "AVAILABLE"
    assert run_tfserving_healthcheck(None) == 1, "healthy with nothing listening"


def test_the_image_config_loads_with_the_files_compose_mounts(models_dir: Path, tmp_path: Path) -> None:
    tier = services()["tier"]
    mounts = dict(reversed(volume.split(":")[:2]) for volume in tier["volumes"])
    assert mounts["/models"] == "./build/models"
    text = (ROOT / "deploy" / "config.docker.yaml").read_text(encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(" /models/", f" {models_dir}/"), encoding="utf-8")
    settings = load_settings(config, tier["environment"])
    assert settings.backend.address == "tfserving:8500"
    assert set(settings.models) <= SERVED
    for name, model in settings.models.items():
        assert model.postprocess.labels is not None and model.postprocess.labels.is_file(), name


def stop_grace_gap(tier: dict[str, Any], models_dir: Path, tmp_path: Path) -> float:
    """Seconds by which the tier's stop_grace_period falls short of its drain + 10 s headroom (<= 0: none)."""
    text = (ROOT / "deploy" / "config.docker.yaml").read_text(encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(" /models/", f" {models_dir}/"), encoding="utf-8")
    server = load_settings(config, tier["environment"]).server
    drain = server.drain_delay_s + server.shutdown_timeout_s + server.lingering_time_s
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(tier.get("stop_grace_period", "10s")))
    assert match, tier.get("stop_grace_period")
    grace = int(match[1] or 0) * 60 + int(match[2] or 0)
    return drain + 10 - grace


def test_the_tier_has_time_to_drain(models_dir: Path, tmp_path: Path) -> None:
    assert stop_grace_gap(services()["tier"], models_dir, tmp_path) <= 0
    short = {**services()["tier"], "stop_grace_period": "30s"}
    assert stop_grace_gap(short, models_dir, tmp_path) > 0
    assert stop_grace_gap({**short, "stop_grace_period": "1m"}, models_dir, tmp_path) > 0
