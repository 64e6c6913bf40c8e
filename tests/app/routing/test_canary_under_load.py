"""A healthy canary on a machine kept busy on purpose: the real local backend (digits v1 and v2, the same network
size), the real tier, default rollback settings, two processes spinning on the cores. It must not be rolled back."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES
from tests.support.load import cpu_hogs

DIGIT = (FIXTURES / "digit_3.png").read_bytes()
SPLIT_80_20 = (
    "models.digits.routes.targets=[{name: stable, label: stable, weight: 80},"
    " {name: canary, version: 2, weight: 20, canary: true}]"
)
USERS, REQUESTS_EACH, CONCURRENCY = 300, 5, 50


async def answered_by(tier: Tier, user: str) -> int:
    response = await AsyncHTTPClient().fetch(
        tier.url("/v1/models/digits:predict"),
        method="POST",
        body=DIGIT,
        headers={"Content-Type": "image/png", "X-User-Id": user},
    )
    return int(json.loads(response.body)["model"]["version"])


@pytest.mark.slow
@pytest.mark.gen_test(timeout=600)
async def test_a_healthy_canary_on_a_busy_machine_is_not_rolled_back(make_tier: TierFactory) -> None:
    tier = await make_tier([SPLIT_80_20])
    users = [f"user-{i}" for i in range(USERS)] * REQUESTS_EACH
    versions: Counter[int] = Counter()
    with cpu_hogs(2, seconds=300):
        for start in range(0, len(users), CONCURRENCY):
            batch = users[start : start + CONCURRENCY]
            versions.update(await asyncio.gather(*(answered_by(tier, user) for user in batch)))
    status = json.loads((await AsyncHTTPClient().fetch(tier.url("/v1/models/digits"))).body)
    canary = {route["name"]: route for route in status["routes"]}["canary"]
    assert (canary["state"], canary["reason"]) == ("serving", "")
    assert sum(versions.values()) == 1500 and 0.1 <= versions[2] / 1500 <= 0.3, versions
