"""A float TFLite graph rebuilt as TensorFlow ops, layer for layer, from the model file alone.

``tf.lite.Interpreter`` reads the weights (float16 constants, which the file dequantizes to float32: the cast is
exact), but not the layers' strides, padding, pool sizes or activations: those come from the flatbuffer itself,
read with TFLite's own generated schema module (``tensorflow.lite.python.schema_py_generated``). Only the operators
BlazeFace uses are known; any other fails the build with its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

OPERATOR_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
PADDING = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
ACTIVATIONS: dict[int, Callable[[tf.Tensor], tf.Tensor]] = {
    schema.ActivationFunctionType.NONE: lambda x: x,
    schema.ActivationFunctionType.RELU: tf.nn.relu,
    schema.ActivationFunctionType.RELU6: tf.nn.relu6,
}


@dataclass(frozen=True)
class Operation:
    """One operator of the file: its builtin name, tensor indices in and out, and its options object (or None)."""

    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any


@dataclass(frozen=True)
class Graph:
    """The file's only subgraph: its operators in execution order, constant tensors, input and output indices."""

    operations: tuple[Operation, ...]
    constants: dict[int, np.ndarray[Any, Any]]
    input: int
    outputs: dict[str, int]  # name -> tensor index


def read_graph(path: Path) -> Graph:
    """Operators from the flatbuffer; constants from the interpreter, with DEQUANTIZE folded into float32 weights."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    (subgraph,) = model.subgraphs
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    constants: dict[int, np.ndarray[Any, Any]] = {}
    for index, tensor in enumerate(subgraph.tensors):
        if model.buffers[tensor.buffer].data is not None:
            constants[index] = interpreter.get_tensor(index)
    operations = []
    for operator in subgraph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        name = OPERATOR_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
        inputs, outputs = tuple(int(i) for i in operator.inputs), tuple(int(i) for i in operator.outputs)
        if name == "DEQUANTIZE" and inputs[0] in constants:
            constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
            continue
        operations.append(Operation(name, inputs, outputs, operator.builtinOptions))
    names = {int(i): subgraph.tensors[i].name.decode() for i in subgraph.outputs}
    return Graph(tuple(operations), constants, int(subgraph.inputs[0]), {v: k for k, v in names.items()})


def _activation(options: Any, value: tf.Tensor) -> tf.Tensor:
    kind = options.fusedActivationFunction
    if kind not in ACTIVATIONS:
        raise ValueError(f"fused activation {kind} is not rebuilt")
    return ACTIVATIONS[kind](value)


def _conv(op: Operation, x: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    kernel, bias = weights  # TFLite [out, h, w, in] -> TF [h, w, in, out]
    o = op.options
    y = tf.nn.conv2d(x, tf.transpose(kernel, (1, 2, 3, 0)), (1, o.strideH, o.strideW, 1), PADDING[o.padding])
    return _activation(o, y + bias)


def _depthwise(op: Operation, x: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    kernel, bias = weights  # TFLite [1, h, w, in * multiplier] -> TF [h, w, in, multiplier]
    o = op.options
    shape = kernel.shape
    filters = tf.reshape(kernel[0], (shape[1], shape[2], shape[3] // o.depthMultiplier, o.depthMultiplier))
    y = tf.nn.depthwise_conv2d(x, filters, (1, o.strideH, o.strideW, 1), PADDING[o.padding])
    return _activation(o, y + bias)


def _max_pool(op: Operation, x: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    o = op.options
    y = tf.nn.max_pool2d(x, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), PADDING[o.padding])
    return _activation(o, y)


def _reshape(op: Operation, x: tf.Tensor, weights: list[tf.Tensor]) -> tf.Tensor:
    # The file's shapes say batch 1; the rebuilt graph keeps the batch it is given.
    shape = op.options.newShape if op.options is not None and op.options.newShape is not None else weights[0]
    return tf.reshape(x, tf.concat([tf.shape(x)[:1], tf.constant(np.asarray(shape)[1:], tf.int32)], 0))


LAYERS: dict[str, Callable[[Operation, tf.Tensor, list[tf.Tensor]], tf.Tensor]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "MAX_POOL_2D": _max_pool,
    "RELU": lambda op, x, weights: tf.nn.relu(x),
    "PAD": lambda op, x, weights: tf.pad(x, weights[0]),
    "RESHAPE": _reshape,
}


def run(graph: Graph, x: tf.Tensor, weights: dict[int, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The graph's named outputs for input ``x`` [N, H, W, C] float32; ``weights`` holds every constant as a tensor."""
    values: dict[int, tf.Tensor] = {graph.input: x}
    for op in graph.operations:
        if op.name == "ADD":
            values[op.outputs[0]] = _activation(op.options, values[op.inputs[0]] + values[op.inputs[1]])
        elif op.name == "CONCATENATION":
            joined = tf.concat([values[i] for i in op.inputs], op.options.axis)
            values[op.outputs[0]] = _activation(op.options, joined)
        elif op.name in LAYERS:
            constant = [weights[i] for i in op.inputs[1:] if i in weights]
            values[op.outputs[0]] = LAYERS[op.name](op, values[op.inputs[0]], constant)
        else:
            raise ValueError(f"TFLite operator {op.name} is not rebuilt")
    return {name: values[index] for name, index in graph.outputs.items()}
