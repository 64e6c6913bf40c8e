"""What happens when a request ends: its metrics and its access-log line, both read from its context."""

from __future__ import annotations

from collections.abc import Collection

from tornado.web import RequestHandler

from app.admission import Admission
from app.observability.logs import access_level, log_access
from app.observability.metrics import Metrics


class RequestObserver:
    """Tornado's ``log_function``: called once per request, after its answer is written."""

    def __init__(self, metrics: Metrics | None, admission: Admission, models: Collection[str]) -> None:
        self.metrics = metrics
        self.admission = admission
        self.models = frozenset(models)

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
        log_access(handler, access_level(handler))
