"""docs/operations.md names only the gRPC options that the tier's client or TF Serving's manifests really set."""

from __future__ import annotations

import re

from tests.deploy.manifests import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"
# Where gRPC options are set: the tier's channel, and TF Serving's command lines.
SETTERS = [*(ROOT / "app" / "backend").glob("*.py"), ROOT / "deploy" / "k8s" / "tfserving.yaml"]


def unset_options(text: str) -> list[str]:
    """gRPC options (``grpc.x_y``) the text names that no setter sets."""
    setters = "\n".join(path.read_text(encoding="utf-8") for path in SETTERS)
    named = set(re.findall(r"\bgrpc\.[a-z][a-z0-9_]+", text)) - {"grpc.aio"}
    return sorted(option for option in named if option not in setters)


def test_operations_names_only_options_that_are_set() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    assert re.search(r"\bgrpc\.", text)
    assert unset_options(text) == []


def test_the_option_check_notices() -> None:
    assert unset_options("needs `grpc.per_rpc_retry_buffer_size` above the largest batch") == [
        "grpc.per_rpc_retry_buffer_size"
    ]
