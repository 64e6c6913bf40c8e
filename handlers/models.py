"""Model listing, status and metadata, as TF Serving's REST API lays them out."""

from __future__ import annotations

from handlers.base import BaseHandler
from handlers.ports import ModelStatus, RequestLimits


class ModelListHandler(BaseHandler):
    """GET /v1/models: the models this tier serves and the request limits, what the browser page needs."""

    route = "models"

    def initialize(self, models: ModelStatus, limits: RequestLimits) -> None:
        self.models = models
        self.limits = limits

    def get(self) -> None:
        limits = {"max_upload_bytes": self.limits.max_upload_bytes, "max_images_per_request": self.limits.max_images}
        self.write_json({"models": self.models.describe(), "limits": limits})


class ModelStatusHandler(BaseHandler):
    """GET /v1/models/{name}[/versions/{n}]: ModelService.GetModelStatus."""

    route = "model_status"

    def initialize(self, models: ModelStatus) -> None:
        self.models = models

    async def get(self, name: str, version: str | None = None) -> None:
        self.write_json(await self.models.status(name, int(version) if version else None))


class ModelMetadataHandler(BaseHandler):
    """GET /v1/models/{name}[/versions/{n}]/metadata: PredictionService.GetModelMetadata."""

    route = "model_metadata"

    def initialize(self, models: ModelStatus) -> None:
        self.models = models

    async def get(self, name: str, version: str | None = None) -> None:
        self.write_json(await self.models.metadata(name, int(version) if version else None))
