"""The embedding kind: each row a vector, unit length when configured, as a JSON list or base64 float32."""

from __future__ import annotations

import base64

import numpy as np

from processing.kinds.embedding import Embedding, embed_batch
from processing.oip import output_tensor


def test_each_row_is_one_vector_normalised_when_asked() -> None:
    output = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    plain = embed_batch(output, normalize=False)
    unit = embed_batch(output, normalize=True)
    assert isinstance(plain[0], Embedding)
    assert plain[0].to_json("list") == {"embedding": [3.0, 4.0], "dimension": 2}
    vectors = [a.vector.tolist() for a in unit if isinstance(a, Embedding)]
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)  # a zero vector stays zero


def test_a_row_that_is_not_finite_is_that_items_error_alone() -> None:
    first, second = embed_batch(np.array([[1.0, np.inf], [1.0, 1.0]]), normalize=True)
    assert getattr(first, "code", None) == "model_output_invalid"
    assert isinstance(second, Embedding)
    np.testing.assert_allclose(np.linalg.norm(second.vector), 1.0, rtol=1e-6)


def test_base64_is_the_little_endian_float32_bytes() -> None:
    vector = np.array([0.5, -1.25, 3.0e-8], dtype=np.float32)
    document = Embedding(vector).to_json("base64")
    assert document["encoding"] == "base64" and document["dimension"] == 3
    decoded = np.frombuffer(base64.b64decode(document["embedding"]), dtype="<f4")
    assert decoded.tolist() == vector.tolist()


def test_v2_answers_the_vectors_as_fp32_rows() -> None:
    answers = [Embedding(np.array([1.0, 2.0], dtype=np.float32)), Embedding(np.array([3.0, 4.0], dtype=np.float32))]
    tensor = output_tensor("embedding", answers)
    assert (tensor.datatype, tensor.shape) == ("FP32", (2, 2))
    assert np.asarray(tensor.data).tolist() == [[1.0, 2.0], [3.0, 4.0]]
