"""The schemathesis hook that schemathesis.toml names (``hooks``): the one relaxation a configuration key cannot
say, because it depends on the request's media type, not on its operation. The reasons are in schemathesis.toml."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData

MULTIPART = "multipart/form-data"


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop "schema-violating request accepted" for a multipart form; keep every other failure."""
    form = (case.media_type or "").split(";")[0].strip().lower() == MULTIPART
    return not (form and isinstance(failure, AcceptedNegativeData))
