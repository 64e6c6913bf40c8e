"""Baseline (b): Tornado with the downloads gathered, but decoding on the event loop.

``AsyncHTTPClient`` fetches a request's URLs concurrently, then ``cv2.imdecode`` and
resize run inline (blocking the loop), then one grpc.aio Predict.
``python -m tools.bench.baselines.tornado_naive --port P --backend HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from app.backend.protos import prediction_service_pb2_grpc
from processing.postprocess import PostprocessSpec
from tools.bench.baselines import common


class PredictHandler(tornado.web.RequestHandler):
    def initialize(self, args: argparse.Namespace, spec: PostprocessSpec, stub: Any) -> None:
        self.args = args
        self.spec = spec
        self.stub = stub

    async def post(self, name: str) -> None:
        urls: list[str] = json.loads(self.request.body)
        client = AsyncHTTPClient()
        responses = await asyncio.gather(*(client.fetch(url, request_timeout=10) for url in urls))
        dtype = common.input_dtype(self.args)
        batch = np.stack([common.decode_and_resize(r.body, dtype) for r in responses])
        response = await self.stub.Predict(common.predict_request(self.args, batch), timeout=10)
        self.write(common.answer(self.args, self.spec, urls, response))


async def serve(argv: Sequence[str] | None) -> None:
    args = common.parse_args("tornado_naive", argv)
    channel = grpc.aio.insecure_channel(args.backend, options=[("grpc.max_send_message_length", 256 << 20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    deps = {"args": args, "spec": common.postprocess_spec(args), "stub": stub}
    app = tornado.web.Application([(r"/v1/models/([^/:]+):predict", PredictHandler, deps)])
    app.listen(args.port, "127.0.0.1")
    print(f"baseline: ready on http://127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
