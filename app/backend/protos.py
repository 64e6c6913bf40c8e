"""TF Serving protos and gRPC stubs without initialising TensorFlow.

The generated ``*_pb2`` modules of tensorflow-serving-api import
``tensorflow.core.framework.*_pb2``, and importing anything under ``tensorflow``
normally runs ``tensorflow/__init__.py``, which loads the whole TensorFlow runtime
(seconds and hundreds of MB). The generated modules only need protobuf, so this
module registers bare namespace packages for ``tensorflow`` and the proto folders,
pointing at the installed package's directories, before importing them.

This is the only module of the tier that imports TF Serving protos; everything
else imports them from here. A process that later needs the real TensorFlow must
import it before this module (then the real packages are used as they are).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

_PROTO_PACKAGES = (
    "tensorflow",
    "tensorflow.core",
    "tensorflow.core.framework",
    "tensorflow.core.protobuf",
    "tensorflow.core.example",
    "tensorflow.compiler",
    "tensorflow.compiler.xla",
    "tensorflow.compiler.xla.tsl",
    "tensorflow.compiler.xla.tsl.protobuf",
)


def _register_proto_namespaces() -> None:
    if "tensorflow" in sys.modules:
        return
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow-serving-api needs the tensorflow package's proto modules installed")
    root = next(iter(spec.submodule_search_locations))
    for name in _PROTO_PACKAGES:
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, *name.split(".")[1:])]
        module.__package__ = name
        sys.modules[name] = module


_register_proto_namespaces()

from tensorflow.core.framework import (  # noqa: E402
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

__all__ = [
    "get_model_metadata_pb2",
    "get_model_status_pb2",
    "meta_graph_pb2",
    "model_pb2",
    "model_service_pb2_grpc",
    "predict_pb2",
    "prediction_service_pb2_grpc",
    "tensor_pb2",
    "tensor_shape_pb2",
    "types_pb2",
]
