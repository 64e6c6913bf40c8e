"""What happens when a request ends: its metrics, its trace spans and its access-log line, all read from its context."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from tornado.web import RequestHandler

from app.admission import Admission
from app.observability.logs import access_level, log_access
from app.observability.metrics import Metrics

if TYPE_CHECKING:  # imported only when tracing is configured (app/serving/server.py)
    from app.observability.tracing import RequestTracer


class RequestObserver:
    """Tornado's ``log_function``: called once per request, after its answer is written."""

    def __init__(
        self,
        metrics: Metrics | None,
        admission: Admission,
        models: Collection[str],
        tracer: RequestTracer | None = None,
    ) -> None:
        self.metrics = metrics
        self.admission = admission
        self.models = frozenset(models)
        self.tracer = tracer

    def __call__(self, handler: RequestHandler) -> None:
        context = getattr(handler, "context", None)  # Tornado's own error and redirect handlers have none
        if context is not None and context.model is None:
            # Refused before the pipeline looked the model up: the path names it, if it is a configured one.
            args = getattr(handler, "path_args", None)  # unset when the path did not decode
            named = args[0] if args else None
            context.model = named if named in self.models else None
        if self.metrics is not None and context is not None:
            shed = bool(getattr(handler, "shed", False))
            self.metrics.observe_request(context, handler.get_status(), handler.request.request_time(), shed)
            self.metrics.in_flight.set(self.admission.in_flight)
        if self.tracer is not None and context is not None:
            self.tracer.record(context, handler.request.method or "", handler.get_status())
        log_access(handler, access_level(handler))
