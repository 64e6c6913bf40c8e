"""TF Serving warm-up records for a SavedModel version: ``assets.extra/tf_serving_warmup_requests``.

A TFRecord of ``tensorflow.serving.PredictionLog`` protos, each a Predict request that TF Serving (and
tools/localserving) runs before it marks the version AVAILABLE, so that its first real requests do not pay
for graph optimisation, and so that a signature zeros cannot exercise (an encoded image in a DT_STRING
input) is warmed with a real input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write_warmup_requests(
    version_dir: Path, model_name: str, requests: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """One record per ``(signature name, inputs)``, in order; inputs are numpy arrays or lists of bytes."""
    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
