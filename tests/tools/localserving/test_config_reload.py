"""Runtime config changes as TF Serving makes them: HandleReloadConfigRequest and the config file poll.

Over real gRPC to real localserving processes: ``reloading`` takes configs by RPC (no file poll, no
``--allow_version_labels_for_unavailable_models``), ``polling`` re-reads its config file every
POLL_SECONDS (with the allow flag). Every test starts by putting its backend back on its base config.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from app.backend.protos import model_service_pb2_grpc
from tests.support.backend import LocalBackend, reload_config, side_by_side, start_local_backend
from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import BUILD_MODELS, make_base_path, model_block
from tests.tools.localserving.rpc import AVAILABLE, END, Client, predict_request, rpc_error, wait_until
from tools.localserving.config import ModelConfig
from tools.localserving.errors import FailedPrecondition
from tools.localserving.reload import check_labels

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
DIGIT = np.zeros((1, 8, 8, 1), dtype=np.float32)
DIGITS_BASE = BUILD_MODELS / "digits"
ONE_AND_TWO = "specific { versions: 1 versions: 2 }"
POLL_SECONDS = 0.2
LABELS_FLAG = "--allow_version_labels_for_unavailable_models"


# --- TF Serving's label rule (ServerCore::UpdateModelVersionLabelMap), without a server ---------------------

LABELLED = ModelConfig("m", Path("/models/m"), labels={"stable": 1, "canary": 3})


def test_a_label_must_name_a_version_available_before_the_reload() -> None:
    check_labels(LABELLED, available={1, 3}, current_labels={}, allow_unavailable=False)
    with pytest.raises(FailedPrecondition, match="assign label to version 3 of model m, which is not currently"):
        check_labels(LABELLED, available={1, 2}, current_labels={}, allow_unavailable=False)


def test_the_allow_flag_lets_new_or_unmoved_labels_name_any_version_but_not_move_one_to_it() -> None:
    check_labels(LABELLED, available={1}, current_labels={}, allow_unavailable=True)  # canary is new
    check_labels(LABELLED, available={1}, current_labels={"canary": 3}, allow_unavailable=True)  # not moved
    with pytest.raises(FailedPrecondition, match="version 3 of model m"):
        check_labels(LABELLED, available={1, 2}, current_labels={"canary": 2}, allow_unavailable=True)


# --- the backends -------------------------------------------------------------------------------------------


@dataclass
class Reloadable:
    backend: LocalBackend
    client: Client
    root: Path
    config_file: Path
    base: list[str]  # the model blocks every test starts from
    unlabelled: list[str]  # the same without labels: the way back to base (see the ``reloading`` fixture)

    def config(self, blocks: Sequence[str]) -> str:
        return "model_config_list {\n" + "\n".join(blocks) + "\n}\n"

    def reload(self, blocks: Sequence[str]) -> object:
        return reload_config(self.backend.address, self.config(blocks))

    def write(self, blocks: Sequence[str]) -> None:
        """Replace the config file in one rename, so a poll never reads half of it."""
        write_atomically(self.config_file, self.config(blocks))


def write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".new")
    staging.write_text(text)
    os.replace(staging, path)


def affine_block(base: Path, policy: str, labels: Mapping[str, int], name: str = "affine") -> str:
    return model_block(name, base, policy, labels)


BaseModel = tuple[str, Path, str, dict[str, int]]  # name, base path, policy, labels


def _start(root: Path, models: list[BaseModel], extra_args: list[str]) -> Reloadable:
    blocks = [model_block(*model) for model in models]
    config_file = root / "models.config"
    write_atomically(config_file, "model_config_list {\n" + "\n".join(blocks) + "\n}\n")
    backend = start_local_backend(model_config_file=config_file, extra_args=extra_args)
    unlabelled = [model_block(name, path, policy) for name, path, policy, _ in models]
    return Reloadable(backend, Client.connect(backend.address), root, config_file, blocks, unlabelled)


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, affine_store: Path, models_dir: Path
) -> Iterator[dict[str, Reloadable]]:
    """``reloading`` and ``polling``, started side by side (each imports TensorFlow)."""
    roots = {name: tmp_path_factory.mktemp(name) for name in ("reloading", "polling")}
    affine_bases = {name: make_base_path(affine_store, root, "affine", [1, 2, 3]) for name, root in roots.items()}
    plans: dict[str, tuple[list[BaseModel], list[str]]] = {
        "reloading": (
            [
                ("affine", affine_bases["reloading"], ONE_AND_TWO, {"stable": 1, "canary": 2}),
                ("digits", DIGITS_BASE, ONE_AND_TWO, {"stable": 1}),
            ],
            [],
        ),
        "polling": (
            [("affine", affine_bases["polling"], "specific { versions: 1 }", {"stable": 1})],
            [f"--model_config_file_poll_wait_seconds={POLL_SECONDS}", LABELS_FLAG],
        ),
    }
    starts = {name: functools.partial(_start, roots[name], *plan) for name, plan in plans.items()}
    with side_by_side(starts, stop=_stop) as started:
        yield started


def _stop(running: Reloadable) -> None:
    running.client.close()
    running.backend.stop()


@pytest.fixture
def reloading(backends: dict[str, Reloadable]) -> Reloadable:
    served = backends["reloading"]
    # Two steps, as on TF Serving: a label may only name a version that is available before the reload.
    served.reload(served.unlabelled)  # answers once applied: the base versions are loaded
    served.reload(served.base)
    return served


@pytest.fixture
def polling(backends: dict[str, Reloadable]) -> Reloadable:
    served = backends["polling"]
    served.write(served.base)
    wait_until(lambda: available(served.client, "affine") == {1} and models(served) == {"affine"}, "the base config")
    return served


def states(client: Client, model: str) -> dict[int, int] | None:
    """{version: state}, or None if the server has never seen ``model``."""
    try:
        return client.states(model)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None


def available(client: Client, model: str) -> set[int]:
    """The AVAILABLE versions of ``model`` (GetModelStatus also lists the ones that ended)."""
    return {version for version, state in (states(client, model) or {}).items() if state == AVAILABLE}


def models(served: Reloadable) -> set[str]:
    """The models with a version AVAILABLE, among those the tests use."""
    return {name for name in ("affine", "digits", "extra", "broken") if available(served.client, name)}


def answering_version(client: Client, model: str, *, version: int | None = None, label: str | None = None) -> int:
    """The version that answers a Predict for ``model`` by ``version`` or ``label``."""
    inputs = {"images": DIGIT} if model == "digits" else {"x": X}
    request = predict_request(model, inputs, version=version, label=label)
    return int(client.predict(request).model_spec.version.value)


# --- HandleReloadConfigRequest ------------------------------------------------------------------------------


def test_a_reload_adds_a_model_removes_it_and_adds_it_again(reloading: Reloadable) -> None:
    client, base = reloading.client, reloading.root / "affine"
    extra = model_block("extra", base)

    response = reloading.reload([*reloading.base, extra])

    assert response.status.error_code == 0  # type: ignore[attr-defined]
    assert client.states("extra") == {3: AVAILABLE}  # a reload that adds a model answers once it is loaded
    np.testing.assert_array_equal(client.outputs("extra", {"x": X})["y"], affine(X, 3))

    reloading.reload(reloading.base)
    assert client.states("extra") == {3: END}  # TF Serving keeps the states of a removed model
    assert rpc_error(lambda: client.predict(predict_request("extra", {"x": X}))).code() == grpc.StatusCode.NOT_FOUND
    assert answering_version(client, "affine", label="stable") == 1

    reloading.reload([*reloading.base, extra])
    assert client.states("extra") == {3: AVAILABLE}


def test_a_reload_moves_a_label_and_predict_with_it_answers_from_the_new_version(reloading: Reloadable) -> None:
    client = reloading.client
    assert answering_version(client, "digits", label="stable") == 1

    reloading.reload([reloading.base[0], model_block("digits", DIGITS_BASE, ONE_AND_TWO, {"stable": 2, "old": 1})])

    assert answering_version(client, "digits", label="stable") == 2
    assert answering_version(client, "digits", label="old") == 1
    assert client.states("digits") == {2: AVAILABLE, 1: AVAILABLE}  # no version moved: labels only


def test_a_label_can_name_a_version_only_once_a_reload_has_loaded_it(reloading: Reloadable) -> None:
    client, base = reloading.client, reloading.root / "affine"
    digits = reloading.base[1]

    # One step, as TF Serving: labels are checked against the versions available before the reload.
    error = rpc_error(lambda: reloading.reload([affine_block(base, "all {}", {"stable": 3}), digits]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 3 of model affine, which is not currently available for inference" in str(error.details())
    assert available(client, "affine") == {1, 2}  # untouched: version 3 was not loaded

    reloading.reload([affine_block(base, "all {}", {"stable": 1, "canary": 2}), digits])
    assert available(client, "affine") == {1, 2, 3}
    reloading.reload([affine_block(base, "specific { versions: 3 }", {"stable": 3}), digits])

    assert client.states("affine") == {3: AVAILABLE, 2: END, 1: END}
    assert answering_version(client, "affine", label="stable") == 3
    error = rpc_error(lambda: client.predict(predict_request("affine", {"x": X}, label="canary")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # TF Serving: "Unrecognized servable version label"


BadConfig = tuple[Callable[[Reloadable], list[str]], grpc.StatusCode, str]  # the config's blocks, code, message
BAD_CONFIGS: dict[str, BadConfig] = {
    "new model, missing base path": (
        lambda served: [*served.base, model_block("extra", served.root / "missing")],
        grpc.StatusCode.INVALID_ARGUMENT,
        "Could not find base path",
    ),
    "base path moved to a missing one": (
        lambda served: [affine_block(served.root / "gone", "", {}), served.base[1]],
        grpc.StatusCode.INVALID_ARGUMENT,
        "Could not find base path",
    ),
    "label on a version that does not exist": (
        lambda served: [affine_block(served.root / "affine", "all {}", {"stable": 1, "canary": 7}), served.base[1]],
        grpc.StatusCode.FAILED_PRECONDITION,
        "version 7 of model affine, which is not currently available for inference",
    ),
    "relative base path": (
        lambda served: [*served.base, model_block("extra", Path("models/extra"))],
        grpc.StatusCode.INVALID_ARGUMENT,
        "base_path must be absolute",
    ),
    "a model listed twice": (
        lambda served: [*served.base, *[model_block("extra", served.root / "affine")] * 2],
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal to list model extra multiple times",
    ),
    "another platform": (
        lambda served: [
            *served.base,
            model_block("extra", served.root / "affine").replace('"tensorflow"', '"pytorch"'),
        ],
        grpc.StatusCode.INVALID_ARGUMENT,
        'model_platform must be "tensorflow"',
    ),
    "no version to serve": (
        lambda served: [*served.base, model_block("extra", served.root / "affine", "specific { versions: 9 }")],
        grpc.StatusCode.NOT_FOUND,
        "No versions of servable extra found",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_a_bad_config_is_refused_with_tf_servings_status_and_serving_is_untouched(
    reloading: Reloadable, case: str
) -> None:
    blocks, code, message = BAD_CONFIGS[case]

    error = rpc_error(lambda: reloading.reload(blocks(reloading)))

    assert error.code() == code
    assert message in str(error.details())
    assert_base_serving(reloading)


@pytest.mark.parametrize("text", ["", 'custom_model_config { type_url: "x" }'])
def test_anything_but_a_model_config_list_is_invalid_argument(reloading: Reloadable, text: str) -> None:
    error = rpc_error(lambda: reload_config(reloading.backend.address, text))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Only ModelConfigList is currently supported" in str(error.details())
    assert_base_serving(reloading)


def test_a_model_that_fails_to_load_is_unknown_and_the_others_keep_serving(reloading: Reloadable) -> None:
    broken = reloading.root / "broken"
    if not broken.exists():
        (broken / "1").mkdir(parents=True)
        (broken / "1" / "saved_model.pb").write_bytes(b"this is not a SavedModel")

    error = rpc_error(lambda: reloading.reload([*reloading.base, model_block("broken", broken)]))

    assert error.code() == grpc.StatusCode.UNKNOWN
    assert "1 model(s) did not become available" in str(error.details())
    entry = reloading.client.status("broken")[1]
    assert entry.state == END and entry.status.error_message
    assert_base_serving(reloading)


def test_the_response_lists_each_requested_metric(reloading: Reloadable) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    request = model_management_pb2.ReloadConfigRequest(metric_names=["a", "b", "a"])
    text_format.Parse(reloading.config(reloading.base), request.config)
    stub = model_service_pb2_grpc.ModelServiceStub(reloading.client.channel)
    response = stub.HandleReloadConfigRequest(request, timeout=60)
    assert [(metric.name, metric.int64_value_increase) for metric in response.metric] == [("a", 0), ("b", 0)]


def assert_base_serving(served: Reloadable) -> None:
    client = served.client
    assert available(client, "affine") == {1, 2}
    assert answering_version(client, "affine", label="stable") == 1
    assert answering_version(client, "affine", label="canary") == 2
    assert answering_version(client, "digits", label="stable") == 1
    assert not available(client, "extra")


class Hammer:
    """Predicts ``affine`` version 1 by number and by label on its own channel, back to back."""

    def __init__(self, address: str) -> None:
        self._client = Client.connect(address)
        self._stop = threading.Event()
        self.answers: list[int] = []
        self.errors: list[grpc.RpcError] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def _run(self) -> None:
        requests = [predict_request("affine", {"x": X}, version=1), predict_request("affine", {"x": X}, label="stable")]
        while not self._stop.is_set():
            for request in requests:
                try:
                    response = self._client.predict(request)
                except grpc.RpcError as error:
                    self.errors.append(error)
                    continue
                y = np.frombuffer(response.outputs["y"].tensor_content, np.float32)
                version = response.model_spec.version.value
                self.answers.append(version if np.array_equal(y, affine(X, version)[0]) else -version)


def answered(hammers: Sequence[Hammer]) -> int:
    return sum(len(hammer.answers) for hammer in hammers)


def test_calls_to_a_version_that_stays_never_fail_across_reloads(reloading: Reloadable) -> None:
    base, digits = reloading.root / "affine", reloading.base[1]
    steps = [
        [*reloading.base, model_block("extra", base)],  # a model added (loaded meanwhile)
        [affine_block(base, "all {}", {"stable": 1, "canary": 2}), digits],  # a version added; extra removed
        [affine_block(base, "all {}", {"stable": 1, "canary": 3}), digits],  # a label moved
        [affine_block(base, "specific { versions: 1 versions: 3 }", {"stable": 1, "canary": 3}), digits],
        [affine_block(base, ONE_AND_TWO, {"stable": 1}), digits],  # version 3 unloaded, 2 loaded again
        reloading.base,  # canary back on 2
    ]
    hammers = [Hammer(reloading.backend.address) for _ in range(2)]
    try:
        for step in steps:
            wanted = answered(hammers) + 10
            reloading.reload(step)
            wait_until(lambda: answered(hammers) > wanted, "more answers after the reload")  # noqa: B023
    finally:
        for hammer in hammers:
            hammer.stop()

    errors = [error for hammer in hammers for error in hammer.errors]
    assert errors == [], [error.details() for error in errors]
    assert {answer for hammer in hammers for answer in hammer.answers} == {1}


# --- --model_config_file_poll_wait_seconds -------------------------------------------------------------------


def test_the_file_poll_applies_a_changed_file(polling: Reloadable) -> None:
    client, base = polling.client, polling.root / "affine"

    polling.write([affine_block(base, ONE_AND_TWO, {"stable": 1}), model_block("extra", base)])
    wait_until(lambda: states(client, "extra") == {3: AVAILABLE}, "the poll added model extra")
    wait_until(lambda: available(client, "affine") == {1, 2}, "the poll loaded affine 2")

    polling.write([affine_block(base, ONE_AND_TWO, {"stable": 2})])
    wait_until(lambda: answering_version(client, "affine", label="stable") == 2, "stable moved to version 2")
    wait_until(lambda: states(client, "extra") == {3: END}, "the poll removed model extra")


def test_a_broken_config_file_is_logged_and_ignored(polling: Reloadable) -> None:
    client, base, backend = polling.client, polling.root / "affine", polling.backend

    write_atomically(polling.config_file, "model_config_list { config { name: ")
    wait_until(lambda: "Failed to read ModelServerConfig file" in backend.logs(10**6), "the parse error logged")
    assert_polling_base(polling)

    polling.write([affine_block(base, "", {"stable": 1}), model_block("extra", polling.root / "missing")])
    logged = "PollFilesystemAndReloadConfig failed to ReloadConfig: INVALID_ARGUMENT: Could not find base path"
    wait_until(lambda: logged in backend.logs(10**6), "the refused reload logged")
    assert_polling_base(polling)

    polling.write([affine_block(base, "specific { versions: 1 versions: 3 }", {"stable": 1})])  # still polling
    wait_until(lambda: available(client, "affine") == {1, 3}, "the next good file applied")


def test_with_the_allow_flag_a_new_label_may_name_a_version_not_loaded_but_a_label_may_not_move_there(
    polling: Reloadable,
) -> None:
    client, base = polling.client, polling.root / "affine"
    next_label = predict_request("affine", {"x": X}, label="next")
    assert rpc_error(lambda: client.predict(next_label)).code() == grpc.StatusCode.INVALID_ARGUMENT  # unknown label

    polling.write([affine_block(base, "specific { versions: 1 }", {"stable": 1, "next": 3})])
    wait_until(
        lambda: rpc_error(lambda: client.predict(next_label)).code() == grpc.StatusCode.NOT_FOUND,
        "label next known, naming a version that is not loaded",
    )

    error = rpc_error(lambda: polling.reload([affine_block(base, "specific { versions: 1 }", {"stable": 3})]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert answering_version(client, "affine", label="stable") == 1


def assert_polling_base(served: Reloadable) -> None:
    assert available(served.client, "affine") == {1}
    assert answering_version(served.client, "affine", label="stable") == 1
    assert models(served) == {"affine"}
