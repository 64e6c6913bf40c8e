"""The answer cache (app/cache.py) through the real tier and the real local backend: a repeat skips the Predict
(counted by the tier's own Predict histogram), top_k is applied per answer, and every change to what a target
answers with (a label moved, a reload, a promote, a reset) leaves the old entries unreachable."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from app.routing.routed import Route
from app.serving.reload import Reloader
from app.settings import Settings, load_settings
from processing.context import RequestContext
from processing.prediction import PredictCall
from processing.sources import ImageSource
from tests.conftest import Tier, TierFactory, dev_settings
from tests.support.backend import LocalBackend, reload_config, start_local_backend
from tests.support.imageserver import FIXTURES, ImageServer
from tools.rollout_demo import backend_config, tier_config

DIGITS = {n: (FIXTURES / f"digit_{n}.png").read_bytes() for n in (0, 3, 7, 9)}
DIGIT = DIGITS[3]
ON = "cache.max_bytes=1048576"
JSON = {"Content-Type": "application/json"}
ROW_BYTES = 512 + 10 * 4  # an entry of digits: the overhead and its 10 float32 scores (app/cache.py)


async def predict(tier: Tier, body: bytes = DIGIT, user: str | None = None) -> Any:
    headers = {"Content-Type": "image/png", **({"X-User-Id": user} if user is not None else {})}
    response = await AsyncHTTPClient().fetch(
        tier.url("/v1/models/digits:predict"), method="POST", body=body, headers=headers
    )
    return untimed(json.loads(response.body))


def untimed(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer without its timing (which a hit changes, and should)."""
    return {key: value for key, value in answer.items() if key != "timing_ms"}


async def predict_json(tier: Tier, document: Any, model: str = "digits") -> Any:
    response = await AsyncHTTPClient().fetch(
        tier.url(f"/v1/models/{model}:predict"), method="POST", body=json.dumps(document), headers=JSON
    )
    return untimed(json.loads(response.body))


async def scrape(tier: Tier) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = (await AsyncHTTPClient().fetch(tier.url("/metrics"))).body.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def predicts(tier: Tier, model: str = "digits") -> int:
    """Predicts the tier sent for ``model`` (its Predict-time histogram's count, over every version)."""
    samples = await scrape(tier)
    return int(
        sum(
            value
            for (name, labels), value in samples.items()
            if name == "imagegate_backend_predict_duration_seconds_count" and ("model", model) in labels
        )
    )


async def lookups(tier: Tier, result: str, model: str = "digits") -> int:
    samples = await scrape(tier)
    return int(samples.get(("imagegate_cache_lookups_total", (("model", model), ("result", result))), 0))


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


@pytest.mark.gen_test(timeout=60)
async def test_a_repeated_upload_is_answered_without_a_predict_and_with_the_same_answer(
    make_tier: TierFactory,
) -> None:
    tier = await make_tier([ON])
    first, second = await predict(tier), await predict(tier)
    assert second == first and first["predictions"][0]["classes"][0]["label"] == "3"
    assert second["model"]["version"] == first["model"]["version"] == 2  # the default: the latest
    assert await predicts(tier) == 1
    assert (await lookups(tier, "miss"), await lookups(tier, "hit")) == (1, 1)
    cache = tier.services.pipeline.cache
    assert len(cache) == 1 and cache.nbytes == ROW_BYTES
    assert tier.services.pipeline.memory.held == ROW_BYTES  # the cache's bytes are in the memory budget


@pytest.mark.gen_test(timeout=60)
async def test_a_hit_answers_with_its_own_requests_top_k(make_tier: TierFactory) -> None:
    tier = await make_tier([ON])
    full = await predict_json(tier, {"instances": [b64(DIGIT)], "top_k": 10})
    one = await predict_json(tier, {"instances": [b64(DIGIT)], "top_k": 1})
    five = await predict_json(tier, {"instances": [b64(DIGIT)], "top_k": 5})
    assert await predicts(tier) == 1
    answer = full["predictions"][0]
    assert len(answer["classes"]) == 10
    for hit, k in ((one, 1), (five, 5)):
        assert hit["predictions"][0]["classes"] == answer["classes"][:k]  # labels and scores


@pytest.mark.gen_test(timeout=60)
async def test_a_partial_hit_sends_only_the_misses_and_keeps_the_order(make_tier: TierFactory) -> None:
    tier = await make_tier([ON])
    await predict(tier, DIGITS[3])
    mixed = await predict_json(tier, {"instances": [b64(DIGITS[7]), b64(DIGITS[3]), {"b64": "bm90IGFu"}]})
    assert await predicts(tier) == 2  # the first request's, and one for digit 7 alone
    items = mixed["predictions"]
    assert [item["classes"][0]["label"] for item in items[:2]] == ["7", "3"]
    assert items[2]["error"]["code"] == "image_decode_failed"
    assert (await lookups(tier, "hit"), await lookups(tier, "miss")) == (1, 3)  # the undecodable one too
    assert len(tier.services.pipeline.cache) == 2  # the undecodable image is no answer to keep
    again = await predict_json(tier, {"instances": [b64(DIGITS[7]), b64(DIGITS[3])]})
    assert await predicts(tier) == 2
    assert [item["classes"][0]["label"] for item in again["predictions"]] == ["7", "3"]


@pytest.mark.gen_test(timeout=60)
async def test_an_undecodable_image_is_not_kept(make_tier: TierFactory) -> None:
    tier = await make_tier([ON])
    broken = DIGIT[: len(DIGIT) // 2]
    answers = [await predict_json(tier, {"instances": [b64(broken)]}) for _ in range(2)]
    assert [a["predictions"][0]["error"]["code"] for a in answers] == ["image_decode_failed"] * 2
    assert len(tier.services.pipeline.cache) == 0
    assert (await lookups(tier, "hit"), await lookups(tier, "miss")) == (0, 2)


@pytest.mark.gen_test(timeout=60)
async def test_a_repeated_url_is_downloaded_again_but_not_predicted_again(
    make_tier: TierFactory, images: ImageServer
) -> None:
    tier = await make_tier([ON])
    url = images.url("digit_9.png")
    hits = len([path for path in images.hits if path.endswith("digit_9.png")])
    answers = [await predict_json(tier, {"instances": [{"url": url}]}) for _ in range(2)]
    assert answers[0] == answers[1] and answers[0]["predictions"][0]["classes"][0]["label"] == "9"
    assert len([path for path in images.hits if path.endswith("digit_9.png")]) == hits + 2
    assert await predicts(tier) == 1


@pytest.mark.gen_test(timeout=60)
async def test_the_least_recently_used_entries_go_when_the_bytes_run_out(make_tier: TierFactory) -> None:
    tier = await make_tier([f"cache.max_bytes={2 * ROW_BYTES + 100}"])
    for n in (0, 3):
        await predict(tier, DIGITS[n])
    await predict(tier, DIGITS[0])  # a hit: 0 is now the most recently used, 3 the least
    await predict(tier, DIGITS[7])  # no room for a third: 3 goes
    cache = tier.services.pipeline.cache
    assert (len(cache), cache.nbytes) == (2, 2 * ROW_BYTES)
    assert (await scrape(tier))[("imagegate_cache_evictions_total", ())] == 1
    assert await predicts(tier) == 3
    await predict(tier, DIGITS[0])
    await predict(tier, DIGITS[7])
    assert await predicts(tier) == 3
    await predict(tier, DIGITS[3])
    assert await predicts(tier) == 4


@pytest.mark.gen_test(timeout=60)
async def test_off_by_default_nothing_is_hashed_or_kept(make_tier: TierFactory) -> None:
    tier = await make_tier()
    cache = tier.services.pipeline.cache
    assert cache.max_bytes == 0
    await predict(tier)
    await predict(tier)
    assert await predicts(tier) == 2
    assert (len(cache), cache.nbytes) == (0, 0)
    assert await lookups(tier, "miss") == 0  # nothing was looked up, so nothing was hashed
    found = cache.find(tier.services.pipeline.models["digits"], _route(tier), [DIGIT])
    assert found.digests is None


def _route(tier: Tier) -> Route:
    call = PredictCall("digits", ())
    return tier.services.pipeline.predictor.route(tier.services.pipeline.models["digits"], call, RequestContext("x"))


@pytest.mark.gen_test(timeout=120)
async def test_a_reload_leaves_the_old_entries_unreachable(make_tier: TierFactory, backend: LocalBackend) -> None:
    settings = dev_settings(backend.address, [ON, "server.shutdown_timeout_s=0.1"])
    tier = await make_tier(settings=settings)
    await predict(tier)
    await predict(tier)
    assert await predicts(tier) == 1
    reloader = Reloader(tier.server, tier.services, lambda: settings)
    try:
        assert await reloader.reload()
        cache = reloader.services.pipeline.cache
        assert cache is tier.services.pipeline.cache and len(cache) == 0 and cache.nbytes == 0
        await predict(tier)
        assert await predicts(tier) == 2  # the metrics carry over a reload: the repeat after it was a Predict
        await predict(tier)
        assert await predicts(tier) == 2
    finally:
        await reloader.close()


ROUTES = [
    {"name": "stable", "label": "stable", "weight": 50},
    {"name": "canary", "version": 2, "weight": 50, "canary": True},
]


async def users_by_route(tier: Tier, count: int = 20) -> dict[str, list[str]]:
    """Users (``X-User-Id``) by the route the router sends them to."""
    router = tier.services.pipeline.predictor.routers["digits"]
    found: dict[str, list[str]] = {"stable": [], "canary": []}
    for i in range(count):
        target = router.choose(f"user-{i}")
        assert target is not None
        found[target.name].append(f"user-{i}")
    return found


@pytest.mark.gen_test(timeout=120)
async def test_a_canary_never_gets_a_stable_answer_nor_the_reverse(
    make_tier: TierFactory, backend: LocalBackend, tmp_path: Path
) -> None:
    tier = await make_tier(settings=routed(backend.address, tmp_path, ROUTES))
    users = await users_by_route(tier)
    stable, canary = users["stable"][0], users["canary"][0]
    versions: Counter[tuple[str, int]] = Counter()
    for user in (stable, canary, stable, canary):
        versions[user, (await predict(tier, user=user))["model"]["version"]] += 1
    assert versions == Counter({(stable, 1): 2, (canary, 2): 2})
    assert await predicts(tier) == 2  # one per route; each repeat was a hit on its own route's entry


def routed(address: str, tmp_path: Path, targets: list[dict[str, Any]], *overrides: str) -> Settings:
    """digits alone with ``targets`` (tools/rollout_demo.py's tier file), the cache on, on ``address``."""
    tier_file = tmp_path / "imagegate.yaml"
    tier_file.write_text(tier_config(targets))
    return load_settings(tier_file, {}, [f"backend.address={address}", "server.port=0", ON, *overrides])


async def cached_until_the_poller_sees(
    make_tier: TierFactory, tmp_path: Path, targets: list[dict[str, Any]], before: str, labels_after: dict[str, int]
) -> None:
    """On a backend of its own serving ``before``, a repeat is a hit on version 1; once the backend serves versions
    1 and 2 (``labels_after``) and the poller has looked, the same image is predicted again, by version 2."""
    config = tmp_path / "models.config"
    config.write_text(before)
    own = start_local_backend(model_config_file=config)
    try:
        tier = await make_tier(settings=routed(own.address, tmp_path, targets, "models.digits.routes.poll_s=0"))
        assert [(await predict(tier))["model"]["version"] for _ in range(2)] == [1, 1]
        assert await predicts(tier) == 1

        after = backend_config("versions: 1 versions: 2", labels_after)
        await asyncio.to_thread(reload_config, own.address, after)
        assert tier.services.poller is not None
        await tier.services.poller.poll()
        assert [(await predict(tier))["model"]["version"] for _ in range(2)] == [2, 2]
        assert await predicts(tier) == 2
    finally:
        own.stop()


@pytest.mark.gen_test(timeout=120)
async def test_a_promote_and_a_reset_leave_the_old_entries_unreachable(
    make_tier: TierFactory, backend: LocalBackend, tmp_path: Path
) -> None:
    tier = await make_tier(settings=routed(backend.address, tmp_path, ROUTES))
    user = (await users_by_route(tier))["stable"][0]
    token = {"Authorization": f"Bearer {tier.services.settings.server.admin_token}"}
    expected = 1
    for admin in ("/admin/models/digits/routes/stable:promote", "/admin/models/digits/routes:reset"):
        await predict(tier, user=user)
        await predict(tier, user=user)
        assert await predicts(tier) == expected
        await AsyncHTTPClient().fetch(tier.url(admin), method="POST", body=b"", headers=token)
        expected += 1
    await predict(tier, user=user)
    assert await predicts(tier) == expected


@pytest.mark.gen_test(timeout=180)
async def test_a_label_the_poller_sees_move_leaves_the_old_entries_unreachable(
    make_tier: TierFactory, tmp_path: Path
) -> None:
    stable = [{"name": "stable", "label": "stable", "weight": 100}]
    before = backend_config("versions: 1 versions: 2", {"stable": 1})
    await cached_until_the_poller_sees(make_tier, tmp_path, stable, before, {"stable": 2})


@pytest.mark.gen_test(timeout=60)
async def test_a_detection_hit_maps_its_boxes_to_its_own_image_as_a_predict_does(make_tier: TierFactory) -> None:
    """The row's geometry is kept with it: the boxes of a hit land where the Predict's did, in the image's pixels."""
    tier = await make_tier([ON])
    image = np.full((300, 400, 3), 255, np.uint8)
    image[50:150, 220:320] = (0, 0, 255)  # a saturated red square (BGR), 100 px, off the letterbox's centre
    ok, png = cv2.imencode(".png", image)
    assert ok
    answers = [await predict_json(tier, {"instances": [b64(png.tobytes())]}, model="squares") for _ in range(2)]
    assert answers[0] == answers[1]
    assert await predicts(tier, "squares") == 1 and await lookups(tier, "hit", "squares") == 1
    (box,) = answers[0]["predictions"][0]["detections"]
    assert box["label"] == "red"
    assert [round(box["box"][k]) for k in ("x", "y", "width", "height")] == [220, 50, 100, 100]
    # A hit applies this request's detection settings, as top_k: the red square scores 0.9.
    above = await predict_json(tier, {"instances": [b64(png.tobytes())], "score_threshold": 0.95}, model="squares")
    assert above["predictions"][0]["detections"] == []
    assert await predicts(tier, "squares") == 1 and await lookups(tier, "hit", "squares") == 2


@pytest.mark.gen_test(timeout=180)
async def test_a_version_the_poller_sees_loaded_leaves_the_default_versions_entries_unreachable(
    make_tier: TierFactory, tmp_path: Path
) -> None:
    """A model without routes answers a request that names no version from its latest: the poller watches it."""
    await cached_until_the_poller_sees(make_tier, tmp_path, [], backend_config("versions: 1", {}), {})


@pytest.mark.gen_test(timeout=60)
async def test_a_partial_hits_decode_times_name_the_requests_own_items(make_tier: TierFactory) -> None:
    """What traces and logs read (the context's intervals) names each decoded image by its place in the request."""
    tier = await make_tier([ON])
    await predict(tier, DIGITS[3])
    sources = tuple(ImageSource(f"digit {n}", data=DIGITS[n]) for n in (3, 7, 3, 9))
    context = RequestContext("partial")
    prediction = await tier.services.pipeline.run(PredictCall("digits", sources), context)
    assert [item.source for item in prediction.items] == ["digit 3", "digit 7", "digit 3", "digit 9"]
    assert [i.item for i in context.intervals if i.stage == "decode"] == [1, 3]
