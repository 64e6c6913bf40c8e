"""The process's lifecycle on SIGTERM and SIGINT, with real tier processes and a slow backend.

SIGTERM: /readyz answers 503 at once; the tier keeps accepting and serving for
``server.drain_delay_s``; then it stops accepting; requests in flight finish (answers say
``Connection: close``); the process exits 0. SIGINT skips the delay; a second signal exits at once.
The backend is the fake TF Serving from tools/fakeserving.py, slowed with ``log.delay_s``.
"""

from __future__ import annotations

import http.client
import signal
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.imageserver import FIXTURES
from tests.support.tier import TierProcess, start_tier
from tests.support.waiting import wait_for
from tools.fakeserving import FakeBackend, FakeModel, start_fake_backend

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
CONFIG = """\
server: {{page: false, drain_delay_s: {drain}, shutdown_timeout_s: {shutdown}}}
backend: {{address: "{address}", startup_timeout_s: 10, timeout_s: 30}}
models:
  tiny: {{signature: serving_uint8}}
"""


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    backend = start_fake_backend([FakeModel("tiny", 8)], threads=32)
    yield backend
    backend.stop()


@pytest.fixture
def tiers(tmp_path: Path, fake: FakeBackend) -> Iterator[Callable[..., TierProcess]]:
    """``tiers(drain=s, shutdown=s, workers=n)``: tier processes on the fake, killed after the test if still up."""
    started: list[TierProcess] = []

    def start(drain: float = 0.0, shutdown: float = 20.0, workers: int = 1) -> TierProcess:
        config = tmp_path / f"tier{len(started)}.yaml"
        config.write_text(CONFIG.format(drain=drain, shutdown=shutdown, address=fake.address))
        # The last override wins: this test's drain delay, not start_tier's default of none.
        tier = start_tier(fake.address, config=config, workers=workers, overrides=[f"server.drain_delay_s={drain}"])
        started.append(tier)
        return tier

    yield start
    for tier in started:
        if tier.proc.poll() is None:
            tier.proc.kill()
            tier.proc.wait()


def port_of(tier: TierProcess) -> int:
    return int(tier.base_url.rsplit(":", 1)[1])


def predict(port: int) -> tuple[int, str]:
    """One upload on its own keep-alive connection; the status and the Connection header of the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/v1/models/tiny:predict", COFFEE, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Connection", "")
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Connection", "")
    finally:
        connection.close()


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def in_flight(pool: ThreadPoolExecutor, port: int, fake: FakeBackend, count: int) -> list[Future[tuple[int, str]]]:
    """``count`` uploads, returned once the backend holds every one of them."""
    before = len(fake.log.batch_sizes)
    futures = [pool.submit(predict, port) for _ in range(count)]
    wait_for(lambda: len(fake.log.batch_sizes) - before == count, f"{count} Predicts at the backend")
    return futures


def test_sigterm_under_load_loses_nothing(tiers: Callable[..., TierProcess], fake: FakeBackend) -> None:
    fake.log.delay_s = 4.0
    tier = tiers(drain=1.0)
    port = port_of(tier)
    with ThreadPoolExecutor(16) as pool:
        held = in_flight(pool, port, fake, 16)
        tier.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: get(port, "/readyz")[0] == 503, "/readyz to answer 503")
        assert get(port, "/healthz") == (200, "close")  # still accepting, and saying it will close
        wait_for(lambda: refuses_connections(port), "the listener to close after the drain delay")
        assert not any(f.done() for f in held), "in-flight requests should still be running"
        answers = [f.result() for f in held]
    assert answers == [(200, "close")] * 16
    assert tier.proc.wait(timeout=20) == 0
    assert any("imagegate: stopped" in line for line in tier.output)


def test_readyz_reports_draining_with_the_phase(tiers: Callable[..., TierProcess]) -> None:
    tier = tiers(drain=30.0)
    port = port_of(tier)
    assert get(port, "/readyz")[0] == 200
    tier.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: get(port, "/readyz")[0] == 503, "/readyz to answer 503")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/readyz")
    assert connection.getresponse().read() == b'{"ready":false,"state":"draining"}'
    connection.close()


def test_sigint_skips_the_drain_delay(tiers: Callable[..., TierProcess]) -> None:
    tier = tiers(drain=60.0)
    tier.proc.send_signal(signal.SIGINT)
    assert tier.proc.wait(timeout=15) == 0  # long before the 60 s delay


def test_a_second_signal_exits_at_once(tiers: Callable[..., TierProcess]) -> None:
    tier = tiers(drain=60.0)
    tier.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any("draining" in line for line in tier.output), "the drain to start")
    tier.proc.send_signal(signal.SIGTERM)
    assert tier.proc.wait(timeout=15) == 1


def test_requests_past_the_shutdown_timeout_are_cut_and_the_process_still_exits(
    tiers: Callable[..., TierProcess], fake: FakeBackend
) -> None:
    fake.log.delay_s = 6.0
    tier = tiers(drain=0.0, shutdown=1.0)
    with ThreadPoolExecutor(2) as pool:
        held = in_flight(pool, port_of(tier), fake, 2)
        tier.proc.send_signal(signal.SIGTERM)
        assert tier.proc.wait(timeout=15) == 0
        for future in held:
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                future.result()
    assert any("still in flight after 1 s" in line for line in tier.output)


def test_every_worker_drains_and_the_parent_exits_when_they_have(
    tiers: Callable[..., TierProcess], fake: FakeBackend
) -> None:
    fake.log.delay_s = 3.0
    tier = tiers(drain=0.5, workers=2)
    port = port_of(tier)
    with ThreadPoolExecutor(8) as pool:
        held = in_flight(pool, port, fake, 8)
        tier.proc.send_signal(signal.SIGTERM)
        # As with one process: refused once the workers stop accepting (the parent keeps no copy of the socket).
        wait_for(lambda: refuses_connections(port), "the listener to close after the drain delay")
        assert not any(f.done() for f in held), "in-flight requests should still be running"
        answers = [f.result() for f in held]
    assert answers == [(200, "close")] * 8
    assert tier.proc.wait(timeout=20) == 0
    assert sum("imagegate: stopped" in line for line in tier.output) == 2


def test_a_draining_answer_closes_its_connection(tiers: Callable[..., TierProcess]) -> None:
    """An answer that says ``Connection: close`` is the last on its connection: the tier closes it (RFC 9112
    9.6), so a client that sends on it again, or a pool that checks it before reuse, learns at once."""
    tier = tiers(drain=30.0)
    port = port_of(tier)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tier\r\n\r\n")
        assert b"Connection: close" not in read_answer(sock)
        tier.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: get(port, "/readyz")[0] == 503, "/readyz to answer 503")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tier\r\n\r\n")
        assert b"Connection: close" in read_answer(sock)
        assert sock.recv(1) == b"", "the tier kept the connection open after saying Connection: close"


def read_answer(sock: socket.socket) -> bytes:
    """One answer to a GET with a Content-Length body, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head
