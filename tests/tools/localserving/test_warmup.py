"""TF Serving's warm-up records (``assets.extra/tf_serving_warmup_requests``): localserving runs them before a
version is AVAILABLE, a failing one fails the version's load, and ``--enable_model_warmup=false`` skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.backend import LocalBackend, start_local_backend
from tests.support.savedmodels import write_affine_versions
from tests.tools.localserving.conftest import POLL_FAST, install_version
from tests.tools.localserving.rpc import AVAILABLE, END, Client, wait_until


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Affine version 1 with two good warm-up records, version 2 with one that fails."""
    good, bad = tmp_path_factory.mktemp("warm-good"), tmp_path_factory.mktemp("warm-bad")
    write_affine_versions(good, [1], warmup="good")
    write_affine_versions(bad, [2], warmup="bad")
    return {"good": good, "bad": bad}


@pytest.fixture
def base(tmp_path: Path, stores: dict[str, Path]) -> Path:
    base = tmp_path / "affine"
    base.mkdir()
    install_version(stores["good"], base, 1)
    return base


@pytest.fixture
def served(base: Path) -> Iterator[tuple[LocalBackend, Client]]:
    backend = start_local_backend(model_name="affine", model_base_path=base, extra_args=[POLL_FAST])
    client = Client.connect(backend.address)
    yield backend, client
    client.close()
    backend.stop()


def test_a_version_runs_its_records_before_it_is_available_and_a_failing_record_fails_its_load(
    served: tuple[LocalBackend, Client], base: Path, stores: dict[str, Path]
) -> None:
    backend, client = served
    assert "affine version 1" in backend.logs() and "(warmed with 2 warm-up records)" in backend.logs()
    assert np.allclose(client.outputs("affine", {"x": np.ones((1, 3), np.float32)})["y"], 3.0)

    install_version(stores["bad"], base, 2)
    wait_until(lambda: client.states("affine").get(2) == END, "version 2's load to fail")
    assert client.states("affine") == {1: AVAILABLE, 2: END}  # version 1 keeps serving
    assert "x" in client.status("affine", 2)[2].status.error_message


def test_without_warm_up_a_version_is_warmed_with_zeros(base: Path) -> None:
    backend = start_local_backend(model_name="affine", model_base_path=base, extra_args=["--enable_model_warmup=false"])
    try:
        assert "(warmed with zeros)" in backend.logs()
    finally:
        backend.stop()
