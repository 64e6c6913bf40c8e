"""What both baselines share with each other (and nothing with the tier's pipeline)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.backend.protos import predict_pb2
from app.backend.tensors import from_tensor_proto
from processing.kinds.classification import Classes, classify_batch
from processing.postprocess import PostprocessSpec, parse_labels
from tools.localserving.tensors import fill_tensor_proto

SIZE = (224, 224)


def parse_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="TF Serving gRPC address host:port")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--signature", default="serving_uint8")
    parser.add_argument("--input", default="images")
    parser.add_argument("--output", default="logits")
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--softmax", action="store_true")
    return parser.parse_args(argv)


def postprocess_spec(args: argparse.Namespace) -> PostprocessSpec:
    labels = parse_labels(args.labels.read_text()) if args.labels and args.labels.is_file() else ()
    return PostprocessSpec(kind="classification", softmax=args.softmax, top_k=3, labels=labels)


def decode_and_resize(data: bytes, dtype: str) -> np.ndarray:
    """The naive way: decode every pixel, then resize."""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    resized = np.asarray(cv2.resize(rgb, SIZE))
    return resized if dtype == "uint8" else resized.astype(np.float32)


def predict_request(args: argparse.Namespace, batch: np.ndarray) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model
    request.model_spec.signature_name = args.signature
    fill_tensor_proto(request.inputs[args.input], batch)
    return request


def answer(args: argparse.Namespace, spec: PostprocessSpec, urls: list[str], response: Any) -> dict[str, Any]:
    logits = from_tensor_proto(response.outputs[args.output])
    items = [
        {
            "source": url,
            **(
                item.to_json() if isinstance(item, Classes) else {"error": {"code": item.code, "message": item.message}}
            ),
        }
        for url, item in zip(urls, classify_batch(logits, spec), strict=True)
    ]
    return {"model": {"name": args.model, "version": int(response.model_spec.version.value)}, "predictions": items}


def input_dtype(args: argparse.Namespace) -> str:
    return "uint8" if args.signature.endswith("uint8") else "float32"
