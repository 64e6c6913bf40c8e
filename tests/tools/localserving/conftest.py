"""Fixtures for localserving's tests: test SavedModels written once, and the backends serving them.

Backends are session-scoped and few (starting one imports TensorFlow: seconds): ``served`` (no batching,
short poll interval, hot-reload models), ``batching`` (``--enable_batching``). The demo models of
``build/models`` come through the suite's shared ``backend`` fixture, skipped only when they are not built.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.backend import REPO_ROOT, LocalBackend, start_local_backend
from tests.support.savedmodels import write_affine_versions
from tests.tools.localserving.rpc import Client

BUILD_MODELS = REPO_ROOT / "build" / "models"
POLL_FAST = "--file_system_poll_wait_seconds=0.1"
BATCH_TIMEOUT_SECONDS = 4
BATCHING_PARAMETERS = f"""
# As TF Serving reads it: one Int64Value message per field.
max_batch_size {{ value: 4 }}
batch_timeout_micros {{ value: {BATCH_TIMEOUT_SECONDS * 1_000_000} }}
max_enqueued_batches {{ value: 1 }}
num_batch_threads {{ value: 1 }}
"""


@dataclass
class Served:
    """A running backend, a client on it, and the directory holding its models' base paths."""

    backend: LocalBackend
    client: Client
    root: Path
    store: Path

    def base(self, model: str) -> Path:
        return self.root / model


@pytest.fixture(scope="session")
def affine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1-3 of the affine test model, written once by a TensorFlow subprocess."""
    store = tmp_path_factory.mktemp("affine-store")
    write_affine_versions(store, [1, 2, 3])
    return store


def install_version(store: Path, base: Path, version: int) -> None:
    """Make ``base/<version>`` appear in one rename, as a deployment should."""
    staging = base / f".incoming-{version}"
    shutil.copytree(store / str(version), staging)
    staging.rename(base / str(version))


def make_base_path(store: Path, root: Path, name: str, versions: Sequence[int]) -> Path:
    """A base path with ``versions``, plus entries the server must ignore (labels.txt, a non-numeric dir)."""
    base = root / name
    base.mkdir()
    (base / "labels.txt").write_text("zero\none\n")
    (base / "drafts").mkdir()
    for version in versions:
        install_version(store, base, version)
    return base


def model_block(name: str, base_path: Path, policy: str = "", labels: Mapping[str, int] | None = None) -> str:
    """One ``config { ... }`` entry of a ModelServerConfig, as written for tensorflow_model_server."""
    lines = [f'  config {{\n    name: "{name}"\n    base_path: "{base_path}"\n    model_platform: "tensorflow"']
    if policy:
        lines.append(f"    model_version_policy {{ {policy} }}")
    lines += [f'    version_labels {{ key: "{key}" value: {value} }}' for key, value in (labels or {}).items()]
    return "\n".join([*lines, "  }"])


def write_config(path: Path, blocks: Sequence[str]) -> Path:
    path.write_text("model_config_list {\n" + "\n".join(blocks) + "\n}\n")
    return path


def _serve(root: Path, store: Path, blocks: Sequence[str], extra_args: Sequence[str]) -> Served:
    config = write_config(root / "models.config", blocks)
    backend = start_local_backend(model_config_file=config, extra_args=extra_args)
    return Served(backend, Client.connect(backend.address), root, store)


def _served(root: Path, store: Path) -> Served:
    """No batching. ``affine*`` share one base path with versions 1-3 under three version policies;
    ``hot*`` models are changed on disk by the reload tests."""
    shared = make_base_path(store, root, "affine", [1, 2, 3])
    blocks = [
        model_block("affine", shared, "latest { num_versions: 2 }", {"stable": 2, "canary": 3, "retired": 1}),
        model_block("affine_all", shared, "all {}"),
        model_block("affine_specific", shared, "specific { versions: 1 versions: 3 }"),
        model_block("hot", make_base_path(store, root, "hot", [1])),
        model_block("hot_all", make_base_path(store, root, "hot_all", [1, 2]), "all {}"),
        model_block("hot_broken", make_base_path(store, root, "hot_broken", [1])),
    ]
    return _serve(root, store, blocks, [POLL_FAST, "--allow_version_labels_for_unavailable_models"])


def _batching(root: Path, store: Path) -> Served:
    """``--enable_batching`` with max_batch_size 4, a long batch timeout and room for one batch per queue;
    it also answers in the typed ``*_val`` fields, as TF Serving does by default."""
    parameters = root / "batching.txt"
    parameters.write_text(BATCHING_PARAMETERS)
    blocks = [
        model_block("affine", make_base_path(store, root, "affine", [1, 2, 3])),
        model_block("inflight", make_base_path(store, root, "inflight", [1, 2]), "all {}"),
    ]
    blocks += [model_block(name, BUILD_MODELS / name) for name in ("mobilenet_v2", "tiny")]
    batching_args = ["--enable_batching", f"--batching_parameters_file={parameters}"]
    return _serve(root, store, blocks, [POLL_FAST, *batching_args, "--predict_response_tensor_serialization=fields"])


@pytest.fixture(scope="session")
def _backends(
    tmp_path_factory: pytest.TempPathFactory, affine_store: Path, models_dir: Path
) -> Iterator[dict[str, Served]]:
    """Both test backends, started side by side (each spends seconds importing TensorFlow).

    ``models_dir`` (tests/conftest.py) has built the demo models the batching backend also serves.
    """
    starters = {"served": _served, "batching": _batching}
    with ThreadPoolExecutor(len(starters)) as pool:
        futures = {
            name: pool.submit(start, tmp_path_factory.mktemp(name), affine_store) for name, start in starters.items()
        }
    backends = _results(futures)
    yield backends
    for running in backends.values():
        running.client.close()
    with ThreadPoolExecutor(len(backends)) as pool:
        list(pool.map(lambda running: running.backend.stop(), backends.values()))


def _results(futures: Mapping[str, Future[Served]]) -> dict[str, Served]:
    """Every started backend, or, if one failed to start, stop the others and raise its error."""
    started = {name: future.result() for name, future in futures.items() if future.exception() is None}
    failure = next((future.exception() for future in futures.values() if future.exception()), None)
    if failure is not None:
        for running in started.values():
            running.backend.stop()
        raise failure
    return started


@pytest.fixture(scope="session")
def served(_backends: dict[str, Served]) -> Served:
    return _backends["served"]


@pytest.fixture(scope="session")
def batching(_backends: dict[str, Served]) -> Served:
    return _backends["batching"]


@pytest.fixture(scope="session")
def demo_backend(backend: LocalBackend) -> LocalBackend:
    """The suite's backend on build/models/models.config (tests/conftest.py builds the models if missing)."""
    return backend


@pytest.fixture(scope="module", autouse=True)
def _no_tensorflow_runtime_in_pytest() -> Iterator[None]:
    """The tests talk to TensorFlow only through subprocesses; importing it here would hide that."""
    yield
    module = sys.modules.get("tensorflow")
    assert not hasattr(module, "__version__"), "the pytest process imported the real TensorFlow"
