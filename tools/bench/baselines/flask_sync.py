"""Baseline (a): Flask, synchronous, on the threaded development server.

Each request runs on its own thread: downloads one after another with ``requests``,
a full ``cv2.imdecode`` and resize per image, then one blocking Predict.
``python -m tools.bench.baselines.flask_sync --port P --backend HOST:PORT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import requests
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler

from app.backend.protos import prediction_service_pb2_grpc
from tools.bench.baselines import common


class QuietHandler(WSGIRequestHandler):
    """No log line per request: the benchmark measures serving, not logging."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def create_app(argv: Sequence[str] | None = None) -> tuple[Flask, int]:
    args = common.parse_args("flask_sync", argv)
    spec = common.postprocess_spec(args)
    dtype = common.input_dtype(args)
    channel = grpc.insecure_channel(args.backend, options=[("grpc.max_send_message_length", 256 << 20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    app = Flask("flask_sync")

    @app.post("/v1/models/<name>:predict")  # type: ignore[untyped-decorator]
    def predict(name: str) -> Any:
        urls: list[str] = request.get_json()
        tensors = []
        for url in urls:
            data = requests.get(url, timeout=10).content
            tensors.append(common.decode_and_resize(data, dtype))
        response = stub.Predict(common.predict_request(args, np.stack(tensors)), timeout=10)
        return jsonify(common.answer(args, spec, urls, response))

    return app, args.port


def main(argv: Sequence[str] | None = None) -> int:
    app, port = create_app(argv)
    app.run(host="127.0.0.1", port=port, threaded=True, request_handler=QuietHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
