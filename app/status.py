"""What the model endpoints and /readyz answer: the configured models, and their status and metadata on TF Serving."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelRef, VersionStatus
from app.models import ModelRegistry
from app.routing.router import ModelRouter
from processing.errors import GatewayError

STATUS_TIMEOUT_S = 2.0


class ModelStatus:
    """Listing, status, metadata and readiness of the configured models."""

    def __init__(self, models: ModelRegistry, client: TFServingClient, routers: Mapping[str, ModelRouter]) -> None:
        self._models = models
        self._client = client
        self._routers = routers

    def describe(self) -> list[dict[str, Any]]:
        return [model.describe() for model in self._models.values()]

    async def status(self, name: str, version: int | None) -> dict[str, Any]:
        model = self._models.get_model(name)
        statuses = await self._client.status(model.address, ModelRef(model.served_name, version), STATUS_TIMEOUT_S)
        answer: dict[str, Any] = {"model_version_status": [_status_json(s) for s in statuses]}
        router = self._routers.get(model.name)
        if router is not None and version is None:
            answer["routes"] = router.describe()
        return answer

    async def metadata(self, name: str, version: int | None) -> dict[str, Any]:
        model = self._models.get_model(name)
        meta = await self._client.metadata(model.address, ModelRef(model.served_name, version), STATUS_TIMEOUT_S)
        return {"model_spec": {"name": name, "version": meta.version}, "metadata": meta.raw}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        names = list(self._models)
        results = await asyncio.gather(*(self._is_available(name) for name in names))
        details = dict(zip(names, results, strict=True))
        return all(state == "AVAILABLE" for state in details.values()), details

    async def version_states(self) -> dict[str, dict[int, str]]:
        """Each model's versions on its backend and their states (a model the backend does not answer for: none)."""
        names = list(self._models)
        answers = await asyncio.gather(*(self._versions(name) for name in names), return_exceptions=True)
        return {
            name: {s.version: s.state for s in statuses}
            for name, statuses in zip(names, answers, strict=True)
            if not isinstance(statuses, BaseException)
        }

    async def _versions(self, name: str) -> list[VersionStatus]:
        model = self._models[name]
        return await self._client.status(model.address, ModelRef(model.served_name), STATUS_TIMEOUT_S)

    async def _is_available(self, name: str) -> str:
        model = self._models[name]
        try:
            statuses = await self._client.status(model.address, ModelRef(model.served_name), STATUS_TIMEOUT_S)
        except GatewayError as exc:
            return exc.code
        return "AVAILABLE" if any(s.state == "AVAILABLE" for s in statuses) else "NOT_AVAILABLE"


def _status_json(status: VersionStatus) -> dict[str, Any]:
    return {
        "version": str(status.version),
        "state": status.state,
        "status": {
            "error_code": "OK" if status.error_code == 0 else str(status.error_code),
            "error_message": status.error_message,
        },
    }
