"""Every output kind and input kind, by name: the one table the model registry looks kinds up in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from processing.batch import InputBatch, decode_batch
from processing.footprint import Footprint, bytes_footprint, decode_footprint
from processing.image import DecodeLimits, PreprocessSpec
from processing.kinds import classification, detection, embedding, tensors
from processing.kinds.base import InputKind, InputSpec, OutputKind
from processing.kinds.encoded import EncodedSpec, encoded_batch
from processing.sniff import ImageBytes

OUTPUT_KINDS: Mapping[str, OutputKind] = {
    kind.name: kind for kind in (classification.KIND, detection.KIND, embedding.KIND, tensors.KIND)
}


def _decoded(images: Sequence[ImageBytes], spec: InputSpec, limits: DecodeLimits) -> InputBatch:
    if not isinstance(spec, PreprocessSpec):
        raise TypeError(f"the decoded input kind takes a PreprocessSpec, not {type(spec).__name__}")
    return decode_batch(images, spec, limits)


def _encoded(images: Sequence[ImageBytes], spec: InputSpec, limits: DecodeLimits) -> InputBatch:
    if not isinstance(spec, EncodedSpec):
        raise TypeError(f"the encoded input kind takes an EncodedSpec, not {type(spec).__name__}")
    return encoded_batch(images, spec, limits)


def _decoded_footprint(images: Sequence[ImageBytes], spec: InputSpec, limits: DecodeLimits) -> Footprint:
    assert isinstance(spec, PreprocessSpec)  # as _decoded checks
    return decode_footprint(images, spec, limits)


def _encoded_footprint(images: Sequence[ImageBytes], spec: InputSpec, limits: DecodeLimits) -> Footprint:
    return bytes_footprint(images)


# Images decoded and preprocessed into a tensor of pixels (processing/batch.py).
DECODED = InputKind("decoded", _decoded, in_thread_pool=True, footprint=_decoded_footprint)
# Images sent as they arrived, for a model that decodes them in its graph (processing/kinds/encoded.py). Reading
# the headers costs about 10 us an image, less than a thread-pool hand-off, so it runs on the event loop.
ENCODED = InputKind("encoded", _encoded, in_thread_pool=False, footprint=_encoded_footprint)
INPUT_KINDS: Mapping[str, InputKind] = {kind.name: kind for kind in (DECODED, ENCODED)}
