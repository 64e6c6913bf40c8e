"""Model listing, status and metadata, as TF Serving's REST API lays them out."""

from __future__ import annotations

from typing import Any

from handlers.base import BaseHandler
from handlers.ports import ModelCatalog, RequestLimits


class ModelListHandler(BaseHandler):
    """GET /v1/models: the models this tier serves and the request limits, what the browser page needs."""

    route = "models"

    def initialize(self, models: ModelCatalog, limits: RequestLimits) -> None:
        self.models = models
        self.limits = limits

    def get(self) -> None:
        limits = {"max_upload_bytes": self.limits.max_upload_bytes, "max_images_per_request": self.limits.max_images}
        self.write_json({"models": self.models.describe(), "limits": limits})


class ModelQueryHandler(BaseHandler):
    """A question about one model (or one of its versions) that the backend answers: ``ask`` says which."""

    def initialize(self, models: ModelCatalog) -> None:
        self.models = models

    async def get(self, name: str, version: str | None = None) -> None:
        self.write_json(await self.ask(name, int(version) if version else None))

    async def ask(self, name: str, version: int | None) -> dict[str, Any]:
        raise NotImplementedError


class ModelStatusHandler(ModelQueryHandler):
    """GET /v1/models/{name}[/versions/{n}]: ModelService.GetModelStatus."""

    route = "model_status"

    async def ask(self, name: str, version: int | None) -> dict[str, Any]:
        return await self.models.status(name, version)


class ModelMetadataHandler(ModelQueryHandler):
    """GET /v1/models/{name}[/versions/{n}]/metadata: PredictionService.GetModelMetadata."""

    route = "model_metadata"

    async def ask(self, name: str, version: int | None) -> dict[str, Any]:
        return await self.models.metadata(name, version)
