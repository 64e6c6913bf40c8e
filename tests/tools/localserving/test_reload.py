"""Version directories appearing and disappearing while the server polls its base paths."""

from __future__ import annotations

import shutil
import threading
from typing import Any

import grpc
import numpy as np

from tests.support.savedmodels import affine
from tests.tools.localserving.conftest import Served, install_version
from tests.tools.localserving.rpc import AVAILABLE, END, Client, predict_request, rpc_error, wait_until

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


class Hammer:
    """Predicts on ``model`` (latest version) back to back on its own thread and channel."""

    def __init__(self, address: str, model: str) -> None:
        self._client = Client.connect(address)
        self._model = model
        self._stop = threading.Event()
        self.versions: list[int] = []
        self.errors: list[grpc.RpcError] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: len(self.versions) > 0 or len(self.errors) > 0, "the first answer")

    def answers_after(self, count: int) -> bool:
        return len(self.versions) + len(self.errors) > count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()

    def _run(self) -> None:
        request = predict_request(self._model, {"x": X})
        while not self._stop.is_set():
            try:
                response = self._client.predict(request)
            except grpc.RpcError as error:
                self.errors.append(error)
                continue
            version = response.model_spec.version.value
            y = np.frombuffer(response.outputs["y"].tensor_content, np.float32)
            self.versions.append(version if np.array_equal(y, affine(X, version)[0]) else -version)


def test_new_version_is_served_before_the_old_one_unloads_and_a_removed_one_unloads(served: Served) -> None:
    client, base = served.client, served.base("hot")
    assert client.states("hot") == {1: AVAILABLE}
    hammer = Hammer(served.backend.address, "hot")
    try:
        install_version(served.store, base, 2)
        wait_until(lambda: client.states("hot") == {2: AVAILABLE, 1: END}, "version 2 replaced version 1")
        seen = len(hammer.versions)
        wait_until(lambda: hammer.answers_after(seen + 20), "more answers after the swap")

        shutil.rmtree(base / "2")
        wait_until(lambda: client.states("hot") == {2: END, 1: AVAILABLE}, "version 1 replaced removed version 2")
        seen = len(hammer.versions)
        wait_until(lambda: hammer.answers_after(seen + 20), "more answers after the removal")
    finally:
        hammer.stop()

    assert hammer.errors == [], [error.details() for error in hammer.errors]
    swap = hammer.versions.index(2)
    back = len(hammer.versions) - hammer.versions[::-1].index(2)
    assert set(hammer.versions[:swap]) == {1}
    assert set(hammer.versions[swap:back]) == {2}  # once version 2 answered, version 1 never did until 2 left
    assert set(hammer.versions[back:]) == {1}


def test_removed_version_unloads_and_the_others_keep_serving(served: Served) -> None:
    client = served.client
    assert client.states("hot_all") == {2: AVAILABLE, 1: AVAILABLE}

    shutil.rmtree(served.base("hot_all") / "1")

    wait_until(lambda: client.states("hot_all") == {2: AVAILABLE, 1: END}, "version 1 unloaded")
    error = rpc_error(lambda: client.predict(predict_request("hot_all", {"x": X}, version=1)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    np.testing.assert_array_equal(client.outputs("hot_all", {"x": X}, version=2)["y"], affine(X, 2))


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(served: Served) -> None:
    client, broken = served.client, served.base("hot_broken") / ".incoming-2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    broken.rename(served.base("hot_broken") / "2")

    failures: list[Any] = []

    def failed() -> bool:
        entry = client.status("hot_broken").get(2)
        if entry is not None and entry.state == END and entry.status.error_code != grpc.StatusCode.OK.value[0]:
            failures.append(entry.status)
        return bool(failures)

    wait_until(failed, "version 2 failed to load")
    assert failures[0].error_message
    assert client.states("hot_broken")[1] == AVAILABLE
    response = client.predict(predict_request("hot_broken", {"x": X}))
    assert response.model_spec.version.value == 1
