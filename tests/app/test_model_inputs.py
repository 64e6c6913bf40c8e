"""A model's input kind from its metadata: encoded bytes for a string input (and its orientation), else pixels."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from app.backend.types import TensorInfo
from app.models import ServedModel
from processing.kinds.encoded import WITH_ORIENTATION, EncodedSpec
from processing.kinds.registry import DECODED, ENCODED
from tests.app.test_models import build, metadata, refusal, signature, tensor

BYTES = tensor("images", "string", (-1,))
ORIENTATION = tensor("orientation", "int32", (-1,))


def encoded(*inputs: TensorInfo, overrides: tuple[str, ...] = ()) -> ServedModel:
    return build(metadata(serving_default=signature(list(inputs))), *overrides)


def test_a_string_input_takes_the_bytes_and_an_orientation_input_their_orientation() -> None:
    model = encoded(BYTES, ORIENTATION)
    assert (model.input_kind, model.preprocess) == (ENCODED, EncodedSpec(orientation=True))
    assert (model.input_name, model.orientation_input) == ("images", "orientation")
    assert model.describe()["input"] == {
        "name": "images",
        "dtype": "string",
        "shape": [-1],
        "encoding": "bytes",
        "orientation": "orientation",
    }
    rows = np.empty(2, dtype=WITH_ORIENTATION)
    rows[:] = [(b"a", 6), (b"bc", 1)]
    inputs = model.predict_inputs(rows)
    assert inputs["images"].tolist() == [b"a", b"bc"] and inputs["orientation"].tolist() == [6, 1]


def test_without_an_orientation_input_the_start_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imagegate"):
        model = encoded(BYTES)
    assert model.preprocess == EncodedSpec(orientation=False) and model.orientation_input is None
    assert "no 'orientation' input" in caplog.text and "models.m" in caplog.text
    plain = np.empty(1, dtype=object)
    plain[0] = b"a"
    assert model.predict_inputs(plain) == {"images": plain}


def test_named_inputs_are_used_and_checked() -> None:
    rotation = tensor("rotation", "int32", (-1,))
    model = encoded(tensor("jpeg", "string", (-1,)), rotation, overrides=("input.orientation_name=rotation",))
    assert (model.input_name, model.orientation_input) == ("jpeg", "rotation")
    assert "orientation_name" in refusal(metadata(serving_default=signature([BYTES])), "input.orientation_name=rot")


@pytest.mark.parametrize(
    ("inputs", "overrides", "key"),
    [
        ([BYTES, tensor("extra", "float32", (-1, 3))], [], "also takes extra"),
        ([tensor("images", "string", (-1, 1))], [], "one image a row"),
        ([BYTES, tensor("orientation", "float32", (-1,))], [], "must be int32"),
        ([BYTES], ["input.resize=crop"], "models.m.input.resize: the model decodes the images itself"),
        ([BYTES], ["input.encoding=pixels"], "models.m.input.encoding"),
        ([tensor("images")], ["input.encoding=bytes"], "models.m.input.name"),
        ([tensor("images")], ["input.orientation_name=o"], "models.m.input.orientation_name"),
    ],
)
def test_what_cannot_work_is_refused_naming_the_key(inputs: list[TensorInfo], overrides: list[str], key: str) -> None:
    assert key in refusal(metadata(serving_default=signature(inputs)), *overrides)


def test_a_pixel_model_keeps_the_decoded_kind() -> None:
    assert build(metadata()).input_kind == DECODED
