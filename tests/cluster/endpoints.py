"""A test's load balancer that follows readiness as Kubernetes endpoints do.

Each tier added is polled on ``GET /readyz`` every ``period_s`` on a new connection, as the kubelet's
readiness probe does; an answer of 200 marks it ready, any other answer, a connection error or a poll past
its timeout marks it not ready (one poll each way: successThreshold and failureThreshold 1). ``pick``
returns the next of the tiers whose last poll said ready, round-robin, as kube-proxy spreads connections
over a Service's ready endpoints. The delay between a tier's change and the router's is what a drain has
to cover: up to a period plus one poll's round trip.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

from tests.cluster.load import Address

PROBE_TIMEOUT_S = 1.0


@dataclass
class Endpoint:
    name: str
    address: Address
    ready: bool = False
    polls: int = 0  # answered so far
    changes: list[tuple[float, bool]] = field(default_factory=list)  # (time.monotonic(), ready) at each change
    stop: threading.Event = field(default_factory=threading.Event)


class ReadinessRouter:
    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self._endpoints: dict[str, Endpoint] = {}
        self._changed = threading.Condition()
        self._turn = 0
        self._threads: list[threading.Thread] = []

    def add(self, name: str, port: int, host: str = "127.0.0.1") -> Endpoint:
        """Start polling a tier; it takes requests from its first ready poll on."""
        endpoint = Endpoint(name, (host, port))
        with self._changed:
            self._endpoints[name] = endpoint
        thread = threading.Thread(target=self._poll, args=(endpoint,), name=f"readyz-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return endpoint

    def remove(self, name: str) -> Endpoint:
        """Stop polling a tier (its pod is gone) and route nothing more to it."""
        with self._changed:
            endpoint = self._endpoints.pop(name)
            self._changed.notify_all()
        endpoint.stop.set()
        return endpoint

    def pick(self) -> Address | None:
        """The next ready tier, round-robin; None when no tier is ready."""
        with self._changed:
            ready = [e.address for e in self._endpoints.values() if e.ready]
            if not ready:
                return None
            self._turn += 1
            return ready[self._turn % len(ready)]

    def wait_until(self, name: str, ready: bool, timeout_s: float) -> float:
        """Block until the router holds ``name`` as ``ready``; the time its poll said so."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            endpoint = self._endpoints[name]
            while endpoint.ready is not ready:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    state = "ready" if ready else "not ready"
                    raise AssertionError(f"{name} not {state} after {timeout_s} s ({endpoint.polls} polls)")
                self._changed.wait(remaining)
            return endpoint.changes[-1][0]

    def wait_polled(self, name: str, timeout_s: float) -> float:
        """Block until the next poll of ``name`` has been answered; the time it was."""
        with self._changed:
            endpoint = self._endpoints[name]
            polls = endpoint.polls
            if not self._changed.wait_for(lambda: endpoint.polls > polls, timeout_s):
                raise AssertionError(f"{name} not polled within {timeout_s} s")
            return time.monotonic()

    def close(self) -> None:
        with self._changed:
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for endpoint in endpoints:
            endpoint.stop.set()
        for thread in self._threads:
            thread.join(PROBE_TIMEOUT_S + self.period_s + 1)

    def _poll(self, endpoint: Endpoint) -> None:
        """Poll at a fixed rate from the moment the endpoint was added; a poll that overruns skips ticks."""
        start = time.monotonic()
        tick = 0
        while not endpoint.stop.is_set():
            ready = probe(endpoint.address)
            polled = time.monotonic()
            with self._changed:
                endpoint.polls += 1
                if ready is not endpoint.ready:
                    endpoint.ready = ready
                    endpoint.changes.append((polled, ready))
                self._changed.notify_all()
            tick = max(tick + 1, int((polled - start) / self.period_s) + 1)
            endpoint.stop.wait(start + tick * self.period_s - time.monotonic())


def probe(address: Address, path: str = "/readyz", timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One readiness probe on a new connection: True on 200."""
    connection = http.client.HTTPConnection(*address, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
