"""The pipeline on its own: ``Pipeline.run`` called directly, no HTTP in front of it (its prediction
rendered as v1 JSON, what a client reads).

Real parts throughout: the URL fetcher against the real image server, the gRPC client,
the micro-batcher, a decode thread pool and admission. The backend is the fake
(``tools.fakeserving``, which logs every Predict's batch size and echoes each row's first
input value in output column 0) where a test counts Predicts, and the real local backend
where it checks what real models answer.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import tornado.ioloop

from app.errors import BackendFailed, ModelNotFound, Overloaded
from app.pipeline import Pipeline
from app.serving.server import Services, build_services
from app.settings import Settings, load_settings
from processing.context import RequestContext
from processing.errors import ImageDecodeFailed
from processing.prediction import PredictCall
from processing.sources import ImageSource
from processing.v1 import predict_document
from tests.conftest import dev_settings
from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES, ImageServer, _Handler
from tools.fakeserving import FakeBackend

CAT_CLASSES = {"tabby cat", "tiger cat", "Egyptian Mau"}  # ids 281, 282, 285
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
TRUNCATED_JPEG = COFFEE[:300]  # a JPEG header, then nothing: fetched fine, fails to decode
FAKE_CLASSES = 8

PipelineFactory = Callable[[Settings], Awaitable[Pipeline]]


def new_context() -> RequestContext:
    return RequestContext("test-request")


async def run(
    pipeline: Pipeline, name: str, sources: Sequence[ImageSource], context: RequestContext, **call: Any
) -> dict[str, Any]:
    """``pipeline.run``'s prediction as the v1 answer renders it: the assertions read what a client reads."""
    prediction = await pipeline.run(PredictCall(name, tuple(sources), **call), context)
    return predict_document(prediction, context)


@pytest.fixture
def make_pipeline(io_loop: tornado.ioloop.IOLoop) -> Iterator[PipelineFactory]:
    """``await make_pipeline(settings)``: the Pipeline ``build_services`` assembles; closed after the test."""
    built: list[Services] = []

    async def make(settings: Settings) -> Pipeline:
        built.append(await build_services(settings))
        return built[-1].pipeline

    yield make
    for services in built:
        io_loop.run_sync(services.close)


def fake_settings(fake: FakeBackend, *overrides: str) -> Settings:
    """One model, ``tiny`` (uint8, 224x224x3 per the fake's metadata), on the fake; loopback sources allowed."""
    return load_settings(
        None,
        {},
        [
            f"backend.address={fake.address}",
            "fetch.allow_cidrs=[127.0.0.0/8]",
            "models.tiny.signature=serving_uint8",
            *overrides,
        ],
    )


def solid_png(value: int) -> bytes:
    """A small image of one grey level: the fake echoes ``value`` as the score of class 0."""
    ok, encoded = cv2.imencode(".png", np.full((16, 16, 3), value, dtype=np.uint8))
    assert ok
    return bytes(encoded.tobytes())


def serve(images: ImageServer, name: str, body: bytes, content_type: str = "image/png") -> str:
    """A URL on the image server, unique to this call, answering ``body``; returns its URL."""
    path = f"pipeline/{uuid.uuid4().hex}/{name}"

    def answer(handler: _Handler) -> None:
        handler.send_bytes(200, body, content_type)

    images.route(path, answer)
    return images.url(path)


def hits(images: ImageServer, url: str) -> int:
    """How many times the image server was asked for ``url``."""
    path = "/" + url.split("/", 3)[3]
    return images.hits.count(path)


def url_source(url: str) -> ImageSource:
    return ImageSource(name=url, url=url)


def top_score(item: dict[str, Any]) -> float:
    """The best class's score; for the fake, the echoed grey level when it is above 1."""
    score: float = item["classes"][0]["score"]
    return score


class HeldSource:
    """An image URL whose answer waits until the test releases it: a request that keeps its admission."""

    def __init__(self, images: ImageServer) -> None:
        self.arrived, self.release = threading.Event(), threading.Event()
        path = f"pipeline/{uuid.uuid4().hex}/held.png"
        self.url = images.url(path)
        images.route(path, self._answer)

    def _answer(self, handler: _Handler) -> None:
        self.arrived.set()
        self.release.wait(20)
        handler.send_bytes(200, solid_png(40), "image/png")


# --- The real local backend: what real models answer ------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_answers_keep_input_order_and_bad_sources_fail_in_place(
    make_pipeline: PipelineFactory, backend: LocalBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(dev_settings(backend.address))
    sources = [
        url_source(images.url("chelsea.jpg")),
        url_source(images.url("pipeline/no-such-image.jpg")),
        url_source(serve(images, "truncated.jpg", TRUNCATED_JPEG, "image/jpeg")),
        ImageSource(name="coffee upload", data=COFFEE),
        ImageSource(name="bad b64", error=ImageDecodeFailed("'b64' is not valid base64")),
        ImageSource(name="garbage upload", data=b"not an image at all"),
    ]
    answer = await run(pipeline, "mobilenet_v2", sources, new_context())

    assert answer["model"] == {"name": "mobilenet_v2", "version": 1}
    items = answer["predictions"]
    assert [item["source"] for item in items] == [s.name for s in sources]
    assert items[0]["classes"][0]["label"] in CAT_CLASSES
    assert items[3]["classes"][0]["label"] == "espresso"
    assert [len(items[i]["classes"]) for i in (0, 3)] == [5, 5]  # the dev config's top_k
    assert items[1]["error"] == {"code": "source_http_error", "message": "GET returned 404"}
    assert [items[i]["error"]["code"] for i in (2, 4, 5)] == ["image_decode_failed"] * 3
    assert items[4]["error"]["message"] == "'b64' is not valid base64"
    assert all(("error" in item) != ("classes" in item) for item in items)
    assert isinstance(answer["timing_ms"], float) and answer["timing_ms"] >= 0


@pytest.mark.gen_test(timeout=60)
async def test_a_version_chooses_what_answers(
    make_pipeline: PipelineFactory, backend: LocalBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(dev_settings(backend.address))
    digit = [url_source(images.url("digit_3.png"))]
    answers = [
        await run(pipeline, "digits", digit, new_context()),
        await run(pipeline, "digits", digit, new_context(), version=1),
        await run(pipeline, "digits", digit, new_context(), label="stable"),
    ]
    assert [a["model"]["version"] for a in answers] == [2, 1, 1]
    assert answers[0]["predictions"][0]["classes"][0]["label"] == "3"  # version 2 is the well-trained one


# --- The fake backend: what reaches the backend, and how often ------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_url_repeated_in_one_request_is_downloaded_once(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(fake_settings(fake))
    repeated, other = serve(images, "repeated.png", solid_png(30)), serve(images, "other.png", solid_png(50))
    sources = [url_source(repeated), url_source(other), url_source(repeated), url_source(repeated)]
    answer = await run(pipeline, "tiny", sources, new_context())

    assert (hits(images, repeated), hits(images, other)) == (1, 1)
    assert [top_score(item) for item in answer["predictions"]] == [30.0, 50.0, 30.0, 30.0]
    assert fake.log.batch_sizes == [4]  # every position still has its row


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_model_is_refused_before_anything_is_fetched(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(fake_settings(fake))
    url = serve(images, "unasked.png", solid_png(10))
    with pytest.raises(ModelNotFound) as refused:
        await run(pipeline, "no_such_model", [url_source(url)], new_context())
    assert (refused.value.code, refused.value.status) == ("model_not_found", 404)
    assert hits(images, url) == 0
    assert fake.log.batch_sizes == []
    assert (pipeline.admission.in_flight, pipeline.admission.refused) == (0, 0)


@pytest.mark.gen_test(timeout=30)
async def test_admission_bounds_images_in_flight_and_is_given_back_after_success_and_failure(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(fake_settings(fake, "server.max_in_flight_images=3", "server.retry_after_s=2"))
    admission = pipeline.admission
    held = HeldSource(images)
    try:
        first = asyncio.ensure_future(
            run(pipeline, "tiny", [url_source(held.url), ImageSource(name="upload", data=solid_png(20))], new_context())
        )
        assert await asyncio.to_thread(held.arrived.wait, 10), "the run never reached the image server"
        assert admission.in_flight == 2

        unfetched = serve(images, "refused.png", solid_png(10))
        with pytest.raises(Overloaded) as refused:
            await run(pipeline, "tiny", [url_source(unfetched), url_source(unfetched)], new_context())  # 2 + 2 > 3
        assert refused.value.headers() == {"Retry-After": "2"}
        assert (hits(images, unfetched), admission.refused, admission.in_flight) == (0, 1, 2)

        fits = await run(
            pipeline, "tiny", [ImageSource(name="one more", data=solid_png(60))], new_context()
        )  # 2 + 1 <= 3
        assert top_score(fits["predictions"][0]) == 60.0
        assert admission.in_flight == 2
    finally:
        held.release.set()
    answered = await first
    assert [top_score(item) for item in answered["predictions"]] == [40.0, 20.0]
    assert admission.in_flight == 0  # given back after success

    fake.log.fail_with = grpc.StatusCode.INTERNAL
    with pytest.raises(BackendFailed):
        await run(pipeline, "tiny", [ImageSource(name=f"n{i}", data=solid_png(i)) for i in range(3)], new_context())
    assert admission.in_flight == 0  # and after failure
    assert admission.refused == 1


@pytest.mark.gen_test(timeout=30)
async def test_without_batching_each_request_is_one_predict_of_all_its_good_images(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline = await make_pipeline(fake_settings(fake, "models.tiny.batching.max_batch_size=0"))
    assert not pipeline.models["tiny"].batched
    first = [
        url_source(serve(images, "ten.png", solid_png(10))),
        url_source(images.url("pipeline/missing.png")),
        ImageSource(name="twenty", data=solid_png(20)),
        url_source(serve(images, "thirty.png", solid_png(30))),
    ]
    answer = await run(pipeline, "tiny", first, new_context())
    assert fake.log.batch_sizes == [3]
    items = answer["predictions"]
    assert [top_score(items[i]) for i in (0, 2, 3)] == [10.0, 20.0, 30.0]
    assert items[1]["error"]["code"] == "source_http_error"
    assert answer["model"] == {"name": "tiny", "version": 1}

    fake.log.batch_sizes.clear()
    answers = await asyncio.gather(
        run(pipeline, "tiny", [ImageSource(name="a", data=solid_png(70))], new_context()),
        run(
            pipeline,
            "tiny",
            [ImageSource(name="b", data=solid_png(80)), ImageSource(name="c", data=solid_png(90))],
            new_context(),
        ),
    )
    assert sorted(fake.log.batch_sizes) == [1, 2]  # concurrent requests are not merged
    assert [[top_score(i) for i in a["predictions"]] for a in answers] == [[70.0], [80.0, 90.0]]


@pytest.mark.gen_test(timeout=30)
async def test_with_batching_concurrent_requests_share_one_predict_through_the_batcher(
    make_pipeline: PipelineFactory, fake: FakeBackend
) -> None:
    # A long wait: the batch goes when it is full (3 rows), so only the batcher can make one Predict of both runs.
    settings = fake_settings(fake, "models.tiny.batching.max_batch_size=3", "models.tiny.batching.max_wait_ms=60000")
    pipeline = await make_pipeline(settings)
    assert pipeline.models["tiny"].batched
    two = [ImageSource(name="a", data=solid_png(11)), ImageSource(name="b", data=solid_png(12))]
    one = [ImageSource(name="c", data=solid_png(13)), ImageSource(name="broken", data=b"not an image at all")]
    first, second = await asyncio.gather(
        run(pipeline, "tiny", two, new_context()), run(pipeline, "tiny", one, new_context())
    )

    assert fake.log.batch_sizes == [3]
    assert [top_score(item) for item in first["predictions"]] == [11.0, 12.0]
    assert top_score(second["predictions"][0]) == 13.0
    assert second["predictions"][1]["error"]["code"] == "image_decode_failed"
    assert first["model"] == second["model"] == {"name": "tiny", "version": 1}


@pytest.mark.parametrize("max_batch_size", [0, 8])
@pytest.mark.gen_test(timeout=30)
async def test_when_every_item_fails_nothing_is_predicted_and_no_version_answers(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer, max_batch_size: int
) -> None:
    pipeline = await make_pipeline(fake_settings(fake, f"models.tiny.batching.max_batch_size={max_batch_size}"))
    sources = [
        url_source(images.url("pipeline/gone.png")),
        url_source(serve(images, "truncated.jpg", TRUNCATED_JPEG, "image/jpeg")),
        ImageSource(name="garbage", data=b"not an image at all"),
    ]
    answer = await run(pipeline, "tiny", sources, new_context())
    assert fake.log.batch_sizes == []
    assert answer["model"] == {"name": "tiny", "version": None}
    codes = [item["error"]["code"] for item in answer["predictions"]]
    assert codes == ["source_http_error", "image_decode_failed", "image_decode_failed"]
    assert pipeline.admission.in_flight == 0


@pytest.mark.gen_test(timeout=30)
async def test_top_k_is_honoured_and_the_configured_one_is_the_default(
    make_pipeline: PipelineFactory, fake: FakeBackend
) -> None:
    pipeline = await make_pipeline(fake_settings(fake, "models.tiny.postprocess.top_k=3"))
    image = [ImageSource(name="grey", data=solid_png(5))]

    async def class_ids(top_k: int | None) -> list[int]:
        answer = await run(pipeline, "tiny", image, new_context(), top_k=top_k)
        return [c["class_id"] for c in answer["predictions"][0]["classes"]]

    assert len(await class_ids(None)) == 3
    assert await class_ids(1) == [0]  # the echoed 5.0 beats the fake's 1.0 in class 1
    assert (await class_ids(2)) == [0, 1]
    assert sorted(await class_ids(1000)) == list(range(FAKE_CLASSES))  # never more than the model has


@pytest.mark.gen_test(timeout=30)
async def test_the_requested_version_is_sent_and_the_answering_one_reported(
    make_pipeline: PipelineFactory, fake: FakeBackend
) -> None:
    pipeline = await make_pipeline(fake_settings(fake))
    answer = await run(pipeline, "tiny", [ImageSource(name="grey", data=solid_png(5))], new_context(), version=7)
    assert answer["model"] == {"name": "tiny", "version": 7}  # the fake answers with the version asked for


class CountingExecutor(Executor):
    """The pipeline's thread pool, counting the work handed to it."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)


async def counted(make_pipeline: PipelineFactory, fake: FakeBackend) -> tuple[Pipeline, CountingExecutor]:
    """A pipeline without batching whose thread pool counts its hand-offs."""
    pipeline = await make_pipeline(fake_settings(fake, "models.tiny.batching.max_batch_size=0"))
    pipeline.executor = counting = CountingExecutor(pipeline.executor)
    return pipeline, counting


@pytest.mark.gen_test(timeout=30)
async def test_a_request_hands_its_images_to_the_thread_pool_once(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline, counting = await counted(make_pipeline, fake)
    sources = [url_source(serve(images, f"{v}.png", solid_png(v))) for v in (10, 20, 30)]
    sources.append(ImageSource(name="forty", data=solid_png(40)))
    context = new_context()
    answer = await run(pipeline, "tiny", sources, context)
    assert [top_score(item) for item in answer["predictions"]] == [10.0, 20.0, 30.0, 40.0]
    assert counting.submitted == 1  # four images, one hand-off (and one back)
    assert {i.item for i in context.intervals if i.stage == "decode"} == {0, 1, 2, 3}


@pytest.mark.gen_test(timeout=30)
async def test_a_request_whose_images_all_failed_to_arrive_makes_no_hand_off(
    make_pipeline: PipelineFactory, fake: FakeBackend, images: ImageServer
) -> None:
    pipeline, counting = await counted(make_pipeline, fake)
    answer = await run(pipeline, "tiny", [url_source(images.url("pipeline/missing.png"))], new_context())
    assert answer["predictions"][0]["error"]["code"] == "source_http_error"
    assert counting.submitted == 0
