"""GET /openapi.json: the OpenAPI document of the running configuration (assembled in ``app/openapi/``)."""

from __future__ import annotations

import json
from typing import Any

from handlers.base import BaseHandler


class OpenApiHandler(BaseHandler):
    route = "openapi"

    def initialize(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document, separators=(",", ":"))

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(self.body)
