"""The tier (``python -m app``) as a child process: for the rollout demo, the bench and the tests that drive a tier
from another process or test its start and stop (in-process tests use ``app.serving.server`` directly)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.process import ROOT, Child

DEV_CONFIG = ROOT / "deploy" / "config.dev.yaml"
READY = re.compile(r"imagegate: ready on (http://\S+)")  # one line per worker


class TierProcess(Child):
    """A running ``python -m app``; its ``output`` has the status lines of stdout and the log of stderr."""

    @property
    def base_url(self) -> str:
        return self.match.group(1)


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
    return TierProcess.start("tier", [*args, *extra_args], READY, count=workers, timeout=ready_timeout, env=env)
