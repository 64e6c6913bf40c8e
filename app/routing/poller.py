"""Which route targets TF Serving has AVAILABLE, asked by each worker for itself every ``routes.poll_s``.

A version target is AVAILABLE when GetModelStatus for that version says so; a label target when
GetModelMetadata for the label answers, since TF Serving resolves a label only to a loaded version. TF
Serving (and tools/localserving) marks a version AVAILABLE only after its warm-up records have run, so
AVAILABLE also means warmed. A target that is not AVAILABLE waits: weight 0, ``state: "waiting"``
(app/routing/router.py). A call that fails otherwise (the backend unreachable, a timeout, any other error)
changes nothing: the last known state stays, and a target never seen AVAILABLE keeps waiting. With
``--workers N`` each worker polls for itself, as it routes for itself. The first round runs before the
routes serve (``build_services`` awaits it).

With the answer cache on, the models without routes are polled too, every ``routes.poll_s``: which versions
TF Serving has AVAILABLE (``ServedVersions``), since a request that names no version answers from the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from app.backend.tfserving import TFServingClient
from app.backend.types import ModelRef
from app.errors import ModelNotFound
from app.models import ServedModel
from app.routing.router import ModelRouter, ServedVersions
from app.settings import RouteTarget
from processing.errors import GatewayError, InternalError

log = logging.getLogger("imagegate")

PROBE_TIMEOUT_S = 2.0


class TargetPoller:
    def __init__(
        self,
        models: Mapping[str, ServedModel],
        routers: Mapping[str, ModelRouter],
        client: TFServingClient,
        versions: ServedVersions | None = None,
    ) -> None:
        self._models = models
        self._routers = routers
        self._client = client
        self._versions = versions  # the models without routes, watched for the answer cache; None: not watched
        self._unrouted = [name for name in versions.poll_s if name not in routers] if versions is not None else []
        self._known: set[tuple[str, str]] = set()  # (model, target) with a definite answer once
        self._tasks: list[asyncio.Task[None]] = []

    async def poll(self) -> None:
        """One round: every target of every model with routes, concurrently."""
        await asyncio.gather(
            *(self._poll_model(router) for router in self._routers.values()),
            *(self._poll_versions(name) for name in self._unrouted),
        )

    def start(self) -> None:
        """A round every ``routes.poll_s`` of each model (none for a model with ``poll_s: 0``)."""
        for router in self._routers.values():
            if router.routes.poll_s > 0:
                self._tasks.append(asyncio.get_running_loop().create_task(self._every(router)))
        for name in self._unrouted:
            if self._settings_poll_s(name) > 0:
                self._tasks.append(asyncio.get_running_loop().create_task(self._every_versions(name)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _every(self, router: ModelRouter) -> None:
        while True:
            await asyncio.sleep(router.routes.poll_s)
            await self._poll_model(router)

    async def _every_versions(self, name: str) -> None:
        while True:
            await asyncio.sleep(self._settings_poll_s(name))
            await self._poll_versions(name)

    def _settings_poll_s(self, name: str) -> float:
        assert self._versions is not None
        return self._versions.poll_s[name]

    async def _poll_versions(self, name: str) -> None:
        """The versions of model ``name`` TF Serving has AVAILABLE, told to ``ServedVersions``; unchanged on failure."""
        assert self._versions is not None
        model = self._models[name]
        try:
            statuses = await self._client.status(model.address, ModelRef(model.served_name), PROBE_TIMEOUT_S)
        except GatewayError as exc:
            log.info("versions of %s unknown (%s): keeping the last seen", name, exc.code)
            return
        self._versions.saw(name, frozenset(s.version for s in statuses if s.state == "AVAILABLE"))

    async def _poll_model(self, router: ModelRouter) -> None:
        model = self._models[router.model]
        targets = router.routes.targets
        answers = await asyncio.gather(*(self._available(model, router, target) for target in targets))
        for target, available in zip(targets, answers, strict=True):
            key = (router.model, target.name)
            if available is not None:
                self._known.add(key)
                router.set_available(target.name, available)
            elif key not in self._known:
                router.set_available(target.name, False)

    async def _available(self, model: ServedModel, router: ModelRouter, target: RouteTarget) -> bool | None:
        """Whether TF Serving has ``target`` AVAILABLE; None when it could not tell.

        A label's version is told to the router: a label moved to another version changes what the target answers.
        """
        try:
            if target.label is not None:  # a label resolves only to a loaded version, else NOT_FOUND or refused
                found = await self._client.metadata(model.address, model.ref(label=target.label), PROBE_TIMEOUT_S)
                router.resolved(target.name, found.version)
                return True
            statuses = await self._client.status(
                model.address, ModelRef(model.served_name, target.version), PROBE_TIMEOUT_S
            )
        except (ModelNotFound, InternalError):
            return False
        except GatewayError as exc:
            log.info("status of %s route %s unknown (%s): keeping its last state", model.name, target.name, exc.code)
            return None
        return any(s.version == target.version and s.state == "AVAILABLE" for s in statuses)
