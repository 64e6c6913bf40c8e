"""OpenTelemetry spans of each finished request, built from its context.

Only imported when ``tracing.otlp_endpoint`` is set (``app/serving/server.py``), so a tier without
tracing never loads OpenTelemetry. Nothing in the pipeline knows about spans: when a request ends,
its context's intervals become spans with their real start and end times, children of one request
span, whose parent is the client's W3C ``traceparent`` when it sent one.

    POST predict            (request id, route, model, version, status)
    ├── upload              (a multipart or raw body being read)
    ├── download            (one per URL; imagegate.item = the source's index)
    ├── decode              (one per image; imagegate.item)
    ├── batch_wait          (from the batch being built to the Predict being sent)
    ├── predict             (the backend's Predict)
    └── postprocess
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.settings import TracingSettings
from processing.context import RequestContext

_PROPAGATOR = TraceContextTextMapPropagator()


class RequestTracer:
    """Turns finished requests' contexts into spans and exports them over OTLP/HTTP in the background."""

    def __init__(self, settings: TracingSettings) -> None:
        ours = _package_version()
        resource = Resource.create({SERVICE_NAME: settings.service_name, SERVICE_VERSION: ours})
        sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
        # The tier's own provider, not the global one: several tiers in one test process keep theirs apart.
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        self._tracer = self.provider.get_tracer("imagegate", ours)

    def record(self, context: RequestContext, method: str, status: int) -> None:
        """The request's span and one child span per interval it recorded, with their real times."""
        parent = _PROPAGATOR.extract({"traceparent": context.traceparent}) if context.traceparent else Context()
        request = self._tracer.start_span(
            f"{method} {context.route}", parent, SpanKind.SERVER, start_time=context.started_ns
        )
        if not request.is_recording():  # not sampled: nothing to build
            return
        request.set_attributes(_request_attributes(context, method, status))
        if status >= 500:
            request.set_status(Status(StatusCode.ERROR))
        inside = trace.set_span_in_context(request)
        for interval in context.intervals:
            span = self._tracer.start_span(interval.stage, inside, start_time=context.wall_ns(interval.start))
            if interval.item is not None:
                span.set_attribute("imagegate.item", interval.item)
            span.end(context.wall_ns(interval.end))
        request.end(context.wall_ns(time.perf_counter()))

    def shutdown(self) -> None:
        """Export what is queued (blocking: call it off the event loop) and stop."""
        self.provider.shutdown()


def _request_attributes(context: RequestContext, method: str, status: int) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "imagegate.request_id": context.request_id,
        "imagegate.route": context.route,
        "http.request.method": method,
        "http.response.status_code": status,
    }
    if context.model is not None:
        attributes["imagegate.model"] = context.model
    if context.version is not None:
        attributes["imagegate.model_version"] = context.version
    for outcome, count in context.outcomes.items():
        attributes[f"imagegate.items.{outcome}"] = count
    return attributes


def _package_version() -> str:
    try:
        return version("imagegate")
    except PackageNotFoundError:
        return "unknown"
