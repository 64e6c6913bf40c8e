"""Only AVAILABLE targets get traffic: the real tier against the real local backend, whose versions and labels the
tests change with ``HandleReloadConfigRequest``; each test runs the poller's rounds itself (``poller.poll()``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from app.settings import load_settings
from tests.conftest import Tier, TierFactory
from tests.support.backend import reload_config, start_local_backend
from tests.support.imageserver import FIXTURES
from tools.rollout_demo import backend_config, tier_config

DIGIT = (FIXTURES / "digit_3.png").read_bytes()
CANARY_ON_2 = [
    {"name": "stable", "label": "stable", "weight": 80},
    {"name": "canary", "version": 2, "weight": 20, "canary": True},
]


def split(canary: str) -> str:
    return (
        "models.digits.routes.targets=[{name: stable, label: stable, weight: 80},"
        f" {{name: canary, {canary}, weight: 20, canary: true}}]"
    )


async def answers(tier: Tier, users: int = 100) -> Counter[Any]:
    """Which version answered each of ``users`` users (by ``X-User-Id``), or the failed request's status."""

    async def one(user: str) -> Any:
        response = await AsyncHTTPClient().fetch(
            tier.url("/v1/models/digits:predict"),
            method="POST",
            body=DIGIT,
            headers={"Content-Type": "image/png", "X-User-Id": user},
            raise_error=False,
        )
        return json.loads(response.body)["model"]["version"] if response.code == 200 else response.code

    return Counter(await asyncio.gather(*(one(f"user-{i}") for i in range(users))))


async def routes(tier: Tier) -> dict[str, dict[str, Any]]:
    status = json.loads((await AsyncHTTPClient().fetch(tier.url("/v1/models/digits"))).body)
    return {route["name"]: route for route in status["routes"]}


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("canary", ["version: 3", "label: nope"])
async def test_a_canary_the_backend_lacks_waits_and_serves_nothing(make_tier: TierFactory, canary: str) -> None:
    tier = await make_tier([split(canary)])
    described = await routes(tier)
    assert (described["canary"]["state"], described["canary"]["weight"]) == ("waiting", 0)
    assert described["stable"]["state"] == "serving"
    assert await answers(tier) == Counter({1: 100})  # no client request failed


@pytest.mark.gen_test(timeout=180)
async def test_a_canary_gets_its_share_once_available_and_keeps_it_while_the_backend_cannot_answer(
    make_tier: TierFactory, tmp_path: Path
) -> None:
    config = tmp_path / "models.config"
    config.write_text(backend_config("versions: 1", {"stable": 1}))
    own = start_local_backend(model_config_file=config)
    try:
        tier_file = tmp_path / "imagegate.yaml"
        tier_file.write_text(tier_config(CANARY_ON_2))  # digits alone, as on this backend
        overrides = [f"backend.address={own.address}", "server.port=0", "models.digits.routes.poll_s=0"]
        tier = await make_tier(settings=load_settings(tier_file, {}, overrides))
        assert (await routes(tier))["canary"]["state"] == "waiting"
        assert await answers(tier) == Counter({1: 100})

        await asyncio.to_thread(reload_config, own.address, backend_config("versions: 1 versions: 2", {"stable": 1}))
        assert tier.services.poller is not None
        await tier.services.poller.poll()
        assert (await routes(tier))["canary"]["state"] == "serving"
        versions = await answers(tier)
        assert set(versions) == {1, 2} and 10 <= versions[2] <= 35, versions
    finally:
        own.stop()
    await tier.services.poller.poll()  # the backend is gone: the last known states stay
    router = tier.services.pipeline.predictor.routers["digits"]  # not GET: that asks the backend
    assert [(side["name"], side["state"]) for side in router.describe()] == [
        ("stable", "serving"),
        ("canary", "serving"),
    ]
