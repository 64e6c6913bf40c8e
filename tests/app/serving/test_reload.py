"""SIGHUP reloads the configuration of a running tier process under load, losing nothing; a wrong file, or one
that changes the listen address, is refused while the old configuration keeps serving."""

from __future__ import annotations

import http.client
import json
import signal
import threading
from pathlib import Path

from tests.support.imageserver import FIXTURES
from tests.support.tier import TierProcess, start_tier
from tests.support.waiting import wait_for
from tools.fakeserving import FakeBackend

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
CONFIG = """\
server: {{page: false}}
backend: {{address: "{address}", startup_timeout_s: 10}}
models:
  tiny:
    signature: serving_uint8
    postprocess: {{top_k: {top_k}}}
"""


class SteadyLoad:
    """Clients sending uploads on keep-alive connections; records every outcome and the classes answered."""

    def __init__(self, port: int, clients: int = 3) -> None:
        self.port = port
        self.failures: list[str] = []
        self.top_ks: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        while not self._stop.is_set():
            try:
                connection.request("POST", "/v1/models/tiny:predict", COFFEE, {"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    self.failures.append(f"{response.status} {body[:200]!r}")
                else:
                    self.top_ks.append(len(json.loads(body)["predictions"][0]["classes"]))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def lines(tier: TierProcess, text: str) -> int:
    return sum(text in line for line in tier.output)


def test_a_reload_under_load_loses_nothing_and_a_bad_file_changes_nothing(tmp_path: Path, fake: FakeBackend) -> None:
    config = tmp_path / "tier.yaml"
    config.write_text(CONFIG.format(address=fake.address, top_k=3))
    tier = start_tier(fake.address, config=config)
    load = SteadyLoad(int(tier.base_url.rsplit(":", 1)[1]))
    try:
        wait_for(lambda: len(load.top_ks) >= 20, "answers on the first configuration")
        config.write_text(CONFIG.format(address=fake.address, top_k=5))
        tier.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(tier, "configuration reloaded") == 1, "the reload")
        served = len(load.top_ks)
        wait_for(lambda: len(load.top_ks) >= served + 20, "answers on the new configuration")
        assert load.top_ks[-1] == 5

        config.write_text(CONFIG.format(address=fake.address, top_k=5).replace("top_k", "topk"))
        tier.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(tier, "reload refused") == 1, "the refusal")
        assert lines(tier, "unknown key models.tiny.postprocess.topk") == 1
        config.write_text(
            CONFIG.format(address=fake.address, top_k=2).replace("page: false", "page: false, host: 127.0.0.2")
        )
        tier.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(tier, "reload refused") == 2, "the second refusal")
        assert lines(tier, "server.host: changed") == 1  # the listen address needs a restart
        served = len(load.top_ks)
        wait_for(lambda: len(load.top_ks) >= served + 20, "answers after the refusals")
        assert set(load.top_ks[served:]) == {5}  # still the reloaded configuration
    finally:
        load.stop()
        tier.stop()
    assert load.failures == []
    assert set(load.top_ks) == {3, 5}


def test_every_worker_reloads_on_sighup_to_the_parent(tmp_path: Path, fake: FakeBackend) -> None:
    config = tmp_path / "tier.yaml"
    config.write_text(CONFIG.format(address=fake.address, top_k=3))
    tier = start_tier(fake.address, config=config, workers=2)
    try:
        config.write_text(CONFIG.format(address=fake.address, top_k=4))
        tier.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(tier, "configuration reloaded") == 2, "both workers' reloads")
        assert tier.proc.poll() is None  # the parent lives on through SIGHUP
    finally:
        assert tier.stop() == 0


def test_with_config_poll_a_changed_file_reloads_without_a_signal(tmp_path: Path, fake: FakeBackend) -> None:
    config = tmp_path / "tier.yaml"
    config.write_text(
        CONFIG.format(address=fake.address, top_k=3).replace("page: false", "page: false, config_poll_s: 0.1")
    )
    tier = start_tier(fake.address, config=config)
    load = SteadyLoad(int(tier.base_url.rsplit(":", 1)[1]), clients=1)
    try:
        wait_for(lambda: len(load.top_ks) >= 5, "answers on the first configuration")
        config.write_text(config.read_text().replace("top_k: 3", "top_k: 6"))
        wait_for(lambda: lines(tier, "configuration reloaded") == 1, "the reload the file change starts")
        served = len(load.top_ks)
        wait_for(lambda: len(load.top_ks) >= served + 5, "answers on the new configuration")
    finally:
        load.stop()
        tier.stop()
    assert load.failures == [] and load.top_ks[-1] == 6
