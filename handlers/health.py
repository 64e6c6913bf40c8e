"""Liveness and readiness probes."""

from __future__ import annotations

from handlers.base import BaseHandler
from handlers.ports import ModelCatalog, ProcessLifecycle


class LivenessHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    route = "healthz"

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadinessHandler(BaseHandler):
    """GET /readyz: 200 when the process is serving and every configured model is AVAILABLE, else 503.

    While the process drains it answers 503 at once, without asking the backend: the endpoint
    controller takes the pod out of rotation while it still serves what it was sent.
    """

    route = "readyz"

    def initialize(self, models: ModelCatalog, process: ProcessLifecycle) -> None:
        self.models = models
        self.process = process

    async def get(self) -> None:
        if not self.process.ready:
            self.write_json({"ready": False, "state": self.process.phase_name}, status=503)
            return
        ready, details = await self.models.readiness()
        self.write_json({"ready": ready, "models": details}, status=200 if ready else 503)
