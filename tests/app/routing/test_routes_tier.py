"""Model routes through the real tier: the split and stickiness against the real local backend (digits v1 and
v2), a broken canary rolled back against the fake TF Serving, the path override, the admin endpoints."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.settings import load_settings
from tests.conftest import Tier, TierFactory, dev_settings
from tests.support.backend import reload_config, start_local_backend
from tests.support.imageserver import FIXTURES
from tools.fakeserving import FakeBackend

DIGIT = (FIXTURES / "digit_3.png").read_bytes()
SPLIT = (
    "models.digits.routes.targets=[{name: stable, label: stable, weight: 90},"
    " {name: canary, version: 2, weight: 10, canary: true}]"
)


async def predict(tier: Tier, path: str, **headers: str) -> tuple[int, Any]:
    response: HTTPResponse = await AsyncHTTPClient().fetch(
        tier.url(path), method="POST", body=DIGIT, headers={"Content-Type": "image/png", **headers}, raise_error=False
    )
    return response.code, json.loads(response.body)


@pytest.mark.gen_test(timeout=120)
async def test_the_split_follows_the_weights_over_2000_requests(make_tier: TierFactory) -> None:
    tier = await make_tier([SPLIT])
    versions: Counter[int] = Counter()
    for _ in range(2000 // 50):
        answers = await asyncio.gather(*(predict(tier, "/v1/models/digits:predict") for _ in range(50)))
        versions.update(answer["model"]["version"] for _, answer in answers)
    assert sum(versions.values()) == 2000 and set(versions) == {1, 2}
    assert abs(versions[2] / 2000 - 0.10) <= 0.03, versions


@pytest.mark.gen_test(timeout=60)
async def test_a_user_stays_on_one_side_and_the_path_wins(make_tier: TierFactory) -> None:
    tier = await make_tier([SPLIT])
    seen: dict[str, set[int]] = {}
    for user in (f"user-{i}" for i in range(40)):
        for _ in range(3):
            _, answer = await predict(tier, "/v1/models/digits:predict", **{"X-User-Id": user})
            seen.setdefault(user, set()).add(answer["model"]["version"])
    assert all(len(v) == 1 for v in seen.values())
    canary_users = [u for u, v in seen.items() if v == {2}]
    assert canary_users, "no key of 40 landed on the 10 % canary"
    _, pinned = await predict(tier, "/v1/models/digits/versions/1:predict", **{"X-User-Id": canary_users[0]})
    _, labelled = await predict(tier, "/v1/models/digits/labels/stable:predict", **{"X-User-Id": canary_users[0]})
    assert (pinned["model"]["version"], labelled["model"]["version"]) == (1, 1)


@pytest.mark.gen_test(timeout=60)
async def test_a_broken_canary_is_rolled_back_within_its_window(make_tier: TierFactory, fake: FakeBackend) -> None:
    settings = load_settings(
        None,
        {},
        [
            f"backend.address={fake.address}",
            "server.port=0",
            "server.admin_token=s3cret",
            "models.tiny.signature=serving_uint8",
            "models.tiny.routes.targets=[{name: stable, version: 1, weight: 50},"
            " {name: canary, version: 2, weight: 50, canary: true}]",
            "models.tiny.routes.rollback={window: 20, min_samples: 10, check_every: 5, consecutive: 2}",
        ],
    )
    tier = await make_tier(settings=settings)
    fake.log.nan_version = 2  # the canary answers NaN for every image
    outcomes = []
    for _ in range(80):
        code, answer = await predict(tier, "/v1/models/tiny:predict")
        assert code == 200
        item = answer["predictions"][0]
        outcomes.append((answer["model"]["version"], item.get("error", {}).get("code")))
    broken = [o for o in outcomes if o[1] == "model_output_invalid"]
    assert 10 <= len(broken) <= 20  # the canary's own items, until two checks in a row (15th request) judged it
    assert all(version == 2 for version, _ in broken)
    assert outcomes[-30:] == [(1, None)] * 30  # rolled back: everything on stable since

    status = json.loads((await AsyncHTTPClient().fetch(tier.url("/v1/models/tiny"))).body)
    canary = {r["name"]: r for r in status["routes"]}["canary"]
    assert (canary["state"], canary["weight"]) == ("rolled_back", 0)
    assert "failure rate" in canary["reason"]
    scrape = (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()
    assert 'imagegate_rollbacks_total{model="tiny",route="canary"} 1.0' in scrape

    admin = tier.url("/admin/models/tiny/routes:reset")
    refused = await AsyncHTTPClient().fetch(admin, method="POST", body=b"", raise_error=False)
    assert (refused.code, json.loads(refused.body)["error"]["code"]) == (401, "unauthorized")
    reset = await AsyncHTTPClient().fetch(admin, method="POST", body=b"", headers={"Authorization": "Bearer s3cret"})
    assert {r["name"]: r["state"] for r in json.loads(reset.body)["routes"]} == {
        "stable": "serving",
        "canary": "serving",
    }


@pytest.mark.gen_test(timeout=60)
async def test_admin_endpoints_are_absent_without_a_token(make_tier: TierFactory) -> None:
    tier = await make_tier([SPLIT])
    response = await AsyncHTTPClient().fetch(
        tier.url("/admin/models/digits/routes:reset"), method="POST", body=b"", raise_error=False
    )
    assert response.code == 404


@pytest.mark.gen_test(timeout=60)
async def test_shadow_traffic_is_measured_and_never_answered(make_tier: TierFactory, fake: FakeBackend) -> None:
    settings = load_settings(
        None,
        {},
        [
            f"backend.address={fake.address}",
            "server.port=0",
            "models.tiny.signature=serving_uint8",
            "models.tiny.routes.targets=[{name: stable, version: 1, weight: 1}]",
            "models.tiny.routes.shadow={version: 2, fraction: 1.0}",
        ],
    )
    tier = await make_tier(settings=settings)
    fake.log.nan_version = 2  # the shadowed version is broken; nobody may see it
    answers = [await predict(tier, "/v1/models/tiny:predict") for _ in range(5)]
    assert [(code, a["model"]["version"], "error" in a["predictions"][0]) for code, a in answers] == [
        (200, 1, False)
    ] * 5
    expected = 'imagegate_shadow_requests_total{model="tiny",outcome="model_output_invalid"} 5.0'
    deadline = asyncio.get_running_loop().time() + 10
    while expected not in (scrape := (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()):
        assert asyncio.get_running_loop().time() < deadline, scrape[-2000:]
        await asyncio.sleep(0.02)  # polling the scrape for the shadow Predicts that run after each answer
    assert len(fake.log.batch_sizes) == 10  # every request twice at the backend: once answered, once shadowed


@pytest.mark.gen_test(timeout=120)
async def test_a_label_moved_on_the_backend_is_followed(make_tier: TierFactory, models_dir: Path) -> None:
    """Routes name TF Serving labels; when the backend moves ``stable`` from 1 to 2, the same route answers 2."""
    config = (models_dir / "models.config").read_text()
    own = start_local_backend(model_config_file=models_dir / "models.config")
    try:
        tier = await make_tier(
            settings=dev_settings(
                own.address, ["models.digits.routes.targets=[{name: stable, label: stable, weight: 1}]"]
            )
        )
        before = [(await predict(tier, "/v1/models/digits:predict"))[1]["model"]["version"] for _ in range(5)]
        moved = config.replace('version_labels { key: "stable" value: 1 }', 'version_labels { key: "stable" value: 2 }')
        assert moved != config
        await asyncio.to_thread(reload_config, own.address, moved)
        after = [(await predict(tier, "/v1/models/digits:predict"))[1]["model"]["version"] for _ in range(5)]
    finally:
        own.stop()
    assert (before, after) == ([1] * 5, [2] * 5)


def split(canary_weight: int) -> str:
    return (
        f"models.digits.routes.targets=[{{name: stable, label: stable, weight: {100 - canary_weight}}},"
        f" {{name: canary, version: 2, weight: {canary_weight}, canary: true}}]"
    )


@pytest.mark.gen_test(timeout=120)
async def test_a_weight_change_moves_only_the_users_it_must(make_tier: TierFactory) -> None:
    """The same 300 users through a 90/10 tier and an 80/20 one: about 10 % move, all of them to the canary."""
    users = [f"user-{i}" for i in range(300)]

    async def versions(tier: Tier) -> list[int]:
        answers = await asyncio.gather(
            *(predict(tier, "/v1/models/digits:predict", **{"X-User-Id": user}) for user in users)
        )
        return [answer["model"]["version"] for _, answer in answers]

    before = await versions(await make_tier([split(10)]))
    after = await versions(await make_tier([split(20)]))
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert set(moved) <= {(1, 2)}  # nobody left the canary
    assert 0.05 <= len(moved) / len(users) <= 0.15, len(moved)
