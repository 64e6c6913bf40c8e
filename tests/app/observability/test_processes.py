"""Observability of real tier processes: JSON log lines, and one scrape that counts every --workers process."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES
from tests.support.tier import start_tier

DIGIT = (FIXTURES / "digit_3.png").read_bytes()


def post(base_url: str, path: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(base_url + path, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def scrape(base_url: str) -> dict[str, float]:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_json_logs_are_one_object_per_line_with_the_request_fields(backend: LocalBackend) -> None:
    tier = start_tier(backend.address, extra_args=["--log-format", "json"])
    try:
        assert post(tier.base_url, "/v1/models/digits:predict", DIGIT, "image/png") == 200
        assert post(tier.base_url, "/v1/models/digits:predict", b"{", "application/json") == 400
    finally:
        assert tier.stop() == 0
    announcements = [line for line in tier.output if line.startswith("imagegate: ")]  # plain lines on stdout
    records: list[dict[str, Any]] = [json.loads(line) for line in tier.output if line not in announcements]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "tornado.access"]
    ok, bad = access
    assert (ok["status"], ok["model"], ok["version"], ok["method"], ok["path"]) == (
        200,
        "digits",
        2,
        "POST",
        "/v1/models/digits:predict",
    )
    assert len(ok["request_id"]) == 32 and ok["duration_ms"] > 0 and ok["item_errors"] == {}
    assert (bad["status"], bad["level"]) == (400, "WARNING")


def test_a_scrape_of_one_worker_counts_every_worker(backend: LocalBackend) -> None:
    tier = start_tier(backend.address, workers=2, overrides=["server.max_in_flight_images=100"])
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(lambda _: post(tier.base_url, "/v1/models/digits:predict", DIGIT, "image/png"), range(16))
            )
        assert codes == [200] * 16
        samples = scrape(tier.base_url)
    finally:
        assert tier.stop() == 0
    labels = json.dumps({"model": "digits", "route": "predict", "status": "200"}, sort_keys=True)
    assert samples["imagegate_requests_total" + labels] == 16
    assert samples["imagegate_images_in_flight_limit{}"] == 200  # both live workers' bounds, added up
