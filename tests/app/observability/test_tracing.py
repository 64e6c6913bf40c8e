"""Trace spans of real requests through a real tier, and no OpenTelemetry at all when tracing is off.

The tier exports over OTLP/HTTP to a receiver on loopback (the real exporter, the real wire format);
the test also adds the SDK's in-memory exporter to the tier's provider to read the spans as objects.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
import tornado.httpserver
import tornado.ioloop
import tornado.web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.netutil import bind_sockets

from app.observability.tracing import RequestTracer
from tests.conftest import Tier, TierFactory
from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.tier import ROOT

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class OtlpReceiver(tornado.web.RequestHandler):
    def initialize(self, received: list[ExportTraceServiceRequest]) -> None:
        self.received = received

    def post(self) -> None:
        self.received.append(ExportTraceServiceRequest.FromString(self.request.body))
        self.set_header("Content-Type", "application/x-protobuf")
        self.finish(b"")


class Collector:
    """An OTLP/HTTP trace receiver on loopback, in the test's IOLoop."""

    def __init__(self) -> None:
        self.received: list[ExportTraceServiceRequest] = []
        app = tornado.web.Application([(r"/v1/traces", OtlpReceiver, {"received": self.received})])
        self.server = tornado.httpserver.HTTPServer(app)
        sockets = bind_sockets(0, "127.0.0.1")
        self.server.add_sockets(sockets)
        self.endpoint = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1/traces"

    def span_names(self) -> list[str]:
        return [
            span.name
            for request in self.received
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


@pytest.fixture
def collector(io_loop: tornado.ioloop.IOLoop) -> Iterator[Collector]:
    """Listed before ``make_tier`` in the tests, so it outlives the tiers that export to it."""
    found = Collector()
    yield found
    found.server.stop()


async def traced_tier(make_tier: TierFactory, collector: Collector, *sets: str) -> tuple[Tier, InMemorySpanExporter]:
    tier = await make_tier([f"tracing.otlp_endpoint={collector.endpoint}", *sets])
    tracer = tier.services.tracer
    assert isinstance(tracer, RequestTracer)
    memory = InMemorySpanExporter()
    tracer.provider.add_span_processor(SimpleSpanProcessor(memory))
    return tier, memory


async def flush(tier: Tier) -> None:
    """Export what the tier's batch processor holds; off the loop, which serves the receiver meanwhile."""
    assert tier.services.tracer is not None
    assert await asyncio.to_thread(tier.services.tracer.provider.force_flush)


async def post(tier: Tier, path: str, body: bytes, content_type: str, headers: dict[str, str]) -> HTTPResponse:
    response = await AsyncHTTPClient().fetch(
        tier.url(path),
        method="POST",
        body=body,
        headers={"Content-Type": content_type, **headers},
        raise_error=False,
    )
    return response


def hex_id(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def split(spans: Sequence[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    return request, [s for s in spans if s is not request]


@pytest.mark.gen_test(timeout=60)
async def test_a_url_request_is_one_span_per_stage_under_the_clients_trace(
    collector: Collector, make_tier: TierFactory, images: ImageServer
) -> None:
    tier, memory = await traced_tier(make_tier, collector)
    urls = [images.url("coffee.jpg"), images.url("chelsea.jpg")]
    headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01", "X-Request-Id": "trace-test-1"}
    response = await post(tier, "/v1/models/tiny:predict", json.dumps(urls).encode(), "application/json", headers)
    assert response.code == 200, response.body

    request, stages = split(memory.get_finished_spans())
    assert request.name == "POST predict"
    assert request.context is not None and request.parent is not None
    assert hex_id(request.context.trace_id, 32) == TRACE_ID
    assert hex_id(request.parent.span_id, 16) == CLIENT_SPAN and request.parent.is_remote
    version = json.loads(response.body)["model"]["version"]
    assert dict(request.attributes or {}) == {
        "imagegate.request_id": "trace-test-1",
        "imagegate.route": "predict",
        "imagegate.model": "tiny",
        "imagegate.model_version": version,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "imagegate.items.ok": 2,
    }
    assert request.status.status_code == StatusCode.UNSET

    names = Counter(s.name for s in stages)
    assert names == {"download": 2, "decode": 2, "batch_wait": 1, "predict": 1, "postprocess": 1}
    for span in stages:
        assert span.parent is not None and span.parent.span_id == request.context.span_id
        assert span.context is not None and span.context.trace_id == request.context.trace_id
        assert request.start_time is not None and request.end_time is not None
        assert span.start_time is not None and span.end_time is not None
        assert request.start_time <= span.start_time <= span.end_time <= request.end_time
    per_item = {(s.name, (s.attributes or {}).get("imagegate.item")): s for s in stages}
    assert set(per_item) >= {("download", 0), ("download", 1), ("decode", 0), ("decode", 1)}
    for item in (0, 1):  # an image decodes after its download, and the Predict waits for both
        download, decode = per_item[("download", item)], per_item[("decode", item)]
        assert download.end_time is not None and decode.start_time is not None and decode.end_time is not None
        assert download.end_time <= decode.start_time
        predict = per_item[("predict", None)]
        assert predict.start_time is not None and decode.end_time <= predict.start_time
    assert all("imagegate.item" not in (s.attributes or {}) for s in stages if s.name not in ("download", "decode"))

    await flush(tier)  # the same spans went out over OTLP/HTTP
    assert Counter(collector.span_names()) == {"POST predict": 1, **names}


@pytest.mark.gen_test(timeout=60)
async def test_an_upload_and_a_failed_request_without_traceparent_start_their_own_traces(
    collector: Collector, make_tier: TierFactory
) -> None:
    tier, memory = await traced_tier(make_tier, collector)
    photo = (FIXTURES / "coffee.jpg").read_bytes()
    assert (await post(tier, "/v1/models/tiny:predict", photo, "image/jpeg", {})).code == 200
    request, stages = split(memory.get_finished_spans())
    assert request.parent is None
    names = Counter(s.name for s in stages)
    assert names == {"upload": 1, "decode": 1, "batch_wait": 1, "predict": 1, "postprocess": 1}
    assert [(s.attributes or {}).get("imagegate.item") for s in stages if s.name == "decode"] == [0]

    memory.clear()
    assert (await post(tier, "/v1/models/nope:predict", photo, "image/jpeg", {})).code == 404
    request, stages = split(memory.get_finished_spans())
    attributes = dict(request.attributes or {})
    assert attributes["http.response.status_code"] == 404 and "imagegate.model" not in attributes
    assert [s.name for s in stages] == ["upload"]  # read, then refused before any image work
    await flush(tier)


@pytest.mark.gen_test(timeout=60)
async def test_the_sample_ratio_applies_to_new_traces_and_the_clients_flag_to_its_own(
    collector: Collector, make_tier: TierFactory
) -> None:
    tier, memory = await traced_tier(make_tier, collector, "tracing.sample_ratio=0")
    photo = (FIXTURES / "coffee.jpg").read_bytes()
    assert (await post(tier, "/v1/models/tiny:predict", photo, "image/jpeg", {})).code == 200
    assert memory.get_finished_spans() == ()
    sampled = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    assert (await post(tier, "/v1/models/tiny:predict", photo, "image/jpeg", sampled)).code == 200
    assert len(memory.get_finished_spans()) == 6
    await flush(tier)


def test_without_an_endpoint_no_opentelemetry_module_is_ever_imported(backend: LocalBackend) -> None:
    """Every product module imported and the services built with tracing off: no ``opentelemetry`` module loaded."""
    code = f"""
import asyncio, importlib, pkgutil, sys
from app.settings import load_settings
from app.serving.server import build_services, make_app
from tests.support.tier import DEV_CONFIG

for package in ("app", "handlers", "processing"):
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if module.name not in ("app.__main__", "app.observability.tracing"):
            importlib.import_module(module.name)

async def main() -> None:
    settings = load_settings(DEV_CONFIG, {{}}, ["backend.address={backend.address}", "server.port=0"])
    services = await build_services(settings)
    assert services.tracer is None
    make_app(services)
    await services.close()

asyncio.run(main())
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")
sys.exit(f"imported: {{loaded}}" if loaded else 0)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
