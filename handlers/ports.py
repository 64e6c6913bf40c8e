"""What the handlers need from the application, as protocols and plain values.

Handlers receive objects satisfying these through ``initialize()``; they never import
``app`` (dependencies point one way: app -> handlers -> processing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from processing.context import RequestContext
from processing.kinds.base import OutputKind, TensorDescription
from processing.prediction import PredictCall, Prediction


@dataclass(frozen=True)
class RequestLimits:
    max_json_bytes: int
    max_upload_bytes: int  # per uploaded file or image body
    max_body_bytes: int  # whole multipart body
    max_parts: int
    max_images: int


class PredictPipeline(Protocol):
    async def run(self, call: PredictCall, context: RequestContext, hold: HeldMemory | None = None) -> Prediction:
        """``hold``: the request's body in the memory budget, grown by the pipeline; its opener releases it."""
        ...


class ProcessLifecycle(Protocol):
    """The process's phase and its requests in flight (``app/serving/state.py``'s ``ProcessState``)."""

    @property
    def ready(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    @property
    def phase_name(self) -> str: ...

    def request_started(self) -> None: ...

    def request_finished(self) -> None: ...


class RouteAdmin(Protocol):
    """A model's routes, as the admin endpoints change them (``app/routing/router.py``)."""

    def reset(self) -> None: ...

    def promote(self, name: str) -> None: ...

    def describe(self) -> list[dict[str, Any]]: ...


class ModelCatalog(Protocol):
    """The configured models, and their status and metadata on TF Serving (``app/status.py``'s ``ModelStatus``)."""

    def describe(self) -> list[dict[str, Any]]: ...

    async def status(self, name: str, version: int | None) -> dict[str, Any]: ...

    async def metadata(self, name: str, version: int | None) -> dict[str, Any]: ...

    async def readiness(self) -> tuple[bool, dict[str, Any]]: ...


@dataclass(frozen=True)
class TensorModel:
    """How the Open Inference Protocol presents a configured model (``handlers/oip.py``)."""

    name: str
    kind: OutputKind
    outputs: tuple[TensorDescription, ...]  # the model's tensors as the tier answers them, then its kind's own

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


class HeldMemory(Protocol):
    """One request's share of the process's memory budget (``app/memory.py`` ``Reservation``).

    Grown before the bytes it counts are allocated (``grow`` waits for room, then raises the budget's
    ``Overloaded``), shrunk as they are let go, released when the request ends.
    """

    nbytes: int

    async def grow(self, nbytes: int) -> None: ...

    def shrink(self, nbytes: int) -> None: ...

    def release(self) -> None: ...


class MemoryGate(Protocol):
    """The process's memory budget (``app/memory.py``): what a body intake reserves its body in."""

    def open(self) -> HeldMemory: ...

    async def reserve(self, nbytes: int) -> HeldMemory: ...
