"""TF Serving's SavedModel warm-up: the requests in ``assets.extra/tf_serving_warmup_requests`` run before a
version is AVAILABLE (``--enable_model_warmup``, on by default).

The file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos, at most 1,000 of them, each run once.
As in TF Serving, a record that fails fails the version's load; localserving serves Predict only, so a record
of another kind (classify, regress, multi_inference, session_run) fails it too. A version without the file
is warmed with zeros at batch size 1 instead (localserving's own warm-up: ``servable.py``); zeros cannot warm
every signature (a DT_STRING input that must hold an encoded image, say), records can.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tools.localserving.errors import InvalidArgument
from tools.localserving.tensors import to_array

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit


def read_records(version_dir: Path) -> list[Any] | None:
    """The version's warm-up PredictionLogs, or None when it has no warm-up file."""
    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return None
    records: list[Any] = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        if len(records) == MAX_RECORDS:
            raise InvalidArgument(f"{path}: more than {MAX_RECORDS} warm-up records")
        records.append(prediction_log_pb2.PredictionLog.FromString(raw))
    return records


def run_records(records: list[Any], signature_of: Callable[[str], Any]) -> None:
    """Run each record's Predict request on the signature it names; the first failure is raised."""
    for index, record in enumerate(records):
        kind = record.WhichOneof("log_type")
        if kind != "predict_log":
            raise InvalidArgument(f"warm-up record {index} is a {kind}: localserving runs predict_log records only")
        request = record.predict_log.request
        signature = signature_of(request.model_spec.signature_name)
        inputs: Mapping[str, Any] = {name: to_array(proto, name) for name, proto in request.inputs.items()}
        signature.spec.check_inputs(inputs)
        signature.run(inputs)
