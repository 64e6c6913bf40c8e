"""Server options from TF Serving's flags, ``--model_config_file`` and ``--batching_parameters_file``.

Everything here is checked before TensorFlow is imported, so a bad config fails in well under a second
with a message naming the file, line or key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tools.localserving import textproto
from tools.localserving.transport import SERVER_CHANNEL_ARGUMENTS, ChannelArgument

log = logging.getLogger("localserving")

LABELS_FLAG = "--allow_version_labels_for_unavailable_models"


class ConfigError(Exception):
    """A flag or config file is wrong; the message says which and why."""


@dataclass(frozen=True)
class VersionPolicy:
    """``model_version_policy``: which of the version directories on disk are served."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, on_disk: Iterable[int]) -> frozenset[int]:
        """The versions to serve, given the numeric version directories present."""
        present = sorted(on_disk, reverse=True)
        if self.kind == "all":
            return frozenset(present)
        if self.kind == "specific":
            return self.versions.intersection(present)
        return frozenset(present[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    """One entry of ``model_config_list``."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's ``BatchingParameters``; the defaults are its SharedBatchScheduler defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class ServerOptions:
    """Everything the server needs, validated."""

    port: int
    models: tuple[ModelConfig, ...]
    poll_wait_seconds: float = 1.0
    batching: BatchingOptions | None = None
    grpc_max_threads: int = 64
    typed_field_answers: bool = False
    grpc_channel_arguments: tuple[ChannelArgument, ...] = ()
    health_check: bool = False  # --enable_grpc_healthcheck_service
    model_config_file: Path | None = None
    config_poll_wait_seconds: float = 0.0  # --model_config_file_poll_wait_seconds; 0 reads the file only at start
    allow_unavailable_labels: bool = False  # --allow_version_labels_for_unavailable_models
    model_warmup: bool = True  # --enable_model_warmup: run assets.extra/tf_serving_warmup_requests before AVAILABLE


def single_model_config(name: str, base_path: str) -> ModelConfig:
    """The model of ``--model_name`` and ``--model_base_path`` (a relative path is taken from the cwd)."""
    if not name:
        raise ConfigError("--model_name is empty")
    return ModelConfig(name=name, base_path=Path(base_path).absolute())


def load_model_config_file(path: Path) -> tuple[ModelConfig, ...]:
    """The models of a ModelServerConfig text file, as ``tensorflow_model_server`` would read it."""
    models = models_from_proto(read_model_server_config(path), str(path))
    if not models:
        raise ConfigError(f"{path}: model_config_list has no models")
    return models


def read_model_server_config(path: Path) -> Any:
    """The ModelServerConfig proto of a text-format file; ConfigError if it cannot be read or parsed."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        text = path.read_text()
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise ConfigError(f"--model_config_file {path}: {exc}") from exc


def models_from_proto(config: Any, source: str) -> tuple[ModelConfig, ...]:
    """The models of a ModelServerConfig, checked as TF Serving checks them (an empty list is valid)."""
    if config.HasField("custom_model_config"):
        raise ConfigError(f"{source}: custom_model_config is not supported; use model_config_list")
    models = tuple(_model_from_proto(entry, source) for entry in config.model_config_list.config)
    _check_unique_names(models, source)
    return models


def _model_from_proto(entry: Any, source: str) -> ModelConfig:
    name = str(entry.name)
    where = f"{source}: model {name!r}"
    if not name:
        raise ConfigError(f"{source}: a model config has no name")
    _check_platform(entry, where)
    return ModelConfig(
        name=name,
        base_path=_base_path(str(entry.base_path), where),
        policy=_policy_from_proto(entry.model_version_policy, where),
        labels={str(label): int(version) for label, version in entry.version_labels.items()},
    )


def _check_platform(entry: Any, where: str) -> None:
    platform = str(entry.model_platform)
    model_type = int(entry.model_type)
    if model_type == 1 and not platform:  # the deprecated ModelType.TENSORFLOW
        return
    if platform != "tensorflow" or model_type not in (0, 1):
        found = repr(platform) if platform else "none"
        raise ConfigError(f'{where}: model_platform must be "tensorflow" (found {found}), as TF Serving requires')


def _base_path(base_path: str, where: str) -> Path:
    if "://" in base_path:
        raise ConfigError(f"{where}: base_path {base_path!r}: only local paths are supported")
    path = Path(base_path)
    if not path.is_absolute():
        raise ConfigError(f"{where}: base_path must be absolute, as TF Serving requires (got {base_path!r})")
    return path


def _policy_from_proto(policy: Any, where: str) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(kind="all")
    if choice == "specific":
        versions = frozenset(int(v) for v in policy.specific.versions)
        if not versions:
            raise ConfigError(f"{where}: model_version_policy specific lists no versions")
        return VersionPolicy(kind="specific", versions=versions)
    latest = int(policy.latest.num_versions) if choice == "latest" else 1
    return VersionPolicy(kind="latest", num_versions=max(latest, 1))


def _check_unique_names(models: tuple[ModelConfig, ...], source: str) -> None:
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise ConfigError(f"{source}: Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)


_INT32_MAX = (1 << 31) - 1
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def parse_grpc_channel_arguments(text: str) -> tuple[ChannelArgument, ...]:
    """``--grpc_channel_arguments``: ``key=value`` pairs joined by commas, as tensorflow_model_server splits them.

    TF Serving passes a value that parses as a 32-bit integer as one, anything else as a string. Every
    argument accepted here is an integer, so a value that is not one is refused, as are an entry without
    ``=`` (TF Serving reads past the end of it) and a key outside SERVER_CHANNEL_ARGUMENTS.
    """
    if not text:
        return ()
    arguments: dict[str, int] = {}
    for entry in text.split(","):
        key, sep, value = entry.partition("=")
        where = f"--grpc_channel_arguments: {entry!r}"
        if not sep or not key:
            raise ConfigError(f"{where} is not key=value")
        if key not in SERVER_CHANNEL_ARGUMENTS:
            known = ", ".join(SERVER_CHANNEL_ARGUMENTS)
            raise ConfigError(f"{where}: unknown channel argument {key!r} (known: {known})")
        stripped = value.strip()  # absl::SimpleAtoi, which TF Serving uses, allows surrounding whitespace
        if not _DECIMAL.fullmatch(stripped) or not 0 <= int(stripped) <= _INT32_MAX:
            raise ConfigError(f"{where}: the value must be an integer from 0 to {_INT32_MAX}")
        arguments[key] = int(stripped)
    return tuple(arguments.items())


_BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
# Names only: batching threads are not pooled by name here.
_BATCHING_IGNORED = ("thread_pool_name",)
_BATCHING_NOT_IMPLEMENTED = (
    "allowed_batch_sizes",
    "pad_variable_length_inputs",
    "enable_large_batch_splitting",
    "max_execution_batch_size",
    "batch_padding_policy",
    "enable_priority_queue",
    "low_priority_max_batch_size",
    "low_priority_batch_timeout_micros",
    "low_priority_allowed_batch_sizes",
    "low_priority_max_enqueued_batches",
    "mixed_priority_batching_policy",
)


def load_batching_parameters(path: Path) -> BatchingOptions:
    """The BatchingParameters text file of ``--batching_parameters_file``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--batching_parameters_file {path}: {exc}") from exc
    return parse_batching_parameters(text, source=str(path))


def parse_batching_parameters(text: str, source: str = "batching parameters") -> BatchingOptions:
    """BatchingOptions from BatchingParameters text format (``max_batch_size { value: 32 }`` ...)."""
    try:
        fields = textproto.parse(text)
    except textproto.TextFormatError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    values: dict[str, int] = {}
    seen: set[str] = set()
    for item in fields:
        where = f"{source}: line {item.line}"
        if item.name in seen:
            raise ConfigError(f"{where}: {item.name} is given more than once")
        seen.add(item.name)
        if item.name in _BATCHING_FIELDS:
            values[item.name] = _wrapped_int(item, where)
        elif item.name not in _BATCHING_IGNORED:
            raise ConfigError(f"{where}: {_unsupported_batching_field(item.name)}")
    options = BatchingOptions(**values)
    _check_batching(options, source)
    return options


def _unsupported_batching_field(name: str) -> str:
    supported = ", ".join(_BATCHING_FIELDS)
    if name in _BATCHING_NOT_IMPLEMENTED:
        return f"{name} is a TF Serving batching parameter that localserving does not implement (it has {supported})"
    return f"unknown batching parameter {name!r} (known: {supported})"


def _wrapped_int(item: textproto.Field, where: str) -> int:
    """The integer of a ``google.protobuf.Int64Value`` field: ``name { value: N }`` (``name {}`` is 0)."""
    hint = f"write {item.name} {{ value: N }}"
    if isinstance(item.value, str):
        raise ConfigError(f"{where}: {item.name} is an Int64Value message: {hint}")
    if not item.value:
        return 0
    if len(item.value) != 1 or item.value[0].name != "value" or not isinstance(item.value[0].value, str):
        raise ConfigError(f"{where}: {item.name} must hold exactly one integer 'value': {hint}")
    return _integer(item.value[0].value, f"{where}: {item.name}")


def _integer(text: str, where: str) -> int:
    try:
        return int(text, 16) if text.lower().lstrip("+-").startswith("0x") else int(text, 10)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an integer") from None


def _check_batching(options: BatchingOptions, source: str) -> None:
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(options, name) < 1:
            raise ConfigError(f"{source}: {name} must be at least 1 (got {getattr(options, name)})")
    if options.batch_timeout_micros < 0:
        raise ConfigError(f"{source}: batch_timeout_micros must not be negative")
