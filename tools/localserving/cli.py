"""``python -m tools.localserving``: tensorflow_model_server's flags, checked before TensorFlow is imported."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.localserving.config import (
    LABELS_FLAG,
    BatchingOptions,
    ConfigError,
    ModelConfig,
    ServerOptions,
    load_batching_parameters,
    load_model_config_file,
    parse_grpc_channel_arguments,
    single_model_config,
)
from tools.localserving.errors import ServingError
from tools.localserving.memory import keep_freed_memory
from tools.localserving.models import versions_to_serve
from tools.localserving.signals import StopSignal

log = logging.getLogger("localserving")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the exit code (0 after SIGTERM/SIGINT, 1 if it cannot start, 2 on bad flags)."""
    _configure_logging()
    stop = StopSignal()  # first, so a signal during TensorFlow's import or model loading still exits 0
    try:
        options = parse_options(argv)
    except ConfigError as exc:
        print(f"localserving: error: {exc}", file=sys.stderr)
        return 2
    keep_freed_memory()  # before TensorFlow and the first request allocate anything big
    from tools.localserving import server  # imports TensorFlow: seconds

    try:
        return server.serve(options, stop)
    except server.StartupError as exc:
        print(f"localserving: error: {exc}", file=sys.stderr)
        return 1


def parse_options(argv: Sequence[str] | None = None) -> ServerOptions:
    """ServerOptions from the command line; ConfigError names the flag or file at fault."""
    args = _parser().parse_args(argv)
    models = _models(args)
    for model in models:
        _check_versions(model, args.allow_version_labels_for_unavailable_models)
    return ServerOptions(
        port=_checked(args.port, "--port", 0, 65535),
        models=models,
        poll_wait_seconds=_poll_wait(args.file_system_poll_wait_seconds, "--file_system_poll_wait_seconds"),
        batching=_batching(args),
        grpc_max_threads=_checked(args.grpc_max_threads, "--grpc_max_threads", 1, 10_000),
        typed_field_answers=args.predict_response_tensor_serialization == "fields",
        grpc_channel_arguments=parse_grpc_channel_arguments(args.grpc_channel_arguments),
        health_check=args.enable_grpc_healthcheck_service,
        model_config_file=args.model_config_file,
        config_poll_wait_seconds=_config_poll_wait(args),
        allow_unavailable_labels=args.allow_version_labels_for_unavailable_models,
        model_warmup=args.enable_model_warmup,
    )


def _check_versions(model: ModelConfig, allow_unavailable_labels: bool) -> None:
    """The base path exists, has versions to serve, and (unless allowed) every label names one of them.

    tensorflow_model_server refuses any label in its startup config unless
    --allow_version_labels_for_unavailable_models is set, because it assigns labels before loading. Here
    labels are checked against the versions about to be loaded instead, so the flag is needed only for
    labels that name a version that will not be served.
    """
    try:
        served = versions_to_serve(model)
    except ServingError as exc:
        raise ConfigError(exc.message) from None
    for label, version in model.labels.items():
        if version not in served and not allow_unavailable_labels:
            raise ConfigError(
                f"Request to assign label to version {version} of model {model.name}, which is not currently "
                f"available for inference (label {label!r}; served versions: {sorted(served)}). "
                f"{LABELS_FLAG}=true allows it."
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.localserving",
        allow_abbrev=False,
        description="A TF-Serving-compatible gRPC server for development and tests (production uses TF Serving).",
    )
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port on 127.0.0.1; 0 picks a free one (default 8500)")
    add("--rest_api_port", type=int, default=0, help="must be 0: the REST API is not implemented")
    add("--model_config_file", type=Path, help="ModelServerConfig in protobuf text format")
    add("--model_name", default="default", help="the model's name when serving one model (default 'default')")
    add("--model_base_path", help="directory holding the numeric version directories of the one model")
    add("--file_system_poll_wait_seconds", type=float, default=1.0, help="seconds between polls; 0 polls once")
    add(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="seconds between reloads of --model_config_file; 0 (the default) reads it only at start",
    )
    add("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False)
    add("--batching_parameters_file", type=Path, help="BatchingParameters in protobuf text format")
    add(LABELS_FLAG, type=_flag_bool, nargs="?", const=True, default=False)
    add(
        "--enable_model_warmup",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=True,
        help="run each version's assets.extra/tf_serving_warmup_requests before it is AVAILABLE (default true)",
    )
    add("--grpc_max_threads", type=int, default=64, help="threads answering gRPC calls (default 64)")
    add(
        "--grpc_channel_arguments",
        default="",
        help="comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=30000",
    )
    add(
        "--enable_grpc_healthcheck_service",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="serve grpc.health.v1.Health: SERVING once the models are loaded, NOT_SERVING while stopping",
    )
    add(
        "--predict_response_tensor_serialization",
        choices=("content", "fields"),
        default="content",
        help="Predict outputs in tensor_content (default) or in the typed *_val fields, as TF Serving does",
    )
    return parser


def _models(args: argparse.Namespace) -> tuple[ModelConfig, ...]:
    if args.rest_api_port:
        raise ConfigError("--rest_api_port: localserving serves gRPC only; leave it 0")
    if args.model_config_file is not None:
        if args.model_base_path is not None:
            raise ConfigError("give either --model_config_file or --model_base_path, not both")
        return load_model_config_file(args.model_config_file)
    if args.model_base_path is None:
        raise ConfigError("give --model_config_file, or --model_base_path (and --model_name)")
    return (single_model_config(args.model_name, args.model_base_path),)


def _batching(args: argparse.Namespace) -> BatchingOptions | None:
    if not args.enable_batching:
        if args.batching_parameters_file is not None:
            raise ConfigError("--batching_parameters_file needs --enable_batching")
        return None
    if args.batching_parameters_file is None:
        return BatchingOptions()
    return load_batching_parameters(args.batching_parameters_file)


def _poll_wait(seconds: float, flag: str) -> float:
    if seconds < 0:
        raise ConfigError(f"{flag} must be >= 0 (0 reads only at start)")
    return seconds


def _config_poll_wait(args: argparse.Namespace) -> float:
    seconds = _poll_wait(args.model_config_file_poll_wait_seconds, "--model_config_file_poll_wait_seconds")
    if seconds and args.model_config_file is None:
        raise ConfigError("--model_config_file_poll_wait_seconds needs --model_config_file")
    return seconds


def _checked(value: int, flag: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{flag} must be between {low} and {high} (got {value})")
    return value


def _flag_bool(text: str) -> bool:
    """TF Serving's boolean flags: ``--flag``, ``--flag=true`` or ``--flag=false``."""
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s localserving %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
