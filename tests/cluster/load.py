"""Steady load on the tier from client threads, every request's outcome kept, summarised per time window.

By default every request goes to one base URL. With ``route`` the requests go where that function says (a
test's load balancer): each request, a client keeping one keep-alive connection per address (an HTTP proxy
such as an ingress), or with ``per_connection`` each new connection, a client sending on it until it is
closed (kube-proxy, which balances connections and leaves an open one on its pod).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

REQUEST_TIMEOUT_S = 30.0

Address = tuple[str, int]
Route = Callable[[], Address | None]  # where the next request goes; None: nowhere (the request fails)


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    seconds: float
    error: str | None  # None: 200 with predictions
    address: Address | None = None  # where it was sent
    closed: bool = False  # the answer said Connection: close

    @property
    def finished(self) -> float:
        return self.started + self.seconds


@dataclass(frozen=True)
class Summary:
    label: str
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    seconds: float
    errors: tuple[str, ...]

    def line(self) -> str:
        return (
            f"{self.label:<46} {self.seconds:6.1f} s {self.requests:6d} req {self.failures:4d} failed "
            f"p50 {self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms"
        )


class SteadyLoad:
    """``clients`` threads, each sending one POST after another on its own keep-alive connection.

    A client that gets an answer saying ``Connection: close`` opens a new connection for its next request
    to that address, as HTTP asks; a client whose request failed does too.
    """

    def __init__(
        self,
        base_url: str,
        path: str,
        body: bytes,
        clients: int,
        route: Route | None = None,
        per_connection: bool = False,
    ) -> None:
        parts = urlsplit(base_url)
        fixed: Address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._route: Route = route or (lambda: fixed)
        self._per_connection = per_connection
        self._path, self._body, self._clients = path, body, clients
        self._outcomes: list[Outcome] = []
        self._done = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> SteadyLoad:
        for index in range(self._clients):
            thread = threading.Thread(target=self._client, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 5)

    def count(self) -> int:
        with self._done:
            return len(self._outcomes)

    def outcomes(self) -> list[Outcome]:
        with self._done:
            return list(self._outcomes)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> float:
        """Wait until ``condition`` holds, checked after each finished request; returns the time it held."""
        deadline = time.monotonic() + timeout
        with self._done:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting until {what}")
                self._done.wait(remaining)
        return time.monotonic()

    def summary(self, label: str, start: float, end: float) -> Summary:
        """The requests answered in ``[start, end)``: a request cut by an event fails after it, not before."""
        with self._done:
            window = [o for o in self._outcomes if start <= o.finished < end]
        latencies = sorted(o.seconds * 1000 for o in window)
        errors = tuple(o.error for o in window if o.error is not None)
        return Summary(
            label, len(window), len(errors), _percentile(latencies, 50), _percentile(latencies, 99), end - start, errors
        )

    def _client(self) -> None:
        connections: dict[Address, http.client.HTTPConnection] = {}
        headers = {"Content-Type": "application/json"}
        while not self._stopping.is_set():
            started = time.monotonic()
            error: str | None = None
            closed = False
            address = next(iter(connections)) if self._per_connection and connections else self._route()
            if address is None:
                error = "no address to send the request to"
            else:
                connection = connections.get(address)
                if connection is None:
                    connection = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT_S)
                    connections[address] = connection
                try:
                    connection.request("POST", self._path, self._body, headers)
                    response = connection.getresponse()
                    answer = response.read()
                    closed = (response.getheader("Connection") or "").lower() == "close"
                    if response.status != 200 or b'"predictions"' not in answer:
                        error = f"HTTP {response.status}: {answer[:300]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    error = repr(exc)
                if closed or error is not None:
                    connections.pop(address).close()
            outcome = Outcome(started, time.monotonic() - started, error, address, closed)
            with self._done:
                self._outcomes.append(outcome)
                self._done.notify_all()
            if address is None:
                self._stopping.wait(0.01)  # a failure was recorded; do not spin until there is an address
        for connection in connections.values():
            connection.close()


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]
