"""Liveness and readiness probes."""

from __future__ import annotations

from handlers.base import BaseHandler
from handlers.ports import ProcessLifecycle


class LivenessHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    route = "healthz"

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadinessHandler(BaseHandler):
    """GET /readyz: 200 while the process serves, 503 while it starts or drains; never asks the backend.

    The models' metadata was loaded once, before the process listened. Whether TF Serving answers now is
    not this probe's question: every replica shares the backend, so a blip there would take every pod
    out of its Service at once, and clients would get connection refused instead of the tier's 503 with
    ``Retry-After``. The backend's state is in ``/v2/health/ready`` and ``imagegate_model_available``
    (docs/operations.md).
    """

    route = "readyz"
    probe = True

    def initialize(self, process: ProcessLifecycle) -> None:
        self.process = process

    def get(self) -> None:
        ready = self.process.ready
        self.write_json({"ready": ready, "state": self.process.phase_name}, status=200 if ready else 503)
