"""``python -m tools.localserving`` as a child process: the local backend of ``make run``, the rollout demo, the
bench and the tests.

``start_local_backend`` returns once the server has printed its readiness line (every model loaded, port bound);
``LocalBackend.stop`` sends SIGTERM and insists on a clean exit. ``reload_config`` sends a new model config to a
running backend (or to TF Serving), as an operator would.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc

from app.backend.protos import model_service_pb2_grpc
from tools.localserving.transport import READY_PREFIX
from tools.process import STOP_GRACE_S, Child

READY = re.compile(rf"^{re.escape(READY_PREFIX)}(\S+)")
# A reload that adds models answers once they are loaded: seconds each, more on a busy machine.
RELOAD_TIMEOUT_SECONDS = 120.0


class LocalBackend(Child):
    """A running ``python -m tools.localserving``."""

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as announced."""
        return self.match.group(1)

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def ready_line(self) -> str:
        return self.match.string.strip()

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, wait; 0, or RuntimeError unless it exited 0 within ``grace_s`` (it is killed after that)."""
        code = super().stop(grace_s)
        if code == -signal.SIGKILL:
            raise RuntimeError(f"localserving ignored SIGTERM for {grace_s:g} s and was killed\n{self.logs()}")
        if code != 0:
            raise RuntimeError(f"localserving exited {code}\n{self.logs()}")
        return code

    def logs(self, last_chars: int = 6000) -> str:
        """The end of what the server printed, for failure messages."""
        return "".join(self.output)[-last_chars:]


def start_local_backend(
    *,
    model_config_file: Path | None = None,
    model_name: str | None = None,
    model_base_path: Path | None = None,
    port: int = 0,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 120.0,
    echo: TextIO | None = None,
) -> LocalBackend:
    """Launch ``python -m tools.localserving`` and wait for its readiness line; NotReady, with its output, if it
    exits or takes longer than ``ready_timeout``. ``echo`` gets its output as it comes (``make run``)."""
    args = ["-m", "tools.localserving", "--port", str(port)]
    if model_config_file is not None:
        args += ["--model_config_file", str(model_config_file)]
    if model_name is not None:
        args += ["--model_name", model_name]
    if model_base_path is not None:
        args += ["--model_base_path", str(model_base_path)]
    # TensorFlow's INFO lines only bury the server's own log.
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1")}
    command = [sys.executable, *args, *extra_args]
    return LocalBackend.start("localserving", command, READY, timeout=ready_timeout, env=env, echo=echo)


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
