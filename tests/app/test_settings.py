from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings
from tests.support.tier import DEV_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings.server.port == 8080
    assert settings.backend.address == "127.0.0.1:8500"
    assert settings.models == {}


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9000\n  host: 0.0.0.0\n")
    env = {"IMAGEGATE_SERVER__PORT": "9001", "IMAGEGATE_FETCH__MAX_BYTES": "1234", "OTHER": "x"}
    settings = load_settings(path, env, ["server.port=9002"])
    assert settings.server.port == 9002
    assert settings.server.host == "0.0.0.0"
    assert settings.fetch.max_bytes == 1234


def test_settings_are_frozen() -> None:
    settings = load_settings(None, {})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


def test_dev_config_loads_with_label_paths_relative_to_the_file() -> None:
    settings = load_settings(DEV_CONFIG, {})
    labels = settings.models["mobilenet_v2"].postprocess.labels
    assert labels is not None and labels.is_absolute()
    assert labels.name == "labels.txt"


@pytest.mark.parametrize(
    ("text", "env", "overrides", "key"),
    [
        ("server:\n  prot: 1\n", {}, [], "server.prot"),
        ("server:\n  port: eighty\n", {}, [], "server.port"),
        ("", {"IMAGEGATE_SERVER__PORT": "70000"}, [], "server.port"),
        ("", {}, ["fetch.max_bytes=-1"], "fetch.max_bytes"),
        ("", {}, ["fetch.allow_cidrs=[not-a-net]"], "fetch.allow_cidrs[0]"),
        ("", {}, ["server.memory_budget_bytes=-1"], "server.memory_budget_bytes"),
        ("", {}, ["server.memory_budget_bytes=1000000"], "server.memory_budget_bytes"),  # under one body
        ("", {}, ["server.memory_wait_s=30"], "server.memory_wait_s"),  # not below body_timeout_s
        ("", {}, ["server.memory_wait_s=-1"], "server.memory_wait_s"),
        ("", {}, ["tracing.otlp_endpoint=collector:4318"], "tracing.otlp_endpoint"),
        ("", {"IMAGEGATE_TRACING__SAMPLE_RATIO": "1.5"}, [], "tracing.sample_ratio"),
        ("tracing:\n  service_name: ''\n", {}, [], "tracing.service_name"),
        ("models:\n  m:\n    input:\n      resize: squash\n", {}, [], "models.m.input.resize"),
        ("models:\n  m:\n    postprocess:\n      labels: /nope.txt\n", {}, [], "models.m.postprocess.labels"),
        ("models:\n  m:\n    input:\n      dtype: uint8\n      scale: 0.5\n", {}, [], "models.m.input"),
        ("models:\n  m:\n    input:\n      mean: [1, 2]\n", {}, [], "models.m.input.mean"),
        ("models:\n  m:\n    postprocess:\n      softmax: maybe\n", {}, [], "models.m.postprocess.softmax"),
        ("", {}, ["models.m.postprocess.activation=softmax", "models.m.postprocess.softmax=false"], "activation"),
        ("", {}, ["models.m.postprocess.activation=sigmoid", "models.m.postprocess.softmax=true"], "activation"),
        ("", {}, ["models.m.postprocess.activation=tanh"], "models.m.postprocess.activation"),
        ("", {}, ["models.m.postprocess.activation=sigmoid", "models.m.postprocess.threshold=1.5"], "threshold"),
        ("", {}, ["models.m.postprocess.top_k=0"], "models.m.postprocess.top_k"),
        ("models:\n  m:\n    batching:\n      max_in_flight: 0\n", {}, [], "max_in_flight: must be at least 1"),
        ("models:\n  m:\n    batching:\n      max_wait_ms: -1\n", {}, [], "max_wait_ms: must not be negative"),
        ("- a list\n", {}, [], "mapping"),
        ("server: [\n", {}, [], "YAML"),
        ("", {}, ["nonsense"], "section.key=value"),
        ("", {}, ["models.m.routes.rollback.max_p99_ratio=3"], "rollback.max_p99_ratio: replaced by max_latency"),
        ("", {}, ["models.m.routes.rollback.confidence=99.9"], "models.m.routes.rollback.confidence"),
        ("", {}, ["models.m.routes.poll_s=-1"], "models.m.routes.poll_s"),
        ("", {}, ["models.m.routes.canary_timeout_share=1"], "models.m.routes.canary_timeout_share"),
        ("", {}, ["models.m.routes.rollback.max_latency_ratio=0.8"], "models.m.routes.rollback.max_latency_ratio"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], overrides: list[str], key: str
) -> None:
    with pytest.raises(SettingsError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), env, overrides)


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", {})


def test_docker_config_is_valid(tmp_path: Path) -> None:
    config = (DEV_CONFIG.parent / "config.docker.yaml").read_text()
    for name in ("mobilenet_v2", "tiny", "digits", "faces"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "labels.txt").write_text("x\n")
    settings = load_settings(write(tmp_path, config.replace("/models/", f"{tmp_path}/")), {})
    assert settings.models["mobilenet_v2"].batching.max_batch_size == 32


@pytest.mark.parametrize(("softmax", "activation"), [(True, "softmax"), (False, "none"), (None, "none")])
def test_the_former_softmax_key_still_sets_the_activation(softmax: bool | None, activation: str) -> None:
    overrides = [] if softmax is None else [f"models.m.postprocess.softmax={str(softmax).lower()}"]
    settings = load_settings(None, {}, overrides or ["models.m.signature=serving_default"])
    assert settings.models["m"].postprocess.activation == activation
