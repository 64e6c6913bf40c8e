"""Shared fixtures: the real local backend, a real image server, the real tier on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import tornado.ioloop
from tornado.netutil import Resolver

from app.serving.opencv import configure_opencv

# The test process starts here: configure OpenCV as ``python -m app`` does, before anything imports it.
configure_opencv(os.environ)

from app.serving.lingering import LingeringHTTPServer  # noqa: E402
from app.serving.server import Services, build_services, start_http  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from tests.support.backend import LocalBackend, start_local_backend  # noqa: E402
from tests.support.imageserver import ImageServer  # noqa: E402
from tests.support.tier import DEV_CONFIG, ROOT  # noqa: E402
from tools.fakeserving import FakeBackend, FakeModel, start_fake_backend  # noqa: E402

MODELS_DIR = ROOT / "build" / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The demo models, built if missing (the build is a no-op when they exist)."""
    subprocess.run([sys.executable, "-m", "tools.modelbuild", "--out", str(MODELS_DIR)], cwd=ROOT, check=True)
    return MODELS_DIR


@pytest.fixture(scope="session")
def backend(models_dir: Path) -> Iterator[LocalBackend]:
    server = start_local_backend(model_config_file=models_dir / "models.config")
    yield server
    server.stop()


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    """The fake TF Serving (tools/fakeserving.py), serving only ``tiny`` with 8 classes; tests set its faults."""
    backend = start_fake_backend([FakeModel("tiny", 8)])
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def dev_settings(backend_address: str, overrides: Sequence[str] = ()) -> Settings:
    """The development settings, pointed at ``backend_address``, on a free port."""
    return load_settings(DEV_CONFIG, {}, [f"backend.address={backend_address}", "server.port=0", *overrides])


@dataclass
class Tier:
    base_url: str
    services: Services
    server: LingeringHTTPServer

    def url(self, path: str) -> str:
        return self.base_url + path


TierFactory = Callable[..., Awaitable[Tier]]


@pytest.fixture
def make_tier(io_loop: tornado.ioloop.IOLoop, backend: LocalBackend) -> Iterator[TierFactory]:
    """``await make_tier([overrides])`` starts a real tier on loopback in this test's IOLoop.

    All tiers are stopped after the test.
    """
    started: list[Tier] = []

    async def start(
        overrides: Sequence[str] = (), resolver: Resolver | None = None, settings: Settings | None = None
    ) -> Tier:
        settings = settings or dev_settings(backend.address, overrides)
        services = await build_services(settings, resolver)
        server, port = start_http(services)
        tier = Tier(f"http://127.0.0.1:{port}", services, server)
        started.append(tier)
        return tier

    yield start
    for tier in started:
        tier.server.stop()
        io_loop.run_sync(tier.server.close_all_connections)
        io_loop.run_sync(tier.services.close)


@pytest.fixture
def tier(io_loop: tornado.ioloop.IOLoop, make_tier: TierFactory) -> Tier:
    started: Tier = io_loop.run_sync(make_tier)
    return started
