"""A request's images decoded into one batch by one call, so a request costs one thread hand-off, not one per image.

Pure and CPU-bound, like ``processing.image``: the tier runs ``decode_batch`` in its thread
pool once per request, with every image that arrived, and each decoded tensor is written
straight into its row of the batch the backend is sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from processing.errors import ItemError
from processing.geometry import ImageGeometry
from processing.image import DecodeLimits, PreprocessSpec, image_to_tensor_and_geometry
from processing.sniff import ImageBytes


@dataclass
class InputBatch:
    """What a model's input kind made of a request's images (``processing/kinds``): ``tensors`` holds one row per
    image that became one, in input order; ``failures[i]`` is why input ``i`` did not (None when it did);
    ``times[i]`` is when input ``i`` was worked on (``time.perf_counter()``); ``geometries`` holds each row's
    ``ImageGeometry`` (where its image went in the model's frame), or None for rows that were not resized."""

    tensors: np.ndarray
    failures: list[Exception | None]
    times: list[tuple[float, float]]
    geometries: list[ImageGeometry | None] = field(default_factory=list)

    def geometry_rows(self) -> list[ImageGeometry | None]:
        """Each row's geometry, None for every row when the input kind has none."""
        return self.geometries if len(self.geometries) == len(self.tensors) else [None] * len(self.tensors)

    def rows(self) -> list[int]:
        """The inputs that decoded, in the order of their rows."""
        return [i for i, failure in enumerate(self.failures) if failure is None]


def decode_batch(images: Sequence[ImageBytes], spec: PreprocessSpec, limits: DecodeLimits) -> InputBatch:
    """Each of ``images`` decoded and preprocessed into its row of one batch; a failure is that input's alone.

    The same bytes object given twice (a URL repeated in one request) is decoded once.
    """
    dtype = np.uint8 if spec.dtype == "uint8" else np.float32
    batch = np.empty((len(images), *spec.shape), dtype=dtype)
    failures: list[Exception | None] = []
    times: list[tuple[float, float]] = []
    geometries: list[ImageGeometry | None] = []
    row_of: dict[int, int] = {}
    rows = 0
    for data in images:
        start = time.perf_counter()
        try:
            done = row_of.get(id(data))
            if done is not None:
                batch[rows], geometry = batch[done], geometries[done]
            else:
                _, geometry = image_to_tensor_and_geometry(data, spec, limits, batch[rows])
        except Exception as exc:  # one input's failure, whatever it is, is reported as that input's
            failures.append(_detached(exc))
        else:
            failures.append(None)
            geometries.append(geometry)
            row_of.setdefault(id(data), rows)
            rows += 1
        times.append((start, time.perf_counter()))
    return InputBatch(batch[:rows], failures, times, geometries)


def _detached(exc: Exception) -> Exception:
    """An input's expected failure without its tracebacks: their frames hold the request's image bytes.

    The frames also hold, through ``f_back``, ``decode_batch``'s own frame, which holds ``failures``, which holds
    ``exc``: a reference cycle that kept every image of the request (19 MiB bodies, in a burst) alive until
    Python's collector ran, which a quiet process does not do. An ``ItemError`` is reported by its code and
    message only, so its tracebacks (and those of the errors it was raised from) go; anything else is a bug,
    whose traceback is logged (``app/pipeline.py``), and keeps it.
    """
    if not isinstance(exc, ItemError):
        return exc
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc
