"""gRPC statuses from the backend, seen through real HTTP: each becomes our error code and HTTP status.

The mapping lives in ``app/backend/rpc_errors.py``; the label re-check in ``app/backend/tfserving.py``.
Statuses the real local backend answers for real (NOT_FOUND for an unknown version, INVALID_ARGUMENT
for an unknown label) are asked of it; the others are injected with the fake TF-Serving backend
from ``tools/fakeserving.py`` (``log.fail_with``, ``log.delay_s``), a dev tool, not a real server.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import grpc
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.backend.rpc_errors import translate_rpc_error
from app.backend.types import ModelRef
from app.errors import BackendFailed
from app.serving.lifecycle import report_period
from app.settings import Settings, load_settings
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES
from tools.fakeserving import FakeBackend, FakeModel, start_fake_backend

PREDICT = "/v1/models/tiny:predict"
OTHER_STATUSES = [
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DATA_LOSS,
]


def fake_settings(address: str, *overrides: str) -> Settings:
    """A tier with the one model the fake serves, ``tiny`` on its uint8 signature."""
    return load_settings(
        None,
        {},
        [
            f"backend.address={address}",
            "server.port=0",
            "backend.startup_timeout_s=5",
            "models.tiny.signature=serving_uint8",
            *overrides,
        ],
    )


async def predict(tier: Tier, path: str = PREDICT, image: str = "coffee.jpg") -> tuple[int, Any]:
    """POST one photo as the raw body; the status and the JSON answer."""
    content_type = "image/png" if image.endswith(".png") else "image/jpeg"
    response = await AsyncHTTPClient().fetch(
        tier.url(path),
        method="POST",
        body=(FIXTURES / image).read_bytes(),
        headers={"Content-Type": content_type},
        raise_error=False,
    )
    return response.code, json.loads(response.body)


def error_code(answer: Any) -> str:
    code: str = answer["error"]["code"]
    return code


# --- UNAVAILABLE -> 503 backend_unavailable ------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_stopped_backend_is_503_backend_unavailable(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await make_tier(settings=fake_settings(fake.address))
    assert (await predict(tier))[0] == 200
    fake.stop()
    code, answer = await predict(tier)
    assert code == 503, answer
    assert error_code(answer) == "backend_unavailable"


@pytest.mark.gen_test(timeout=30)
async def test_an_unavailable_answer_is_retried_then_503(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await make_tier(settings=fake_settings(fake.address))
    fake.log.fail_with = grpc.StatusCode.UNAVAILABLE
    code, answer = await predict(tier)
    assert code == 503, answer
    assert error_code(answer) == "backend_unavailable"
    assert fake.log.batch_sizes == [1, 1, 1]  # the channel's retry policy: 3 attempts, UNAVAILABLE only


# --- DEADLINE_EXCEEDED -> 504 backend_timeout ----------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_backend_slower_than_the_deadline_is_504_backend_timeout(
    make_tier: TierFactory, fake: FakeBackend
) -> None:
    tier = await make_tier(settings=fake_settings(fake.address, "backend.timeout_s=0.3"))
    fake.log.delay_s = 2.0
    started = time.monotonic()
    code, answer = await predict(tier)
    elapsed = time.monotonic() - started
    assert code == 504, answer
    assert error_code(answer) == "backend_timeout"
    assert elapsed < 1.5  # answered at the deadline, not when the fake finally would have
    assert fake.log.batch_sizes == [1]  # a deadline is not retried


# --- NOT_FOUND -> 404 model_not_found ------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_version_on_the_real_backend_is_404(tier: Tier) -> None:
    code, answer = await predict(tier, "/v1/models/digits/versions/99:predict", "digit_3.png")
    assert code == 404, answer
    assert error_code(answer) == "model_not_found"
    assert "'digits' version 99" in answer["error"]["message"]


@pytest.mark.gen_test(timeout=30)
async def test_a_model_the_backend_stopped_serving_is_404(make_tier: TierFactory, fake: FakeBackend) -> None:
    """The backend restarts on the same address without the model the tier started with."""
    tier = await make_tier(settings=fake_settings(fake.address))
    fake.stop()
    other = start_fake_backend([FakeModel("other", 8)], port=fake.port)
    try:
        code, answer = await predict(tier)
    finally:
        other.stop()
    assert code == 404, answer
    assert error_code(answer) == "model_not_found"


# --- INVALID_ARGUMENT -> 500 internal_error, or 404 for an unknown label -------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_request_is_500_internal_error(make_tier: TierFactory, fake: FakeBackend) -> None:
    tier = await make_tier(settings=fake_settings(fake.address))
    fake.log.fail_with = grpc.StatusCode.INVALID_ARGUMENT
    for path in [PREDICT, "/v1/models/tiny/versions/1:predict"]:
        code, answer = await predict(tier, path)
        assert code == 500, (path, answer)
        assert error_code(answer) == "internal_error"


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_request_with_a_known_label_stays_500(make_tier: TierFactory, fake: FakeBackend) -> None:
    """The fake has metadata for any label, so the re-check clears the label: the refusal is ours."""
    tier = await make_tier(settings=fake_settings(fake.address))
    fake.log.fail_with = grpc.StatusCode.INVALID_ARGUMENT
    code, answer = await predict(tier, "/v1/models/tiny/labels/stable:predict")
    assert code == 500, answer
    assert error_code(answer) == "internal_error"


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_label_on_the_real_backend_is_404(tier: Tier) -> None:
    code, answer = await predict(tier, "/v1/models/digits/labels/nope:predict", "digit_3.png")
    assert code == 404, answer
    assert error_code(answer) == "model_not_found"
    assert "'digits' label 'nope'" in answer["error"]["message"]


# --- Every other status -> 502 backend_error -----------------------------------------------


@pytest.mark.parametrize("status", OTHER_STATUSES, ids=lambda s: s.name)
@pytest.mark.gen_test(timeout=30)
async def test_any_other_status_is_502_and_the_tier_keeps_serving(
    make_tier: TierFactory, fake: FakeBackend, status: grpc.StatusCode
) -> None:
    tier = await make_tier(settings=fake_settings(fake.address))
    fake.log.fail_with = status
    code, answer = await predict(tier)
    assert code == 502, answer
    assert error_code(answer) == "backend_error"
    assert f"({status.name})" in answer["error"]["message"]
    assert fake.log.batch_sizes == [1]  # not retried
    fake.log.fail_with = None
    code, answer = await predict(tier)
    assert code == 200, answer
    assert answer["model"] == {"name": "tiny", "version": 1}


def test_an_rpc_error_that_is_not_a_call_is_backend_failed() -> None:
    error = translate_rpc_error(grpc.RpcError(), ModelRef("tiny"), retry_after_s=1)
    assert isinstance(error, BackendFailed)
    assert (error.code, error.status) == ("backend_error", 502)
    assert "UNKNOWN" in error.message and "tiny" in error.log_message


@pytest.mark.gen_test(timeout=30)
async def test_an_outage_is_answered_with_retry_after_and_logged_as_one_summary(
    make_tier: TierFactory, fake: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """503 and 504 from the backend carry Retry-After; no ERROR line, no line per request, one WARNING summary."""
    tier = await make_tier(settings=fake_settings(fake.address, "server.retry_after_s=3", "backend.timeout_s=0.3"))
    fake.log.fail_with = grpc.StatusCode.UNAVAILABLE
    with caplog.at_level(logging.DEBUG):
        answers = [await raw_predict(tier) for _ in range(5)]
        fake.log.fail_with, fake.log.delay_s = None, 2.0
        answers.append(await raw_predict(tier))
        report_period(tier.services.pipeline.admission, tier.services.client.failures, 10.0)
    assert [(r.code, r.headers.get("Retry-After")) for r in answers] == [(503, "3")] * 5 + [(504, "3")]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.name == "imagegate.http"] == []
    access = [r for r in caplog.records if r.name == "tornado.access"]
    assert [r.levelno for r in access] == [logging.WARNING] * 6
    summaries = [r.getMessage() for r in caplog.records if r.name == "imagegate" and r.levelno == logging.WARNING]
    assert summaries == ["backend failures in the last 10 s: 1 backend_timeout, 5 backend_unavailable"]


async def raw_predict(tier: Tier) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(
        tier.url(PREDICT),
        method="POST",
        body=(FIXTURES / "coffee.jpg").read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        raise_error=False,
    )
