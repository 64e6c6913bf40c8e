"""POST /admin/models/{name}/routes/{route}:promote and /admin/models/{name}/routes:reset (docs/rollouts.md).

Served only when ``server.admin_token`` is set; every call must carry ``Authorization: Bearer <token>``,
compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from handlers.base import BaseHandler
from handlers.ports import RouteAdmin
from processing.errors import InvalidRequest, NotFound, Unauthorized


class RouteAdminHandler(BaseHandler):
    route = "admin"

    def initialize(self, routers: Mapping[str, RouteAdmin], token: str) -> None:
        self.routers = routers
        self.token = token.encode()

    def prepare(self) -> None:
        given = self.request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, self.token):
            raise Unauthorized("send Authorization: Bearer <server.admin_token>")

    def post(self, name: str, route: str | None, action: str) -> None:
        router = self.routers.get(name)
        if router is None:
            raise NotFound(f"model {name!r} has no routes")
        if action == "reset":
            router.reset()
        elif route is None:
            raise InvalidRequest("promote names the route: /admin/models/{name}/routes/{route}:promote")
        else:
            try:
                router.promote(route)
            except KeyError:
                raise NotFound(f"model {name!r} has no route {route!r}") from None
        self.write_json({"model": name, "routes": router.describe()})
