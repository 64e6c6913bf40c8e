"""The tier's command line: ``python -m app --config deploy/config.dev.yaml``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.observability.logs import configure_logging
from app.serving.allocator import tune_malloc
from app.serving.lifecycle import serve
from app.serving.workers import run_workers
from app.settings import Settings, SettingsError, load_settings


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="imagegate", description="Image-inference gateway for TF Serving.")
    parser.add_argument("--config", type=Path, help="YAML settings file (see deploy/config.example.yaml)")
    parser.add_argument("--host", help="listen address (server.host)")
    parser.add_argument("--port", help="listen port (server.port)")
    parser.add_argument("--backend", help="default TF Serving address host:port (backend.address)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, e.g. fetch.max_bytes=1000000",
    )
    parser.add_argument("--workers", type=int, default=1, help="pre-forked processes sharing the socket (default 1)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object per line")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = list(args.set)
    for flag, key in (("host", "server.host"), ("port", "server.port"), ("backend", "backend.address")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_settings(args.config, environ, overrides)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level, args.log_format)
    try:
        settings = settings_from_args(args, os.environ if environ is None else environ)
        tune_malloc(settings.server.malloc_mmap_threshold, settings.server.malloc_trim_threshold)
        load = functools.partial(settings_from_args, args, os.environ if environ is None else environ)
        if args.workers > 1:
            return run_workers(settings, args.workers, load, args.config)
        return asyncio.run(serve(settings, load=load, config_file=args.config))
    except SettingsError as exc:
        print(f"imagegate: configuration error: {exc}", file=sys.stderr)
        return 2
