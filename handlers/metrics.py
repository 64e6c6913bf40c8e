"""GET /metrics: the Prometheus scrape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from handlers.base import BaseHandler


class MetricsHandler(BaseHandler):
    route = "metrics"

    def initialize(self, render: Callable[[], Awaitable[tuple[bytes, str]]]) -> None:
        self.scrape = render

    async def get(self) -> None:
        body, content_type = await self.scrape()
        self.set_header("Content-Type", content_type)
        self.finish(body)
