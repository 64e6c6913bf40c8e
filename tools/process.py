"""Stopping a child process the way every tool and test does: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> bool:
    """Stop ``proc``; True if it had exited or exited on SIGTERM within ``grace_s``, False if it was killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True
