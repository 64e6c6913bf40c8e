"""The tensors kind: each row of every output, as it is."""

from __future__ import annotations

import numpy as np

from processing.kinds.tensors import Tensors, tensors_batch


def test_each_row_of_every_output_is_one_answer() -> None:
    out = tensors_batch({"a": np.arange(4).reshape(2, 2)})
    assert [a.to_json() if isinstance(a, Tensors) else a for a in out] == [
        {"outputs": {"a": [0, 1]}},
        {"outputs": {"a": [2, 3]}},
    ]


def test_outputs_with_nan_are_errors_and_integers_are_always_finite() -> None:
    outputs = {"a": np.array([[0.5], [np.nan]]), "b": np.array([[1], [2]], dtype=np.int64)}
    first, second = tensors_batch(outputs)
    assert isinstance(first, Tensors) and first.to_json() == {"outputs": {"a": [0.5], "b": [1]}}
    assert getattr(second, "code", None) == "model_output_invalid"
