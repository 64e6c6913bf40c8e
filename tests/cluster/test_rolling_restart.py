"""A rolling restart of two tier processes behind a load balancer that follows /readyz: no failed request.

Two tiers (``python -m app``) on the fake TF Serving, with a drain as in a pod: ``server.drain_delay_s``
1.5 s (above the router's 0.5 s poll period plus a poll's round trip, as the pod's 5 s is above the time
endpoints take to let it go) and ``server.shutdown_timeout_s`` 5 s. The router (``tests/cluster/endpoints.py``)
polls each tier's /readyz every 0.5 s and sends to the next tier whose last poll said ready; client threads
keep a steady load of uploads on keep-alive connections, opening a new one when an answer says
``Connection: close``. Two ways of routing, a run each: each request (an HTTP proxy such as an ingress
controller, following endpoints) or each new connection (kube-proxy: an open connection stays on its pod,
and leaves it only when the tier's answers say ``Connection: close``). The roll, one tier at a time:
SIGTERM to A, A exits, A' starts on a new port, the router takes A' in once its /readyz says ready, then
the same for B.

The race under test: the router keeps sending to A for up to a poll period after A's /readyz turned 503.
Those requests must be served: A keeps accepting for ``drain_delay_s``. A request is not retried: any
connection error or non-200 answer counts as a failure.

The fake TF Serving, not the local backend: what rolls is the tier, and the fake answers at once, so the
load stays on the tiers' HTTP and lifecycle (not TensorFlow on the two shared CPUs), and the test needs no
model build. Prints, with ``-s``, the requests, failures and p50/p99 of each phase.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.endpoints import ReadinessRouter
from tests.cluster.load import Address, Outcome, SteadyLoad, Summary
from tests.support.imageserver import FIXTURES
from tests.support.tier import TierProcess, start_tier
from tools.fakeserving import FakeBackend, FakeModel, start_fake_backend

pytestmark = pytest.mark.slow

POLL_PERIOD_S = 0.5
DRAIN_DELAY_S = 1.5
SHUTDOWN_TIMEOUT_S = 5.0
CLIENTS = 4
STEADY_REQUESTS = 200
MODEL = "tiny"
CONFIG = """\
server: {{page: false, drain_delay_s: {drain}, shutdown_timeout_s: {shutdown}}}
backend: {{address: "{address}", startup_timeout_s: 10, timeout_s: 30}}
models:
  {model}: {{signature: serving_uint8}}
"""
BODY = json.dumps({"instances": [{"b64": base64.b64encode((FIXTURES / "coffee.jpg").read_bytes()).decode()}]}).encode()


@dataclass
class Fleet:
    """The tiers, the router in front of them and the load through it."""

    config: Path
    fake: FakeBackend
    router: ReadinessRouter
    load: SteadyLoad
    tiers: dict[str, TierProcess]
    routing: str  # "request" or "connection"

    def start(self, name: str) -> TierProcess:
        # The last override wins over start_tier's drain delay of none.
        tier = start_tier(self.fake.address, config=self.config, overrides=[f"server.drain_delay_s={DRAIN_DELAY_S}"])
        self.tiers[name] = tier
        return tier


@dataclass
class Roll:
    """The times of one tier's replacement and what the old tier served after its SIGTERM."""

    old: str
    new: str
    sigterm: float
    unrouted: float  # the router's poll found the old tier not ready
    exited: float
    routed: float  # the router's poll found the new tier ready
    served_after_sigterm: list[Outcome]

    def line(self) -> str:
        late = [o for o in self.served_after_sigterm if o.started >= self.sigterm]
        closing = sum(o.closed for o in late)
        return (
            f"{self.old}: out of the router {self.unrouted - self.sigterm:.2f} s after SIGTERM, exited after "
            f"{self.exited - self.sigterm:.2f} s; {len(late)} requests sent to it after SIGTERM, "
            f"{sum(o.error is None for o in late)} answered 200 ({closing} saying Connection: close); "
            f"{self.new} routed {self.routed - self.exited:.2f} s after {self.old} exited"
        )


def port_of(tier: TierProcess) -> int:
    return int(tier.base_url.rsplit(":", 1)[1])


@pytest.fixture(params=["request", "connection"], ids=["per-request", "per-connection"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    fake = start_fake_backend([FakeModel(MODEL, 8)], threads=16)
    config = tmp_path / "tier.yaml"
    config.write_text(
        CONFIG.format(drain=DRAIN_DELAY_S, shutdown=SHUTDOWN_TIMEOUT_S, address=fake.address, model=MODEL)
    )
    router = ReadinessRouter(POLL_PERIOD_S)
    per_connection = request.param == "connection"
    path = f"/v1/models/{MODEL}:predict"
    load = SteadyLoad("http://unused", path, BODY, CLIENTS, route=router.pick, per_connection=per_connection)
    fleet = Fleet(config, fake, router, load, {}, request.param)
    try:
        with ThreadPoolExecutor(2) as pool:
            started = list(pool.map(fleet.start, ["A", "B"]))
        for name, tier in zip(["A", "B"], started, strict=True):
            router.add(name, port_of(tier))
        for name in ("A", "B"):
            router.wait_until(name, True, 10)
        load.start()
        yield fleet
    finally:
        load.stop()
        router.close()
        for tier in fleet.tiers.values():
            if tier.proc.poll() is None:
                tier.proc.kill()
                tier.proc.wait()
        fake.stop()


def roll(fleet: Fleet, old: str, new: str) -> Roll:
    """SIGTERM to ``old``; once it has exited, ``new`` on a new port, until the router sends to it.

    The SIGTERM comes right after a poll of ``old`` said ready, the worst case: the router goes on sending
    to it for a whole period.
    """
    tier = fleet.tiers[old]
    address = ("127.0.0.1", port_of(tier))
    fleet.router.wait_polled(old, 2 * POLL_PERIOD_S + 1)
    sigterm = time.monotonic()
    tier.proc.send_signal(signal.SIGTERM)
    unrouted = fleet.router.wait_until(old, False, DRAIN_DELAY_S + 2 * POLL_PERIOD_S)
    assert tier.proc.wait(DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_S + 5) == 0, "".join(tier.output[-30:])
    exited = time.monotonic()
    fleet.router.remove(old)
    replacement = fleet.start(new)
    fleet.router.add(new, port_of(replacement))
    routed = fleet.router.wait_until(new, True, 10)
    late = [o for o in fleet.load.outcomes() if o.address == address and o.finished >= sigterm]
    return Roll(old, new, sigterm, unrouted, exited, routed, late)


def shares(fleet: Fleet, start: float, end: float) -> str:
    """How the requests answered in ``[start, end)`` spread over the tiers."""
    names: dict[Address | None, str] = {("127.0.0.1", port_of(tier)): name for name, tier in fleet.tiers.items()}
    counts = Counter(names.get(o.address, "none") for o in fleet.load.outcomes() if start <= o.finished < end)
    return ", ".join(f"{name} {counts[name]}" for name in sorted(counts))


def report(routing: str, summaries: list[Summary], rolls: list[Roll], spread: list[str]) -> None:
    print(
        f"\nrolling restart of 2 tiers, routed per {routing} to tiers whose /readyz (polled every {POLL_PERIOD_S} s) "
        f"said ready, {CLIENTS} clients, "
        f"drain_delay_s {DRAIN_DELAY_S}, shutdown_timeout_s {SHUTDOWN_TIMEOUT_S}"
    )
    for summary in summaries:
        print("  " + summary.line())
        for error in sorted(set(summary.errors))[:5]:
            print(f"      {error}")
    for item in rolls:
        print("  " + item.line())
    for line in spread:
        print("  " + line)


def test_a_rolling_restart_behind_a_readiness_router_fails_no_request(fleet: Fleet) -> None:
    load = fleet.load
    first = load.count()
    steady_from = load.wait_for(lambda: load.count() > first, "an answer", 10)
    load.wait_for(lambda: load.count() >= first + STEADY_REQUESTS, f"{STEADY_REQUESTS} answers", 20)

    roll_a = roll(fleet, "A", "A'")
    roll_b = roll(fleet, "B", "B'")

    done = load.count()
    after = load.wait_for(lambda: load.count() >= done + STEADY_REQUESTS, f"{STEADY_REQUESTS} answers after", 20)
    summaries = [
        load.summary("steady: A and B", steady_from, roll_a.sigterm),
        load.summary("A draining: SIGTERM until it exits", roll_a.sigterm, roll_a.exited),
        load.summary("A' starting: until the router sends to it", roll_a.exited, roll_a.routed),
        load.summary("B draining: SIGTERM until it exits", roll_b.sigterm, roll_b.exited),
        load.summary("B' starting: until the router sends to it", roll_b.exited, roll_b.routed),
        load.summary("after: A' and B'", roll_b.routed, after),
    ]
    spread = [
        f"requests by tier, steady: {shares(fleet, steady_from, roll_a.sigterm)}",
        f"requests by tier, B draining: {shares(fleet, roll_b.sigterm, roll_b.exited)}",
        f"requests by tier, after: {shares(fleet, roll_b.routed, after)}",
    ]
    report(fleet.routing, summaries, [roll_a, roll_b], spread)

    assert [s.failures for s in summaries] == [0] * len(summaries), [s.errors[:3] for s in summaries]
    for item in (roll_a, roll_b):
        # The race happened and was won: the router sent requests to the old tier after its SIGTERM (until
        # its next poll), and the old tier answered every one of them.
        late = [o for o in item.served_after_sigterm if o.started >= item.sigterm]
        assert late, f"no request reached {item.old} after its SIGTERM: the race was not exercised"
        assert all(o.error is None for o in item.served_after_sigterm)
        assert any(o.closed for o in late), f"no answer of the draining {item.old} said Connection: close"
        assert item.unrouted - item.sigterm < DRAIN_DELAY_S, "the router let go of the tier only after its delay"
