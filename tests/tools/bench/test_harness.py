"""The benchmark's pieces start and answer: image host, trivial backend, load generator, the baselines, the tier.

One request each, no timing: the numbers come from ``python -m tools.bench``, never from tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import LocalBackend
from tools.bench import procs
from tools.bench.imagehost import start_image_host
from tools.bench.images import make_workload
from tools.bench.levers import LEVERS
from tools.bench.levers import start as start_lever
from tools.bench.profile import fold
from tools.bench.run import METRICS, PEER, PEER_MISSING, Harness, Row, Timing, peer_row, table
from tools.fakeserving import start_fakeserving
from tools.process import ROOT

SMOKE = Timing(warmup_s=0.0, duration_s=30.0, starts=1, latency_s=1.0)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    out = tmp_path_factory.mktemp("bench")
    workload = make_workload(out / "images", small_count=2, large_count=0)
    host = start_image_host(workload.directory, install=False)
    backend = start_fakeserving()
    try:
        yield Harness(SMOKE, workload, host, backend, out=out)
    finally:
        backend.stop()
        host.stop()


def one_request(harness: Harness, url: str) -> dict[str, object]:
    bodies = harness.bodies("smoke", harness.workload.small, per_request=2, count=1)
    return harness.load(url, bodies, concurrency=1, requests=1)


@pytest.mark.parametrize("kind", ["flask", "tornado", "tier"])
def test_each_contender_answers_one_request(harness: Harness, kind: str) -> None:
    with harness.contender(kind) as (_child, url):
        result = one_request(harness, url)
    assert result["statuses"] == {"200": 1}, result["sample"]
    assert result["item_errors"] == 0 and result["connection_errors"] == 0
    answer = json.loads(str(result["sample"]))
    assert [len(item["classes"]) for item in answer["predictions"]] == [3, 3]


def test_the_kserve_peer_answers_one_request(harness: Harness) -> None:
    if not harness.peer_available():
        pytest.skip(f"KServe peer {PEER_MISSING}")
    bodies = harness.bodies_for(PEER, harness.bodies("smoke", harness.workload.small, per_request=2, count=1))
    with harness.contender(PEER) as (_child, url):
        result = harness.load(url, bodies, concurrency=1, requests=1)
    assert result["statuses"] == {"200": 1}, result["sample"]
    assert result["item_errors"] == 0 and result["connection_errors"] == 0
    answer = json.loads(str(result["sample"]))
    assert [len(item["classes"]) for item in answer["predictions"]] == [3, 3]


def test_the_peer_gets_the_same_urls_in_kserves_v1_shape(harness: Harness) -> None:
    bodies = harness.bodies("smoke", harness.workload.small, per_request=2, count=3)
    plain = [json.loads(line) for line in bodies.read_text().splitlines()]
    v1 = [json.loads(line) for line in harness.bodies_for(PEER, bodies).read_text().splitlines()]
    assert [{"instances": json.loads(p["body"]), "images": p["images"]} for p in plain] == [
        {"instances": json.loads(v["body"])["instances"], "images": v["images"]} for v in v1
    ]
    assert harness.bodies_for("tier", bodies) == bodies


def test_a_missing_peer_is_a_miss_that_says_so(harness: Harness) -> None:
    """Without the peer's virtualenv its target row must not pass, and must say why."""
    rows_before = len(harness.rows)
    tier = {"images_per_s": 100.0, "p99_ms": 10.0, "cpu_ms_per_image": 1.0}
    peer_row(harness, "peer", {"tier": tier}, 2.0)
    peer_row(harness, "peer info", {"tier": tier}, None)
    target, info = harness.rows[rows_before:]
    assert (target.verdict, target.measured) == ("MISS", PEER_MISSING)
    assert "make bench-peer" in PEER_MISSING and info.verdict == "info"
    peer_row(harness, "peer", {"tier": tier, PEER: {**tier, "images_per_s": 40.0}}, 2.0)
    assert (harness.rows[-1].verdict, harness.rows[-1].ratio) == ("PASS", "2.50x")


@pytest.mark.parametrize("metrics", sorted(METRICS))
def test_the_cost_scenarios_tiers_answer_with_metrics_on_and_off(harness: Harness, metrics: str) -> None:
    config = harness.tier_config("tiny", harness.tiny(), harness.backend_address)
    child, url = harness.start_tier(config, METRICS[metrics])
    try:
        result = one_request(harness, url)
    finally:
        child.stop()
    assert result["statuses"] == {"200": 1}, result["sample"]


def test_the_workload_is_deterministic(tmp_path: Path, harness: Harness) -> None:
    again = make_workload(tmp_path, small_count=2, large_count=0)
    for name in again.small:
        assert (tmp_path / name).read_bytes() == (harness.workload.directory / name).read_bytes()


def test_the_memory_probes_read_this_process() -> None:
    import os

    rss, hwm = procs.memory(os.getpid())
    assert 0 < rss <= hwm
    assert procs.cpu_seconds(os.getpid()) > 0


def test_the_thread_counters_see_this_threads_page_faults() -> None:
    import mmap
    import os

    import numpy as np

    # A mapping of its own, not malloc's: after other tests tuned the allocator (the tier's mallopt), a 32 MiB
    # array could come back from memory already faulted in, and this test would read no fault at all.
    with mmap.mmap(-1, 32 * procs.MIB) as fresh:
        before = procs.thread_counters(os.getpid())
        touched = np.frombuffer(fresh, dtype=np.uint8)
        touched[:] = 1  # every page faulted in (16 faults if huge pages back them)
        after = procs.thread_counters(os.getpid())
        assert int(touched.sum()) == 32 * procs.MIB
        del touched  # the mapping cannot close while an array still exports it
    assert after["loop"]["minflt"] - before["loop"]["minflt"] >= 16
    assert after["loop"]["user"] + after["loop"]["sys"] > 0
    assert set(after) == {"loop", "python", "other"} and set(after["python"]) == set(procs.COUNTERS)


def test_profile_folding_and_the_table() -> None:
    raw = ["main (app/cli.py:10);decode (processing/image.py:5) 3", "main (app/cli.py:10) 1"]
    folded = fold(raw)
    assert "75.0  decode (processing/image.py)" in folded and "100.0  main (app/cli.py)" in folded
    text = table([Row("1 throughput", ">= 2.5x", "10 img/s", "3.00x", "PASS")])
    assert text.splitlines()[-1] == "| 1 throughput | >= 2.5x | 10 img/s | 3.00x | PASS |"


def test_the_bench_never_loads_tensorflow() -> None:
    code = (
        "import sys, tools.bench.run, tools.fakeserving, tools.bench.baselines.common, app.batcher; "
        "sys.exit('tensorflow.python' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_every_lever_of_scenario_9_names_a_commit_of_this_repository() -> None:
    """Scenario 9 checks each lever's commit out; a rewritten history would leave it measuring nothing."""
    for lever in LEVERS:
        if lever.commit is not None:
            found = subprocess.run(["git", "cat-file", "-e", f"{lever.commit}^{{commit}}"], cwd=ROOT)
            assert found.returncode == 0, f"{lever.name}: commit {lever.commit} is not in this repository"
    assert [lever.module for lever in LEVERS if not lever.kept] == [
        "tools.bench.uvloop_tier",
        "tools.bench.tornado_floor",
    ]


def test_the_uvloop_launcher_runs_the_tier_under_uvloops_policy() -> None:
    code = (
        "import asyncio, runpy, tools.bench.uvloop_tier as launcher; "
        "runpy.run_module = lambda name, **k: print(name, type(asyncio.get_event_loop_policy()).__module__); "
        "launcher.main()"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["app", "uvloop"], done.stderr[-2000:]


def table_rows(module: str, *args: str) -> list[float]:
    """The medians column of the Markdown table ``python -m module args`` prints."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--rounds", "1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [float(line.split("|")[2]) for line in done.stdout.splitlines()[2:]]


def test_the_micro_levers_each_measure_something() -> None:
    medians = table_rows("tools.bench.micro", "--calls", "200")
    assert len(medians) == 8 and all(cpu > 0 for cpu in medians)


def test_each_download_client_is_measured() -> None:
    medians = table_rows("tools.bench.downloads", "--count", "50")
    assert len(medians) == 4 and all(cpu > 0 for cpu in medians)


def test_the_tornado_floor_answers_what_the_tier_answers_in_shape(harness: Harness) -> None:
    floor = next(lever for lever in LEVERS if lever.module == "tools.bench.tornado_floor")
    child, url = start_lever(harness, floor, harness.tier_config("tiny", harness.tiny(), harness.backend_address))
    try:
        result = one_request(harness, url)
    finally:
        child.stop()
    assert result["statuses"] == {"200": 1}
    assert [len(item["classes"]) for item in json.loads(str(result["sample"]))["predictions"]] == [3, 3]


def test_the_encoded_scenarios_tier_answers_one_request_from_the_fakes_bytes_signature(
    harness: Harness, models_dir: Path
) -> None:
    """Scenario 10's model on the fake backend: the photos' bytes go to serving_bytes, 1000 classes come back."""
    from tools.bench.encoded import MODEL, models

    fake = start_fakeserving(("mobilenet_v2:1000:probabilities",))
    try:
        labels = str(models_dir / "mobilenet_v2" / "labels.txt")
        config = harness.tier_config("encoded_smoke", models(labels, fake.match.group(1)), fake.match.group(1))
        child, url = harness.start_tier(config, model=MODEL)
        try:
            result = one_request(harness, url)
        finally:
            child.stop()
    finally:
        fake.stop()
    assert result["statuses"] == {"200": 1} and result["item_errors"] == 0, result["sample"]
    answer = json.loads(str(result["sample"]))
    assert [len(item["classes"]) for item in answer["predictions"]] == [5, 5]


def test_the_faces_scenarios_tier_answers_one_request_through_the_local_backend(
    harness: Harness, models_dir: Path, backend: LocalBackend
) -> None:
    """Scenario 11's model as the scenario configures it: each 640x480 photo gets a detections list."""
    from tools.bench.faces import MODEL, models

    config = harness.tier_config("faces_smoke", models(str(models_dir / MODEL / "labels.txt")), backend.address)
    child, url = harness.start_tier(config, model=MODEL)
    try:
        result = one_request(harness, url)
    finally:
        child.stop()
    assert result["statuses"] == {"200": 1} and result["item_errors"] == 0, result["sample"]
    answer = json.loads(str(result["sample"]))
    assert [isinstance(item["detections"], list) for item in answer["predictions"]] == [True, True]


@pytest.mark.parametrize("mode", ["upload", "urls"])
def test_the_memory_burst_tool_answers_and_measures(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "runs.json"
    args = ["--concurrency", "2", "--rounds", "1", "--settle", "1", "--image", "noise", "--mode", mode]
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.memory", *args, "--budget", str(256 << 20), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = json.loads(out.read_text())
    assert run["statuses"] == {"200": 2} and run["connection_errors"] == 0
    assert run["hwm_mb"] >= run["idle_mb"] > 0 and run["rss_after_mb"]["1"] > 0


def test_the_cache_scenarios_multipart_bodies_are_answered_by_the_tier_with_the_cache_on(harness: Harness) -> None:
    from tools.bench.cache import CACHE_BYTES, CONTENT_TYPE, PER_REQUEST, upload_bodies

    config = harness.tier_config("cache_smoke", harness.tiny(), harness.backend_address)
    child, url = harness.start_tier(config, (f"cache.max_bytes={CACHE_BYTES}",))
    try:
        result = harness.load(url, upload_bodies(harness), concurrency=1, requests=1, content_type=CONTENT_TYPE)
    finally:
        child.stop()
    assert result["statuses"] == {"200": 1}, result["sample"]
    answer = json.loads(str(result["sample"]))
    assert [len(item["classes"]) for item in answer["predictions"]] == [3] * PER_REQUEST
