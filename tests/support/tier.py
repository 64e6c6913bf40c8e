"""Starting the tier as a real subprocess (``python -m app``) for tests that need one.

In-process tests use ``app.serving.server`` directly; this is for tests that drive the tier
from another thread or process (the browser tests) or test its start and stop.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tools.process import stop_process

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config.dev.yaml"
READY = re.compile(r"imagegate: ready on (http://\S+)")


class TierProcess:
    def __init__(self, proc: subprocess.Popen[str], base_url: str, output: list[str]) -> None:
        self.proc = proc
        self.base_url = base_url
        self.output = output

    def stop(self) -> int:
        stop_process(self.proc)
        return int(self.proc.returncode)


def start_tier(
    backend_address: str,
    *,
    config: Path = DEV_CONFIG,
    overrides: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
    workers: int = 1,
    extra_args: Sequence[str] = (),
) -> TierProcess:
    """Start ``python -m app`` on a free port and wait for its readiness line (one per worker)."""
    args = [sys.executable, "-m", "app", "--config", str(config), "--port", "0", "--backend", backend_address]
    args += ["--workers", str(workers), *extra_args]
    # No drain delay unless a test asks for one: stopping a tier would otherwise wait for endpoints that do not exist.
    for item in ["server.drain_delay_s=0", *overrides]:
        args += ["--set", item]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = READY.search(line)
            if match and not found.is_set():
                url.append(match.group(1))
                if len(url) == workers:
                    found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(ready_timeout) or len(url) < workers:
        proc.kill()
        raise RuntimeError("tier did not become ready:\n" + "".join(output))
    return TierProcess(proc, url[0], output)
