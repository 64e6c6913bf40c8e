"""Every output kind and input kind, by name: the one table the model registry looks kinds up in."""

from __future__ import annotations

from collections.abc import Mapping

from processing.batch import decode_batch
from processing.kinds import classification, tensors
from processing.kinds.base import InputKind, OutputKind

OUTPUT_KINDS: Mapping[str, OutputKind] = {kind.name: kind for kind in (classification.KIND, tensors.KIND)}

# Images decoded and preprocessed into a tensor of pixels. (Next: encoded bytes, for a model that decodes in-graph.)
DECODED = InputKind("decoded", decode_batch)
INPUT_KINDS: Mapping[str, InputKind] = {kind.name: kind for kind in (DECODED,)}
