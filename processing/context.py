"""One request's context: its id, its model and answered version, when each stage ran, how its items ended.

The handler creates it, the pipeline fills it in, and the access log, the metrics, the
``Server-Timing`` header and the trace spans all read it afterwards: no stage imports a metrics or
tracing library. Plain data, at the bottom of the dependency order so all three layers share it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# Stages in the order a request runs them; Server-Timing lists them so.
STAGES = ("upload", "download", "decode", "batch_wait", "predict", "postprocess")


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` if it is 1 to 128 safe characters, else a new one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def traceparent_from(header: str | None) -> str | None:
    """A W3C ``traceparent`` header worth passing on (version, trace id, parent id, flags), else None."""
    value = (header or "").strip().lower()
    return value if _TRACEPARENT.fullmatch(value) else None


@dataclass(frozen=True)
class Interval:
    """One stage run: for one item (``item`` is its index) or for the whole request (``item`` is None)."""

    stage: str
    item: int | None
    start: float  # time.perf_counter()
    end: float


@dataclass
class RequestContext:
    request_id: str
    traceparent: str | None = None
    route: str = "other"  # a fixed name per route, for labels
    headers: Mapping[str, str] = field(default_factory=dict)  # the request's, e.g. for a sticky routing key
    target: str | None = None  # the model route that answered (app/routing), if any: stable for a canary's failure
    model: str | None = None  # set only once the name is known to be a configured model
    version: int | None = None  # the version that answered
    intervals: list[Interval] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # "ok" or the item's error code
    bytes_downloaded: int = 0
    started: float = field(default_factory=time.perf_counter)
    started_ns: int = field(default_factory=time.time_ns)  # wall clock at ``started``, for trace spans

    def record(self, stage: str, start: float, end: float, item: int | None = None) -> None:
        self.intervals.append(Interval(stage, item, start, end))

    @contextmanager
    def timed(self, stage: str, item: int | None = None) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, start, time.perf_counter(), item)

    def stage_seconds(self) -> dict[str, float]:
        """Each stage's wall time within the request; together never more than the request's.

        Stages may overlap: downloads run concurrently, and a stage may start before an earlier one ends.
        Each moment counts once, for the earliest stage (in ``STAGES`` order) running then, so a
        download stage lasts from the first download's start to the last one's end, and decoding
        counts only while no download runs.
        """
        order = {stage: rank for rank, stage in enumerate(STAGES)}
        events = sorted(
            (t, delta, order[i.stage])
            for i in self.intervals
            if i.stage in order
            for t, delta in ((i.start, 1), (i.end, -1))
        )
        running = [0] * len(STAGES)
        totals = [0.0] * len(STAGES)
        previous = None
        for t, delta, rank in events:
            if previous is not None:
                active = next((r for r, n in enumerate(running) if n), None)
                if active is not None:
                    totals[active] += t - previous
            running[rank] += delta
            previous = t
        return {stage: totals[rank] for stage, rank in order.items() if any(i.stage == stage for i in self.intervals)}

    def wall_ns(self, perf: float) -> int:
        """A ``time.perf_counter()`` reading of this request as wall-clock nanoseconds."""
        return self.started_ns + int((perf - self.started) * 1e9)


def server_timing(context: RequestContext) -> str:
    """The ``Server-Timing`` header: each stage's wall time within the request, then the total, in ms."""
    stages = [f"{stage};dur={seconds * 1000:.2f}" for stage, seconds in context.stage_seconds().items()]
    total = (time.perf_counter() - context.started) * 1000
    return ", ".join([*stages, f"total;dur={total:.2f}"])
