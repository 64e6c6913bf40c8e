"""schemathesis against a tier process, from the tier's own /openapi.json, with every check on.

The tier may download only from this test's image server, alone on 127.0.0.5: the policy allows that one
address and host name, so no generated URL reaches anything else and no name is ever resolved. Fixed
seed (``derandomize``), a bounded number of examples per operation, and a time budget for the whole run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.config._checks import NegativeDataRejectionConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.backend import LocalBackend
from tests.support.imageserver import ImageServer
from tests.support.tier import TierProcess, start_tier

IMAGE_HOST = "127.0.0.5"
EXAMPLES = 60  # per operation and phase
BUDGET_S = 120
STATUSES: Counter[int] = Counter()
STARTED: list[float] = []
OPERATIONS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def contract_images() -> Iterator[ImageServer]:
    with ImageServer(host=IMAGE_HOST) as server:
        yield server


@pytest.fixture(scope="module")
def contract_tier(backend: LocalBackend, contract_images: ImageServer) -> Iterator[TierProcess]:
    overrides = [f"fetch.allow_cidrs=[{IMAGE_HOST}/32]", f"fetch.allow_hosts=[{IMAGE_HOST}]", "fetch.total_timeout_s=3"]
    tier = start_tier(backend.address, overrides=overrides)
    STARTED.append(time.monotonic())
    yield tier
    tier.stop()
    print(
        f"\nschemathesis: {sum(STATUSES.values())} requests over {len(OPERATIONS)} operations,"
        f" statuses {dict(sorted(STATUSES.items()))}, {time.monotonic() - STARTED[0]:.1f} s"
    )
    output = "".join(tier.output)
    assert "Traceback" not in output, output[-4000:]


@pytest.fixture(scope="module")
def api_schema(contract_tier: TierProcess) -> BaseSchema:
    schema = schemathesis.openapi.from_url(contract_tier.base_url + "/openapi.json")
    # A request over a limit (too many images, parts or bytes) is refused 413, as documented, rather than 400.
    rejection = schema.config.checks.negative_data_rejection
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*rejection.expected_statuses, "413"]
    )
    return schema


CONTRACT = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_tier_holds_to_its_openapi_document(api_schema: BaseSchema, mode: GenerationMode) -> None:
    """Every operation of the document, in valid and invalid requests: all of schemathesis's checks pass."""
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation fails here, as it should

        @CONTRACT
        @given(case=operation.as_strategy(mode))
        def exercise(case: Case[Any]) -> None:
            assert time.monotonic() - STARTED[0] < BUDGET_S, "the schemathesis run is over its time budget"
            infer = case.operation.path.endswith("/infer")
            # A schema cannot say that an element is an image: a valid infer of non-images is answered 400,
            # as the protocol answers a failed image (docs/interfaces.md); everything else is checked as usual.
            response = case.call_and_validate(timeout=20, excluded_checks=[positive_data_acceptance] if infer else None)
            if infer and mode == GenerationMode.POSITIVE:
                assert response.status_code in (200, 400, 404), response.text
            STATUSES[response.status_code] += 1
            OPERATIONS[case.operation.label] += 1

        try:
            exercise()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # an operation with no parameters or body has no invalid request
