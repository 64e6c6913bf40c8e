"""``imagegate classify`` against the real tier: folders, URL lists, overload, resume, and the refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from tornado.httpclient import AsyncHTTPClient

from app.errors import Overloaded
from tests.app.bulk.support import CLASSIFIED_FIXTURES, classify, free_port, read_lines
from tests.conftest import Tier, TierFactory
from tests.support.imageserver import FIXTURES, ImageServer, _Handler


@pytest.mark.gen_test(timeout=60)
async def test_a_folder_is_classified_one_line_per_image(tier: Tier, tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "photos")
    (tmp_path / "photos" / "readme.jpg").write_text("a text file named like an image")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = await classify(str(tmp_path / "photos"), "--server", tier.base_url, "--model", "mobilenet_v2")
    assert result.code == 0, result.err
    lines = {Path(line["source"]).name: line for line in result.lines()}
    assert sorted(lines) == sorted(p.name for p in FIXTURES.iterdir())  # readme.jpg and notes.txt left out
    coffee = lines["coffee.jpg"]
    assert coffee["model"] == "mobilenet_v2" and coffee["version"] == 1
    assert coffee["classes"][0]["label"] == "espresso" and len(coffee["classes"]) == 5
    assert f"left out 1 file named like images, not images: {tmp_path / 'photos' / 'readme.jpg'}" in result.err
    assert f"{CLASSIFIED_FIXTURES} classified, 0 failed" in result.err


@pytest.mark.gen_test(timeout=60)
async def test_a_url_list_with_a_missing_image_ends_with_its_error_and_exit_1(
    tier: Tier, images: ImageServer, tmp_path: Path
) -> None:
    urls = [images.url("coffee.jpg"), images.url("gone.jpg"), images.url("chelsea.jpg"), images.url("rocket.jpg")]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    result = await classify(
        str(tmp_path / "urls.txt"), "--server", tier.base_url, "--model", "mobilenet_v2", "--batch", "3", "--top-k", "2"
    )
    assert result.code == 1, result.err
    lines = {line["source"]: line for line in result.lines()}
    assert sorted(lines) == sorted(urls)
    assert lines[images.url("gone.jpg")]["error"] == {"code": "source_http_error", "message": "GET returned 404"}
    assert lines[images.url("coffee.jpg")]["classes"][0]["label"] == "espresso"
    assert all(len(line["classes"]) == 2 for url, line in lines.items() if url != images.url("gone.jpg"))
    assert "3 classified, 1 failed (source_http_error: 1)" in result.err


def hold_route(images: ImageServer, name: str) -> tuple[threading.Event, threading.Event]:
    """A source that holds its download until released: the tier's requests for it stay in flight."""
    arrived, release = threading.Event(), threading.Event()
    body = (FIXTURES / "coffee.jpg").read_bytes()

    def hold(handler: _Handler) -> None:
        arrived.set()
        release.wait(30)
        handler.send_bytes(200, body, "image/jpeg")

    images.route(name, hold)
    return arrived, release


def on_refusal(tier: Tier, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set when the tier's admission refuses a request (the refusal itself is left as it is)."""
    refused = asyncio.Event()
    admission = tier.services.pipeline.admission
    acquire = admission.acquire

    def watched(count: int) -> None:
        try:
            acquire(count)
        except Overloaded:
            refused.set()
            raise

    monkeypatch.setattr(admission, "acquire", watched)
    return refused


@pytest.mark.gen_test(timeout=90)
async def test_an_overloaded_tier_answers_every_input_after_retries(
    make_tier: TierFactory, images: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tier takes 2 images at once; two are held in flight, so all eight uploads are refused with 503 until
    the hold ends. The client waits as Retry-After says and every input ends classified."""
    tier = await make_tier(["server.max_in_flight_images=2"])
    refused = on_refusal(tier, monkeypatch)
    arrived, release = hold_route(images, "held-for-overload.jpg")
    held = [images.url("held-for-overload.jpg?a"), images.url("held-for-overload.jpg?b")]
    holding = AsyncHTTPClient().fetch(
        tier.url("/v1/models/tiny:predict"),
        method="POST",
        body=json.dumps(held),
        headers={"Content-Type": "application/json"},
        request_timeout=60,
    )
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, arrived.wait, 30)
    run = asyncio.ensure_future(
        classify(str(FIXTURES), "--server", tier.base_url, "--model", "tiny", "--concurrency", "8", "--batch", "1")
    )
    await refused.wait()  # the refusals are what this test is about: hold until there has been one
    release.set()
    result = await run
    assert (await holding).code == 200
    assert result.code == 0, result.err
    assert sorted(Path(line["source"]).name for line in result.lines() if "classes" in line) == sorted(
        p.name for p in FIXTURES.iterdir()
    )
    assert "requests retried (overloaded: " in result.err


@pytest.mark.gen_test(timeout=60)
async def test_a_limited_run_is_resumed_to_completion_without_duplicates(tier: Tier, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    common = ("--server", tier.base_url, "--model", "tiny", "--batch", "2", "-o", str(results))
    first = await classify(str(FIXTURES), *common, "--limit", "3")
    assert first.code == 0, first.err
    assert len(read_lines(results)) == 3
    assert f"{CLASSIFIED_FIXTURES - 3} inputs not done: run again with --resume" in first.err
    again = await classify(str(FIXTURES), *common)
    assert again.code == 2 and f"{results} exists: pass --resume" in again.err
    resumed = await classify(str(FIXTURES), *common, "--resume")
    assert resumed.code == 0, resumed.err
    assert f"3 inputs in {results} already" in resumed.err
    assert f"{CLASSIFIED_FIXTURES - 3} classified, 0 failed" in resumed.err
    sources = [line["source"] for line in read_lines(results)]
    assert sorted(sources) == sorted(str(p) for p in FIXTURES.iterdir())  # each once
    nothing_left = await classify(str(FIXTURES), *common, "--resume")
    assert nothing_left.code == 0 and "0 classified, 0 failed" in nothing_left.err
    assert len(read_lines(results)) == CLASSIFIED_FIXTURES


@pytest.mark.gen_test(timeout=60)
async def test_an_unknown_model_is_refused_before_anything_is_sent(tier: Tier) -> None:
    result = await classify(str(FIXTURES), "--server", tier.base_url, "--model", "resnet")
    assert result.code == 4 and result.out == ""
    served = "mobilenet_v2, tiny, digits, mobilenet_v2_bytes, mobilenet_v2_embed, squares, faces"
    assert "model_not_found" in result.err and f"serves no model 'resnet' ({served})" in result.err
    several = await classify(str(FIXTURES), "--server", tier.base_url)
    assert several.code == 2 and "choose one with --model" in several.err


@pytest.mark.gen_test(timeout=60)
async def test_a_tier_that_cannot_be_reached_is_said_at_once() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    result = await classify(str(FIXTURES), "--server", server, "--model", "tiny")
    assert result.code == 3 and result.out == ""
    assert f"cannot reach the tier at {server}: Connection refused" in result.err


@pytest.mark.gen_test(timeout=60)
async def test_an_unreadable_input_is_refused(tier: Tier, tmp_path: Path) -> None:
    result = await classify(str(tmp_path / "missing.txt"), "--server", tier.base_url, "--model", "tiny")
    assert result.code == 2 and result.out == ""
    assert f"cannot read {tmp_path / 'missing.txt'}: No such file or directory" in result.err


@pytest.mark.gen_test(timeout=60)
async def test_a_listed_file_that_cannot_be_read_is_a_failed_line(tier: Tier, tmp_path: Path) -> None:
    listing = f"{FIXTURES / 'coffee.jpg'}\n{tmp_path / 'gone.jpg'}\n"
    result = await classify("-", "--server", tier.base_url, "--model", "tiny", stdin=listing)
    assert result.code == 1
    gone = next(line for line in result.lines() if line["source"] == str(tmp_path / "gone.jpg"))
    assert gone["error"]["code"] == "file_unreadable" and gone["version"] is None
    assert "1 classified, 1 failed (file_unreadable: 1)" in result.err


@pytest.mark.gen_test(timeout=60)
async def test_a_tier_lost_during_the_run_stops_it_for_a_resume(
    make_tier: TierFactory, images: ImageServer, tmp_path: Path
) -> None:
    """The tier goes away while it holds the first request: the run stops, and writes nothing it did not get."""
    tier = await make_tier()
    arrived, release = hold_route(images, "held-while-the-tier-goes.jpg")
    urls = [images.url("held-while-the-tier-goes.jpg"), images.url("coffee.jpg")]
    results = tmp_path / "results.jsonl"
    args = ("--server", tier.base_url, "--model", "tiny", "--batch", "1", "--concurrency", "1", "--retries", "1")
    run = asyncio.ensure_future(classify("-", *args, "-o", str(results), stdin="\n".join(urls)))
    assert await asyncio.get_running_loop().run_in_executor(None, arrived.wait, 30)
    tier.server.stop()
    await tier.server.close_all_connections()
    release.set()
    result = await run
    assert result.code == 3, result.err
    assert f"lost the tier: cannot reach the tier at {tier.base_url}: Connection refused" in result.err
    assert "2 inputs not done: run again with --resume to finish" in result.err
    assert results.read_text() == ""


@pytest.mark.gen_test(timeout=60)
async def test_uploads_keep_within_the_tiers_size_limits(make_tier: TierFactory, tmp_path: Path) -> None:
    """Files up to 75,000 bytes, bodies up to 60,000: two 35 kB photos go up together, are refused 413 and are
    sent again one by one; a 72 kB photo alone is over the body limit; an 82 kB one is not sent at all."""
    tier = await make_tier(["server.max_upload_bytes=75000", "server.max_body_bytes=60000"])
    shutil.copy(FIXTURES / "chelsea.jpg", tmp_path / "1-chelsea.jpg")
    shutil.copy(FIXTURES / "chelsea.jpg", tmp_path / "2-chelsea.jpg")
    shutil.copy(FIXTURES / "coffee.jpg", tmp_path / "3-coffee.jpg")
    (tmp_path / "4-huge.jpg").write_bytes((FIXTURES / "coffee.jpg").read_bytes() + bytes(10_000))
    result = await classify(str(tmp_path), "--server", tier.base_url, "--model", "tiny")
    assert result.code == 1, result.err
    lines = {Path(line["source"]).name: line for line in result.lines()}
    assert "classes" in lines["1-chelsea.jpg"] and "classes" in lines["2-chelsea.jpg"]
    assert lines["3-coffee.jpg"]["error"]["code"] == "payload_too_large"  # the tier's answer
    assert lines["4-huge.jpg"]["error"] == {
        "code": "payload_too_large",
        "message": "the file is 82326 bytes; the tier takes at most 75000",
    }
    assert "2 classified, 2 failed (payload_too_large: 2)" in result.err


@pytest.mark.gen_test(timeout=60)
async def test_an_embedding_model_writes_each_images_vector(tier: Tier, tmp_path: Path) -> None:
    """mobilenet_v2_embed: every line has the image's unit vector, as a list or, asked so, as base64 float32."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.jpg", "chelsea.jpg"):
        shutil.copy(FIXTURES / name, photos / name)
    as_lists = await classify(str(photos), "--server", tier.base_url, "--model", "mobilenet_v2_embed")
    packed = await classify(
        str(photos), "--server", tier.base_url, "--model", "mobilenet_v2_embed", "--encoding", "base64"
    )
    assert as_lists.code == packed.code == 0, as_lists.err + packed.err
    lists = {Path(line["source"]).name: line for line in as_lists.lines()}
    assert sorted(lists) == ["chelsea.jpg", "coffee.jpg"]
    for line in packed.lines():
        vector = np.frombuffer(base64.b64decode(line["embedding"]), dtype="<f4")
        assert line["encoding"] == "base64" and line["dimension"] == 1280
        assert lists[Path(line["source"]).name]["embedding"] == vector.tolist()
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.gen_test(timeout=60)
async def test_a_detection_models_boxes_go_to_the_jsonl_as_the_tier_answers_them(tier: Tier, tmp_path: Path) -> None:
    from tests.processing.kinds.test_detection_mapping import displayed, stored_jpeg

    photos = tmp_path / "photos"
    photos.mkdir()
    for orientation in (1, 6):
        (photos / f"squares-{orientation}.jpg").write_bytes(stored_jpeg(displayed(False)[0], orientation))
    out = tmp_path / "boxes.jsonl"
    args = [str(photos), "--server", tier.base_url, "--model", "squares", "-o", str(out)]
    result = await classify(*args, "--score-threshold", "0.75", "--batch", "1")
    assert result.code == 0, result.err
    lines = {Path(line["source"]).name: line for line in read_lines(out)}
    assert sorted(lines) == ["squares-1.jpg", "squares-6.jpg"]
    for line in lines.values():
        assert (line["model"], line["version"]) == ("squares", 1)
        assert [d["label"] for d in line["detections"]] == ["red", "green"]  # blue scores 0.7
        red = line["detections"][0]
        assert red["box"] == pytest.approx({"x": 8, "y": 16, "width": 64, "height": 64}, abs=1.0)  # 400x200 shown
        assert np.abs(np.subtract(red["keypoints"], [[8, 16], [40, 48]])).max() <= 1.0
    capped = await classify(
        str(photos), "--server", tier.base_url, "--model", "squares", "--max-detections", "1", "--batch", "2"
    )
    assert capped.code == 0, capped.err
    assert [[d["label"] for d in line["detections"]] for line in capped.lines()] == [["red"], ["red"]]
    refused = await classify(str(photos), "--server", tier.base_url, "--model", "tiny", "--score-threshold", "0.5")
    assert refused.code != 0
    assert all(line["error"]["code"] == "invalid_request" for line in refused.lines())
