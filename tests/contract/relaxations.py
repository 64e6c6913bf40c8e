"""The schemathesis hook that schemathesis.toml names (``hooks``): the relaxations a configuration key cannot say,
because they depend on the request's media type or on the answer, not on its operation. The reasons are in
schemathesis.toml."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData

MULTIPART = "multipart/form-data"
NOT_A_DETECTOR = "applies only to detection models"  # processing/prediction.py's check_request_params


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop "schema-violating request accepted" for a multipart form (1), and "schema-valid request rejected" when
    the tier refused a detection parameter for a model of another kind (5); keep every other failure."""
    form = (case.media_type or "").split(";")[0].strip().lower() == MULTIPART
    if form and isinstance(failure, AcceptedNegativeData):
        return False
    return not (isinstance(failure, RejectedPositiveData) and _not_a_detector(response))


def _not_a_detector(response: Any) -> bool:
    """The answer is 400 invalid_request refusing a detection parameter for a model that is no detector."""
    if response is None or response.status_code != 400:
        return False
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        isinstance(error, dict)
        and error.get("code") == "invalid_request"
        and NOT_A_DETECTOR in error.get("message", "")
    )
