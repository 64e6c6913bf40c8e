"""Start-up, the readiness line, start-up failures and stopping on SIGTERM / SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.backend import REPO_ROOT, LocalBackend, start_local_backend
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import make_base_path, model_block, write_config
from tests.tools.localserving.rpc import Client

READY = re.compile(r"^localserving: ready on 127\.0\.0\.1:(\d+) models=single:2$")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_localserving(args: Sequence[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tools.localserving", "--port", "0", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


@dataclass
class Started:
    by_signal: dict[signal.Signals, LocalBackend]
    broken: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory, affine_store: Path) -> Iterator[Started]:
    """Side by side (each imports TensorFlow): one server per stop signal, started with --model_name and
    --model_base_path, and one start-up that fails because its only version is not a SavedModel."""
    root = tmp_path_factory.mktemp("lifecycle")
    base = make_base_path(affine_store, root, "single", [1, 2])
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    with ThreadPoolExecutor(len(STOP_SIGNALS) + 1) as pool:
        broken = pool.submit(run_localserving, ["--model_name=broken", f"--model_base_path={root / 'broken'}"])
        servers = [pool.submit(start_local_backend, model_name="single", model_base_path=base) for _ in STOP_SIGNALS]
    if any(server.exception() for server in servers):
        for server in servers:
            if server.exception() is None:
                server.result().stop()
        raise next(error for server in servers if (error := server.exception()))
    by_signal = {signum: server.result() for signum, server in zip(STOP_SIGNALS, servers, strict=True)}
    yield Started(by_signal, broken.result()[0])
    for backend in by_signal.values():
        if backend.proc.poll() is None:
            backend.proc.kill()
            backend.proc.wait()


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=[s.name for s in STOP_SIGNALS])
def test_serves_one_model_from_flags_and_stops_cleanly_on_signal(started: Started, signum: signal.Signals) -> None:
    backend = started.by_signal[signum]
    match = READY.match(backend.ready_line)
    assert match and int(match.group(1)) == backend.port
    client = Client.connect(backend.address)
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(client.outputs("single", {"x": x})["y"], affine(x, 2))
    client.close()

    backend.proc.send_signal(signum)

    assert backend.proc.wait(timeout=10) == 0
    logs = backend.logs(last_chars=100_000)
    assert "Traceback" not in logs
    assert f"stopping on {signum.name}" in logs


def test_a_model_that_cannot_load_fails_start_up_with_exit_1(started: Started) -> None:
    assert started.broken.returncode == 1
    assert "loading broken version 1" in started.broken.stderr
    assert started.broken.stdout == ""


def test_bad_config_fails_fast_with_exit_2_before_loading_tensorflow(tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.config", [model_block("m", Path("relative/path"))])

    done, elapsed = run_localserving(["--model_config_file", str(config)])

    assert done.returncode == 2
    assert "base_path must be absolute" in done.stderr
    assert done.stdout == ""
    assert elapsed < 5, "config errors must be reported before TensorFlow is imported"
