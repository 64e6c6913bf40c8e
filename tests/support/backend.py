"""A running ``python -m tools.localserving`` subprocess, the TF-Serving-compatible backend for tests.

``start_local_backend`` returns once the server has printed its readiness line (all models loaded, port
bound), so tests never sleep to wait for it. ``stop`` sends SIGTERM and checks for exit code 0.
``reload_config`` sends a new model config to a running backend (or TF Serving), as an operator would.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc

from app.backend.protos import model_service_pb2_grpc
from tools.process import stop_process

READY_PREFIX = "localserving: ready on "
STOP_TIMEOUT_SECONDS = 10.0
# A reload that adds models answers once they are loaded: seconds each, more on a busy machine.
RELOAD_TIMEOUT_SECONDS = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalBackend:
    """A running ``python -m tools.localserving`` subprocess."""

    address: str  # "127.0.0.1:<port>"
    port: int
    proc: subprocess.Popen[str]
    ready_line: str = ""
    _stderr: IO[str] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """SIGTERM, wait, assert it exited 0 (SIGKILL after 10 s)."""
        if not stop_process(self.proc, STOP_TIMEOUT_SECONDS):
            raise AssertionError(
                f"localserving ignored SIGTERM for {STOP_TIMEOUT_SECONDS} s and was killed\n{self.logs()}"
            )
        assert self.proc.returncode == 0, f"localserving exited {self.proc.returncode}\n{self.logs()}"

    def logs(self, last_chars: int = 6000) -> str:
        """The end of the server's stderr, for failure messages."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-last_chars:]


def start_local_backend(
    *,
    model_config_file: Path | None = None,
    model_name: str | None = None,
    model_base_path: Path | None = None,
    port: int = 0,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 120.0,
) -> LocalBackend:
    """Launch ``python -m tools.localserving`` and wait for its readiness line; raises with its output if it fails."""
    args = [sys.executable, "-m", "tools.localserving", "--port", str(port)]
    if model_config_file is not None:
        args += ["--model_config_file", str(model_config_file)]
    if model_name is not None:
        args += ["--model_name", model_name]
    if model_base_path is not None:
        args += ["--model_base_path", str(model_base_path)]
    args += list(extra_args)
    # Append mode: the server's writes never land where logs() has moved the shared file offset.
    stderr = tempfile.TemporaryFile(mode="a+", encoding="utf-8", errors="replace")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, env=_env())
    backend = LocalBackend(address="", port=0, proc=proc, _stderr=stderr)
    try:
        backend.ready_line = _await_ready_line(proc, ready_timeout)
    except Exception as exc:
        _kill(proc)
        raise RuntimeError(f"{' '.join(args)}: {exc}\n{backend.logs()}") from None
    except BaseException:
        _kill(proc)
        raise
    backend.address = backend.ready_line.removeprefix(READY_PREFIX).split()[0]
    backend.port = int(backend.address.rsplit(":", 1)[1])
    return backend


def _await_ready_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump_lines, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"localserving exited with code {proc.wait()} before it was ready")
        if line.startswith(READY_PREFIX):
            return line.strip()
    raise TimeoutError(f"localserving printed no readiness line within {timeout} s")


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _pump_lines(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Read stdout to its end (so the pipe never fills), handing each line to the waiting test."""
    if stream is not None:
        for line in stream:
            lines.put(line)
    lines.put(None)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's INFO lines only bury the server's own log
    return env


def reload_config(address: str, config_text: str, timeout: float = RELOAD_TIMEOUT_SECONDS) -> Any:
    """Send ModelServerConfig ``config_text`` (protobuf text format) to ``ModelService/HandleReloadConfigRequest``.

    Returns the ReloadConfigResponse once the server has applied it; a refused config raises
    ``grpc.RpcError`` with TF Serving's status code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
    UNKNOWN) and the serving is left as it was. A text that does not parse raises
    ``google.protobuf.text_format.ParseError`` before anything is sent.
    """
    # Imported here, after app.backend.protos has registered the proto packages without TensorFlow's runtime.
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text, request.config)
    with grpc.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        return stub.HandleReloadConfigRequest(request, timeout=timeout)


Started = TypeVar("Started")


@contextmanager
def side_by_side(
    starts: Mapping[str, Callable[[], Started]], stop: Callable[[Started], None]
) -> Iterator[dict[str, Started]]:
    """Runs every start at once (each backend imports TensorFlow, seconds apiece) and yields what they started,
    by name; stops all of it after. If one fails, the ones that started are stopped and the first error raised."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {name: pool.submit(start) for name, start in starts.items()}
    started = {name: future.result() for name, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            future.result()  # raises the first start-up failure
        yield started
    finally:
        for item in started.values():
            stop(item)
