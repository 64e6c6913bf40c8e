"""The TF Serving config text (parsing it with the real protos is in test_models, in a subprocess)."""

from __future__ import annotations

from pathlib import Path

from tools.modelbuild import serving_config

DEPLOY_CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "models.config"


def test_deploy_config_is_the_rendered_one() -> None:
    assert DEPLOY_CONFIG.read_text(encoding="utf-8") == serving_config.render("/models")


def test_base_paths_are_absolute_and_per_model() -> None:
    text = serving_config.render("/srv/models/")
    for name in serving_config.MODEL_NAMES:
        assert f'base_path: "/srv/models/{name}"' in text


def test_digits_serves_both_versions_with_labels() -> None:
    digits = serving_config.render("/m").split('name: "digits"')[1]
    assert "versions: 1" in digits and "versions: 2" in digits
    assert 'version_labels { key: "stable" value: 1 }' in digits
    assert 'version_labels { key: "canary" value: 2 }' in digits
