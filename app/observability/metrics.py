"""The tier's Prometheus metrics, observed from each request's context when it ends.

Names follow Prometheus conventions (base units, ``_total`` counters). Label values come only
from configured model names, fixed route names, HTTP status codes, item outcome codes (our
error codes) and the versions TF Serving answers with: nothing a client writes becomes a label.

With ``--workers N`` the values live in files under ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode, switched on by ``use_multiprocess`` before the workers fork), and any worker's
scrape adds up all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from processing.context import RequestContext

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from well under a millisecond (a cached decode) to the backend's longest deadlines.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def use_multiprocess(directory: Path) -> None:
    """Keep metric values in files under ``directory`` from here on (call before the workers fork)."""
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)


class Metrics:
    def __init__(self, in_flight_limit: int) -> None:
        self._multiprocess = _multiprocess_dir() is not None
        # One registry per tier, so several tiers in one test process do not share counts.
        self.registry: CollectorRegistry | None = None if self._multiprocess else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imagegate_requests_total", "HTTP requests answered", ["route", "model", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "imagegate_request_duration_seconds",
            "Whole requests, from the handler's start to the answer",
            ["route", "model", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.items = Counter(
            "imagegate_items_total", "Images by outcome: ok or the item's error code", ["model", "outcome"], registry=r
        )
        self.shed = Counter(
            "imagegate_requests_shed_total", "Requests refused at capacity (503 overloaded)", registry=r
        )
        self.backend_failures = Counter(
            "imagegate_backend_failures_total", "Failed backend calls by our error code", ["code"], registry=r
        )
        self.backend_retries = Counter(
            "imagegate_backend_retries_total", "Backend calls made again after an UNAVAILABLE answer", registry=r
        )
        self.rollbacks = Counter(
            "imagegate_rollbacks_total", "Canary routes rolled back automatically", ["model", "route"], registry=r
        )
        self.canary_fallbacks = Counter(
            "imagegate_canary_fallbacks_total",
            "Requests a canary route failed, answered again by a route that is no canary",
            ["model", "route", "code"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "imagegate_shadow_requests_total",
            "Shadow Predicts by outcome (answers dropped)",
            ["model", "outcome"],
            registry=r,
        )
        self.shadow_seconds = self._stage("shadow_predict", "One shadow Predict", ["model"])
        self.downloaded = Counter(
            "imagegate_downloaded_bytes_total", "Bytes of images downloaded from URLs", registry=r
        )
        self.download_seconds = self._stage("download", "One URL's download, redirects included", [])
        self.upload_seconds = self._stage("upload_read", "Reading one request's uploaded body", [])
        self.decode_seconds = self._stage("decode", "Decoding and preprocessing one image (queue wait included)", [])
        self.batch_wait_seconds = self._stage("batch_wait", "Wait in the micro-batcher before the Predict", ["model"])
        self.predict_seconds = self._stage(
            "backend_predict", "One request's Predict at the backend", ["model", "version"]
        )
        self.postprocess_seconds = self._stage("postprocess", "Postprocessing one request's outputs", ["model"])
        self.batch_size = Histogram(
            "imagegate_batch_size", "Rows in each micro-batched Predict", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.in_flight = Gauge(
            "imagegate_images_in_flight",
            "Images admitted and not yet answered",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight_limit = Gauge(
            "imagegate_images_in_flight_limit",
            "The admission bound (server.max_in_flight_images), per process",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.memory_budget = Gauge(
            "imagegate_memory_budget_bytes",
            "Bytes requests may hold at once (server.memory_budget_bytes or derived), summed over processes",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_lookups = Counter(
            "imagegate_cache_lookups_total",
            "Images looked up in the answer cache (cache.max_bytes), by result: hit or miss",
            ["model", "result"],
            registry=r,
        )
        self.cache_evictions = Counter(
            "imagegate_cache_evictions_total", "Answer cache entries evicted for room (least recently used)", registry=r
        )
        self.cache_bytes = Gauge(
            "imagegate_cache_bytes",
            "Bytes the answer cache holds, part of imagegate_memory_held_bytes",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.memory_held = Gauge(
            "imagegate_memory_held_bytes",
            "Bytes reserved by requests in flight (bodies, downloads, decoded images, tensors)",
            registry=r,
            multiprocess_mode="livesum",
        )
        # With workers, the value the last scrape wrote (in whichever worker) wins: a worker's older 1 must not
        # hide the backend going away.
        self.model_available = Gauge(
            "imagegate_model_available",
            "1 when the backend reports the model version AVAILABLE",
            ["model", "version"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.lingering = Gauge(
            "imagegate_lingering_connections",
            "Connections answered before their body arrived, reading and dropping it before they close",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.lingering_closes = Counter(
            "imagegate_lingering_closes_total",
            "Lingering closes by how they ended: client, time, idle, bytes, error, cap (closed at once), shutdown",
            ["end"],
            registry=r,
        )
        self.build_info = Gauge(
            "imagegate_build_info", "The tier's version", ["version"], registry=r, multiprocess_mode="max"
        )
        self.in_flight_limit.set(in_flight_limit)
        self.build_info.labels(_package_version()).set(1)
        self._unlabelled_stages = {
            "download": self.download_seconds,
            "upload": self.upload_seconds,
            "decode": self.decode_seconds,
        }
        self._versions_seen: dict[str, set[int]] = {}
        self._requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}

    def _stage(self, stage: str, meaning: str, labels: list[str]) -> Histogram:
        return Histogram(
            f"imagegate_{stage}_duration_seconds", meaning, labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def observe_request(self, context: RequestContext, status: int, seconds: float, shed: bool) -> None:
        """Everything one finished request tells: its status and duration, its stages and items."""
        model = context.model or ""
        counted, timed = self._request_children(context.route, model, status)
        counted.inc()
        timed.observe(seconds)
        if shed:
            self.shed.inc()
        for outcome, count in context.outcomes.items():
            self._child(self.items, model, outcome).inc(count)
        if context.bytes_downloaded:
            self.downloaded.inc(context.bytes_downloaded)
        version = str(context.version) if context.version is not None else ""
        for interval in context.intervals:
            stage = self._stage_child(interval.stage, model, version)
            if stage is not None:
                stage.observe(interval.end - interval.start)

    # Label children are looked up once per label values and kept: ``.labels()`` costs a few
    # microseconds a call, a dozen calls a request. The keys come from closed sets, so the caches stay small.

    def _request_children(self, route: str, model: str, status: int) -> tuple[Counter, Histogram]:
        key = (route, model, status)
        found = self._requests.get(key)
        if found is None:
            found = self._requests[key] = (
                self.requests.labels(route, model, str(status)),
                self.request_seconds.labels(route, model, f"{status // 100}xx"),
            )
        return found

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def _stage_child(self, stage: str, model: str, version: str) -> Histogram | None:
        if stage in self._unlabelled_stages:
            return self._unlabelled_stages[stage]
        if stage == "batch_wait":
            return self._child(self.batch_wait_seconds, model)  # type: ignore[no-any-return]
        if stage == "predict":
            return self._child(self.predict_seconds, model, version)  # type: ignore[no-any-return]
        if stage == "postprocess":
            return self._child(self.postprocess_seconds, model)  # type: ignore[no-any-return]
        return None

    def watch_memory_held(self, held: Callable[[], float]) -> Callable[[int], None] | None:
        """What the memory budget calls on each change of its held bytes, if anything.

        In one process the gauge reads ``held`` when scraped, so the budget's dozen changes a request set nothing;
        with workers each change is written to the worker's file (a function cannot be read across processes).
        """
        if self._multiprocess:
            return self.memory_held.set
        self.memory_held.set_function(held)
        return None

    def observe_batch(self, model: str, rows: int) -> None:
        self._child(self.batch_size, model).observe(rows)

    def observe_shadow(self, model: str, outcome: str, seconds: float) -> None:
        self.shadow_requests.labels(model, outcome).inc()
        self.shadow_seconds.labels(model).observe(seconds)

    def count_cache_lookups(self, model: str, hits: int, misses: int) -> None:
        if hits:
            self._child(self.cache_lookups, model, "hit").inc(hits)
        if misses:
            self._child(self.cache_lookups, model, "miss").inc(misses)

    def count_cache_evictions(self, entries: int) -> None:
        self.cache_evictions.inc(entries)

    def count_rollback(self, model: str, route: str) -> None:
        self.rollbacks.labels(model, route).inc()

    def lingering_now(self, count: int) -> None:
        self.lingering.set(count)

    def lingering_ended(self, end: str) -> None:
        """A lingering close ended (``end``: one of app/serving/lingering.py's ENDS)."""
        self._child(self.lingering_closes, end).inc()

    def count_canary_fallback(self, model: str, route: str, code: str) -> None:
        self._child(self.canary_fallbacks, model, route, code).inc()

    def count_backend_failure(self, code: str) -> None:
        self.backend_failures.labels(code).inc()

    def set_model_states(self, states: dict[str, dict[int, str]]) -> None:
        """Each model's versions as the backend reports them; a version it no longer reports (or a backend that
        does not answer, an empty mapping) is 0, so an alert on the gauge sees the backend go away."""
        for model, versions in states.items():
            seen = self._versions_seen.setdefault(model, set())
            seen.update(versions)
            for number in seen:
                self.model_available.labels(model, str(number)).set(1 if versions.get(number) == "AVAILABLE" else 0)

    def render(self) -> tuple[bytes, str]:
        """The scrape's body and Content-Type; with workers, every worker's values added up."""
        directory = _multiprocess_dir()
        if directory is None:
            assert self.registry is not None
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _package_version() -> str:
    try:
        return version("imagegate")
    except PackageNotFoundError:
        return "unknown"
