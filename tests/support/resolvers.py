"""Name resolvers for tests: answers from a table instead of DNS."""

from __future__ import annotations

import socket
from typing import Any

from tornado.netutil import Resolver


class TableResolver(Resolver):
    """Answers names from a dict; a missing name fails like DNS does."""

    def initialize(self, table: dict[str, list[tuple[int, Any]]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return self.table[host]
