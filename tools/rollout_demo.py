"""``python -m tools.rollout_demo``: continuous training as it reaches users, against the local backend.

Development only. Starts ``tools.localserving`` with digits version 1 alone and the tier (``python -m app``)
in front of it, then plays four phases, feeding held-out labelled digits (``tools/modelbuild/digits_data.py``)
as PNG uploads, each with its own ``X-User-Id``, and printing per phase who answered, how often the answer
was wrong, and which requests failed:

1. v1 serves alone (routes: stable 100).
2. v2 arrives: localserving's config is reloaded to load it (then to label it ``canary``), the tier's file is
   rewritten to stable(v1) 90 / canary(v2) 10 and the tier reloaded with SIGHUP.
3. v2 is promoted with ``POST /admin/models/digits/routes/canary:promote``.
4. v3 is canaried (stable(v2) 90 / canary(v3) 10) before the backend has it: the canary waits and serves
   nothing (``state: "waiting"``).
5. A broken v3 arrives (a digits version whose outputs are NaN, built into the demo's directory): the
   backend is reloaded with it, the canary gets its share once the tier's poller sees it AVAILABLE, and
   digits are fed with a small rollback window until ``GET /v1/models/digits`` shows the canary rolled
   back, then once more to show nothing fails after.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tools.localserving.launcher import LocalBackend, reload_config, start_local_backend
from tools.modelbuild.digits_data import load_split
from tools.process import ROOT
from tools.tier import TierProcess, start_tier

DIGITS = (ROOT / "build" / "models" / "digits").resolve()
TOKEN = "demo-admin-token"
WINDOW, MIN_SAMPLES, CHECK_EVERY = 40, 10, 5  # small, for a demo: checks from its 10th canary request, every 5
CONCURRENCY = 8
RELOAD_TIMEOUT_S = 60.0


def backend_config(policy: str, labels: dict[str, int], base_path: Path = DIGITS) -> str:
    """localserving's (TF Serving's) ModelServerConfig for digits alone, in protobuf text format."""
    label_lines = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    return (
        "model_config_list {\n  config {\n"
        f'    name: "digits"\n    base_path: "{base_path}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {policy} }} }}\n{label_lines}  }}\n}}\n"
    )


def tier_config(targets: list[dict[str, Any]]) -> str:
    """The tier's configuration file (JSON is YAML): digits as in deploy/config.dev.yaml, with ``targets``."""
    config = {
        "server": {"host": "127.0.0.1", "admin_token": TOKEN, "drain_delay_s": 0},
        "models": {
            "digits": {
                "input": {"color": "gray", "scale": 1 / 255},
                "postprocess": {"top_k": 1, "labels": str(DIGITS / "labels.txt")},
                "routes": {
                    "key_header": "X-User-Id",
                    "targets": targets,
                    "rollback": {"window": WINDOW, "min_samples": MIN_SAMPLES, "check_every": CHECK_EVERY},
                },
            }
        },
    }
    return json.dumps(config, indent=2)


def build_broken_version(path: Path) -> None:
    """``tools.modelbuild.digits.build_broken`` in a process of its own: it needs TensorFlow's runtime, which
    this process's TF Serving protos (app/backend/protos.py) stand in for."""
    code = (
        "import sys, pathlib\nfrom tools.modelbuild.digits import build_broken\nbuild_broken(pathlib.Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, capture_output=True)


def digit_png(image: np.ndarray[Any, Any]) -> bytes:
    """A held-out (8, 8, 1) digit in [0, 1] (1 = ink) as the 8x8 gray PNG a client would upload."""
    ok, png = cv2.imencode(".png", np.rint(image[:, :, 0] * 255).astype(np.uint8))
    assert ok
    return bytes(png)


@dataclass
class Outcome:
    status: int
    version: int | None  # the version that answered; None when the request failed
    wrong: bool = False
    error: str = ""  # the failed request's error code and message


@dataclass
class Phase:
    title: str
    outcomes: list[Outcome] = field(default_factory=list)
    note: str = ""

    def versions(self) -> Counter[int]:
        return Counter(o.version for o in self.outcomes if o.version is not None)

    def error_rate(self, version: int) -> float:
        answered = [o for o in self.outcomes if o.version == version]
        return sum(o.wrong for o in answered) / len(answered) if answered else 0.0

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.version is None]

    def table(self) -> str:
        total = len(self.outcomes)
        lines = [f"== {self.title}", f"   {'answered by':<14}{'requests':>9}{'share':>8}{'wrong':>7}{'error rate':>12}"]
        for version, count in sorted(self.versions().items()):
            wrong = sum(o.wrong for o in self.outcomes if o.version == version)
            lines.append(
                f"   {'v' + str(version):<14}{count:>9}{count / total:>8.1%}{wrong:>7}{self.error_rate(version):>12.1%}"
            )
        failed = Counter(f"{o.status} {o.error}" for o in self.failures())
        lines.append(f"   {'failed':<14}{len(self.failures()):>9}{len(self.failures()) / total:>8.1%}")
        lines += [f"     {count} x {why}" for why, count in failed.items()]
        if self.note:
            lines.append(f"   {self.note}")
        return "\n".join(lines)


class Demo:
    def __init__(self, workdir: Path, digits: int) -> None:
        split = load_split()
        self.images = [digit_png(image) for image in split.test_images[:digits]]
        self.labels = [int(label) for label in split.test_labels[:digits]]
        self.config = workdir / "imagegate.yaml"
        self.digits = workdir / "digits"  # versions 1 and 2 of build/models/digits, and the broken 3 once built
        self.round = 0
        self.backend: LocalBackend | None = None
        self.tier: TierProcess | None = None

    def url(self, path: str) -> str:
        assert self.tier is not None
        return self.tier.base_url.rstrip("/") + path

    def predict(self, index: int, user: str) -> Outcome:
        request = urllib.request.Request(
            self.url("/v1/models/digits:predict"),
            data=self.images[index],
            headers={"Content-Type": "image/png", "X-User-Id": user},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}").get("error", {})
            return Outcome(exc.code, None, error=f"{body.get('code', '')}: {body.get('message', '')}"[:110])
        item = answer["predictions"][0]
        if "error" in item:
            return Outcome(status, None, error=f"item {item['error'].get('code', '')}")
        predicted = int(item["classes"][0]["label"]) if "classes" in item else int(item["labels"][0])
        return Outcome(status, int(answer["model"]["version"]), wrong=predicted != self.labels[index])

    def feed(self, phase: Phase, count: int | None = None) -> list[Outcome]:
        """``count`` held-out digits (all by default), each from a user never seen before."""
        self.round += 1
        indexes = range(len(self.images) if count is None else count)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            outcomes = list(pool.map(lambda i: self.predict(i % len(self.images), f"r{self.round}-user-{i}"), indexes))
        phase.outcomes += outcomes
        return outcomes

    def routes(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url("/v1/models/digits"), timeout=10) as response:
            routes: list[dict[str, Any]] = json.loads(response.read())["routes"]
        return routes

    def reload_tier(self, targets: list[dict[str, Any]]) -> None:
        """Rewrite the tier's file and SIGHUP it; returns once it logged the reload (raises if it refused)."""
        assert self.tier is not None
        self.config.write_text(tier_config(targets))
        seen = len(self.tier.output)
        self.tier.proc.send_signal(signal.SIGHUP)
        (said,) = self.tier.wait_for(r"configuration reloaded|reload refused.*", RELOAD_TIMEOUT_S, since=seen)
        if said.group(0) != "configuration reloaded":
            raise RuntimeError(said.string)

    def promote(self, route: str) -> None:
        request = urllib.request.Request(
            self.url(f"/admin/models/digits/routes/{route}:promote"),
            data=b"",
            headers={"Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def canary(self) -> dict[str, Any]:
        return {r["name"]: r for r in self.routes()}["canary"]

    def await_canary(self, state: str) -> None:
        """Returns once ``GET /v1/models/digits`` shows the canary in ``state`` (its poller asks every second)."""
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while self.canary()["state"] != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the canary is still {self.canary()['state']}, not {state}")
            time.sleep(0.1)

    def reload_backend(self, policy: str, labels: dict[str, int]) -> None:
        assert self.backend is not None
        reload_config(self.backend.address, backend_config(policy, labels, self.digits))

    @contextmanager
    def running(self) -> Iterator[None]:
        self.digits.mkdir()
        for item in ("1", "2", "labels.txt"):
            (self.digits / item).symlink_to(DIGITS / item)
        config = self.config.with_name("models.config")
        config.write_text(backend_config("versions: 1", {"stable": 1}, self.digits))
        self.backend = start_local_backend(model_config_file=config)
        try:
            self.config.write_text(tier_config([{"name": "stable", "label": "stable", "weight": 100}]))
            self.tier = start_tier(self.backend.address, config=self.config)
            try:
                yield
            finally:
                self.tier.stop()
        finally:
            self.backend.stop()

    def run(self, out: Any = sys.stdout) -> list[Phase]:
        phases: list[Phase] = []

        def show(phase: Phase) -> None:
            phases.append(phase)
            print(phase.table(), end="\n\n", file=out, flush=True)

        assert self.backend is not None
        one = Phase("1. digits v1 serving alone (routes: stable 100)")
        self.feed(one)
        show(one)

        self.reload_backend("versions: 1 versions: 2", {"stable": 1})
        # TF Serving's rule: a label may only name a version that was available before the reload.
        self.reload_backend("versions: 1 versions: 2", {"stable": 1, "canary": 2})
        self.reload_tier(
            [
                {"name": "stable", "label": "stable", "weight": 90},
                {"name": "canary", "version": 2, "weight": 10, "canary": True},
            ]
        )
        two = Phase("2. v2 arrives: backend reloaded with v2, tier SIGHUP: stable(v1) 90 / canary(v2) 10")
        self.feed(two)
        show(two)

        self.promote("canary")
        three = Phase("3. POST /admin/models/digits/routes/canary:promote")
        self.feed(three)
        show(three)

        self.reload_tier(
            [
                {"name": "stable", "version": 2, "weight": 90},
                {"name": "canary", "version": 3, "weight": 10, "canary": True},
            ]
        )
        four = Phase("4. v3 canaried before the backend has it: stable(v2) 90 / canary(v3) 10")
        self.feed(four)
        four.note = f"canary {self.canary()['state']}, weight {self.canary()['weight']}"
        show(four)

        build_broken_version(self.digits / "3")
        self.reload_backend("versions: 2 versions: 3", {})
        self.await_canary("serving")
        five = Phase(f"5. broken v3 arrives (it answers NaN): backend reloaded with v3, window {WINDOW}")
        for _ in range(40):
            self.feed(five, 50)
            if self.canary()["state"] == "rolled_back":
                break
        before = len(five.failures())
        after = Phase("5b. after the rollback")
        self.feed(after)
        five.note = (
            f"canary {self.canary()['state']} ({self.canary()['reason']}) after {len(five.outcomes)} requests;"
            f" {before} failed before it, {len(after.failures())} of {len(after.outcomes)} after"
        )
        show(five)
        show(after)
        return phases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rollout_demo", description=__doc__)
    parser.add_argument("--digits", type=int, default=400, help="held-out digits fed per phase (at most 450)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rollout-demo-") as workdir:
        demo = Demo(Path(workdir), args.digits)
        with demo.running():
            demo.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
