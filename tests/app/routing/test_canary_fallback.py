"""No client sees a canary fail: a request the canary fails is answered by stable, and the failure still rolls the
canary back. The real tier against the real local backend serving digits 1 and 2 and a broken 3 (it loads and
answers NaN: ``tools/modelbuild/digits.py`` ``build_broken``), with and without micro-batching; a canary whose
Predict outlives its share of the deadline against the fake TF Serving."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from app.settings import load_settings
from tests.conftest import Tier, TierFactory
from tests.support.backend import LocalBackend, reload_config, start_local_backend
from tests.support.imageserver import FIXTURES
from tools.fakeserving import FakeBackend
from tools.rollout_demo import backend_config, build_broken_version, tier_config

DIGIT = (FIXTURES / "digit_3.png").read_bytes()
ALL_VERSIONS = "versions: 1 versions: 2 versions: 3"
BATCHING = {"direct": [], "micro-batched": ["models.digits.batching={max_batch_size: 8, max_wait_ms: 5}"]}
# Checks from the canary's 10th request, every 5; its window holds every request it gets before the rollback.
ROLLBACK = "models.digits.routes.rollback={window: 40, min_samples: 10, check_every: 5}"
REQUESTS, CONCURRENCY = 80, 8


@dataclass
class Digits:
    backend: LocalBackend
    directory: Path  # 1 and 2 linked to build/models/digits, 3 the broken one


@pytest.fixture(scope="module")
def digits(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Digits]:
    directory = tmp_path_factory.mktemp("digits")
    for item in ("1", "2", "labels.txt"):
        (directory / item).symlink_to(models_dir / "digits" / item)
    build_broken_version(directory / "3")
    config = directory.parent / "models.config"
    config.write_text(backend_config(ALL_VERSIONS, {"stable": 1}, directory))
    backend = start_local_backend(model_config_file=config)
    yield Digits(backend, directory)
    backend.stop()


async def start(make_tier: TierFactory, tmp_path: Path, address: str, canary: int, *overrides: str) -> Tier:
    """The tier for digits alone, stable (label) 50 / canary (``canary``) 50."""
    targets = [
        {"name": "stable", "label": "stable", "weight": 50},
        {"name": "canary", "version": canary, "weight": 50, "canary": True},
    ]
    (tmp_path / "imagegate.yaml").write_text(tier_config(targets))
    settings = load_settings(
        tmp_path / "imagegate.yaml", {}, [f"backend.address={address}", "server.port=0", ROLLBACK, *overrides]
    )
    return await make_tier(settings=settings)


async def predict(tier: Tier, path: str, user: str) -> tuple[int, Any]:
    response = await AsyncHTTPClient().fetch(
        tier.url(path),
        method="POST",
        body=DIGIT,
        headers={"Content-Type": "image/png", "X-User-Id": user},
        raise_error=False,
    )
    return response.code, json.loads(response.body)


async def feed(tier: Tier, model: str = "digits") -> list[tuple[int, int | None, str | None]]:
    """(status, version that answered, the item's error code) of each of ``REQUESTS`` users' requests."""
    outcomes = []
    for first in range(0, REQUESTS, CONCURRENCY):
        answers = await asyncio.gather(
            *(predict(tier, f"/v1/models/{model}:predict", f"user-{i}") for i in range(first, first + CONCURRENCY))
        )
        for code, answer in answers:
            item = answer["predictions"][0] if code == 200 else {}
            outcomes.append((code, answer.get("model", {}).get("version"), item.get("error", {}).get("code")))
    return outcomes


async def canary_route(tier: Tier, model: str = "digits") -> dict[str, Any]:
    router = tier.services.pipeline.predictor.routers[model]  # not GET: that asks the backend
    return {route["name"]: route for route in router.describe()}["canary"]


async def fallbacks(tier: Tier, code: str, model: str = "digits") -> float:
    """``imagegate_canary_fallbacks_total`` of the canary route with ``code``."""
    scrape = (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()
    labels = f'code="{code}",model="{model}",route="canary"'
    found = re.search(rf"^imagegate_canary_fallbacks_total\{{{labels}\}} (\S+)$", scrape, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def assert_rolled_back_unseen(outcomes: list[tuple[int, int | None, str | None]], canary: dict[str, Any]) -> None:
    """Every request answered by stable's version 1 without an error; the canary rolled back for its failures."""
    assert outcomes == [(200, 1, None)] * REQUESTS
    assert (canary["state"], canary["weight"]) == ("rolled_back", 0)
    assert canary["reason"].startswith("failure rate 100.0%"), canary["reason"]
    assert canary["window"]["failure_rate"] == 1.0 and canary["window"]["requests"] >= 15


@pytest.mark.gen_test(timeout=180)
@pytest.mark.parametrize("batching", BATCHING)
async def test_a_canary_answering_nan_is_rolled_back_and_no_client_sees_it(
    make_tier: TierFactory, digits: Digits, tmp_path: Path, batching: str
) -> None:
    tier = await start(make_tier, tmp_path, digits.backend.address, 3, *BATCHING[batching])
    outcomes = await feed(tier)
    canary = await canary_route(tier)
    assert_rolled_back_unseen(outcomes, canary)
    assert await fallbacks(tier, "model_output_invalid") == canary["window"]["requests"]

    code, pinned = await predict(tier, "/v1/models/digits/versions/3:predict", "user-1")
    assert (code, pinned["model"]["version"]) == (200, 3)  # the path wins: never answered again
    assert pinned["predictions"][0]["error"]["code"] == "model_output_invalid"


@pytest.mark.gen_test(timeout=180)
@pytest.mark.parametrize("batching", BATCHING)
async def test_a_canary_the_backend_stops_serving_is_rolled_back_and_no_client_sees_it(
    make_tier: TierFactory, digits: Digits, tmp_path: Path, batching: str
) -> None:
    """The backend unloads version 2 under the tier's feet (its poller asks only at start): Predict answers
    NOT_FOUND."""
    polled_once = "models.digits.routes.poll_s=0"
    tier = await start(make_tier, tmp_path, digits.backend.address, 2, polled_once, *BATCHING[batching])
    assert (await canary_route(tier))["state"] == "serving"
    only_1 = backend_config("versions: 1", {"stable": 1}, digits.directory)
    await asyncio.to_thread(reload_config, digits.backend.address, only_1)
    try:
        outcomes = await feed(tier)
        code, pinned = await predict(tier, "/v1/models/digits/versions/2:predict", "user-1")
    finally:
        config = backend_config(ALL_VERSIONS, {"stable": 1}, digits.directory)
        await asyncio.to_thread(reload_config, digits.backend.address, config)
    canary = await canary_route(tier)
    assert_rolled_back_unseen(outcomes, canary)
    assert await fallbacks(tier, "model_not_found") == canary["window"]["requests"]
    assert (code, pinned["error"]["code"]) == (404, "model_not_found")  # the path wins: never answered again


@pytest.mark.gen_test(timeout=180)
async def test_a_canary_slower_than_its_share_of_the_deadline_is_answered_by_stable(
    make_tier: TierFactory, fake: FakeBackend
) -> None:
    settings = load_settings(
        None,
        {},
        [
            f"backend.address={fake.address}",
            "server.port=0",
            "backend.timeout_s=4",
            "models.tiny.signature=serving_uint8",
            "models.tiny.routes.targets=[{name: stable, version: 1, weight: 50},"
            " {name: canary, version: 2, weight: 50, canary: true}]",
            "models.tiny.routes.canary_timeout_share=0.1",  # 0.4 s for the canary, 3.6 s or more for stable
            ROLLBACK.replace("digits", "tiny"),
        ],
    )
    tier = await make_tier(settings=settings)
    fake.log.slow_version, fake.log.delay_s = 2, 2.0
    outcomes = await feed(tier, "tiny")
    canary = await canary_route(tier, "tiny")
    assert_rolled_back_unseen(outcomes, canary)
    assert await fallbacks(tier, "backend_timeout", "tiny") == canary["window"]["requests"]
