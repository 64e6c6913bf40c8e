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
from typing import NamedTuple

MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
# Stages in the order a request runs them; Server-Timing lists them so.
STAGES = ("upload", "download", "decode", "batch_wait", "predict", "postprocess")
_RANKS = {stage: rank for rank, stage in enumerate(STAGES)}


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` if it is 1 to 128 safe characters, else a new one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def traceparent_from(header: str | None) -> str | None:
    """A W3C ``traceparent`` header worth passing on (version, trace id, parent id, flags), else None."""
    value = (header or "").strip().lower()
    return value if _TRACEPARENT.fullmatch(value) else None


class Interval(NamedTuple):
    """One stage run: for one item (``item`` is its index) or for the whole request (``item`` is None).

    A named tuple rather than a frozen dataclass: a request records a dozen, and a tuple is made in a third of
    the time.
    """

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
        events: list[tuple[float, int, int]] = []
        seen = set()
        for i in self.intervals:
            rank = _RANKS.get(i.stage)
            if rank is not None:
                seen.add(rank)
                if i.end > i.start:  # an empty one takes no moment from anyone
                    events += ((i.start, 1, rank), (i.end, -1, rank))
        events.sort()
        idle = len(STAGES)
        running = [0] * idle
        totals = [0.0] * idle
        active = idle  # the earliest stage running between the last event and this one; none: idle
        previous = 0.0
        for t, delta, rank in events:
            if active < idle:
                totals[active] += t - previous
            running[rank] += delta
            if delta > 0:
                active = min(active, rank)
            elif rank == active and not running[rank]:
                active = next((r for r in range(rank + 1, idle) if running[r]), idle)
            previous = t
        return {stage: totals[rank] for rank, stage in enumerate(STAGES) if rank in seen}

    def wall_ns(self, perf: float) -> int:
        """A ``time.perf_counter()`` reading of this request as wall-clock nanoseconds."""
        return self.started_ns + int((perf - self.started) * 1e9)


def server_timing(context: RequestContext) -> str:
    """The ``Server-Timing`` header: each stage's wall time within the request, then the total, in ms."""
    stages = [f"{stage};dur={seconds * 1000:.2f}" for stage, seconds in context.stage_seconds().items()]
    total = (time.perf_counter() - context.started) * 1000
    return ", ".join([*stages, f"total;dur={total:.2f}"])
