"""/metrics on a real tier: after a known mix of requests, the scrape's counters equal what was sent and the
histograms' counts equal the stages that ran; client strings never become label values."""

from __future__ import annotations

import asyncio
import json
import re

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.fetch.fetcher import READ_AHEAD_BYTES
from app.settings import load_settings
from tests.app.test_admission import HeldSource
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.tier import ROOT
from tools.fakeserving import FakeBackend

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def fake_tier(make_tier: TierFactory, fake: FakeBackend, *overrides: str) -> Tier:
    settings = load_settings(
        None,
        {},
        [
            f"backend.address={fake.address}",
            "server.port=0",
            "fetch.allow_cidrs=[127.0.0.1/32]",
            "models.tiny.signature=serving_uint8",
            *overrides,
        ],
    )
    tier: Tier = await make_tier(settings=settings)
    return tier


async def send(tier: Tier, path: str, body: bytes, content_type: str, **headers: str) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(
        tier.url(path),
        method="POST",
        body=body,
        headers={"Content-Type": content_type, **headers},
        raise_error=False,
        request_timeout=20,
    )


async def scrape(tier: Tier) -> tuple[Samples, str]:
    response = await AsyncHTTPClient().fetch(tier.url("/metrics"))
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.gen_test(timeout=60)
async def test_a_known_mix_is_counted_exactly(make_tier: TierFactory, fake: FakeBackend, images: ImageServer) -> None:
    tier = await fake_tier(make_tier, fake, "server.max_in_flight_images=2")
    predict = "/v1/models/tiny:predict"
    for _ in range(2):
        assert (await send(tier, predict, COFFEE, "image/jpeg")).code == 200
    urls = json.dumps([images.url("coffee.jpg"), images.url("metrics/gone.jpg")]).encode()
    assert (await send(tier, predict, urls, "application/json")).code == 200
    assert (await send(tier, "/v1/models/no-such-model:predict", COFFEE, "image/jpeg")).code == 404
    assert (await send(tier, predict, b'{"instances": [', "application/json")).code == 400
    held = HeldSource(images, "metrics/held.jpg")
    holding = await held.occupy(tier)  # one image in flight of 2
    while_held, _ = await scrape(tier)
    assert value(while_held, "imagegate_memory_held_bytes") >= READ_AHEAD_BYTES  # its download's reservation
    refused = await send(tier, predict, json.dumps([images.url("coffee.jpg")] * 2).encode(), "application/json")
    assert refused.code == 503
    held.release.set()
    assert (await holding).code == 200

    samples, text = await scrape(tier)
    requests = "imagegate_requests_total"
    assert value(samples, requests, route="predict", model="tiny", status="200") == 4
    assert value(samples, requests, route="predict", model="tiny", status="400") == 1
    assert value(samples, requests, route="predict", model="tiny", status="503") == 1
    assert value(samples, requests, route="predict", model="", status="404") == 1
    assert value(samples, "imagegate_requests_shed_total") == 1
    assert value(samples, "imagegate_items_total", model="tiny", outcome="ok") == 4
    assert value(samples, "imagegate_items_total", model="tiny", outcome="source_http_error") == 1
    assert value(samples, "imagegate_downloaded_bytes_total") == 2 * len(COFFEE)
    assert value(samples, "imagegate_download_duration_seconds_count") == 3  # coffee, gone, held
    assert value(samples, "imagegate_upload_read_duration_seconds_count") == 3  # 2 uploads + the unknown model's
    assert value(samples, "imagegate_decode_duration_seconds_count") == 4
    assert value(samples, "imagegate_batch_wait_duration_seconds_count", model="tiny") == 4
    assert value(samples, "imagegate_backend_predict_duration_seconds_count", model="tiny", version="1") == 4
    assert value(samples, "imagegate_postprocess_duration_seconds_count", model="tiny") == 4
    assert (
        value(samples, "imagegate_request_duration_seconds_count", route="predict", model="tiny", status_class="2xx")
        == 4
    )
    assert value(samples, "imagegate_images_in_flight_limit") == 2
    assert value(samples, "imagegate_images_in_flight") == 0
    assert value(samples, "imagegate_memory_held_bytes") == 0  # every request gave back what it held
    assert value(samples, "imagegate_memory_budget_bytes") > 0
    assert value(samples, "imagegate_model_available", model="tiny", version="1") == 1
    assert value(samples, "imagegate_build_info", version="0.1.0") == 1
    assert "no-such-model" not in text and "gone.jpg" not in text  # client strings never become labels


@pytest.mark.gen_test(timeout=60)
async def test_backend_failures_and_retries_are_counted(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await fake_tier(make_tier, fake)
    fake.log.fail_with = grpc.StatusCode.UNAVAILABLE
    assert (await send(tier, "/v1/models/tiny:predict", COFFEE, "image/jpeg")).code == 503
    samples, _ = await scrape(tier)
    assert len(fake.log.batch_sizes) == 3  # the first attempt and two retries
    assert value(samples, "imagegate_backend_retries_total") == 2
    assert value(samples, "imagegate_backend_failures_total", code="backend_unavailable") == 1


@pytest.mark.gen_test(timeout=60)
async def test_batch_sizes_are_observed_per_micro_batch(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await fake_tier(
        make_tier, fake, "models.tiny.batching.max_batch_size=8", "models.tiny.batching.max_wait_ms=200"
    )
    answers = await asyncio.gather(*(send(tier, "/v1/models/tiny:predict", COFFEE, "image/jpeg") for _ in range(3)))
    assert [a.code for a in answers] == [200] * 3
    samples, _ = await scrape(tier)
    batches = len(fake.log.batch_sizes)
    assert value(samples, "imagegate_batch_size_count", model="tiny") == batches
    assert value(samples, "imagegate_batch_size_sum", model="tiny") == 3


def server_timing(header: str) -> dict[str, float]:
    entries = (part.strip().split(";dur=") for part in header.split(","))
    return {name: float(duration) for name, duration in entries}


@pytest.mark.gen_test(timeout=60)
async def test_server_timing_stages_sum_to_no_more_than_the_total(
    make_tier: TierFactory, fake: FakeBackend, images: ImageServer
) -> None:
    tier = await fake_tier(make_tier, fake)
    urls = json.dumps([images.url(name) for name in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")]).encode()
    response = await send(tier, "/v1/models/tiny:predict", urls, "application/json")
    timing = server_timing(response.headers["Server-Timing"])
    assert set(timing) == {"download", "decode", "batch_wait", "predict", "postprocess", "total"}
    stages = sum(d for name, d in timing.items() if name != "total")
    assert stages <= timing["total"] + 0.01 * len(timing)  # each rounded to 0.01 ms
    assert json.loads(response.body)["timing_ms"] > 0


@pytest.mark.gen_test(timeout=60)
async def test_request_ids_are_echoed_validated_and_sent_to_the_backend(
    make_tier: TierFactory, fake: FakeBackend
) -> None:
    tier = await fake_tier(make_tier, fake)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ok = await send(
        tier, "/v1/models/tiny:predict", COFFEE, "image/jpeg", **{"X-Request-Id": "abc-123"}, traceparent=traceparent
    )
    assert ok.headers["X-Request-Id"] == "abc-123"
    assert fake.log.metadata[-1]["x-request-id"] == "abc-123"
    assert fake.log.metadata[-1]["traceparent"] == traceparent
    for bad in ("x" * 129, "has space", "semi;colon"):
        refused = await send(tier, "/v1/models/tiny:predict", b"", "text/plain", **{"X-Request-Id": bad})
        generated = refused.headers["X-Request-Id"]
        assert generated != bad and len(generated) == 32
        assert json.loads(refused.body)["error"]["request_id"] == generated
    health = await AsyncHTTPClient().fetch(tier.url("/healthz"))
    assert len(health.headers["X-Request-Id"]) == 32


@pytest.mark.gen_test(timeout=60)
async def test_a_micro_batched_predict_carries_every_request_id(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await fake_tier(
        make_tier, fake, "models.tiny.batching.max_batch_size=8", "models.tiny.batching.max_wait_ms=300"
    )
    ids = [f"req-{i}" for i in range(3)]
    await asyncio.gather(
        *(send(tier, "/v1/models/tiny:predict", COFFEE, "image/jpeg", **{"X-Request-Id": i}) for i in ids)
    )
    sent = ",".join(m["x-request-id"] for m in fake.log.metadata).split(",")
    assert sorted(sent) == ids
    assert len(fake.log.metadata) < 3  # at least two shared a Predict


@pytest.mark.gen_test(timeout=60)
async def test_every_metric_in_a_scrape_is_documented(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await fake_tier(make_tier, fake)
    assert (await send(tier, "/v1/models/tiny:predict", COFFEE, "image/jpeg")).code == 200
    response = await AsyncHTTPClient().fetch(tier.url("/metrics"))
    scraped = text_string_to_metric_families(response.body.decode())
    families = {f.name for f in scraped if f.name.startswith("imagegate") and not f.name.endswith("_created")}
    docs = (ROOT / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(imagegate_[a-z_]+)` \|", docs, re.MULTILINE))
    # The parser names counters without their _total suffix.
    assert {f if f in documented else f + "_total" for f in families} == documented
