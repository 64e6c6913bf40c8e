"""Flags, ModelServerConfig and BatchingParameters files (pure: checked before TensorFlow is imported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.localserving.conftest import model_block, write_config
from tools.localserving.cli import parse_options
from tools.localserving.config import (
    BatchingOptions,
    ConfigError,
    VersionPolicy,
    load_model_config_file,
    parse_batching_parameters,
)
from tools.localserving.transport import server_options


def version_dirs(base: Path, *versions: int) -> Path:
    for version in versions:
        (base / str(version)).mkdir(parents=True)
    return base


def test_batching_parameters_in_tf_servings_text_format() -> None:
    text = """
    # comments, either delimiter style, separators and any layout are fine
    max_batch_size { value: 32 }
    batch_timeout_micros: { value: 1000 };
    num_batch_threads < value: 2 >
    max_enqueued_batches {
      value: 0x64
    }
    thread_pool_name { value: "batch_threads" }
    """
    assert parse_batching_parameters(text) == BatchingOptions(
        max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=2, max_enqueued_batches=100
    )


def test_missing_batching_parameters_take_tf_servings_defaults() -> None:
    options = parse_batching_parameters("max_batch_size { value: 8 }")
    assert (options.max_batch_size, options.batch_timeout_micros, options.max_enqueued_batches) == (8, 0, 10)
    assert options.num_batch_threads >= 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_batch_size { value: 32 }\nmax_batch_sise { value: 1 }",
            "line 2: unknown batching parameter 'max_batch_sise'",
        ),
        (
            "allowed_batch_sizes: 8",
            "allowed_batch_sizes is a TF Serving batching parameter that localserving does not implement",
        ),
        ("pad_variable_length_inputs: true", "does not implement"),
        ("max_batch_size: 32", r"write max_batch_size \{ value: N \}"),
        ("max_batch_size { value: 3.5 }", "not an integer"),
        ("max_batch_size { value: 1 other: 2 }", "exactly one integer"),
        ("max_batch_size { value: 1 }\nmax_batch_size { value: 2 }", "more than once"),
        ("max_batch_size { value: 0 }", "at least 1"),
        ("batch_timeout_micros { value: -1 }", "must not be negative"),
        ("max_batch_size { value: 4 ", "missing '}'"),
        ("max_batch_size value: 4 }", "expected ':' or '{'"),
        ("max_batch_size { value: 4 } }", "expected a field name"),
        ("max_batch_size { value: ! }", "unexpected character '!'"),
    ],
)
def test_bad_batching_parameters_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_batching_parameters(text, source="batching.txt")


def test_model_config_file_as_written_for_tensorflow_model_server(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(
        """
        model_config_list {
          config {
            name: "digits"
            base_path: "/models/digits"
            model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 2 }
          }
          config { name: "tiny" base_path: "/models/tiny" model_platform: "tensorflow"
                   model_version_policy { latest { num_versions: 2 } } }
          config { name: "every" base_path: "/models/every" model_platform: "tensorflow"
                   model_version_policy { all {} } }
        }
        """
    )
    digits, tiny, every = load_model_config_file(config)
    assert (digits.name, digits.base_path) == ("digits", Path("/models/digits"))
    assert digits.policy == VersionPolicy(kind="specific", versions=frozenset({1, 2}))
    assert dict(digits.labels) == {"stable": 1, "canary": 2}
    assert tiny.policy == VersionPolicy(kind="latest", num_versions=2)
    assert every.policy == VersionPolicy(kind="all")


@pytest.mark.parametrize(
    ("policy", "on_disk", "served"),
    [
        (VersionPolicy(), [1, 3, 2], {3}),
        (VersionPolicy(kind="latest", num_versions=2), [1, 3, 2], {3, 2}),
        (VersionPolicy(kind="all"), [1, 3, 2], {1, 2, 3}),
        (VersionPolicy(kind="specific", versions=frozenset({1, 7})), [1, 3, 2], {1}),
        (VersionPolicy(), [], set()),
    ],
)
def test_version_policy_selects_from_the_versions_on_disk(
    policy: VersionPolicy, on_disk: list[int], served: set[int]
) -> None:
    assert policy.select(on_disk) == served


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('config { name: "m" base_path: "models/m" model_platform: "tensorflow" }', "base_path must be absolute"),
        ('config { name: "m" base_path: "/m" }', 'model_platform must be "tensorflow"'),
        ('config { name: "m" base_path: "/m" model_platform: "onnx" }', 'model_platform must be "tensorflow"'),
        ('config { name: "m" base_path: "gs://bucket/m" model_platform: "tensorflow" }', "only local paths"),
        ('config { base_path: "/m" model_platform: "tensorflow" }', "has no name"),
        (
            'config { name: "m" base_path: "/m" model_platform: "tensorflow" }' * 2,
            "Illegal to list model m multiple times",
        ),
        (
            'config { name: "m" base_path: "/m" model_platform: "tensorflow" model_version_policy { specific {} } }',
            "specific lists no versions",
        ),
        ('config { name: "m" base_pth: "/m" }', "base_pth"),
        ("", "has no models"),
    ],
)
def test_bad_model_config_files_are_rejected_clearly(tmp_path: Path, entry: str, message: str) -> None:
    config = tmp_path / "models.config"
    config.write_text(f"model_config_list {{ {entry} }}")
    with pytest.raises(ConfigError, match=message):
        load_model_config_file(config)


def test_flags_like_tensorflow_model_servers(tmp_path: Path) -> None:
    base = version_dirs(tmp_path / "m", 1)
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 16 }")

    options = parse_options(
        [
            "--port=0",
            f"--model_base_path={base}",
            "--enable_batching=true",
            f"--batching_parameters_file={parameters}",
            "--file_system_poll_wait_seconds=0.5",
        ]
    )

    assert options.port == 0 and options.poll_wait_seconds == 0.5
    assert [(m.name, m.base_path) for m in options.models] == [("default", base)]
    assert options.batching is not None and options.batching.max_batch_size == 16
    assert parse_options(["--model_name=m", f"--model_base_path={base}", "--enable_batching"]).batching is not None
    assert parse_options(["--model_name=m", f"--model_base_path={base}", "--enable_batching=false"]).batching is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_name=m"], "give --model_config_file, or --model_base_path"),
        (["--model_base_path={missing}"], "Could not find base path"),
        (["--model_base_path={empty}"], "No versions of servable default found"),
        (["--model_base_path={base}", "--batching_parameters_file=/x"], "needs --enable_batching"),
        (["--model_base_path={base}", "--file_system_poll_wait_seconds=-1"], "must be >= 0"),
        (["--model_config_file={config}", "--model_config_file_poll_wait_seconds=-1"], "must be >= 0"),
        (["--model_base_path={base}", "--model_config_file_poll_wait_seconds=5"], "needs --model_config_file"),
        (["--model_base_path={base}", "--port=70000"], "--port must be between"),
        (["--model_base_path={base}", "--rest_api_port=8501"], "gRPC only"),
        (["--model_base_path={base}", "--model_config_file={config}"], "not both"),
        (["--model_config_file={labelled}"], "Request to assign label to version 9 of model m"),
        (["--model_base_path={base}", "--grpc_channel_arguments=grpc.max_connection_age_ms"], "is not key=value"),
        (["--model_base_path={base}", "--grpc_channel_arguments=grpc.max_conection_age_ms=1"], "unknown channel"),
        (["--model_base_path={base}", "--grpc_channel_arguments=grpc.max_connection_age_ms=1s"], "an integer"),
        (["--model_base_path={base}", "--grpc_channel_arguments=grpc.keepalive_time_ms=1,"], "is not key=value"),
        (["--model_base_path={base}", "--grpc_channel_arguments=grpc.keepalive_time_ms=2147483648"], "from 0 to"),
    ],
)
def test_bad_flags_are_rejected_before_tensorflow_loads(tmp_path: Path, args: list[str], message: str) -> None:
    base = version_dirs(tmp_path / "m", 1, 2)
    (tmp_path / "empty").mkdir()
    config = write_config(tmp_path / "models.config", [model_block("m", base)])
    labelled = write_config(tmp_path / "labelled.config", [model_block("m", base, "all {}", {"old": 1, "gone": 9})])
    paths = {"base": base, "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    paths |= {"config": config, "labelled": labelled}
    with pytest.raises(ConfigError, match=message):
        parse_options([arg.format(**paths) for arg in args])


def test_grpc_flags_like_tensorflow_model_servers(tmp_path: Path) -> None:
    base = version_dirs(tmp_path / "m", 1)
    arguments = "grpc.max_connection_age_ms=30000,grpc.max_connection_age_grace_ms= 5000 ,grpc.keepalive_time_ms=0"

    options = parse_options(
        [f"--model_base_path={base}", f"--grpc_channel_arguments={arguments}", "--enable_grpc_healthcheck_service"]
    )

    assert options.health_check
    assert options.grpc_channel_arguments == (
        ("grpc.max_connection_age_ms", 30000),
        ("grpc.max_connection_age_grace_ms", 5000),
        ("grpc.keepalive_time_ms", 0),
    )
    plain = parse_options([f"--model_base_path={base}", "--enable_grpc_healthcheck_service=false"])
    assert not plain.health_check and plain.grpc_channel_arguments == ()


def test_channel_arguments_are_applied_over_localservings_own_options() -> None:
    given = (("grpc.max_concurrent_streams", 8), ("grpc.max_connection_age_ms", 1000))
    options = dict(server_options(given))
    assert options["grpc.max_connection_age_ms"] == 1000 and options["grpc.max_concurrent_streams"] == 8
    assert options["grpc.so_reuseport"] == 0  # localserving's own options stay


def test_labels_of_unserved_versions_need_tf_servings_flag(tmp_path: Path) -> None:
    base = version_dirs(tmp_path / "m", 1, 2)
    config = write_config(tmp_path / "models.config", [model_block("m", base, "all {}", {"next": 3, "now": 2})])
    with pytest.raises(ConfigError, match="allow_version_labels_for_unavailable_models"):
        parse_options([f"--model_config_file={config}"])
    parse_options([f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models"])


def test_model_config_file_poll_is_off_unless_asked_for(tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.config", [model_block("m", version_dirs(tmp_path / "m", 1), "", {"s": 1})])

    options = parse_options([f"--model_config_file={config}"])
    polled = parse_options([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=0.5"])

    assert options.config_poll_wait_seconds == 0 and options.model_config_file == config
    assert polled.config_poll_wait_seconds == 0.5 and not polled.allow_unavailable_labels
    assert parse_options(
        [f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models"]
    ).allow_unavailable_labels
