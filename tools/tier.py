"""The tier (``python -m app``) as a child process: for the rollout demo, the bench and the tests that drive a tier
from another process or test its start and stop (in-process tests use ``app.serving.server`` directly)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.process import ROOT, Child, start_child

DEV_CONFIG = ROOT / "deploy" / "config.dev.yaml"
READY = re.compile(r"imagegate: ready on (http://\S+)")  # one line per worker


@dataclass
class TierProcess:
    """A running ``python -m app``."""

    child: Child

    @property
    def base_url(self) -> str:
        return self.child.match.group(1)

    @property
    def proc(self) -> subprocess.Popen[str]:
        return self.child.proc

    @property
    def output(self) -> list[str]:
        """Every line it printed so far: the status lines on stdout and the log on stderr, as they came."""
        return self.child.output

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL to its group after 10 s); its exit code."""
        return self.child.stop()


def start_tier(
    backend_address: str | None,
    *,
    config: Path = DEV_CONFIG,
    overrides: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
    workers: int = 1,
    extra_args: Sequence[str] = (),
) -> TierProcess:
    """Start ``python -m app`` on a free port and wait for its readiness line (one per worker). ``backend_address``
    None keeps the configuration's; the drain delay is 0 unless ``overrides`` set one."""
    args = [sys.executable, "-m", "app", "--config", str(config), "--port", "0", "--workers", str(workers)]
    if backend_address is not None:
        args += ["--backend", backend_address]
    # No drain delay unless asked for: stopping a tier would otherwise wait for endpoints that do not exist.
    for item in ["server.drain_delay_s=0", *overrides]:
        args += ["--set", item]
    child = start_child("tier", [*args, *extra_args], READY, count=workers, timeout=ready_timeout, env=env)
    return TierProcess(child)
