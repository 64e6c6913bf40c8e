"""The KServe peer: a custom model server written the way a competent KServe user writes one.

A ``kserve.Model`` subclass served by ``kserve.ModelServer`` (FastAPI on uvicorn, one process, KServe's
defaults) on the v1 protocol: ``POST /v1/models/tiny:predict`` with ``{"instances": [url, ...]}``.
``preprocess`` downloads the URLs concurrently on one shared ``aiohttp.ClientSession`` and decodes in the
event loop's thread pool (Pillow's ``draft``, so libjpeg decodes at the largest 1/2, 1/4 or 1/8 scale that
still covers 224x224, then a bilinear resize), ``predict`` makes one grpc.aio Predict, ``postprocess``
answers softmax top-3 in the baselines' JSON. It runs only in ``build/bench/kserve-venv`` (``make bench-peer``):
``build/bench/kserve-venv/bin/python -m tools.bench.baselines.kserve_peer --port P --backend HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import cv2
import grpc
import kserve
import numpy as np
from PIL import Image

from app.backend.protos import prediction_service_pb2_grpc
from tools.bench.baselines import common


@dataclass
class Predicted:
    urls: list[str]
    response: Any  # PredictResponse


def decode_and_resize(data: bytes, dtype: str) -> np.ndarray:
    """Decode at a reduced scale that still covers the model's input, then resize to it."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", common.SIZE)
    pixels = np.asarray(image.convert("RGB"))
    resized = np.asarray(cv2.resize(pixels, common.SIZE, interpolation=cv2.INTER_LINEAR))
    return resized if dtype == "uint8" else resized.astype(np.float32)


class ImageClassifier(kserve.Model):  # type: ignore[misc]
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.model)
        self.args = args
        self.spec = common.postprocess_spec(args)
        self.dtype = common.input_dtype(args)
        # Made on the first request: both bind to the event loop that ModelServer.start() creates.
        self.session: aiohttp.ClientSession | None = None
        self.stub: Any = None
        self.ready = True

    def clients(self) -> tuple[aiohttp.ClientSession, Any]:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            options = [("grpc.max_send_message_length", 256 << 20)]
            channel = grpc.aio.insecure_channel(self.args.backend, options=options)
            self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return self.session, self.stub

    async def download(self, url: str) -> bytes:
        session, _stub = self.clients()
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.read()

    async def preprocess(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        urls: list[str] = payload["instances"]
        blobs = await asyncio.gather(*(self.download(url) for url in urls))
        loop = asyncio.get_running_loop()
        images = await asyncio.gather(*(loop.run_in_executor(None, decode_and_resize, b, self.dtype) for b in blobs))
        return urls, np.stack(images)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Predicted:
        urls, batch = payload
        _session, stub = self.clients()
        response = await stub.Predict(common.predict_request(self.args, batch), timeout=10)
        return Predicted(urls, response)

    def postprocess(self, result: Predicted, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return common.answer(self.args, self.spec, result.urls, result.response)


def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse_args("kserve_peer", argv)
    # The tier runs at --log-level WARNING and the baselines log no request: KServe's access log and its
    # per-request latency line are turned off the same way; uvicorn's start-up line stays (the harness waits for it).
    server = kserve.ModelServer(http_port=args.port, enable_grpc=False, enable_latency_logging=False)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([ImageClassifier(args)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
