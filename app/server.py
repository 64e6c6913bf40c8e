"""Composition root: builds the services from settings and wires them into the routes."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web
from tornado.netutil import Resolver, bind_sockets

from app.batcher import MicroBatcher
from app.catalog import Catalog
from app.connpool import PoolLimits
from app.fetcher import AddressPolicy, FetchLimits, UrlFetcher
from app.pipeline import Admission, DirectPredictor, Pipeline, Predictor, ServedModel
from app.registry import resolve_models
from app.settings import Settings
from app.tfserving import TFServingClient
from handlers.base import NotFoundHandler, log_request
from handlers.health import LivenessHandler, ReadinessHandler
from handlers.models import ModelListHandler, ModelMetadataHandler, ModelStatusHandler
from handlers.page import PageFileHandler
from handlers.ports import RequestLimits
from handlers.predict import PredictHandler
from processing.image import DecodeLimits

STATIC_DIR = Path(__file__).parent / "static"
MODEL = r"/v1/models/([^/:]+)"
VERSION = r"(?:/versions/([0-9]{1,18}))?"


@dataclass
class Services:
    """Everything the routes depend on; closed together on shutdown."""

    settings: Settings
    client: TFServingClient
    fetcher: UrlFetcher
    executor: ThreadPoolExecutor
    pipeline: Pipeline
    catalog: Catalog

    async def close(self) -> None:
        self.fetcher.close()
        await self.client.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def make_fetcher(settings: Settings, resolver: Resolver | None = None) -> UrlFetcher:
    f = settings.fetch
    policy = AddressPolicy(f.allow_cidrs, f.deny_cidrs, f.allow_hosts, f.deny_hosts)
    limits = FetchLimits(
        connect_timeout_s=f.connect_timeout_s,
        total_timeout_s=f.total_timeout_s,
        max_bytes=f.max_bytes,
        max_redirects=f.max_redirects,
        max_concurrent=f.max_concurrent,
        content_types=f.content_types,
    )
    pool = PoolLimits(max_idle_per_origin=f.keepalive_per_host, idle_timeout_s=f.keepalive_idle_s)
    return UrlFetcher(policy, limits, resolver, pool)


def make_predictor(client: TFServingClient, models: dict[str, ServedModel]) -> Predictor:
    """The micro-batcher if a model batches (max_batch_size > 1); it sends the others direct."""
    if any(model.max_batch_size > 1 for model in models.values()):
        return MicroBatcher(client)
    return DirectPredictor(client)


async def build_services(settings: Settings, resolver: Resolver | None = None) -> Services:
    """Connect to the backend, complete the models from their metadata, and build the pipeline."""
    client = TFServingClient(settings.backend.load_balancing)
    try:
        models = await resolve_models(settings, client)
    except BaseException:
        await client.close()
        raise
    threads = settings.server.decode_threads or os.cpu_count() or 2
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
    fetcher = make_fetcher(settings, resolver)
    pipeline = Pipeline(
        models=models,
        fetcher=fetcher,
        predictor=make_predictor(client, models),
        executor=executor,
        decode_limits=DecodeLimits(settings.decode.max_pixels, settings.decode.max_side),
        backend_timeout_s=settings.backend.timeout_s,
        fetch_concurrency_per_request=settings.fetch.max_concurrent_per_request,
        admission=Admission(settings.server.max_in_flight_images, settings.server.retry_after_s),
    )
    return Services(settings, client, fetcher, executor, pipeline, Catalog(models, client))


def make_app(services: Services) -> tornado.web.Application:
    s = services.settings.server
    limits = RequestLimits(
        s.max_json_bytes, s.max_upload_bytes, s.max_body_bytes, s.max_parts, s.max_images_per_request
    )
    predict = {"pipeline": services.pipeline, "limits": limits}
    catalog = {"catalog": services.catalog}
    routes: list[Any] = [
        (rf"{MODEL}(?:/versions/([0-9]{{1,18}})|/labels/([^/:]+))?:predict", PredictHandler, predict),
        (r"/v1/models/?", ModelListHandler, {**catalog, "limits": limits}),
        (rf"{MODEL}{VERSION}/metadata", ModelMetadataHandler, catalog),
        (rf"{MODEL}{VERSION}/?", ModelStatusHandler, catalog),
        (r"/healthz", LivenessHandler),
        (r"/readyz", ReadinessHandler, catalog),
    ]
    if s.page:
        routes += [
            (
                r"/()",
                PageFileHandler,
                {"path": str(STATIC_DIR), "default_filename": "index.html"},
            ),
            (r"/static/(.*)", PageFileHandler, {"path": str(STATIC_DIR)}),
        ]
    return tornado.web.Application(
        routes, default_handler_class=NotFoundHandler, xsrf_cookies=False, log_function=log_request
    )


def listen(
    app: tornado.web.Application, settings: Settings, sockets: list[socket.socket] | None = None
) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serve on ``sockets`` (pre-forked workers share them) or the configured address; returns the real port."""
    s = settings.server
    server = tornado.httpserver.HTTPServer(
        app,
        idle_connection_timeout=s.idle_connection_timeout_s,
        body_timeout=s.body_timeout_s,
        max_body_size=s.max_body_bytes + (1 << 20),
        max_header_size=64 * 1024,
        xheaders=False,
    )
    sockets = sockets or bind_sockets(s.port, s.host)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])
