"""Liveness and readiness probes."""

from __future__ import annotations

from handlers.base import BaseHandler
from handlers.ports import ModelStatus


class LivenessHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadinessHandler(BaseHandler):
    """GET /readyz: 200 when every configured model is AVAILABLE on its backend, else 503."""

    def initialize(self, models: ModelStatus) -> None:
        self.models = models

    async def get(self) -> None:
        ready, details = await self.models.readiness()
        self.write_json({"ready": ready, "models": details}, status=200 if ready else 503)
