"""schemathesis' full CLI run against a tier process, from the tier's own /openapi.json: every phase, every check.

``schemathesis run URL --checks all`` with the checked-in configuration (``schemathesis.toml``: a fixed seed,
deterministic generation, a bounded number of examples, and the deliberate relaxations, each with its reason).
The tier may download only from this test's image server, alone on 127.0.0.5: the policy allows that one address
and host name, so no generated URL reaches anything else and no name is ever resolved.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import LocalBackend
from tests.support.imageserver import ImageServer
from tests.support.tier import ROOT, TierProcess, start_tier

IMAGE_HOST = "127.0.0.5"
CONFIG = ROOT / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
PHASES = ("examples", "coverage", "fuzzing", "stateful")
LIMIT_S = 600  # a hung run fails here; the configuration's examples bound its length (about a minute)


@pytest.fixture(scope="module")
def contract_images() -> Iterator[ImageServer]:
    with ImageServer(host=IMAGE_HOST) as server:
        yield server


@pytest.fixture(scope="module")
def contract_tier(backend: LocalBackend, contract_images: ImageServer) -> Iterator[TierProcess]:
    overrides = [f"fetch.allow_cidrs=[{IMAGE_HOST}/32]", f"fetch.allow_hosts=[{IMAGE_HOST}]", "fetch.total_timeout_s=3"]
    tier = start_tier(backend.address, overrides=overrides)
    yield tier
    tier.stop()
    output = "".join(tier.output)
    assert "Traceback" not in output, output[-4000:]


@pytest.mark.slow
def test_the_tier_holds_to_its_openapi_document(contract_tier: TierProcess) -> None:
    """All phases, all checks, 0 failures under schemathesis.toml's relaxations."""
    args = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run"]
    args += [f"{contract_tier.base_url}/openapi.json", "--checks", "all", "--phases", ",".join(PHASES)]
    started = time.monotonic()
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=LIMIT_S)
    report = run.stdout + run.stderr
    summary = report[report.find("= SUMMARY =") :]
    print(f"\nschemathesis CLI, {time.monotonic() - started:.1f} s:\n{summary}")
    assert run.returncode == 0, report[-20000:]
    assert f"Configuration:    {CONFIG}" in report, "schemathesis did not read the checked-in configuration"
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, f"the {phase.lower()} phase did not run and pass:\n{summary}"
    assert "Examples" in summary  # runs; the document carries no examples yet, so it skips every operation
